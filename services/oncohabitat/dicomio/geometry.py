"""Slice geometry of classic single-frame DICOM images (patient coordinates, LPS, mm).

Conventions: ``ImageOrientationPatient`` holds the row direction (along which the column index, x,
grows) then the column direction (along which the row index, y, grows); ``PixelSpacing`` is
``[row spacing (y), column spacing (x)]`` in mm.  The slice normal is ``row x column``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from oncohabitat.dicomio.errors import SeriesError

#: Attributes every slice needs for its position in space.
GEOMETRY_KEYWORDS: tuple[str, ...] = (
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
)


@dataclass(frozen=True)
class SliceGeometry:
    """Position of one slice: ``orientation`` (6 direction cosines), ``position`` (mm, LPS),
    ``pixel_spacing`` (row spacing, column spacing) in mm and ``shape`` (rows, columns)."""

    orientation: tuple[float, ...]
    position: tuple[float, float, float]
    pixel_spacing: tuple[float, float]
    shape: tuple[int, int]

    @property
    def row_direction(self) -> NDArray[np.float64]:
        """Unit vector along which the column index (x) grows."""
        return np.asarray(self.orientation[:3], dtype=np.float64)

    @property
    def column_direction(self) -> NDArray[np.float64]:
        """Unit vector along which the row index (y) grows."""
        return np.asarray(self.orientation[3:], dtype=np.float64)

    @property
    def normal(self) -> NDArray[np.float64]:
        """Slice normal ``row x column`` (unit vector)."""
        return np.cross(self.row_direction, self.column_direction)


def slice_geometry(ds: Dataset) -> SliceGeometry:
    """Read the geometry attributes of one single-frame image.

    Raises:
        SeriesError: ``MISSING_GEOMETRY`` when an attribute is absent or malformed,
            ``INVALID_ORIENTATION`` when the direction cosines are not orthonormal.
    """
    missing = [kw for kw in GEOMETRY_KEYWORDS if ds.get(kw) is None]
    if missing:
        raise SeriesError("MISSING_GEOMETRY", f"image lacks {', '.join(missing)}")
    try:
        orientation = tuple(float(v) for v in ds.ImageOrientationPatient)
        position = tuple(float(v) for v in ds.ImagePositionPatient)
        spacing = tuple(float(v) for v in ds.PixelSpacing)
        shape = (int(ds.Rows), int(ds.Columns))
    except (TypeError, ValueError) as exc:
        raise SeriesError("MISSING_GEOMETRY", "malformed geometry attributes") from exc
    if len(orientation) != 6 or len(position) != 3 or len(spacing) != 2:
        raise SeriesError("MISSING_GEOMETRY", "geometry attributes have the wrong number of values")
    if min(spacing) <= 0 or min(shape) <= 0:
        raise SeriesError("MISSING_GEOMETRY", "non-positive pixel spacing or matrix size")
    row = np.asarray(orientation[:3])
    col = np.asarray(orientation[3:])
    if (
        abs(np.linalg.norm(row) - 1.0) > 1e-3
        or abs(np.linalg.norm(col) - 1.0) > 1e-3
        or abs(float(np.dot(row, col))) > 1e-3
    ):
        raise SeriesError("INVALID_ORIENTATION", "ImageOrientationPatient is not orthonormal")
    return SliceGeometry(
        orientation=orientation,
        position=(position[0], position[1], position[2]),
        pixel_spacing=(spacing[0], spacing[1]),
        shape=shape,
    )


def position_along_normal(geometry: SliceGeometry) -> float:
    """Signed distance (mm) of the slice origin along the slice normal."""
    return float(np.dot(geometry.normal, np.asarray(geometry.position)))


def sort_by_normal(datasets: Sequence[Dataset]) -> list[Dataset]:
    """Datasets ordered by ascending position along the slice normal (the order SimpleITK uses),
    independent of file name and InstanceNumber."""
    keyed = [(position_along_normal(slice_geometry(ds)), i, ds) for i, ds in enumerate(datasets)]
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [ds for _, _, ds in keyed]


def direction_matrix(geometry: SliceGeometry) -> NDArray[np.float64]:
    """3x3 direction matrix whose columns are the x (row), y (column) and z (normal) axes."""
    return np.column_stack([geometry.row_direction, geometry.column_direction, geometry.normal])
