"""What the derived DICOM objects (SEG: :mod:`.seg_export`, SR: :mod:`.sr_export`, key image: :mod:`.key_image`)
share: the algorithm identification, the SR's device observer, segment references and the source series in
slice order."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import highdicom as hd
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from oncohabitat.dicomio import coding
from oncohabitat.dicomio.errors import ExportError, SeriesError
from oncohabitat.dicomio.geometry import slice_geometry, sort_by_normal

logger = logging.getLogger(__name__)

#: Stable UID of the OncoHabitat "device" observer in SRs.
DEVICE_OBSERVER_UID = generate_uid(entropy_srcs=["OncoHabitat device observer"])

SegmentCoding = tuple[Code | hd.sr.CodedConcept, Code | hd.sr.CodedConcept]


def algorithm_identification(algorithm_version: str) -> hd.AlgorithmIdentificationSequence:
    """Algorithm identification: family "Artificial Intelligence", name "OncoHabitat", the version."""
    return hd.AlgorithmIdentificationSequence(
        name=coding.ALGORITHM_NAME, family=coding.ALGORITHM_FAMILY, version=algorithm_version
    )


def _referenced_segment(seg_dataset: Dataset, segment_number: int) -> hd.sr.ReferencedSegment:
    """Reference to one segment of ``seg_dataset`` and the source images it was derived from."""
    numbers = [int(item.SegmentNumber) for item in seg_dataset.get("SegmentSequence", [])]
    if segment_number not in numbers:
        raise ExportError("INVALID_SEG", f"SEG has no segment {segment_number} (segments: {numbers})")
    try:
        return hd.sr.ReferencedSegment.from_segmentation(seg_dataset, segment_number=segment_number)
    except AttributeError:
        # highdicom 0.28.2 looks for SegmentIdentificationSequence per frame only; a single-segment SEG
        # keeps it in the shared functional groups.  Reference the SEG's source instances instead.
        pass
    except ValueError as exc:
        raise ExportError("INVALID_SEG", f"segment {segment_number} cannot be referenced") from exc
    source_images = [
        hd.sr.SourceImageForSegmentation(
            referenced_sop_class_uid=instance.ReferencedSOPClassUID,
            referenced_sop_instance_uid=instance.ReferencedSOPInstanceUID,
        )
        for series in seg_dataset.get("ReferencedSeriesSequence", [])
        for instance in series.get("ReferencedInstanceSequence", [])
    ]
    if not source_images:
        raise ExportError("INVALID_SEG", "SEG does not reference its source images")
    return hd.sr.ReferencedSegment(
        sop_class_uid=seg_dataset.SOPClassUID,
        sop_instance_uid=seg_dataset.SOPInstanceUID,
        segment_number=segment_number,
        source_images=source_images,
    )


def _ordered_sources(source_datasets: Sequence[Dataset]) -> list[Dataset]:
    if not source_datasets:
        raise ExportError("NO_SOURCE", "no source images given")
    try:
        return sort_by_normal(source_datasets)
    except SeriesError as exc:
        raise ExportError("INVALID_SOURCE", f"source images lack usable geometry ({exc.reason})") from exc


def _check_mask_shape(array: NDArray[Any], ordered: Sequence[Dataset]) -> None:
    """GRID_MISMATCH unless ``array`` is (z, y, x) on the source grid (slices, rows, columns); no copy made."""
    _, (rows, columns) = slice_geometry(ordered[0])
    expected_shape = (len(ordered), rows, columns)
    if array.shape != expected_shape:
        raise ExportError("GRID_MISMATCH", f"mask shape {array.shape} (z, y, x) != source grid {expected_shape}")
