"""The one imaging model: a voxel array and the physical geometry of its grid.

Conventions (also ``protos/oncohabitat/v1/common.proto``), used by every service, ``dicomio`` and the phantom:

* numpy arrays are indexed (z, y, x) = (slice, row, column), C order; SimpleITK images, and every per-axis
  geometry value here (spacing, origin, size), are (x, y, z);
* units are mm; ``origin`` is the centre of voxel (0, 0, 0) in patient coordinates (LPS);
* ``direction`` is the row-major 3x3 matrix whose columns are the unit vectors of the image x, y, z axes
  (SimpleITK's ``GetDirection()``): x = DICOM row direction, y = column direction, z = slice normal.

:class:`Geometry` is the grid without voxels (what the ``Volume`` proto carries besides shape and data);
:class:`Volume` is array + geometry. Conversions: :meth:`Geometry.of` / :meth:`Volume.of` from SimpleITK,
:meth:`Geometry.apply` / :meth:`Volume.to_sitk` to SimpleITK, and
:meth:`~oncohabitat.common.codec.VolumeCodec.encode_volume` / ``decode_volume`` to and from the proto.
SimpleITK is imported only inside the SimpleITK conversions: services that only pass arrays (scoring, the
listener) do not carry it (deploy/README.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import SimpleITK as sitk

Shape = tuple[int, int, int]
IDENTITY_DIRECTION: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

#: Default tolerances of :meth:`Geometry.matches`: mm on origins and spacings, and on direction cosines.
GRID_TOLERANCE_MM = 1e-3
DIRECTION_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Geometry:
    """Physical grid of a volume: spacing (mm), origin (mm, LPS), direction (row-major 3x3), all (x, y, z)."""

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = field(default=IDENTITY_DIRECTION)

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        """Geometry of a SimpleITK image."""
        spacing = image.GetSpacing()
        origin = image.GetOrigin()
        return cls(
            spacing=(spacing[0], spacing[1], spacing[2]),
            origin=(origin[0], origin[1], origin[2]),
            direction=tuple(image.GetDirection()),
        )

    @classmethod
    def from_axes(
        cls,
        row: npt.ArrayLike,
        column: npt.ArrayLike,
        spacing: tuple[float, float, float],
        origin: tuple[float, float, float],
    ) -> Geometry:
        """Geometry from the DICOM row and column directions; the slice normal (z) is ``row x column``."""
        matrix = np.column_stack([np.asarray(row, np.float64), np.asarray(column, np.float64)])
        normal = np.cross(matrix[:, 0], matrix[:, 1])
        direction = np.column_stack([matrix, normal])
        return cls(spacing=spacing, origin=origin, direction=tuple(float(v) for v in direction.reshape(-1)))

    @classmethod
    def axial_centred(cls, size_xyz: Shape, spacing: tuple[float, float, float], centre: tuple[float, ...]) -> Geometry:
        """Axial (identity direction) geometry whose ``size_xyz`` voxel grid is centred on ``centre`` (LPS mm)."""
        origin = tuple(float(c - (n - 1) / 2.0 * s) for c, n, s in zip(centre, size_xyz, spacing, strict=True))
        return cls(spacing=spacing, origin=(origin[0], origin[1], origin[2]))

    def apply(self, image: sitk.Image) -> sitk.Image:
        """Set this geometry on ``image`` (in place) and return it."""
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    @property
    def direction_matrix(self) -> npt.NDArray[np.float64]:
        """The 3x3 direction matrix (columns = image x, y, z axes)."""
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    @property
    def row_direction(self) -> npt.NDArray[np.float64]:
        """Unit vector along which the column index (x) grows (DICOM row direction)."""
        return self.direction_matrix[:, 0]

    @property
    def column_direction(self) -> npt.NDArray[np.float64]:
        """Unit vector along which the row index (y) grows (DICOM column direction)."""
        return self.direction_matrix[:, 1]

    @property
    def normal(self) -> npt.NDArray[np.float64]:
        """Unit vector along which the slice index (z) grows."""
        return self.direction_matrix[:, 2]

    @property
    def image_orientation_patient(self) -> list[float]:
        """DICOM ImageOrientationPatient: row (x-axis) then column (y-axis) direction cosines."""
        d = self.direction
        return [d[0], d[3], d[6], d[1], d[4], d[7]]

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Voxel spacing (mm) in numpy axis order (z, y, x)."""
        sx, sy, sz = self.spacing
        return (sz, sy, sx)

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel (mm^3)."""
        return math.prod(self.spacing)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel (mL; 1 mL = 1000 mm^3)."""
        return math.prod(self.spacing) / 1000.0

    def matches(
        self,
        other: Geometry,
        tolerance_mm: float = GRID_TOLERANCE_MM,
        direction_tolerance: float = DIRECTION_TOLERANCE,
    ) -> bool:
        """Same spacing, origin (within ``tolerance_mm``) and direction (within ``direction_tolerance``)."""
        return (
            np.allclose(self.spacing, other.spacing, rtol=0.0, atol=tolerance_mm)
            and np.allclose(self.origin, other.origin, rtol=0.0, atol=tolerance_mm)
            and np.allclose(self.direction, other.direction, rtol=0.0, atol=direction_tolerance)
        )

    def index_to_lps(self, index_zyx: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """LPS positions (mm, (N, 3) x/y/z) of continuous voxel indices given as (N, 3) (z, y, x)."""
        idx = np.atleast_2d(np.asarray(index_zyx, dtype=np.float64))[:, ::-1]
        matrix = self.direction_matrix * np.asarray(self.spacing)
        return np.asarray(self.origin) + idx @ matrix.T

    def slice_position(self, k: int) -> tuple[float, float, float]:
        """LPS position (mm) of the first voxel of slice ``k`` (DICOM ImagePositionPatient)."""
        d = self.direction
        sz = self.spacing[2] * k
        return (self.origin[0] + d[2] * sz, self.origin[1] + d[5] * sz, self.origin[2] + d[8] * sz)

    def sitk_image(self, array_zyx: npt.NDArray[np.generic]) -> sitk.Image:
        """SimpleITK image of the (z, y, x) ``array_zyx`` carrying this geometry."""
        import SimpleITK as sitk

        return self.apply(sitk.GetImageFromArray(array_zyx, isVector=False))


@dataclass(frozen=True)
class Volume:
    """A scalar 3-D volume: (z, y, x) ``array`` on ``geometry``."""

    array: npt.NDArray[np.generic]
    geometry: Geometry = field(default_factory=Geometry)

    @classmethod
    def of(cls, image: sitk.Image) -> Volume:
        """Volume of a SimpleITK image (array copy, geometry)."""
        import SimpleITK as sitk

        return cls(sitk.GetArrayFromImage(image), Geometry.of(image))

    @property
    def shape(self) -> Shape:
        """Numpy shape (z, y, x)."""
        shape = self.array.shape
        return (int(shape[0]), int(shape[1]), int(shape[2]))

    def to_sitk(self) -> sitk.Image:
        """SimpleITK image of this volume (the array is copied)."""
        return self.geometry.sitk_image(self.array)

    def same_grid(
        self,
        other: Volume,
        tolerance_mm: float = GRID_TOLERANCE_MM,
        direction_tolerance: float = DIRECTION_TOLERANCE,
    ) -> bool:
        """Same shape and :meth:`Geometry.matches`."""
        return self.array.shape == other.array.shape and self.geometry.matches(
            other.geometry, tolerance_mm, direction_tolerance
        )
