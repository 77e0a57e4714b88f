"""Regions service: derived DCE maps, breast mask, peritumoral ring, stroma band, habitats and MSI features.

Domain modules (plain, typed, unit-tested): :mod:`.profile` (the RegionProfile),
:mod:`.grid`, :mod:`.kinetics`, :mod:`.breast`, :mod:`.bands`, :mod:`.clustering`, :mod:`.habitats`,
:mod:`.frozen`, :mod:`.msi`, :mod:`.statistics` and :mod:`.pipeline` (``build_regions``); the gRPC servicer
in :mod:`.servicer` only converts messages. Phases are :mod:`oncohabitat.common.phases`.
"""

from oncohabitat.common.phases import PhaseInput, PhaseSet, select_phases
from oncohabitat.regions.frozen import (
    FrozenHabitats,
    fit_population_habitats,
    load_frozen_habitats,
    write_frozen_habitats,
)
from oncohabitat.regions.habitats import HabitatResult, build_habitats, voxel_features
from oncohabitat.regions.msi import msi_features, msi_matrix
from oncohabitat.regions.pipeline import RegionMap, RegionsResult, build_regions
from oncohabitat.regions.profile import RegionProfile, parse_profile

__all__ = [
    "FrozenHabitats",
    "HabitatResult",
    "PhaseInput",
    "PhaseSet",
    "RegionMap",
    "RegionProfile",
    "RegionsResult",
    "build_habitats",
    "build_regions",
    "fit_population_habitats",
    "load_frozen_habitats",
    "msi_features",
    "msi_matrix",
    "parse_profile",
    "select_phases",
    "voxel_features",
    "write_frozen_habitats",
]
