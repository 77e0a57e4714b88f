"""Slice geometry of classic single-frame DICOM images, as :class:`~oncohabitat.common.volume.Geometry`.

Conventions: ``ImageOrientationPatient`` holds the row direction (along which the column index, x, grows)
then the column direction (along which the row index, y, grows); ``PixelSpacing`` is ``[row spacing (y),
column spacing (x)]`` in mm. One slice is the grid ``(rows, columns)`` x a Geometry whose x and y axes are
the row and column directions, z the slice normal ``row x column``, origin ``ImagePositionPatient``; its
z spacing is unknown until the stack is assembled (:data:`UNKNOWN_SLICE_SPACING_MM` until then).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset

from oncohabitat.common.volume import Geometry
from oncohabitat.dicomio.errors import SeriesError

#: Attributes every slice needs for its position in space.
GEOMETRY_KEYWORDS: tuple[str, ...] = (
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
)

#: z spacing of a single slice's geometry (the slice gap is a property of the stack, not of one slice).
UNKNOWN_SLICE_SPACING_MM = 1.0

#: One slice: its geometry and its matrix size (rows, columns).
Slice = tuple[Geometry, tuple[int, int]]


def plane_geometry(
    orientation: Sequence[float],
    position: Sequence[float],
    pixel_spacing: Sequence[float],
    slice_spacing: float = UNKNOWN_SLICE_SPACING_MM,
) -> Geometry:
    """Geometry of a slice from ImageOrientationPatient (6), ImagePositionPatient (3), PixelSpacing (row, col)."""
    return Geometry.from_axes(
        row=orientation[:3],
        column=orientation[3:],
        spacing=(float(pixel_spacing[1]), float(pixel_spacing[0]), slice_spacing),
        origin=(float(position[0]), float(position[1]), float(position[2])),
    )


def pixel_spacing(geometry: Geometry) -> tuple[float, float]:
    """DICOM PixelSpacing (row spacing (y), column spacing (x)) of a slice geometry (mm)."""
    return (geometry.spacing[1], geometry.spacing[0])


def slice_geometry(ds: Dataset) -> Slice:
    """Read the geometry attributes of one single-frame image: (geometry, (rows, columns)).

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
    return plane_geometry(orientation, position, spacing), shape


def position_along_normal(geometry: Geometry) -> float:
    """Signed distance (mm) of the slice origin along the slice normal."""
    return float(np.dot(geometry.normal, np.asarray(geometry.origin)))


def sort_by_normal(datasets: Sequence[Dataset]) -> list[Dataset]:
    """Datasets ordered by ascending position along the slice normal (the order SimpleITK uses),
    independent of file name and InstanceNumber."""
    keyed = [(position_along_normal(slice_geometry(ds)[0]), i, ds) for i, ds in enumerate(datasets)]
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [ds for _, _, ds in keyed]
