"""DICOM SEG and TID 1500 SR export (oncohabitat.dicomio.export): round trips and input checks."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset

from oncohabitat.dicomio import (
    ExportError,
    LoadedSeries,
    ResultForSR,
    RoiSelection,
    assemble_series,
    build_result_sr,
    build_seg,
    load_mask,
    load_series,
    rasterise_seg,
)
from oncohabitat.dicomio.coding import private_code_value
from tests.unit.test_dicomio_support import make_series

FEATURES = {
    "original_firstorder_Mean": 41.25,
    "original_glszm_SmallAreaLowGrayLevelEmphasis": 0.001234567891234,
    "original_shape_Sphericity": 0.71,
    "original_shape_Elongation": math.nan,  # left out
}


def _result(**overrides: object) -> ResultForSR:
    values: dict[str, object] = {
        "model_id": "sts-cox",
        "model_version": "2.1.0",
        "score": 0.7312,
        "risk_group": "high",
        "cutoff": 0.5,
        "features": FEATURES,
        "contributions": {"original_firstorder_Mean": 0.25, "original_shape_Sphericity": -0.125},
        "algorithm_version": "0.1.0",
    }
    values.update(overrides)
    return ResultForSR(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ct(sts_ct_dir: Path) -> LoadedSeries:
    return load_series(sorted((sts_ct_dir / "image").iterdir()))


@pytest.fixture(scope="module")
def tumour(ct: LoadedSeries, sts_ct_dir: Path) -> sitk.Image:
    return load_mask(sts_ct_dir / "mask/RS.dcm", ct).image


def _walk(items: Iterator[Dataset] | list[Dataset]) -> Iterator[Dataset]:
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def _concept(item: Dataset) -> tuple[str, str]:
    code = item.ConceptNameCodeSequence[0]
    return str(code.get("CodeValue", code.get("LongCodeValue", ""))), str(code.CodeMeaning)


def test_seg_round_trip_with_tumour_and_ring(ct: LoadedSeries, tumour: sitk.Image, tmp_path: Path) -> None:
    tumour_array = sitk.GetArrayFromImage(tumour)
    dilated = sitk.GetArrayFromImage(sitk.BinaryDilate(tumour, [3, 3, 1]))
    label_map = np.where(tumour_array > 0, 1, np.where(dilated > 0, 2, 0)).astype(np.uint8)
    seg = build_seg(ct.headers, label_map, {1: "Tumour", 2: "Peritumoral ring"}, algorithm_version="0.1.0")
    path = tmp_path / "seg.dcm"
    seg.save_as(path)

    read = pydicom.dcmread(path)
    assert read.Modality == "SEG"
    assert read.SegmentationType == "BINARY"
    assert read.StudyInstanceUID == ct.headers[0].StudyInstanceUID
    assert read.PatientID == ct.headers[0].PatientID
    assert read.FrameOfReferenceUID == ct.frame_of_reference_uid
    labels = [item.SegmentLabel for item in read.SegmentSequence]
    assert labels == ["Tumour", "Peritumoral ring"]
    algorithm = read.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "OncoHabitat"
    assert algorithm.AlgorithmVersion == "0.1.0"
    assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"

    np.testing.assert_array_equal(sitk.GetArrayFromImage(load_mask(path, ct).image), tumour_array)
    ring = rasterise_seg(path, ct, RoiSelection(name="Peritumoral ring"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ring.image), (label_map == 2).astype(np.uint8))


def test_seg_accepts_the_simpleitk_mask_and_checks_its_grid(ct: LoadedSeries, tumour: sitk.Image) -> None:
    seg = build_seg(list(reversed(ct.headers)), tumour, {1: "Tumour"}, algorithm_version="0.1.0")
    read_back = hd.seg.Segmentation.from_dataset(seg).get_pixels_by_source_instance(
        source_sop_instance_uids=list(ct.sop_instance_uids), segment_numbers=[1]
    )[..., 0]
    np.testing.assert_array_equal(read_back, sitk.GetArrayFromImage(tumour))

    shifted = sitk.Image(tumour)
    shifted.SetOrigin(tuple(v + 2.0 for v in tumour.GetOrigin()))
    with pytest.raises(ExportError) as info:
        build_seg(ct.headers, shifted, {1: "Tumour"}, algorithm_version="0.1.0")
    assert info.value.reason == "GRID_MISMATCH"

    with pytest.raises(ExportError) as info:
        build_seg(ct.headers, sitk.GetArrayFromImage(tumour)[1:], {1: "Tumour"}, algorithm_version="0.1.0")
    assert info.value.reason == "GRID_MISMATCH"


def test_seg_refuses_unnamed_labels_and_empty_masks(ct: LoadedSeries, tumour: sitk.Image) -> None:
    array = sitk.GetArrayFromImage(tumour) * 3
    with pytest.raises(ExportError) as info:
        build_seg(ct.headers, array, {1: "Tumour"}, algorithm_version="0.1.0")
    assert info.value.reason == "UNKNOWN_LABEL"
    with pytest.raises(ExportError) as info:
        build_seg(ct.headers, np.zeros_like(array), {1: "Tumour"}, algorithm_version="0.1.0")
    assert info.value.reason == "EMPTY_MASK"


def test_sr_round_trip(ct: LoadedSeries, tumour: sitk.Image, tmp_path: Path) -> None:
    seg = build_seg(ct.headers, tumour, {1: "Tumour"}, algorithm_version="0.1.0")
    sr = build_result_sr(ct.headers, seg, _result())
    path = tmp_path / "sr.dcm"
    sr.save_as(path)

    # pydicom: walk the content tree
    read = pydicom.dcmread(path)
    assert read.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert read.StudyInstanceUID == ct.headers[0].StudyInstanceUID
    assert read.PatientID == ct.headers[0].PatientID
    assert read.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    numbers = {
        _concept(item): float(item.MeasuredValueSequence[0].NumericValue)
        for item in _walk(read.ContentSequence)
        if item.ValueType == "NUM" and "ConceptNameCodeSequence" in item
    }
    assert numbers[("RISK_SCORE", "Prognostic risk score")] == pytest.approx(0.7312)
    assert numbers[("RISK_CUTOFF", "Risk group cut-off")] == pytest.approx(0.5)
    name = "original_glszm_SmallAreaLowGrayLevelEmphasis"
    assert numbers[(private_code_value(name), name)] == pytest.approx(FEATURES[name], rel=1e-9)
    algorithm_pairs = {
        (str(a.TextValue), str(v.TextValue))
        for item in _walk(read.ContentSequence)
        for a, v in [_algorithm_items(item)]
        if a is not None and v is not None
    }
    assert ("sts-cox", "2.1.0") in algorithm_pairs
    assert ("OncoHabitat", "0.1.0") in algorithm_pairs

    # highdicom: parse the report back
    parsed = hd.sr.srread(path)
    assert isinstance(parsed.content, hd.sr.MeasurementReport)
    groups = parsed.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == 1
    group = groups[0]
    assert group.referenced_segment is not None
    assert group.referenced_segment.referenced_sop_instance_uid == seg.SOPInstanceUID
    assert group.referenced_segment.referenced_segment_numbers == [1]
    measured = {
        (m.name.meaning, m.derivation.meaning if m.derivation else None): m.value for m in group.get_measurements()
    }
    for feature, value in FEATURES.items():
        if math.isfinite(value):
            assert measured[(feature, None)] == pytest.approx(value)
        else:
            assert (feature, None) not in measured
    assert measured[("original_shape_Sphericity", "Contribution to risk score")] == pytest.approx(-0.125)
    assert measured[("Prognostic risk score", None)] == pytest.approx(0.7312)
    evaluations = {e.name.meaning: getattr(e.value, "meaning", None) for e in group.get_qualitative_evaluations()}
    assert evaluations == {"Prognostic risk group": "high"}


def _algorithm_items(item: Dataset) -> tuple[Dataset | None, Dataset | None]:
    """(Algorithm Name, Algorithm Version) TEXT children of ``item``, when it has both."""
    children = {_concept(c)[1]: c for c in item.get("ContentSequence", []) if c.ValueType == "TEXT"}
    return children.get("Algorithm Name"), children.get("Algorithm Version")


def test_sr_refuses_a_non_finite_score_and_a_missing_segment(ct: LoadedSeries, tumour: sitk.Image) -> None:
    seg = build_seg(ct.headers, tumour, {1: "Tumour"}, algorithm_version="0.1.0")
    with pytest.raises(ExportError) as info:
        build_result_sr(ct.headers, seg, _result(score=math.nan))
    assert info.value.reason == "INVALID_SCORE"
    with pytest.raises(ExportError) as info:
        build_result_sr(ct.headers, seg, _result(tumour_segment_number=2))
    assert info.value.reason == "INVALID_SEG"


def test_patient_attributes_are_copied_but_never_logged_or_warned(caplog: pytest.LogCaptureFixture) -> None:
    datasets = make_series([0.0, 2.0, 4.0], shape=(8, 8))
    datasets[0].StudyID = "A-STUDY-ID-LONGER-THAN-16"  # invalid SH length in the source
    for ds in datasets:
        del ds.AccessionNumber  # type 2, absent in the source
    series = assemble_series(datasets)
    label_map = np.zeros((3, 8, 8), dtype=np.uint8)
    label_map[1, 2:5, 2:5] = 1
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seg = build_seg(series.headers, label_map, {1: "Tumour"}, algorithm_version="0.1.0")
        sr = build_result_sr(series.headers, seg, _result())
    assert seg.PatientName == "Synthetic^Patient" and sr.PatientID == "SYNTH-0001"
    assert sr.StudyID == "A-STUDY-ID-LONGE"  # truncated to SH's 16 characters
    assert sr.AccessionNumber == "" and seg.AccessionNumber == ""
    assert "AccessionNumber" not in series.headers[0]  # the source is left as it was
    emitted = caplog.text + " ".join(str(w.message) for w in caught)
    for secret in ("Synthetic", "SYNTH-0001", "19700101", "ACC-SYNTH", "A-STUDY-ID"):
        assert secret not in emitted
