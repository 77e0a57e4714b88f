"""Breast mask of a (prone, bilateral) breast MRI: body/air, skin, chest wall, left/right.

The whole volume is needed, so the work runs on a block-averaged copy of the reference (pre-contrast) phase
whose voxels are about ``working_spacing_mm`` wide (each axis averaged over round(target / spacing) voxels);
the result is mapped back to full resolution by nearest neighbour, only where it is needed (the output crop).
Steps, in patient orientation (superior, posterior, left; see :class:`~oncohabitat.regions.grid.Orientation`):

1. body: voxels above a SimpleITK histogram threshold (triangle by default: the air peak dominates MR
   histograms), largest 3D connected component, holes (lungs, dark fat-suppressed regions) filled in every
   axial slice;
2. skin: body voxels closer than ``skin_mm`` to the body surface are removed; the distance is the Euclidean
   distance transform with the working grid's spacing, minus half an in-plane working voxel (the surface lies
   between the last body voxel centre and the first air voxel centre), so the skin is removed to within half
   a working voxel;
3. chest wall (``sternum_plane``): in each axial slice the anterior body surface is followed across the
   central 30 % of the body's left-right extent; its most posterior point is the midline between the breasts
   (the skin over the sternum). The per-slice positions are smoothed (median over 5 slices) and everything
   posterior of that point plus ``chest_wall_offset_mm`` is excluded (pectoral muscle, ribs, thorax). This is
   a coronal cut, not a segmentation of the pectoral muscle: laterally, breast tissue posterior of the plane
   is lost. Use ``chest_wall = "none"`` to keep it;
4. left/right: split at the median left-right position of the midline points: label 1 = right breast,
   2 = left breast (patient sides, LPS), or 1 = breast when ``split_left_right`` is false.

A mask without any voxel (no body found, or nothing anterior of the chest wall) is refused with
``BREAST_MASK_EMPTY`` (INVALID_ARGUMENT): the regions that need it cannot be built.

Known limits: unilateral or sagittal-only fields of view have no midline between two breasts; the chest-wall
step then cuts at the anterior body surface of the central columns (set ``chest_wall = "none"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.regions import errors
from oncohabitat.regions.grid import Box, Orientation, orientation_of
from oncohabitat.regions.profile import BreastMaskSettings

BoolArray = npt.NDArray[np.bool_]
LabelArray = npt.NDArray[np.uint8]

#: Breast labels when split (patient sides, LPS); an unsplit mask uses RIGHT's value 1 for "breast".
RIGHT, LEFT = 1, 2
_CENTRAL_FRACTION = 0.30
_SMOOTH_SLICES = 5

_THRESHOLDS: dict[str, Any] = {
    "triangle": sitk.TriangleThresholdImageFilter,
    "otsu": sitk.OtsuThresholdImageFilter,
    "li": sitk.LiThresholdImageFilter,
    "huang": sitk.HuangThresholdImageFilter,
}


def block_factors(spacing_zyx: tuple[float, float, float], working_spacing_mm: float) -> tuple[int, int, int]:
    """Block size per axis (z, y, x): round(target / spacing), at least 1."""
    factors = [max(1, round(working_spacing_mm / s)) for s in spacing_zyx]
    return (factors[0], factors[1], factors[2])


def block_mean(array: npt.NDArray[np.generic], factors: tuple[int, int, int]) -> npt.NDArray[np.float32]:
    """Mean over blocks of ``factors`` voxels (edge-padded to whole blocks), float32, shape ceil(n / f)."""
    padded_shape = [math.ceil(n / f) * f for n, f in zip(array.shape, factors, strict=True)]
    pad = [(0, p - n) for p, n in zip(padded_shape, array.shape, strict=True)]
    data = np.pad(np.asarray(array, dtype=np.float32), pad, mode="edge") if any(p[1] for p in pad) else array
    fz, fy, fx = factors
    nz, ny, nx = (p // f for p, f in zip(padded_shape, factors, strict=True))
    blocks = np.asarray(data, dtype=np.float32).reshape(nz, fz, ny, fy, nx, fx)
    return np.asarray(blocks.mean(axis=(1, 3, 5), dtype=np.float32))


@dataclass(frozen=True)
class BreastMask:
    """Breast labels on the working grid and the mapping back to the full grid.

    ``labels`` is (z, y, x) on the working grid (0 outside, 1 right / 2 left, or 1 when not split);
    ``factors`` the block size per axis and ``full_shape`` the full grid's shape.
    """

    labels: LabelArray
    factors: tuple[int, int, int]
    full_shape: tuple[int, int, int]
    split: bool

    def on_box(self, box: Box) -> LabelArray:
        """Labels at full resolution inside ``box`` (nearest neighbour of the working grid)."""
        index = [
            np.minimum(np.arange(start, stop) // f, n - 1)
            for start, stop, f, n in zip(box.start, box.stop, self.factors, self.labels.shape, strict=True)
        ]
        return np.asarray(self.labels[np.ix_(index[0], index[1], index[2])], dtype=np.uint8)

    def voxel_count(self, label: int | None = None) -> int:
        """Full-resolution voxels with ``label`` (any breast label when None), counted exactly."""
        weights = [
            np.bincount(np.minimum(np.arange(n) // f, m - 1), minlength=m)
            for n, f, m in zip(self.full_shape, self.factors, self.labels.shape, strict=True)
        ]
        selected = self.labels != 0 if label is None else self.labels == label
        per_voxel = weights[0][:, None, None] * weights[1][None, :, None] * weights[2][None, None, :]
        return int(per_voxel[selected].sum())


def _threshold(image: npt.NDArray[np.float32], method: str) -> float:
    threshold_filter = _THRESHOLDS[method]()
    threshold_filter.SetInsideValue(0)
    threshold_filter.SetOutsideValue(1)
    threshold_filter.Execute(sitk.GetImageFromArray(image))
    return float(threshold_filter.GetThreshold())


def _largest_component(mask: BoolArray) -> BoolArray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.asarray(labels == int(np.argmax(sizes)))


def _fill_slices(mask: BoolArray) -> BoolArray:
    filled = np.empty_like(mask)
    for k in range(mask.shape[0]):
        filled[k] = ndimage.binary_fill_holes(mask[k])
    return filled


def _midline(body: BoolArray) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Per axial slice: posterior index and left-right index of the midline skin point, and slice validity."""
    n_slices = body.shape[0]
    posterior = np.zeros(n_slices)
    lateral = np.zeros(n_slices)
    valid = np.zeros(n_slices, dtype=bool)
    for k in range(n_slices):
        columns = np.flatnonzero(body[k].any(axis=0))
        if columns.size == 0:
            continue
        centre = 0.5 * (columns[0] + columns[-1])
        half = max(1.0, 0.5 * _CENTRAL_FRACTION * (columns[-1] - columns[0]))
        band = columns[(columns >= centre - half) & (columns <= centre + half)]
        if band.size == 0:  # no body in the central columns (two separate blobs): no midline in this slice
            continue
        front = np.argmax(body[k][:, band], axis=0)  # first body voxel from the anterior side
        deepest = np.flatnonzero(front == front.max())
        posterior[k] = float(front.max())
        lateral[k] = float(np.median(band[deepest]))
        valid[k] = True
    if valid.any():
        smoothed = ndimage.median_filter(posterior[valid], size=_SMOOTH_SLICES, mode="nearest")
        posterior[valid] = smoothed
    return posterior, lateral, valid


def _breast_canonical(
    image: npt.NDArray[np.float32], spacing: tuple[float, float, float], settings: BreastMaskSettings
) -> LabelArray:
    """Breast labels of ``image`` indexed (superior, posterior, left) with ``spacing`` (mm) in that order."""
    body = image > _threshold(image, settings.threshold)
    body = _fill_slices(_largest_component(body))
    if not body.any():
        return np.zeros(image.shape, dtype=np.uint8)
    depth = ndimage.distance_transform_edt(body, sampling=spacing)
    breast = body & (depth - 0.5 * min(spacing[1], spacing[2]) > settings.skin_mm)
    posterior, lateral, valid = _midline(body)
    if settings.chest_wall == "sternum_plane":
        limit = posterior + settings.chest_wall_offset_mm / spacing[1]
        p_index = np.arange(image.shape[1], dtype=np.float64)
        anterior = p_index[None, :] <= limit[:, None]
        breast &= anterior[:, :, None] & valid[:, None, None]
    labels = breast.astype(np.uint8)
    if settings.split_left_right and valid.any():
        split = float(np.median(lateral[valid]))
        left = np.arange(image.shape[2], dtype=np.float64) > split
        labels[breast & left[None, None, :]] = LEFT
    return labels


def compute_breast_mask(
    reference: npt.NDArray[np.generic],
    spacing_zyx: tuple[float, float, float],
    direction: tuple[float, ...],
    settings: BreastMaskSettings,
) -> BreastMask:
    """Breast mask of the reference phase (z, y, x) with spacing (mm, z/y/x order) and direction matrix.

    Raises:
        InvalidInputError: ``BREAST_MASK_EMPTY`` when the mask holds no voxel.
    """
    factors = block_factors(spacing_zyx, settings.working_spacing_mm)
    working = block_mean(reference, factors)
    working_spacing = (spacing_zyx[0] * factors[0], spacing_zyx[1] * factors[1], spacing_zyx[2] * factors[2])
    orientation: Orientation = orientation_of(direction)
    canonical = np.ascontiguousarray(orientation.to_canonical(working))
    labels = _breast_canonical(canonical, orientation.canonical_values(working_spacing), settings)
    if not labels.any():
        raise InvalidInputError(
            errors.BREAST_MASK_EMPTY, "the breast mask finds no tissue in the reference phase", "study.phases"
        )
    full_shape = (reference.shape[0], reference.shape[1], reference.shape[2])
    return BreastMask(
        labels=np.ascontiguousarray(orientation.from_canonical(labels)),
        factors=factors,
        full_shape=full_shape,
        split=settings.split_left_right,
    )
