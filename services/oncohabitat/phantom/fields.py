"""Smooth random fields on a voxel grid (texture, glandular pattern, bias field, lesion heterogeneity).

A field is a cubic B-spline whose control points, spaced ``cell_mm`` apart, are Gaussian-smoothed white
noise scaled to unit standard deviation. Because the voxel grid is a tensor product, the spline is evaluated
separably (three small weight matrices), so any slice or block costs a few matrix products and no full
volume is ever materialised. Values are dimensionless, roughly N(0, 1).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter

from oncohabitat.common.volume import Geometry

FloatArray = npt.NDArray[np.float32]


def _bspline_weights(positions: npt.NDArray[np.float64], n_control: int) -> npt.NDArray[np.float64]:
    """Dense (len(positions), n_control) cubic B-spline weight matrix; positions in control-point units."""
    base = np.floor(positions).astype(np.int64)
    frac = positions - base
    weights = (
        (1.0 - frac) ** 3 / 6.0,
        (3.0 * frac**3 - 6.0 * frac**2 + 4.0) / 6.0,
        (-3.0 * frac**3 + 3.0 * frac**2 + 3.0 * frac + 1.0) / 6.0,
        frac**3 / 6.0,
    )
    matrix = np.zeros((positions.size, n_control), dtype=np.float64)
    rows = np.arange(positions.size)
    for offset, weight in zip((-1, 0, 1, 2), weights, strict=True):
        np.add.at(matrix, (rows, np.clip(base + offset, 0, n_control - 1)), weight)
    return matrix


def local_axes(
    geometry: Geometry, size_xyz: tuple[int, int, int]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Voxel-centre coordinates (mm) along x, y and z relative to the centre of the ``size_xyz`` grid (1-D)."""
    axes = [
        (np.arange(n, dtype=np.float64) - (n - 1) / 2.0) * np.float64(s)
        for n, s in zip(size_xyz, geometry.spacing, strict=True)
    ]
    return axes[0], axes[1], axes[2]


def size_of(labels: npt.NDArray[np.generic]) -> tuple[int, int, int]:
    """Grid size (x, y, z) of a (z, y, x) volume."""
    return (int(labels.shape[2]), int(labels.shape[1]), int(labels.shape[0]))


class SmoothField:
    """Random smooth field over the ``size_xyz`` voxel grid of ``geometry`` with correlation length ~``cell_mm``."""

    def __init__(
        self, geometry: Geometry, size_xyz: tuple[int, int, int], cell_mm: float, rng: np.random.Generator
    ) -> None:
        axes_mm = local_axes(geometry, size_xyz)  # x, y, z
        weights: list[npt.NDArray[np.float64]] = []
        n_controls: list[int] = []
        for axis in axes_mm:
            extent = float(axis[-1] - axis[0]) if axis.size > 1 else 0.0
            n_control = math.ceil(extent / cell_mm) + 4
            positions = (axis - axis[0]) / cell_mm + 1.5
            weights.append(_bspline_weights(positions, n_control))
            n_controls.append(n_control)
        control = rng.standard_normal((n_controls[2], n_controls[1], n_controls[0]))
        control = gaussian_filter(control, sigma=0.7, mode="wrap")
        control /= control.std() * 0.6  # the cubic spline shrinks the spread by ~0.6
        self._control = control  # (z, y, x)
        self._wx, self._wy, self._wz = weights

    def plane(self, k: int) -> FloatArray:
        """Field on slice ``k``, shape (y, x)."""
        plane = np.tensordot(self._wz[k], self._control, axes=(0, 0))  # (cy, cx)
        return (self._wy @ plane @ self._wx.T).astype(np.float32)

    def block(self, z: slice, y: slice, x: slice) -> FloatArray:
        """Field on the voxel block ``[z, y, x]``, shape (z, y, x)."""
        out = np.einsum("kc,cba,jb,ia->kji", self._wz[z], self._control, self._wy[y], self._wx[x], optimize=True)
        return np.asarray(out, dtype=np.float32)
