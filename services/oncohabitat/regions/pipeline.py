"""BuildRegions as a plain function: phases + tumour mask + profile -> label maps, maps, statistics, MSI.

Work happens on the tumour's bounding box grown by the largest band width (plus one voxel), not on the whole
volume; only the breast mask looks at the whole (block-averaged) reference phase. With
``output_grid = "crop"`` every returned array lies on that box, a sub-grid of the phase grid
(:func:`oncohabitat.regions.grid.sub_grid`); with ``"full"`` the box is the whole grid.

Region (label) names: ``tumour``; ``habitat_1`` .. ``habitat_K``; ``peritumoral_ring_<w>mm``;
``stroma_band_<w>mm``; ``breast_right`` and ``breast_left`` (or ``breast`` when not split). Statistics use
the same names (plus ``breast`` for the union when split); breast statistics cover the whole volume.

With ``restrict_to_breast`` the ring and band are clipped to the breast mask: to the breast holding most of
the tumour when the mask is split left/right, to both breasts when the tumour touches neither.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from oncohabitat.common.phases import PhaseSet
from oncohabitat.common.volume import Geometry
from oncohabitat.regions.bands import band, surface_distance_mm
from oncohabitat.regions.breast import LEFT, RIGHT, BreastMask, compute_breast_mask
from oncohabitat.regions.frozen import FrozenHabitats
from oncohabitat.regions.grid import Box, bounding_box, margin_voxels, sub_grid
from oncohabitat.regions.habitats import HabitatResult, build_habitats
from oncohabitat.regions.kinetics import check_available, check_times, compute_derived, phase_needs, resolve_roles
from oncohabitat.regions.msi import msi_features, msi_matrix
from oncohabitat.regions.profile import RegionProfile
from oncohabitat.regions.statistics import RegionStatistics, region_statistics

logger = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]
LabelArray = npt.NDArray[np.uint8]
Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class LabelEntry:
    """One row of a label table."""

    value: int
    name: str
    description: str


@dataclass(frozen=True)
class RegionMap:
    """A label image (z, y, x, uint8) on the output grid and its label table."""

    kind: str
    array: LabelArray
    labels: tuple[LabelEntry, ...]


@dataclass(frozen=True)
class RegionsResult:
    """Everything BuildRegions returns, on the output grid: ``box.shape`` (z, y, x) x ``geometry``."""

    geometry: Geometry
    box: Box
    maps: tuple[RegionMap, ...]
    derived_images: Mapping[str, Float32Array]
    statistics: tuple[RegionStatistics, ...]
    msi_features: Mapping[str, float]
    msi_matrix: npt.NDArray[np.int64] | None
    habitats: HabitatResult | None
    normalisation_factor: float | None = None
    tumour_side: str | None = None
    #: Mean of the S0 (reference) phase over breast minus tumour over the whole volume; None without a breast
    #: mask or parenchyma. The features service divides by it for seed 004's normalisation.
    parenchyma_s0_mean: float | None = None


def _width_name(prefix: str, width_mm: float) -> str:
    return f"{prefix}_{width_mm:g}mm"


def _needed_maps(profile: RegionProfile) -> list[str]:
    names = list(profile.derived_images) + list(profile.statistics_images)
    if profile.habitats.enabled:
        names += profile.habitats.features
    return list(dict.fromkeys(names))


def _tumour_side(breast_crop: LabelArray, tumour: BoolArray) -> int | None:
    values = breast_crop[tumour]
    values = values[values > 0]
    if values.size == 0:
        return None
    return int(np.bincount(values).argmax())


def parenchyma_s0_mean(phases: PhaseSet, s0: int, breast: BreastMask, tumour: BoolArray) -> float | None:
    """Mean (float64) of phase ``s0`` over the whole-volume breast mask minus ``tumour``; None when empty."""
    parenchyma = (breast.on_box(Box.whole(phases.shape)) > 0) & ~tumour
    if not parenchyma.any():
        return None
    return float(np.asarray(phases.arrays[s0][parenchyma], dtype=np.float64).mean())


def _normalisation(mean: float | None) -> float:
    return mean if mean is not None and mean > 0 else 1.0


def _habitat_regions(
    tumour: BoolArray,
    maps: Mapping[str, Float32Array],
    stats_maps: Mapping[str, Float32Array],
    profile: RegionProfile,
    grid: Geometry,
    frozen: FrozenHabitats | None,
) -> tuple[HabitatResult, RegionMap, list[RegionStatistics], dict[str, float], npt.NDArray[np.int64] | None]:
    habitats = build_habitats(tumour, maps, profile.habitats, grid.spacing_zyx, frozen)
    table = tuple(
        LabelEntry(k, f"habitat_{k}", f"habitat {k} of {habitats.k} (1 = least perfused)")
        for k in range(1, habitats.k + 1)
        if habitats.valid[k - 1]
    )
    statistics = [
        region_statistics(
            f"habitat_{k}", habitats.habitat_mask(k), grid.voxel_volume_ml, stats_maps, habitats.valid[k - 1]
        )
        for k in range(1, habitats.k + 1)
    ]
    msi: dict[str, float] = {}
    matrix: npt.NDArray[np.int64] | None = None
    if profile.msi.enabled and habitats.clustered:
        matrix = msi_matrix(habitats.labels, habitats.k, profile.msi.neighbourhood)
        msi = msi_features(matrix, grid.voxel_volume_mm3)
    return habitats, RegionMap("habitats", habitats.labels, table), statistics, msi, matrix


def _allowed(breast: BreastMask | None, breast_crop: LabelArray | None, side: int | None) -> BoolArray | None:
    """Where bands may lie: the tumour's breast when split (both when the tumour touches neither), else all."""
    if breast is None or breast_crop is None:
        return None
    if breast.split and side is not None:
        return np.asarray(breast_crop == side)
    return np.asarray(breast_crop > 0)


def _band_regions(
    tumour: BoolArray,
    allowed: BoolArray | None,
    stats_maps: Mapping[str, Float32Array],
    profile: RegionProfile,
    grid: Geometry,
) -> tuple[list[RegionMap], list[RegionStatistics]]:
    widths = [
        ("peritumoral_ring", profile.ring_width_mm, "peritumoral ring"),
        ("stroma_band", profile.stroma_width_mm, "stroma band"),
    ]
    maps: list[RegionMap] = []
    statistics: list[RegionStatistics] = []
    if all(width is None for _, width, _ in widths):
        return maps, statistics
    distance = surface_distance_mm(tumour, grid.spacing_zyx, profile.mode)
    for kind, width, words in widths:
        if width is None:
            continue
        name = _width_name(kind, width)
        selected = band(tumour, distance, width, allowed)
        description = f"{words}: {width:g} mm from the tumour surface ({profile.mode})"
        maps.append(RegionMap(kind, selected.astype(np.uint8), (LabelEntry(1, name, description),)))
        statistics.append(region_statistics(name, selected, grid.voxel_volume_ml, stats_maps))
    return maps, statistics


def _breast_regions(breast: BreastMask, crop: LabelArray, grid: Geometry) -> tuple[RegionMap, list[RegionStatistics]]:
    if breast.split:
        entries: tuple[LabelEntry, ...] = (
            LabelEntry(RIGHT, "breast_right", "right breast"),
            LabelEntry(LEFT, "breast_left", "left breast"),
        )
    else:
        entries = (LabelEntry(1, "breast", "breast (skin and chest wall excluded)"),)
    total = breast.voxel_count()
    statistics = [RegionStatistics("breast", total, total * grid.voxel_volume_ml)]
    if breast.split:
        for entry in entries:
            count = breast.voxel_count(entry.value)
            statistics.append(RegionStatistics(entry.name, count, count * grid.voxel_volume_ml))
    return RegionMap("breast", crop, entries), statistics


def build_regions(
    phases: PhaseSet,
    tumour: BoolArray,
    profile: RegionProfile,
    frozen: FrozenHabitats | None = None,
) -> RegionsResult:
    """Build every region and map the profile asks for.

    Args:
        phases: validated phases on one grid (:func:`oncohabitat.common.phases.select_phases`).
        tumour: tumour mask on the phase grid (z, y, x), at least one voxel.
        profile: the region profile.
        frozen: verified frozen centroids (frozen habitat mode only).

    Raises:
        InvalidInputError: missing phases (``PHASE_MISSING`` naming the role), bad times, unfit centroids.
    """
    grid = phases.geometry
    roles = resolve_roles(profile.kinetics, phases.indices)
    needed = _needed_maps(profile)
    check_available(needed, roles, phases.indices)
    check_times(needed, roles, phases.times_s)

    if profile.output_grid == "full":
        box = Box.whole(phases.shape)
    else:
        margin = margin_voxels(profile.margin_mm(), grid.spacing_zyx, in_plane_only=profile.mode == "2d")
        box = bounding_box(tumour, margin)
    tumour_crop = np.ascontiguousarray(tumour[box.slices])

    breast: BreastMask | None = None
    breast_crop: LabelArray | None = None
    reference = roles.s0 if roles.s0 in phases.arrays else phases.reference_index
    if profile.breast.enabled:
        direction = grid.direction
        breast = compute_breast_mask(phases.arrays[reference], grid.spacing_zyx, direction, profile.breast)
        breast_crop = breast.on_box(box)
    factor: float | None = None
    parenchyma_mean = parenchyma_s0_mean(phases, reference, breast, tumour) if breast is not None else None
    if profile.intensity_normalisation == "breast_s0_mean" and breast is not None:
        factor = _normalisation(parenchyma_mean)

    used = sorted({index for name in needed for _, index in phase_needs(name, roles) if index is not None})
    cropped = {i: np.asarray(phases.arrays[i][box.slices], dtype=np.float64) / (factor or 1.0) for i in used}
    maps = compute_derived(needed, cropped, phases.times_s, profile.kinetics, roles)
    stats_maps = {name: maps[name] for name in profile.statistics_images}

    region_maps = [RegionMap("tumour", tumour_crop.astype(np.uint8), (LabelEntry(1, "tumour", "tumour mask"),))]
    statistics = [region_statistics("tumour", tumour_crop, grid.voxel_volume_ml, stats_maps)]
    habitats: HabitatResult | None = None
    msi: dict[str, float] = {}
    matrix: npt.NDArray[np.int64] | None = None
    if profile.habitats.enabled:
        habitats, habitat_map, habitat_stats, msi, matrix = _habitat_regions(
            tumour_crop, maps, stats_maps, profile, grid, frozen
        )
        region_maps.append(habitat_map)
        statistics += habitat_stats

    side = _tumour_side(breast_crop, tumour_crop) if breast_crop is not None else None
    allowed = _allowed(breast, breast_crop, side) if profile.restrict_to_breast else None
    band_maps, band_stats = _band_regions(tumour_crop, allowed, stats_maps, profile, grid)
    region_maps += band_maps
    statistics += band_stats
    if breast is not None and breast_crop is not None:
        breast_map, breast_stats = _breast_regions(breast, breast_crop, grid)
        region_maps.append(breast_map)
        statistics += breast_stats

    logger.info(
        "regions built",
        extra={"box_shape": list(box.shape), "tumour_voxels": int(tumour_crop.sum()), "regions": len(region_maps)},
    )
    side_name = {RIGHT: "right", LEFT: "left"}.get(side or 0) if breast is not None and breast.split else None
    return RegionsResult(
        geometry=sub_grid(grid, box),
        box=box,
        maps=tuple(region_maps),
        derived_images={name: maps[name] for name in profile.derived_images},
        statistics=tuple(statistics),
        msi_features=msi,
        msi_matrix=matrix,
        habitats=habitats,
        normalisation_factor=factor,
        tumour_side=side_name,
        parenchyma_s0_mean=parenchyma_mean,
    )
