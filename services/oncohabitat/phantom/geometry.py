"""Voxel geometry of a phantom volume (axial, LPS patient coordinates).

Numpy arrays are indexed (z, y, x); sizes, spacings and origins follow SimpleITK's (x, y, z) order.
Voxel (i, j, k) = (x, y, z index) lies at ``origin + (i * sx, j * sy, k * sz)`` mm: image rows run towards
patient left (+x), columns towards posterior (+y) and slices towards superior (+z), i.e.
ImageOrientationPatient = [1, 0, 0, 0, 1, 0].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

IDENTITY_DIRECTION: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class VolumeGeometry:
    """Size (x, y, z voxels), spacing (x, y, z mm), origin (LPS mm of voxel 0) and direction cosines."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...] = IDENTITY_DIRECTION

    @classmethod
    def axial_centred(
        cls,
        size: tuple[int, int, int],
        spacing: tuple[float, float, float],
        centre: tuple[float, float, float],
    ) -> VolumeGeometry:
        """Axial geometry whose voxel grid is centred on ``centre`` (LPS mm)."""
        origin = tuple(float(c - (n - 1) / 2.0 * s) for c, n, s in zip(centre, size, spacing, strict=True))
        return cls(size=size, spacing=spacing, origin=(origin[0], origin[1], origin[2]))

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        """Numpy shape (z, y, x) of a volume on this grid."""
        return (self.size[2], self.size[1], self.size[0])

    @property
    def centre(self) -> tuple[float, float, float]:
        """LPS position (mm) of the centre of the voxel grid."""
        c = [o + (n - 1) / 2.0 * s for o, n, s in zip(self.origin, self.size, self.spacing, strict=True)]
        return (c[0], c[1], c[2])

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL (1 mL = 1000 mm^3)."""
        return float(np.prod(self.spacing)) / 1000.0

    @property
    def image_orientation_patient(self) -> list[float]:
        """DICOM ImageOrientationPatient: row (x-axis) then column (y-axis) direction cosines."""
        d = self.direction
        return [d[0], d[3], d[6], d[1], d[4], d[7]]

    def slice_position(self, k: int) -> tuple[float, float, float]:
        """LPS position (mm) of the first voxel of slice ``k`` (DICOM ImagePositionPatient)."""
        d = self.direction
        sz = self.spacing[2] * k
        return (self.origin[0] + d[2] * sz, self.origin[1] + d[5] * sz, self.origin[2] + d[8] * sz)

    def local_axes(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Voxel-centre coordinates (mm) along x, y and z relative to the grid centre (1-D arrays)."""
        axes = [
            (np.arange(n, dtype=np.float64) - (n - 1) / 2.0) * np.float64(s)
            for n, s in zip(self.size, self.spacing, strict=True)
        ]
        return axes[0], axes[1], axes[2]

    def index_to_lps(self, index_zyx: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """LPS positions (mm, (N, 3) x/y/z) of continuous voxel indices given as (N, 3) (z, y, x)."""
        idx = np.atleast_2d(np.asarray(index_zyx, dtype=np.float64))[:, ::-1]
        matrix = np.asarray(self.direction, dtype=np.float64).reshape(3, 3) * np.asarray(self.spacing)
        return np.asarray(self.origin) + idx @ matrix.T

    def to_sitk(self, array_zyx: npt.NDArray[np.generic]) -> sitk.Image:
        """SimpleITK image of ``array_zyx`` (shape :attr:`shape_zyx`) carrying this geometry."""
        if array_zyx.shape != self.shape_zyx:
            raise ValueError(f"array shape {array_zyx.shape} does not match geometry {self.shape_zyx}")
        image = sitk.GetImageFromArray(array_zyx)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image
