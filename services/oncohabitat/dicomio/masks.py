"""Rasterise an RTSTRUCT ROI or a DICOM SEG segment onto the grid of its image series.

The result is a SimpleITK ``uint8`` image (0/1) with exactly the geometry of
:attr:`LoadedSeries.image` (LPS; numpy view (z, y, x)).

* RTSTRUCT: polygons are filled by rt-utils (:class:`rt_utils.RTStruct`).  Before that, every closed
  planar contour of the selected ROI is linked to the series slice whose plane it lies in (by its
  position along the slice normal, within half a slice spacing), because real structure sets often
  omit the optional ContourImageSequence or reference SOP Instance UIDs of an earlier export of the
  same images.  rt-utils 1.2.7 allocates its mask as (Columns, Rows) and pairs PixelSpacing[0] with the
  row direction; both are compensated here so that non-square and anisotropic images come out right.
* SEG: read with highdicom, by source instance when the SEG references the series' instances, else by
  its volume geometry matched onto the series grid.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from os import PathLike
from typing import Any

import cv2
import highdicom as hd
import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid
from rt_utils import RTStruct

from oncohabitat.dicomio.errors import MaskError
from oncohabitat.dicomio.geometry import slice_geometry
from oncohabitat.dicomio.roi_selection import RoiSelection, select_roi
from oncohabitat.dicomio.scan import RTSTRUCT_SOP_CLASS_UID, SEG_SOP_CLASS_UID
from oncohabitat.dicomio.series import LoadedSeries

logger = logging.getLogger(__name__)


class MaskErrorReason(StrEnum):
    """``reason`` tokens of :class:`MaskError` (selection failures use :class:`SelectionReason`)."""

    UNREADABLE = "UNREADABLE"
    UNSUPPORTED_OBJECT = "UNSUPPORTED_OBJECT"
    INVALID_RTSTRUCT = "INVALID_RTSTRUCT"
    INVALID_SEG = "INVALID_SEG"
    FRAME_OF_REFERENCE_MISMATCH = "FRAME_OF_REFERENCE_MISMATCH"
    GRID_MISMATCH = "GRID_MISMATCH"
    EMPTY_ROI = "EMPTY_ROI"


@dataclass(frozen=True)
class RasterisedMask:
    """A binary mask on the series grid.

    Attributes:
        image: ``uint8`` 0/1 image with the series' origin, spacing and direction.
        roi_name: the selected ROI name (RTSTRUCT) or segment label (SEG).
        source_kind: "RTSTRUCT" or "SEG".
        voxel_count: number of voxels set.
    """

    image: sitk.Image
    roi_name: str
    source_kind: str
    voxel_count: int


def load_mask(
    mask: Dataset | str | PathLike[str], series: LoadedSeries, selection: RoiSelection | None = None
) -> RasterisedMask:
    """Rasterise an RTSTRUCT or SEG (dataset or file path) onto ``series``, dispatching on its SOP class.

    Raises:
        MaskError: see :func:`rasterise_rtstruct` and :func:`rasterise_seg`; ``UNSUPPORTED_OBJECT`` for
            any other SOP class.
        MaskSelectionError: no unique ROI/segment matches ``selection``.
    """
    ds = _as_dataset(mask)
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class == RTSTRUCT_SOP_CLASS_UID:
        return rasterise_rtstruct(ds, series, selection)
    if sop_class == SEG_SOP_CLASS_UID:
        return rasterise_seg(ds, series, selection)
    raise MaskError(MaskErrorReason.UNSUPPORTED_OBJECT, f"SOP class {sop_class or '(none)'} is not RTSTRUCT/SEG")


def rasterise_rtstruct(
    rtstruct: Dataset | str | PathLike[str], series: LoadedSeries, selection: RoiSelection | None = None
) -> RasterisedMask:
    """Fill the selected ROI's closed planar contours on the series grid (rt-utils).

    Raises:
        MaskSelectionError: ``NO_ROI`` / ``AMBIGUOUS_ROI``.
        MaskError: ``INVALID_RTSTRUCT`` (missing sequences), ``FRAME_OF_REFERENCE_MISMATCH`` (the ROI is
            drawn in another frame of reference), ``EMPTY_ROI`` (no contour lies on a slice of the series).
    """
    ds = _as_dataset(rtstruct)
    if "StructureSetROISequence" not in ds or "ROIContourSequence" not in ds:
        raise MaskError(MaskErrorReason.INVALID_RTSTRUCT, "RTSTRUCT lacks StructureSetROI/ROIContour sequences")
    rois = list(ds.StructureSetROISequence)
    names = [str(roi.get("ROIName", "")) for roi in rois]
    roi = rois[select_roi(names, selection)]
    roi_name = str(roi.get("ROIName", ""))
    roi_for = str(roi.get("ReferencedFrameOfReferenceUID", ""))
    if roi_for and series.frame_of_reference_uid and roi_for != series.frame_of_reference_uid:
        raise MaskError(
            MaskErrorReason.FRAME_OF_REFERENCE_MISMATCH,
            f"ROI {roi_name!r} is in another frame of reference than the image series",
        )
    contours = _contour_items(ds, roi.get("ROINumber"))
    linked = _link_contours_to_slices(contours, series)
    if not linked:
        raise MaskError(MaskErrorReason.EMPTY_ROI, f"ROI {roi_name!r} has no closed contour on the series' slices")
    yxz = _fill_with_rt_utils(linked, series, roi_name)
    return _as_result(np.ascontiguousarray(np.transpose(yxz, (2, 0, 1))), series, roi_name, "RTSTRUCT")


def rasterise_seg(
    seg: Dataset | str | PathLike[str], series: LoadedSeries, selection: RoiSelection | None = None
) -> RasterisedMask:
    """Read the selected segment of a DICOM SEG on the series grid (highdicom).

    FRACTIONAL segmentations are binarised at 0.5.

    Raises:
        MaskSelectionError: ``NO_ROI`` / ``AMBIGUOUS_ROI`` (matched on SegmentLabel).
        MaskError: ``INVALID_SEG``, ``FRAME_OF_REFERENCE_MISMATCH``, ``GRID_MISMATCH`` (the SEG neither
            references the series' instances nor lies on its grid), ``EMPTY_ROI``.
    """
    ds = _as_dataset(seg)
    try:
        # highdicom converts the dataset in place unless copying; never alter a caller's dataset.
        segmentation = hd.seg.Segmentation.from_dataset(ds, copy=isinstance(seg, Dataset))
    except (AttributeError, ValueError, TypeError, KeyError) as exc:
        raise MaskError(MaskErrorReason.INVALID_SEG, "dataset is not a valid DICOM Segmentation") from exc
    numbers = list(segmentation.segment_numbers)
    labels = [str(segmentation.get_segment_description(n).segment_label) for n in numbers]
    number = numbers[select_roi(labels, selection)]
    label = labels[numbers.index(number)]
    seg_for = str(ds.get("FrameOfReferenceUID", ""))
    if seg_for and series.frame_of_reference_uid and seg_for != series.frame_of_reference_uid:
        raise MaskError(
            MaskErrorReason.FRAME_OF_REFERENCE_MISMATCH, "the SEG is in another frame of reference than the series"
        )
    referenced = {uids[2] for uids in segmentation.get_source_image_uids()}
    if referenced.intersection(series.sop_instance_uids):
        try:
            pixels = segmentation.get_pixels_by_source_instance(
                source_sop_instance_uids=list(series.sop_instance_uids),
                segment_numbers=[number],
                assert_missing_frames_are_empty=True,
            )[..., 0]
        except (RuntimeError, ValueError, KeyError) as exc:
            raise MaskError(MaskErrorReason.INVALID_SEG, f"segment {label!r} cannot be read per source image") from exc
    else:
        pixels = _seg_volume_on_series_grid(segmentation, number, series)
    zyx = (np.asarray(pixels) >= 0.5).astype(np.uint8)
    return _as_result(zyx, series, label, "SEG")


def _as_dataset(source: Dataset | str | PathLike[str]) -> Dataset:
    if isinstance(source, Dataset):
        return source
    try:
        return dcmread(source)
    except (InvalidDicomError, OSError) as exc:
        raise MaskError(MaskErrorReason.UNREADABLE, "mask object is not readable DICOM") from exc


def _contour_items(ds: Dataset, roi_number: Any) -> list[Dataset]:
    for roi_contour in ds.ROIContourSequence:
        if str(roi_contour.get("ReferencedROINumber", "")) == str(roi_number):
            return list(roi_contour.get("ContourSequence", []))
    return []


def _link_contours_to_slices(contours: Sequence[Dataset], series: LoadedSeries) -> list[tuple[int, list[float]]]:
    """(slice index, ContourData) of each usable CLOSED_PLANAR contour, matched to the slice whose plane
    it lies in (within half a slice spacing, mm)."""
    normal = slice_geometry(series.headers[0])[0].normal
    positions = series.slice_positions_mm
    tolerance = 0.5 * float(series.image.GetSpacing()[2])
    linked: list[tuple[int, list[float]]] = []
    dropped = 0
    for contour in contours:
        data = [float(v) for v in contour.get("ContourData", [])]
        if str(contour.get("ContourGeometricType", "")) != "CLOSED_PLANAR" or len(data) < 9 or len(data) % 3:
            dropped += 1
            continue
        depth = np.asarray(data).reshape(-1, 3) @ normal
        nearest = int(np.argmin(np.abs(positions - depth.mean())))
        if np.ptp(depth) > tolerance or abs(positions[nearest] - depth.mean()) > tolerance:
            dropped += 1
            continue
        linked.append((nearest, data))
    if dropped:
        logger.warning(
            "ignored %d of %d contours (not closed planar or off the series' slices)", dropped, len(contours)
        )
    return linked


def _fill_with_rt_utils(
    linked: Sequence[tuple[int, list[float]]], series: LoadedSeries, roi_name: str
) -> NDArray[np.bool_]:
    """(y, x, z) boolean mask filled by rt-utils from contours already linked to slices."""
    rows, columns = int(series.headers[0].Rows), int(series.headers[0].Columns)
    side = max(rows, columns)
    slice_headers = []
    for header in series.headers:
        view = Dataset()
        view.SOPInstanceUID = header.SOPInstanceUID
        view.ImagePositionPatient = header.ImagePositionPatient
        view.ImageOrientationPatient = header.ImageOrientationPatient
        # rt-utils divides the row-direction offset by PixelSpacing[0]; hand it (column, row) spacing.
        view.PixelSpacing = [header.PixelSpacing[1], header.PixelSpacing[0]]
        # rt-utils allocates (Columns, Rows) but indexes [y, x]; a square matrix padded at the far edges
        # keeps every pixel's position and loses nothing.
        view.Rows = side
        view.Columns = side
        slice_headers.append(view)
    structure = Dataset()
    frame = Dataset()
    frame.FrameOfReferenceUID = series.frame_of_reference_uid or generate_uid()
    structure.ReferencedFrameOfReferenceSequence = [frame]
    roi = Dataset()
    roi.ROINumber = 1
    roi.ROIName = roi_name
    structure.StructureSetROISequence = [roi]
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber = 1
    items = []
    for index, data in linked:
        image_ref = Dataset()
        image_ref.ReferencedSOPInstanceUID = series.sop_instance_uids[index]
        item = Dataset()
        item.ContourImageSequence = [image_ref]
        item.ContourGeometricType = "CLOSED_PLANAR"
        item.NumberOfContourPoints = len(data) // 3
        item.ContourData = data
        items.append(item)
    roi_contour.ContourSequence = items
    structure.ROIContourSequence = [roi_contour]
    try:
        filled = RTStruct(slice_headers, structure).get_roi_mask_by_name(roi_name)
    except cv2.error as exc:
        raise MaskError(MaskErrorReason.INVALID_RTSTRUCT, f"contours of ROI {roi_name!r} cannot be filled") from exc
    return np.asarray(filled[:rows, :columns, :], dtype=bool)


def _seg_volume_on_series_grid(segmentation: hd.seg.Segmentation, number: int, series: LoadedSeries) -> NDArray[Any]:
    """(z, y, x) segment values resampled-free onto the series grid (pure pad/crop/axis permutation)."""
    try:
        volume = segmentation.get_volume(segment_numbers=[number], combine_segments=True)
        reference = hd.Volume.from_simpleitk(series.image).get_geometry()
        matched = volume.match_geometry(reference)
    except (RuntimeError, ValueError) as exc:
        raise MaskError(
            MaskErrorReason.GRID_MISMATCH, "the SEG neither references the series' images nor lies on its grid"
        ) from exc
    return sitk.GetArrayFromImage(matched.to_simpleitk())


def _as_result(zyx: NDArray[Any], series: LoadedSeries, roi_name: str, kind: str) -> RasterisedMask:
    mask = (zyx > 0).astype(np.uint8)
    count = int(mask.sum())
    if count == 0:
        raise MaskError(MaskErrorReason.EMPTY_ROI, f"{kind} ROI {roi_name!r} covers no voxel of the series")
    image = sitk.GetImageFromArray(mask)
    image.CopyInformation(series.image)
    logger.debug("rasterised %s ROI %r: %d voxels", kind, roi_name, count)
    return RasterisedMask(image=image, roi_name=roi_name, source_kind=kind, voxel_count=count)
