"""Peritumoral ring and stroma band: voxels within a physical distance (mm) of the tumour surface.

Distances come from :func:`scipy.ndimage.distance_transform_edt` with the real, anisotropic spacing (never
from voxel dilation). For a voxel outside the tumour let ``d_c`` be the distance from its centre to the
nearest tumour voxel centre and ``d_b`` the distance from its centre to that tumour voxel's cuboid (the voxel's
physical extent). The tumour surface is taken half-way between the surface through the outermost tumour voxel
centres (``d_c``) and the voxel faces (``d_b``)::

    distance = (d_c + d_b) / 2

which makes ring volumes of spheres match the analytic shell volume to within a few percent on
clinical grids, where ``d_c`` alone under-estimates them by 5-15 % (5 mm ring). A voxel belongs to a band of
width ``w`` when it is outside the tumour and ``distance <= w``. Mode "2d" measures distances within each slice
(in-plane spacing only); slices without tumour then hold no band voxel.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


def _surface_distance(tumour: BoolArray, spacing: tuple[float, ...]) -> FloatArray:
    distance_c, nearest = ndimage.distance_transform_edt(~tumour, sampling=spacing, return_indices=True)
    half = np.asarray(spacing, dtype=np.float64) / 2.0
    squared = np.zeros(tumour.shape, dtype=np.float64)
    for axis in range(tumour.ndim):
        shape = [1] * tumour.ndim
        shape[axis] = tumour.shape[axis]
        coordinate = np.arange(tumour.shape[axis]).reshape(shape)
        offset = np.abs(coordinate - nearest[axis]) * spacing[axis]
        squared += np.maximum(offset - half[axis], 0.0) ** 2
    return np.asarray(0.5 * (distance_c + np.sqrt(squared)), dtype=np.float64)


def surface_distance_mm(tumour: BoolArray, spacing_zyx: tuple[float, float, float], mode: str = "3d") -> FloatArray:
    """Distance (mm) of every voxel centre from the tumour surface (0 inside the tumour; see module doc).

    Args:
        tumour: boolean mask (z, y, x), at least one voxel.
        spacing_zyx: voxel spacing in mm, numpy order.
        mode: "3d", or "2d" for in-plane distances per slice (infinite in slices without tumour).
    """
    if mode == "3d":
        return np.where(tumour, 0.0, _surface_distance(tumour, spacing_zyx))
    distance = np.full(tumour.shape, np.inf, dtype=np.float64)
    for k in np.flatnonzero(tumour.any(axis=(1, 2))):
        distance[k] = np.where(tumour[k], 0.0, _surface_distance(tumour[k], spacing_zyx[1:]))
    return distance


def band(tumour: BoolArray, distance_mm: FloatArray, width_mm: float, allowed: BoolArray | None = None) -> BoolArray:
    """Voxels outside the tumour within ``width_mm`` of its surface, optionally inside ``allowed``."""
    selected = ~tumour & (distance_mm <= width_mm)
    if allowed is not None:
        selected &= allowed
    return np.asarray(selected)
