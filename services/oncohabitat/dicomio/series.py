"""Assemble a classic single-frame CT/MR series into a SimpleITK volume.

The volume is in LPS patient coordinates: origin = ``ImagePositionPatient`` of the first slice (mm),
spacing = (column spacing, row spacing, slice spacing) in mm (SimpleITK's (x, y, z) order), direction
columns = row direction, column direction, slice normal.  Slices are ordered by ascending position
along the slice normal (never by file name or InstanceNumber), which is also SimpleITK's order.
The numpy view (``sitk.GetArrayFromImage``) is (z, y, x).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from os import PathLike
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

from oncohabitat.common.volume import Geometry
from oncohabitat.dicomio.errors import SeriesError
from oncohabitat.dicomio.geometry import Slice, pixel_spacing, position_along_normal, slice_geometry
from oncohabitat.dicomio.scan import InstanceInfo, scan_instances

if TYPE_CHECKING:
    # imported where a volume is built: the listener uses this module's header checks only (through
    # dicomio.phases.validate_phase_geometry) and its image does not carry SimpleITK (deploy/README.md)
    import SimpleITK as sitk

__all__ = [
    "InstanceInfo",
    "LoadedSeries",
    "SeriesError",
    "SeriesErrorReason",
    "SeriesLoadOptions",
    "assemble_series",
    "load_series",
    "scan_instances",
]

logger = logging.getLogger(__name__)

_INT16_MIN = float(np.iinfo(np.int16).min)
_INT16_MAX = float(np.iinfo(np.int16).max)


class SeriesErrorReason(StrEnum):
    """Stable ``reason`` tokens of :class:`SeriesError`."""

    TOO_FEW_SLICES = "TOO_FEW_SLICES"
    UNREADABLE = "UNREADABLE"
    MULTIFRAME = "MULTIFRAME"
    MIXED_SERIES = "MIXED_SERIES"
    MISSING_PIXEL_DATA = "MISSING_PIXEL_DATA"
    UNSUPPORTED_PIXEL_FORMAT = "UNSUPPORTED_PIXEL_FORMAT"
    PIXEL_DECODE_FAILED = "PIXEL_DECODE_FAILED"
    MISSING_GEOMETRY = "MISSING_GEOMETRY"
    INVALID_ORIENTATION = "INVALID_ORIENTATION"
    MIXED_ORIENTATION = "MIXED_ORIENTATION"
    MIXED_SIZE = "MIXED_SIZE"
    MIXED_PIXEL_SPACING = "MIXED_PIXEL_SPACING"
    DUPLICATE_POSITION = "DUPLICATE_POSITION"
    OBLIQUE_STACK = "OBLIQUE_STACK"
    INCONSISTENT_SPACING = "INCONSISTENT_SPACING"


@dataclass(frozen=True)
class SeriesLoadOptions:
    """Acceptance rules of :func:`assemble_series`.

    Attributes:
        min_slices: fewest slices accepted.
        spacing_relative_tolerance: the largest and smallest gap between neighbouring slices may differ
            by at most this fraction of the mean gap ...
        spacing_absolute_tolerance_mm: ... and by at most this many mm (both must hold).
        orientation_tolerance: largest difference between direction cosines of two slices.
        pixel_spacing_tolerance_mm: largest difference of in-plane pixel spacing between slices (mm).
        in_plane_offset_tolerance_mm: largest in-plane shift (mm) between neighbouring slice origins;
            larger shifts mean a sheared stack (gantry tilt), which a regular grid cannot represent.
    """

    min_slices: int = 2
    spacing_relative_tolerance: float = 0.05
    spacing_absolute_tolerance_mm: float = 0.1
    orientation_tolerance: float = 1e-4
    pixel_spacing_tolerance_mm: float = 1e-3
    in_plane_offset_tolerance_mm: float = 0.1


@dataclass(frozen=True)
class LoadedSeries:
    """A validated series.

    Attributes:
        image: the volume (LPS; int16 when the rescaled values are integers that fit, else float32).
        sop_instance_uids: SOP Instance UID of each slice, index i = numpy z index i.
        headers: the slice datasets in the same order, with their pixel data dropped (for references,
            RTSTRUCT/SEG rasterisation and DICOM export).
        series_instance_uid: the series' UID.
        frame_of_reference_uid: the series' FrameOfReferenceUID ("" when absent).
        modality: e.g. "CT", "MR".
    """

    image: sitk.Image
    sop_instance_uids: tuple[str, ...]
    headers: tuple[Dataset, ...]
    series_instance_uid: str
    frame_of_reference_uid: str
    modality: str

    @property
    def slice_positions_mm(self) -> NDArray[np.float64]:
        """Position (mm) of each slice along the slice normal, ascending."""
        return np.asarray([position_along_normal(slice_geometry(ds)[0]) for ds in self.headers])


def load_series(paths: Sequence[str | PathLike[str]], options: SeriesLoadOptions | None = None) -> LoadedSeries:
    """Read the files of one series and assemble them (see :func:`assemble_series`).

    Raises:
        SeriesError: ``UNREADABLE`` for a file that is not DICOM, or any reason of :func:`assemble_series`.
    """
    opts = options or SeriesLoadOptions()
    if len(paths) < opts.min_slices:
        raise SeriesError(SeriesErrorReason.TOO_FEW_SLICES, f"{len(paths)} file(s), at least {opts.min_slices} needed")
    datasets: list[Dataset] = []
    for index, path in enumerate(paths):
        try:
            datasets.append(dcmread(path))
        except (InvalidDicomError, OSError) as exc:
            raise SeriesError(SeriesErrorReason.UNREADABLE, f"file #{index} is not readable DICOM") from exc
    return assemble_series(datasets, opts)


def assemble_series(datasets: Sequence[Dataset], options: SeriesLoadOptions | None = None) -> LoadedSeries:
    """Validate the slices of one series and stack them into a volume.

    The datasets are not modified except that their ``PixelData`` is dropped once decoded (they are
    returned as :attr:`LoadedSeries.headers`).

    Raises:
        SeriesError: with a :class:`SeriesErrorReason` for fewer than ``min_slices`` slices,
            multi-frame or mixed-series input, missing pixel data, mixed orientation/size/pixel spacing,
            duplicate positions, sheared stacks or inconsistent slice spacing.
    """
    opts = options or SeriesLoadOptions()
    if len(datasets) < opts.min_slices:
        raise SeriesError(
            SeriesErrorReason.TOO_FEW_SLICES,
            f"{len(datasets)} slice(s), at least {opts.min_slices} needed",
        )
    _check_instances(datasets)
    geometries = [slice_geometry(ds) for ds in datasets]
    _check_consistent_planes(geometries, opts)
    order = sorted(range(len(datasets)), key=lambda i: (position_along_normal(geometries[i][0]), i))
    ordered = [datasets[i] for i in order]
    ordered_geometry = [geometries[i] for i in order]
    slice_spacing = _check_slice_spacing(ordered_geometry, opts)
    volume = _stack_pixels(ordered)
    import SimpleITK as sitk

    first = ordered_geometry[0][0]
    geometry = Geometry(
        spacing=(first.spacing[0], first.spacing[1], slice_spacing), origin=first.origin, direction=first.direction
    )
    image = geometry.apply(sitk.GetImageFromArray(volume))
    first_ds = ordered[0]
    logger.debug(
        "assembled series: %d slices, size %s, spacing %s mm, %s",
        len(ordered),
        image.GetSize(),
        image.GetSpacing(),
        image.GetPixelIDTypeAsString(),
    )
    return LoadedSeries(
        image=image,
        sop_instance_uids=tuple(str(ds.SOPInstanceUID) for ds in ordered),
        headers=tuple(ordered),
        series_instance_uid=str(first_ds.SeriesInstanceUID),
        frame_of_reference_uid=str(first_ds.get("FrameOfReferenceUID", "")),
        modality=str(first_ds.get("Modality", "")),
    )


def _check_instances(datasets: Sequence[Dataset]) -> None:
    series_uids = {str(ds.get("SeriesInstanceUID", "")) for ds in datasets}
    if len(series_uids) != 1 or "" in series_uids:
        raise SeriesError(
            SeriesErrorReason.MIXED_SERIES, "slices belong to more than one series (or lack a series UID)"
        )
    sop_uids = [str(ds.get("SOPInstanceUID", "")) for ds in datasets]
    if "" in sop_uids or len(set(sop_uids)) != len(sop_uids):
        raise SeriesError(SeriesErrorReason.MIXED_SERIES, "slices lack a SOP Instance UID or share one (duplicates)")
    for index, ds in enumerate(datasets):
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise SeriesError(
                SeriesErrorReason.MULTIFRAME,
                f"slice #{index} is multi-frame; only classic single-frame images are supported",
            )
        if "PixelData" not in ds:
            raise SeriesError(SeriesErrorReason.MISSING_PIXEL_DATA, f"slice #{index} has no PixelData")
        if int(ds.get("SamplesPerPixel", 1)) != 1 or str(ds.get("PhotometricInterpretation", "")) not in (
            "MONOCHROME1",
            "MONOCHROME2",
        ):
            raise SeriesError(SeriesErrorReason.UNSUPPORTED_PIXEL_FORMAT, f"slice #{index} is not a greyscale image")


def _check_consistent_planes(geometries: Sequence[Slice], opts: SeriesLoadOptions) -> None:
    first, first_shape = geometries[0]
    reference = np.asarray(first.image_orientation_patient)
    for index, (geom, shape) in enumerate(geometries[1:], start=1):
        if np.max(np.abs(np.asarray(geom.image_orientation_patient) - reference)) > opts.orientation_tolerance:
            raise SeriesError(
                SeriesErrorReason.MIXED_ORIENTATION, f"slice #{index} has a different ImageOrientationPatient"
            )
        if shape != first_shape:
            raise SeriesError(
                SeriesErrorReason.MIXED_SIZE,
                f"slice #{index} is {shape[0]}x{shape[1]}, expected {first_shape[0]}x{first_shape[1]}",
            )
        spacing_gap = np.max(np.abs(np.subtract(pixel_spacing(geom), pixel_spacing(first))))
        if spacing_gap > opts.pixel_spacing_tolerance_mm:
            raise SeriesError(SeriesErrorReason.MIXED_PIXEL_SPACING, f"slice #{index} has a different PixelSpacing")


def _check_slice_spacing(ordered: Sequence[Slice], opts: SeriesLoadOptions) -> float:
    """Mean slice spacing (mm) after checking duplicates, shear and regularity."""
    normal = ordered[0][0].normal
    positions = np.asarray([g.origin for g, _ in ordered])
    steps = np.diff(positions, axis=0)
    along = steps @ normal
    if np.any(along < 1e-3):
        raise SeriesError(SeriesErrorReason.DUPLICATE_POSITION, "two slices share the same position")
    in_plane = np.linalg.norm(steps - np.outer(along, normal), axis=1)
    if np.max(in_plane) > opts.in_plane_offset_tolerance_mm:
        raise SeriesError(
            SeriesErrorReason.OBLIQUE_STACK,
            f"slice origins shift in-plane by up to {np.max(in_plane):.2f} mm (gantry tilt or sheared stack)",
        )
    mean_spacing = float(np.mean(along))
    deviation = float(np.max(along) - np.min(along))
    if deviation > opts.spacing_relative_tolerance * mean_spacing or deviation > opts.spacing_absolute_tolerance_mm:
        raise SeriesError(
            SeriesErrorReason.INCONSISTENT_SPACING,
            f"slice gaps range {along.min():.3f}-{along.max():.3f} mm around a mean of {mean_spacing:.3f} mm",
        )
    return mean_spacing


def _stack_pixels(ordered: Sequence[Dataset]) -> NDArray[np.int16] | NDArray[np.float32]:
    """(z, y, x) volume of modality values (rescale slope/intercept or modality LUT applied)."""
    rows, columns = int(ordered[0].Rows), int(ordered[0].Columns)
    volume = np.empty((len(ordered), rows, columns), dtype=np.float32)
    integer_valued = True
    for index, ds in enumerate(ordered):
        try:
            raw = ds.pixel_array
        except (ValueError, RuntimeError, NotImplementedError, AttributeError) as exc:
            raise SeriesError(
                SeriesErrorReason.PIXEL_DECODE_FAILED, f"slice #{index}: pixel data cannot be decoded"
            ) from exc
        if raw.shape != (rows, columns):
            raise SeriesError(SeriesErrorReason.MIXED_SIZE, f"slice #{index}: pixel array shape {raw.shape}")
        values = apply_modality_lut(raw, ds)
        integer_valued = integer_valued and _rescale_is_integral(ds)
        volume[index] = values
        del ds.PixelData
    if integer_valued and volume.size and volume.min() >= _INT16_MIN and volume.max() <= _INT16_MAX:
        return volume.astype(np.int16)
    return volume


def _rescale_is_integral(ds: Dataset) -> bool:
    """True when the modality transform maps integers to integers (identity or integer slope/intercept)."""
    if "ModalityLUTSequence" in ds:
        return True
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return slope.is_integer() and intercept.is_integer()


#: Public names of the geometry checks, shared with :mod:`oncohabitat.dicomio.phases` (header-only validation).
check_consistent_planes = _check_consistent_planes
check_slice_spacing = _check_slice_spacing
