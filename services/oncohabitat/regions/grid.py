"""Crops, mask mapping and patient orientation over the imaging model (:mod:`oncohabitat.common.volume`).

Arrays are numpy (z, y, x); a grid is a shape and a :class:`~oncohabitat.common.volume.Geometry` (SimpleITK
(x, y, z) order, mm). A crop is a sub-grid: same spacing and direction, origin moved by a whole number of
voxels, so crop arrays align voxel for voxel with the full grid.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.common.volume import Geometry, Shape
from oncohabitat.regions import errors

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Box:
    """Half-open index box (z, y, x) inside a grid."""

    start: Shape
    stop: Shape

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """numpy index of the box."""
        return (
            slice(self.start[0], self.stop[0]),
            slice(self.start[1], self.stop[1]),
            slice(self.start[2], self.stop[2]),
        )

    @property
    def shape(self) -> Shape:
        """Shape (z, y, x) of the box."""
        return (self.stop[0] - self.start[0], self.stop[1] - self.start[1], self.stop[2] - self.start[2])

    @classmethod
    def whole(cls, shape: Shape) -> Box:
        """The box covering the whole grid."""
        return cls((0, 0, 0), shape)


def sub_grid(geometry: Geometry, box: Box) -> Geometry:
    """The geometry of ``box`` (shape ``box.shape``): same spacing and direction, origin at the box's first voxel."""
    direction = geometry.direction_matrix
    offset_xyz = np.array([box.start[2], box.start[1], box.start[0]], dtype=np.float64) * geometry.spacing
    origin = np.asarray(geometry.origin) + direction @ offset_xyz
    return Geometry(
        spacing=geometry.spacing,
        origin=(float(origin[0]), float(origin[1]), float(origin[2])),
        direction=geometry.direction,
    )


def margin_voxels(margin_mm: float, spacing_zyx: tuple[float, float, float], in_plane_only: bool) -> Shape:
    """Voxels per axis (z, y, x) covering ``margin_mm`` plus one voxel (neighbourhoods, rounding)."""
    margin = tuple(math.ceil(margin_mm / s - 1e-9) + 1 for s in spacing_zyx)
    return (1 if in_plane_only else margin[0], margin[1], margin[2])


def bounding_box(mask: BoolArray, margin: Shape) -> Box:
    """Bounding box of the non-zero voxels of ``mask`` grown by ``margin`` voxels, clipped to the grid."""
    start: list[int] = []
    stop: list[int] = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        start.append(max(0, int(present[0]) - margin[axis]))
        stop.append(min(mask.shape[axis], int(present[-1]) + 1 + margin[axis]))
    return Box((start[0], start[1], start[2]), (stop[0], stop[1], stop[2]))


def map_mask_to_grid(
    mask: npt.NDArray[np.generic], mask_geometry: Geometry, shape: Shape, geometry: Geometry
) -> BoolArray:
    """Tumour mask (non-zero voxels) on the grid ``shape`` (z, y, x) x ``geometry``.

    Same grid: used as is. Otherwise the mask is resampled onto the grid with nearest-neighbour
    interpolation (SimpleITK), voxels outside the mask's extent counting as background.

    Raises:
        InvalidInputError: ``MASK_EMPTY`` (no voxel) or ``MASK_OUTSIDE_IMAGE`` (nothing left on the grid).
    """
    binary = np.asarray(mask) != 0
    if not binary.any():
        raise InvalidInputError(errors.MASK_EMPTY, "the tumour mask has no voxel", "tumour_mask")
    if binary.shape == shape and mask_geometry.matches(geometry):
        return binary
    source = mask_geometry.sitk_image(binary.astype(np.uint8))
    reference = geometry.apply(sitk.Image([shape[2], shape[1], shape[0]], sitk.sitkUInt8))
    resampled = sitk.Resample(source, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    mapped = sitk.GetArrayFromImage(resampled) != 0
    if not mapped.any():
        raise InvalidInputError(
            errors.MASK_OUTSIDE_IMAGE, "the tumour mask does not overlap the image grid", "tumour_mask"
        )
    return mapped


@dataclass(frozen=True)
class Orientation:
    """How numpy axes map to the patient's superior, posterior and left directions (LPS).

    ``axes[i]`` is the numpy axis closest to patient axis i of (S, P, L); ``flips[i]`` is True when moving
    along that numpy axis goes inferior / anterior / right, i.e. the axis must be reversed.
    """

    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]

    def to_canonical(self, array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        """View of ``array`` (z, y, x) indexed (superior, posterior, left)."""
        view = np.transpose(array, self.axes)
        for axis, flip in enumerate(self.flips):
            if flip:
                view = np.flip(view, axis=axis)
        return view

    def from_canonical(self, array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        """Inverse of :meth:`to_canonical`."""
        view = array
        for axis, flip in enumerate(self.flips):
            if flip:
                view = np.flip(view, axis=axis)
        return np.transpose(view, np.argsort(self.axes))

    def canonical_values(self, values_zyx: tuple[float, float, float]) -> tuple[float, float, float]:
        """Per-axis values (e.g. spacing) reordered from (z, y, x) to (S, P, L)."""
        return (values_zyx[self.axes[0]], values_zyx[self.axes[1]], values_zyx[self.axes[2]])


def orientation_of(direction: tuple[float, ...]) -> Orientation:
    """Orientation of a grid from its direction matrix (the permutation maximising alignment)."""
    matrix = np.asarray(direction, dtype=np.float64).reshape(3, 3)  # rows L, P, S; columns image x, y, z
    patient_rows = (2, 1, 0)  # S, P, L
    best: tuple[float, tuple[int, int, int]] | None = None
    for columns in itertools.permutations(range(3)):
        score = sum(abs(matrix[row, col]) for row, col in zip(patient_rows, columns, strict=True))
        if best is None or score > best[0] + 1e-12:
            best = (score, (columns[0], columns[1], columns[2]))
    assert best is not None
    columns = best[1]
    axes = (2 - columns[0], 2 - columns[1], 2 - columns[2])  # image x, y, z -> numpy axis 2, 1, 0
    flips = tuple(bool(matrix[row, col] < 0) for row, col in zip(patient_rows, columns, strict=True))
    return Orientation(axes=axes, flips=(flips[0], flips[1], flips[2]))
