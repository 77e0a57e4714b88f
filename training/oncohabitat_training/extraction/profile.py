"""What a training extraction computes: a full-extraction profile, or an explicit extraction plan.

A profile (JSON or YAML file, or the built-in ``dce-default``) names the region profile (the regions library's
``RegionProfile`` JSON), the pyradiomics settings, the regions and images, the normalisation, whether the MSI
values are included and which region statistics; :meth:`FullExtractionProfile.plan` expands it with
:func:`oncohabitat.features.full.full_plan` into an :class:`~oncohabitat.bundles.plan.ExtractionPlan` (every
feature of regions x images x filters x classes, then ``tumour/msi/*`` and ``<region>/stats/*``). A file holding
``features`` is taken as an extraction plan as it is.

``dce-default``: tumour, habitats 1-3, 5 mm ring and 20 mm stroma band; images S0, S1, SM0, SL0, PE, SER;
original-image features of every class (shape once per region), ``binCount`` 32 (a fixed number of gray levels
suits images on very different scales: signal, PE in %, SER as a ratio); the 22 MSI values of K = 3; per region
``volume_ml`` (mL), ``voxel_count``, ``mean_PE`` (%), ``mean_SER`` and, for habitats, ``fraction``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from oncohabitat.bundles.canonical import msi_feature_names, parse_canonical_name
from oncohabitat.bundles.feature_settings import FeatureSettings
from oncohabitat.bundles.plan import ExtractionPlan, NoNormalisation, Normalisation

DEFAULT_PROFILE_NAME = "dce-default"
_HABITAT_STATS = ("fraction",)


class ProfileError(Exception):
    """A profile or plan file that cannot be used; the message says why (no traceback)."""


class FullExtractionProfile(BaseModel):
    """Regions x images x pyradiomics settings, plus MSI and region statistics (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    region_profile: dict[str, JsonValue] = Field(default_factory=dict)
    normalisation: Normalisation = Field(default_factory=NoNormalisation)
    feature_settings: FeatureSettings = Field(default_factory=FeatureSettings)
    regions: list[str] = Field(min_length=1)
    images: list[str] = Field(min_length=1)
    #: Include the MSI values (``tumour/msi/*``) of the profile's habitat count.
    msi: bool = True
    #: Statistics per region (``fraction`` only for habitats).
    stats: list[str] = Field(default_factory=lambda: ["volume_ml", "voxel_count", "fraction"])

    def _stat_names(self) -> list[str]:
        names = []
        for region in self.regions:
            for stat in self.stats:
                if stat in _HABITAT_STATS and not region.startswith("habitat_"):
                    continue
                names.append(parse_canonical_name(f"{region}/stats/{stat}").full)
        return names

    def plan(self) -> ExtractionPlan:
        """The full extraction plan of this profile (raises ValueError / FeatureNameError on bad names)."""
        from oncohabitat.features.full import full_plan  # imports pyradiomics: only when a plan is built

        base = full_plan(self.feature_settings, self.regions, self.images, dict(self.region_profile))
        names = list(base.features)
        if self.msi:
            names += [f"tumour/msi/{name}" for name in msi_feature_names(_habitat_count(self.region_profile))]
        names += self._stat_names()
        return ExtractionPlan(
            region_profile=dict(self.region_profile),
            normalisation=self.normalisation,
            feature_settings=self.feature_settings,
            features=names,
        )


def _habitat_count(region_profile: dict[str, Any]) -> int:
    probe = ExtractionPlan(region_profile=region_profile, features=["tumour/stats/volume_ml"])
    return probe.max_habitats()


DCE_DEFAULT = FullExtractionProfile(
    feature_settings=FeatureSettings(setting={"binCount": 32}),
    regions=["tumour", "habitat_1", "habitat_2", "habitat_3", "ring_5mm", "stroma_20mm"],
    images=["S0", "S1", "SM0", "SL0", "PE", "SER"],
    stats=["volume_ml", "voxel_count", "fraction", "mean_PE", "mean_SER"],
)
BUILT_IN: dict[str, FullExtractionProfile] = {DEFAULT_PROFILE_NAME: DCE_DEFAULT}


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '<file>'}: {error['msg']}" for error in exc.errors()[:5]
    )


def load_plan(source: str | Path) -> ExtractionPlan:
    """The plan of a built-in profile name, or of a JSON / YAML profile or plan file.

    Raises:
        ProfileError: unknown name, unreadable file, invalid profile or plan.
    """
    if str(source) in BUILT_IN:
        return BUILT_IN[str(source)].plan()
    path = Path(source)
    if not path.is_file():
        raise ProfileError(f"{source!s}: neither a built-in profile ({', '.join(BUILT_IN)}) nor a file")
    try:
        text = path.read_text(encoding="utf-8")
        document = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ProfileError(
            f"{path.name}: not readable {path.suffix.lstrip('.').upper() or 'YAML'} ({type(exc).__name__})"
        ) from None
    if not isinstance(document, dict):
        raise ProfileError(f"{path.name}: a profile or plan must be a mapping")
    try:
        if "features" in document:
            return ExtractionPlan.model_validate(document)
        return FullExtractionProfile.model_validate(document).plan()
    except ValidationError as exc:
        raise ProfileError(f"{path.name}: {_problems(exc)}") from None
    except ValueError as exc:
        raise ProfileError(f"{path.name}: {exc}") from None
