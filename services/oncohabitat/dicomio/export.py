"""DICOM output: a binary SEG of a label map and a TID 1500 Comprehensive 3D SR of the risk result.

Both are built with highdicom on the source image series; the patient and study modules are copied
from the source (required for the PACS to file them with the study) and are never logged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import highdicom as hd
import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from oncohabitat.dicomio import coding
from oncohabitat.dicomio.conformance import no_phi_warnings, truncate_overlong_values, with_type2_defaults
from oncohabitat.dicomio.errors import ExportError, SeriesError
from oncohabitat.dicomio.geometry import direction_matrix, position_along_normal, slice_geometry, sort_by_normal

logger = logging.getLogger(__name__)

#: Stable UID of the OncoHabitat "device" observer in SRs.
DEVICE_OBSERVER_UID = generate_uid(entropy_srcs=["OncoHabitat device observer"])

SegmentCoding = tuple[Code | hd.sr.CodedConcept, Code | hd.sr.CodedConcept]


@dataclass(frozen=True)
class ResultForSR:
    """The prognostic result to report.

    Attributes:
        model_id / model_version: the risk model.
        score: risk score (unitless); ``cutoff``: score threshold separating the risk groups.
        risk_group: label such as "high" or "low".
        features: pyradiomics feature name -> value (unit "1"; non-finite values are left out).
        contributions: feature name -> contribution to the score (unitless).
        algorithm_version: OncoHabitat software version.
        tumour_segment_number: segment of the SEG that holds the tumour ROI.
    """

    model_id: str
    model_version: str
    score: float
    risk_group: str
    cutoff: float
    features: Mapping[str, float]
    contributions: Mapping[str, float]
    algorithm_version: str
    tumour_segment_number: int = 1


def algorithm_identification(algorithm_version: str) -> hd.AlgorithmIdentificationSequence:
    """Algorithm identification: family "Artificial Intelligence", name "OncoHabitat", the version."""
    return hd.AlgorithmIdentificationSequence(
        name=coding.ALGORITHM_NAME, family=coding.ALGORITHM_FAMILY, version=algorithm_version
    )


def build_seg(
    source_datasets: Sequence[Dataset],
    mask: sitk.Image | NDArray[np.integer],
    labels: Mapping[int, str],
    *,
    algorithm_version: str,
    segment_types: Mapping[int, SegmentCoding] | None = None,
    series_number: int = 9001,
    series_description: str = "OncoHabitat segmentation",
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> hd.seg.Segmentation:
    """Binary DICOM SEG with one segment per label of ``mask``.

    Args:
        source_datasets: the single-frame images of the source series, any order (headers suffice).
        mask: integer label map on the source grid: a SimpleITK image with the series' geometry, or a
            numpy array (z, y, x) with slices in ascending position along the slice normal (the order
            of :class:`~oncohabitat.dicomio.series.LoadedSeries`).  0 is background.
        labels: label value -> segment label (e.g. ``{1: "Tumour"}``); segment numbers are assigned
            1..n in ascending label value.
        algorithm_version: OncoHabitat version for the algorithm identification.
        segment_types: label value -> (property category, property type); default
            (Morphologically abnormal structure, Neoplasm).

    Raises:
        ExportError: ``NO_SOURCE``, ``INVALID_SOURCE``, ``GRID_MISMATCH``, ``UNKNOWN_LABEL``,
            ``EMPTY_MASK``, ``SEG_BUILD_FAILED``.
    """
    ordered = _ordered_sources(source_datasets)
    label_map = _mask_on_sources(mask, ordered)
    if not labels or any(int(value) <= 0 for value in labels):
        raise ExportError("UNKNOWN_LABEL", "labels must map positive label values to names")
    present = {int(v) for v in np.unique(label_map)} - {0}
    unknown = present - {int(v) for v in labels}
    if unknown:
        raise ExportError("UNKNOWN_LABEL", f"mask holds label values without a name: {sorted(unknown)}")
    if not present:
        raise ExportError("EMPTY_MASK", "the mask is empty")
    values = sorted(int(v) for v in labels)
    binary = np.stack([label_map == value for value in values], axis=-1)
    algorithm = algorithm_identification(algorithm_version)
    types = segment_types or {}
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=labels[value],
            segmented_property_category=types.get(value, (coding.TUMOUR_CATEGORY, coding.TUMOUR_TYPE))[0],
            segmented_property_type=types.get(value, (coding.TUMOUR_CATEGORY, coding.TUMOUR_TYPE))[1],
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for number, value in enumerate(values, start=1)
    ]
    try:
        with no_phi_warnings():
            seg = hd.seg.Segmentation(
                source_images=[with_type2_defaults(ordered[0]), *ordered[1:]],
                pixel_array=binary,
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions,
                series_instance_uid=series_instance_uid or hd.UID(),
                series_number=series_number,
                sop_instance_uid=sop_instance_uid or hd.UID(),
                instance_number=1,
                manufacturer=coding.MANUFACTURER,
                manufacturer_model_name=coding.ALGORITHM_NAME,
                software_versions=algorithm_version,
                device_serial_number="0",
                content_label="ONCOHABITAT",
                content_description=series_description[:64],
            )
    except (ValueError, TypeError, AttributeError) as exc:
        raise ExportError("SEG_BUILD_FAILED", f"highdicom rejected the segmentation ({type(exc).__name__})") from exc
    seg.SeriesDescription = series_description[:64]
    truncate_overlong_values(seg)
    logger.info("built SEG with %d segment(s) on %d source images", len(values), len(ordered))
    return seg


def build_result_sr(
    source_datasets: Sequence[Dataset],
    seg_dataset: Dataset,
    result: ResultForSR,
    *,
    series_number: int = 9002,
    series_description: str = "OncoHabitat risk report",
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> hd.sr.Comprehensive3DSR:
    """TID 1500 measurement report with one volumetric measurement group for the tumour ROI.

    The group references segment ``result.tumour_segment_number`` of ``seg_dataset`` (and through it
    the source series); it holds the risk score, the cut-off, each radiomic feature (code
    ``99ONCOHAB``/feature name, unit "1") and each feature's contribution (same concept, derivation
    "Contribution to risk score"), the risk group as a qualitative evaluation, and the model and
    OncoHabitat algorithm identification.

    Raises:
        ExportError: ``NO_SOURCE``, ``INVALID_SCORE``, ``INVALID_NAME``, ``INVALID_SEG``,
            ``SR_BUILD_FAILED``.
    """
    if not source_datasets:
        raise ExportError("NO_SOURCE", "no source images given")
    if not (math.isfinite(result.score) and math.isfinite(result.cutoff)):
        raise ExportError("INVALID_SCORE", "score and cut-off must be finite numbers")
    referenced_segment = _referenced_segment(seg_dataset, result.tumour_segment_number)
    model_algorithm = hd.sr.AlgorithmIdentification(
        name=result.model_id, version=result.model_version, parameters=[f"cutoff={result.cutoff!r}"]
    )
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="Tumour"),
        referenced_segment=referenced_segment,
        finding_type=coding.TUMOUR_TYPE,
        # No family here: highdicom 0.28.2 would read an Algorithm Family item back as a qualitative
        # evaluation.  The SEG's segments carry the family.
        algorithm_id=hd.sr.AlgorithmIdentification(name=coding.ALGORITHM_NAME, version=result.algorithm_version),
        measurements=_measurements(result, model_algorithm),
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=coding.RISK_GROUP, value=coding.risk_group_concept(result.risk_group))
        ],
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_OBSERVER_UID,
            name=coding.ALGORITHM_NAME,
            manufacturer_name=coding.MANUFACTURER,
            model_name=result.model_id[:64],
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=coding.PROCEDURE_IMAGING,
        imaging_measurements=[group],
    )
    ordered = list(source_datasets)
    try:
        with no_phi_warnings():
            sr = hd.sr.Comprehensive3DSR(
                evidence=[with_type2_defaults(ordered[0]), *ordered[1:], seg_dataset],
                content=report,
                series_instance_uid=series_instance_uid or hd.UID(),
                series_number=series_number,
                sop_instance_uid=sop_instance_uid or hd.UID(),
                instance_number=1,
                manufacturer=coding.MANUFACTURER,
                is_complete=True,
            )
    except (ValueError, TypeError, AttributeError) as exc:
        raise ExportError("SR_BUILD_FAILED", f"highdicom rejected the report ({type(exc).__name__})") from exc
    sr.SeriesDescription = series_description[:64]
    sr.CodingSchemeIdentificationSequence = [coding.coding_scheme_identification()]
    truncate_overlong_values(sr)
    logger.info(
        "built SR: model %s %s, %d feature(s), %d contribution(s)",
        result.model_id,
        result.model_version,
        len(result.features),
        len(result.contributions),
    )
    return sr


def _measurements(result: ResultForSR, model_algorithm: hd.sr.AlgorithmIdentification) -> list[hd.sr.Measurement]:
    items = [
        hd.sr.Measurement(
            name=coding.RISK_SCORE, value=float(result.score), unit=coding.UNITLESS, algorithm_id=model_algorithm
        ),
        hd.sr.Measurement(
            name=coding.RISK_CUTOFF, value=float(result.cutoff), unit=coding.UNITLESS, algorithm_id=model_algorithm
        ),
    ]
    skipped = 0
    for values, derivation in ((result.features, None), (result.contributions, coding.CONTRIBUTION)):
        for name, value in values.items():
            if not math.isfinite(float(value)):
                skipped += 1
                continue
            items.append(
                hd.sr.Measurement(
                    name=coding.private_concept(name),
                    value=float(value),
                    unit=coding.UNITLESS,
                    derivation=derivation,
                )
            )
    if skipped:
        logger.warning("left %d non-finite feature value(s) out of the SR", skipped)
    return items


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


def _mask_on_sources(mask: sitk.Image | NDArray[np.integer], ordered: Sequence[Dataset]) -> NDArray[np.int64]:
    """(z, y, x) integer label map checked against the source grid."""
    if isinstance(mask, sitk.Image):
        if mask.GetNumberOfComponentsPerPixel() != 1 or mask.GetDimension() != 3:
            raise ExportError("GRID_MISMATCH", "mask must be a scalar 3-D image")
        _check_image_geometry(mask, ordered)
        array = sitk.GetArrayFromImage(mask)
    else:
        array = np.asarray(mask)
    _check_mask_shape(array, ordered)
    if not np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        if not np.all(np.mod(array, 1) == 0):
            raise ExportError("UNKNOWN_LABEL", "mask must hold integer label values")
    return array.astype(np.int64)


def _check_mask_shape(array: NDArray[Any], ordered: Sequence[Dataset]) -> None:
    """GRID_MISMATCH unless ``array`` is (z, y, x) on the source grid (slices, rows, columns); no copy made."""
    first = slice_geometry(ordered[0])
    expected_shape = (len(ordered), first.shape[0], first.shape[1])
    if array.shape != expected_shape:
        raise ExportError("GRID_MISMATCH", f"mask shape {array.shape} (z, y, x) != source grid {expected_shape}")


def _check_image_geometry(image: sitk.Image, ordered: Sequence[Dataset]) -> None:
    first = slice_geometry(ordered[0])
    positions = [position_along_normal(slice_geometry(ds)) for ds in ordered]
    z_spacing = (positions[-1] - positions[0]) / (len(positions) - 1) if len(positions) > 1 else image.GetSpacing()[2]
    expected_spacing = (first.pixel_spacing[1], first.pixel_spacing[0], z_spacing)
    ok = (
        np.allclose(image.GetOrigin(), first.position, atol=1e-3)
        and np.allclose(image.GetSpacing(), expected_spacing, atol=1e-3)
        and np.allclose(image.GetDirection(), direction_matrix(first).flatten(), atol=1e-4)
    )
    if not ok:
        raise ExportError("GRID_MISMATCH", "mask image geometry differs from the source series")
