"""The inputs of a plan extraction: images, regions, MSI values, statistics (no pyradiomics here).

Arrays are numpy ``(z, y, x)``; geometry is :class:`~oncohabitat.common.volume.Geometry` (spacing and origin in
mm, (x, y, z) order; direction row-major). A region may lie on another grid than an image as long as both grids
share spacing and direction and their origins differ by whole voxels (the regions service's ``crop`` output grid
is such a sub-grid of the phase grid): :func:`region_on_grid` moves it by index offsets, never by resampling.

Region names from the regions service are mapped to canonical ones by :func:`canonical_regions`:
``tumour`` -> ``tumour``; ``habitat_k`` -> ``habitat_k``; ``peritumoral_ring_<w>mm`` -> ``ring_<w>mm``;
``stroma_band_<w>mm`` -> ``stroma_<w>mm``; ``breast``, ``breast_right`` and ``breast_left`` -> ``breast`` (the
union of both sides); ``parenchyma`` = ``breast`` minus ``tumour`` (on the label maps' grid).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from oncohabitat.common.volume import Geometry, Volume
from oncohabitat.features import errors
from oncohabitat.features.errors import FeatureExtractionError

BoolArray = npt.NDArray[np.bool_]
#: Relative tolerance on spacing / direction when two grids must coincide, and on whole-voxel origin offsets.
GRID_TOLERANCE = 1e-4

_RING = re.compile(r"^peritumoral_ring_(.+mm)$")
_BAND = re.compile(r"^stroma_band_(.+mm)$")
_HABITAT = re.compile(r"^habitat_[1-9]$")
_PHASE = re.compile(r"^S(0|[1-9][0-9]*)$")


@dataclass(frozen=True)
class RegionMask:
    """One region: a boolean ``(z, y, x)`` array and the geometry of its grid."""

    mask: BoolArray
    geometry: Geometry


@dataclass(frozen=True)
class LabelTable:
    """A label map (``(z, y, x)`` integers) with ``value -> name`` entries (the regions service's names)."""

    array: npt.NDArray[np.integer]
    geometry: Geometry
    labels: Mapping[int, str]


@dataclass(frozen=True)
class StudyInputs:
    """Everything a plan is extracted from.

    Attributes:
        images: canonical image name (``S0`` .. ``SN``, ``SM``, ``SL``, ``SM0``, ``PE`` ...) -> image.
        regions: canonical region name -> mask.
        msi: MSI feature name (``msi_contrast`` ...) -> value, as the regions service computed them.
        statistics: canonical ``<region>/stats/<name>`` -> value supplied by the caller (used only for names the
            engine cannot compute from the images and masks it has).
        parenchyma_mean: mean of S0 over breast minus tumour over the whole volume (the regions service reports
            it); None = computed here from the S0 image and the breast / tumour masks delivered.
    """

    images: Mapping[str, Volume]
    regions: Mapping[str, RegionMask]
    msi: Mapping[str, float] = field(default_factory=dict)
    statistics: Mapping[str, float] = field(default_factory=dict)
    parenchyma_mean: float | None = None

    def phases(self) -> list[str]:
        """The phase images ``S0, S1, ...`` present, in order, stopping at the first gap."""
        present = {name for name in self.images if _PHASE.match(name)}
        ordered: list[str] = []
        while f"S{len(ordered)}" in present:
            ordered.append(f"S{len(ordered)}")
        return ordered


def canonical_region_name(service_name: str) -> str | None:
    """The canonical region of a regions-service label name; None when it is not a region of the grammar."""
    if service_name in ("tumour", "parenchyma"):
        return service_name
    if service_name in ("breast", "breast_right", "breast_left"):
        return "breast"
    if _HABITAT.match(service_name):
        return service_name
    if match := _RING.match(service_name):
        return f"ring_{match.group(1)}"
    if match := _BAND.match(service_name):
        return f"stroma_{match.group(1)}"
    if service_name.startswith(("ring_", "stroma_")):
        return service_name
    return None


def canonical_regions(tables: Sequence[LabelTable]) -> dict[str, RegionMask]:
    """Canonical regions of label maps (see the module docstring); labels of several sides are united."""
    regions: dict[str, RegionMask] = {}
    for table in tables:
        for value, name in table.labels.items():
            canonical = canonical_region_name(name)
            if canonical is None:
                continue
            mask = np.asarray(table.array == value)
            if canonical in regions:
                previous = regions[canonical]
                if previous.mask.shape != mask.shape or previous.geometry != table.geometry:
                    raise FeatureExtractionError(
                        errors.MASK_INVALID, None, f"labels of region {canonical!r} lie on different grids"
                    )
                mask = mask | previous.mask
            regions[canonical] = RegionMask(mask, table.geometry)
    if "breast" in regions and "tumour" in regions and "parenchyma" not in regions:
        breast, tumour = regions["breast"], regions["tumour"]
        on_breast = region_on_grid(tumour, breast.geometry, breast.mask.shape)
        tumour_mask = on_breast.full(breast.mask.shape) if on_breast is not None else np.zeros_like(breast.mask)
        regions["parenchyma"] = RegionMask(breast.mask & ~tumour_mask, breast.geometry)
    return regions


@dataclass(frozen=True)
class PlacedRegion:
    """A region on an image grid: its bounding-box crop and the box's lower corner (z, y, x) index.

    ``outside`` counts region voxels that fall outside the image grid (they are dropped).
    """

    crop: BoolArray
    lower: tuple[int, int, int]
    outside: int

    @property
    def voxel_count(self) -> int:
        """Voxels of the region inside the image grid."""
        return int(np.count_nonzero(self.crop))

    def full(self, shape: tuple[int, ...]) -> BoolArray:
        """The region as a full boolean array of ``shape`` (the image grid)."""
        out = np.zeros(shape, dtype=bool)
        z, y, x = self.lower
        dz, dy, dx = self.crop.shape
        out[z : z + dz, y : y + dy, x : x + dx] = self.crop
        return out


def _offset(region: Geometry, image: Geometry) -> tuple[int, int, int]:
    """Index (z, y, x) of the region grid's voxel (0, 0, 0) on the image grid; same spacing and direction."""
    r_spacing, i_spacing = np.asarray(region.spacing), np.asarray(image.spacing)
    r_dir, i_dir = np.asarray(region.direction).reshape(3, 3), np.asarray(image.direction).reshape(3, 3)
    if not np.allclose(r_spacing, i_spacing, rtol=GRID_TOLERANCE, atol=0) or not np.allclose(
        r_dir, i_dir, atol=GRID_TOLERANCE
    ):
        raise FeatureExtractionError(
            errors.GEOMETRY_MISMATCH, None, "a region and an image differ in spacing or direction"
        )
    matrix = i_dir @ np.diag(i_spacing)
    index_xyz = np.linalg.solve(matrix, np.asarray(region.origin) - np.asarray(image.origin))
    rounded = np.rint(index_xyz)
    if not np.allclose(index_xyz, rounded, atol=1e-3):
        raise FeatureExtractionError(
            errors.GEOMETRY_MISMATCH, None, "a region's grid is not shifted by whole voxels from an image's grid"
        )
    x, y, z = (int(v) for v in rounded)
    return z, y, x


def region_on_grid(region: RegionMask, image: Geometry, shape: tuple[int, ...]) -> PlacedRegion | None:
    """The region on the image grid (``shape`` in (z, y, x)), cropped to its bounding box; None when empty.

    Raises:
        FeatureExtractionError: ``GEOMETRY_MISMATCH`` when the grids are not index-shifted copies.
    """
    offset = _offset(region.geometry, image) if region.geometry != image else (0, 0, 0)
    coords = np.nonzero(region.mask)
    if coords[0].size == 0:
        return None
    shifted = [c + o for c, o in zip(coords, offset, strict=True)]
    inside = np.ones(coords[0].size, dtype=bool)
    for axis, values in enumerate(shifted):
        inside &= (values >= 0) & (values < shape[axis])
    outside = int(inside.size - np.count_nonzero(inside))
    if not inside.any():
        return None
    kept = [values[inside] for values in shifted]
    lower = tuple(int(values.min()) for values in kept)
    upper = tuple(int(values.max()) + 1 for values in kept)
    crop = np.zeros(tuple(u - lo for u, lo in zip(upper, lower, strict=True)), dtype=bool)
    crop[tuple(values - lo for values, lo in zip(kept, lower, strict=True))] = True
    return PlacedRegion(crop, (lower[0], lower[1], lower[2]), outside)
