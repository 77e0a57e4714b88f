"""Header-only inventory of received DICOM files, grouped by series.

Only identifiers and descriptive series attributes are read (``stop_before_pixels``); no patient
module attribute is ever copied into :class:`InstanceInfo`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from os import PathLike
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

logger = logging.getLogger(__name__)

RTSTRUCT_SOP_CLASS_UID = UID("1.2.840.10008.5.1.4.1.1.481.3")
SEG_SOP_CLASS_UID = UID("1.2.840.10008.5.1.4.1.1.66.4")


class InstanceKind(StrEnum):
    """Coarse role of an instance in a study."""

    IMAGE = "IMAGE"
    RTSTRUCT = "RTSTRUCT"
    SEG = "SEG"
    OTHER = "OTHER"


@dataclass(frozen=True)
class InstanceInfo:
    """Identifiers of one DICOM instance (no patient attributes).

    Attributes:
        path: the file it was read from.
        referenced_series_uids: for RTSTRUCT/SEG, the image series it was drawn on (empty otherwise).
        number_of_frames: 1 for classic single-frame images.
        image_type: ImageType values, upper case (e.g. ``("DERIVED", "PRIMARY", "SUBTRACTION")``).
        temporal_position: TemporalPositionIdentifier (1 = first dynamic phase), if present.
        number_of_temporal_positions: NumberOfTemporalPositions, if present.
        trigger_time_ms: TriggerTime in ms, if present.
        acquisition_time_s, content_time_s, series_time_s, contrast_start_time_s: AcquisitionTime,
            ContentTime, SeriesTime and ContrastBolusStartTime as seconds after midnight.
        acquisition_number: AcquisitionNumber, if present.
        contrast_agent: ContrastBolusAgent ("" when absent).
        image_position_mm: ImagePositionPatient (LPS, mm), if present.
        image_orientation: ImageOrientationPatient (6 direction cosines), if present.
        pixel_spacing_mm: PixelSpacing (row spacing, column spacing) in mm, if present.
        rows, columns: matrix size (0 when absent).
        body_part: BodyPartExamined ("" when absent); protocol_name: ProtocolName.
        diffusion_b_value: DiffusionBValue (s/mm^2), if present.
        transfer_syntax_uid: the file's transfer syntax ("" when the file has no meta).
    """

    path: Path
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    modality: str
    series_description: str
    series_number: int | None
    instance_number: int | None
    frame_of_reference_uid: str
    referenced_series_uids: tuple[str, ...]
    number_of_frames: int
    image_type: tuple[str, ...] = ()
    temporal_position: int | None = None
    number_of_temporal_positions: int | None = None
    trigger_time_ms: float | None = None
    acquisition_time_s: float | None = None
    content_time_s: float | None = None
    series_time_s: float | None = None
    contrast_start_time_s: float | None = None
    acquisition_number: int | None = None
    contrast_agent: str = ""
    image_position_mm: tuple[float, float, float] | None = None
    image_orientation: tuple[float, float, float, float, float, float] | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    rows: int = 0
    columns: int = 0
    body_part: str = ""
    protocol_name: str = ""
    diffusion_b_value: float | None = None
    transfer_syntax_uid: str = ""

    @property
    def kind(self) -> InstanceKind:
        """IMAGE for pixel images, RTSTRUCT, SEG, or OTHER (SR, presentation states, ...)."""
        if self.sop_class_uid == RTSTRUCT_SOP_CLASS_UID:
            return InstanceKind.RTSTRUCT
        if self.sop_class_uid == SEG_SOP_CLASS_UID:
            return InstanceKind.SEG
        if self.modality in ("SR", "PR", "KO", "REG", "RTPLAN", "RTDOSE", "DOC"):
            return InstanceKind.OTHER
        return InstanceKind.IMAGE


def scan_instances(paths: Iterable[str | PathLike[str]]) -> list[InstanceInfo]:
    """Read the headers of the given files, skipping files that are not DICOM.

    Returns:
        One :class:`InstanceInfo` per readable file, grouped by series (series in order of
        (StudyInstanceUID, SeriesNumber, SeriesInstanceUID)), each series ordered by InstanceNumber then
        path.  Use :func:`group_by_series` for a mapping.
    """
    infos: list[InstanceInfo] = []
    skipped = 0
    for raw_path in paths:
        path = Path(raw_path)
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError) as exc:
            skipped += 1
            logger.debug("skipping unreadable file %s: %s", path.name, type(exc).__name__)
            continue
        info = _instance_info(path, ds)
        if info is None:
            skipped += 1
            continue
        infos.append(info)
    if skipped:
        logger.warning("skipped %d file(s) that are not DICOM instances with UIDs", skipped)
    infos.sort(
        key=lambda i: (
            i.study_instance_uid,
            i.series_number if i.series_number is not None else -1,
            i.series_instance_uid,
            i.instance_number if i.instance_number is not None else -1,
            str(i.path),
        )
    )
    return infos


def group_by_series(instances: Sequence[InstanceInfo]) -> dict[str, list[InstanceInfo]]:
    """SeriesInstanceUID -> its instances, preserving the input order."""
    groups: dict[str, list[InstanceInfo]] = {}
    for info in instances:
        groups.setdefault(info.series_instance_uid, []).append(info)
    return groups


def _instance_info(path: Path, ds: Dataset) -> InstanceInfo | None:
    sop_instance_uid = str(ds.get("SOPInstanceUID", ""))
    series_instance_uid = str(ds.get("SeriesInstanceUID", ""))
    sop_class_uid = str(ds.get("SOPClassUID", ""))
    if not (sop_instance_uid and series_instance_uid and sop_class_uid):
        return None
    return InstanceInfo(
        path=path,
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        series_instance_uid=series_instance_uid,
        sop_instance_uid=sop_instance_uid,
        sop_class_uid=sop_class_uid,
        modality=str(ds.get("Modality", "")),
        series_description=str(ds.get("SeriesDescription", "")),
        series_number=_optional_int(ds.get("SeriesNumber")),
        instance_number=_optional_int(ds.get("InstanceNumber")),
        frame_of_reference_uid=_frame_of_reference(ds, sop_class_uid),
        referenced_series_uids=_referenced_series(ds, sop_class_uid),
        number_of_frames=_optional_int(ds.get("NumberOfFrames")) or 1,
        image_type=tuple(str(v).strip().upper() for v in _values(ds.get("ImageType"))),
        temporal_position=_optional_int(ds.get("TemporalPositionIdentifier")),
        number_of_temporal_positions=_optional_int(ds.get("NumberOfTemporalPositions")),
        trigger_time_ms=_optional_float(ds.get("TriggerTime")),
        acquisition_time_s=tm_seconds(ds.get("AcquisitionTime")),
        content_time_s=tm_seconds(ds.get("ContentTime")),
        series_time_s=tm_seconds(ds.get("SeriesTime")),
        contrast_start_time_s=tm_seconds(ds.get("ContrastBolusStartTime")),
        acquisition_number=_optional_int(ds.get("AcquisitionNumber")),
        contrast_agent=str(ds.get("ContrastBolusAgent", "") or "").strip(),
        image_position_mm=_floats(ds.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
        image_orientation=_floats(ds.get("ImageOrientationPatient"), 6),  # type: ignore[arg-type]
        pixel_spacing_mm=_floats(ds.get("PixelSpacing"), 2),  # type: ignore[arg-type]
        rows=_optional_int(ds.get("Rows")) or 0,
        columns=_optional_int(ds.get("Columns")) or 0,
        body_part=str(ds.get("BodyPartExamined", "") or "").strip().upper(),
        protocol_name=str(ds.get("ProtocolName", "") or "").strip(),
        diffusion_b_value=_optional_float(ds.get("DiffusionBValue")),
        transfer_syntax_uid=str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or ""),
    )


def _values(value: object) -> list[object]:
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes | int | float):
        return [value]
    try:
        return list(value)  # type: ignore[call-overload]
    except TypeError:
        return [value]


def _optional_float(value: object) -> float | None:
    items = _values(value)
    if not items:
        return None
    try:
        result = float(str(items[0]))
    except ValueError:
        return None
    return result if math.isfinite(result) else None


def _floats(value: object, count: int) -> tuple[float, ...] | None:
    items = _values(value)
    if len(items) != count:
        return None
    try:
        result = tuple(float(str(v)) for v in items)
    except ValueError:
        return None
    return result if all(math.isfinite(v) for v in result) else None


def tm_seconds(value: object) -> float | None:
    """A DICOM TM value (``HHMMSS.FFFFFF``, ``HHMM``, ``HH``, or ACR-NEMA ``HH:MM:SS``) as seconds after midnight.

    Returns None for absent or malformed values.
    """
    text = str(value or "").strip().replace(":", "")
    if not text:
        return None
    whole, _, fraction = text.partition(".")
    if not whole.isdigit() or len(whole) not in (2, 4, 6) or (fraction and not fraction.isdigit()):
        return None
    hours, minutes = int(whole[0:2]), int(whole[2:4] or 0)
    seconds = int(whole[4:6] or 0)
    if hours > 23 or minutes > 59 or seconds > 60:
        return None
    return hours * 3600.0 + minutes * 60.0 + seconds + (float(f"0.{fraction}") if fraction else 0.0)


def _optional_int(value: object) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


def _frame_of_reference(ds: Dataset, sop_class_uid: str) -> str:
    if sop_class_uid == RTSTRUCT_SOP_CLASS_UID:
        for item in ds.get("ReferencedFrameOfReferenceSequence", []):
            if item.get("FrameOfReferenceUID"):
                return str(item.FrameOfReferenceUID)
        return ""
    return str(ds.get("FrameOfReferenceUID", ""))


def _referenced_series(ds: Dataset, sop_class_uid: str) -> tuple[str, ...]:
    uids: list[str] = []
    if sop_class_uid == RTSTRUCT_SOP_CLASS_UID:
        for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
            for study in frame.get("RTReferencedStudySequence", []):
                for series in study.get("RTReferencedSeriesSequence", []):
                    uids.append(str(series.get("SeriesInstanceUID", "")))
    elif sop_class_uid == SEG_SOP_CLASS_UID:
        for series in ds.get("ReferencedSeriesSequence", []):
            uids.append(str(series.get("SeriesInstanceUID", "")))
    return tuple(dict.fromkeys(uid for uid in uids if uid))
