"""Orthanc as the hospital PACS for a breast DCE study: the phantom study, stored in Orthanc and sent by Orthanc
to the listener, comes back to Orthanc as the SEG (tumour, habitats, ring, stroma band), the TID 1500 SR and the
key-image PDF, in the same study; the SR's numbers equal GetResult's.

The shipped demonstration bundles' region profile has no stroma band, so the test adds a small Cox bundle
(tumour sphericity and mean S1 signal, survival at 12 and 60 months, a 20 mm stroma band in its region profile) to
a copy of the models root: the SEG then carries every kind of region."""

from __future__ import annotations

import io
import math
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset

from oncohabitat.bundles import write_lock, write_scoring_bundle
from oncohabitat.dicomio.coding import private_code_value
from oncohabitat.dicomio.key_image import WARNING_TEXT
from oncohabitat.phantom import generate_study
from oncohabitat.v1 import pipeline_pb2
from tests.conftest import PROJECT_ROOT
from tests.support.orthanc import OrthancServer
from tests.support.platform import Platform
from tests.unit.test_scoring_model import linear_document

pytestmark = pytest.mark.integration

SPHERICITY = "tumour/S0/original_shape_Sphericity"
MEAN_S1 = "tumour/S1/original_firstorder_Mean"
COEFFICIENTS = {SPHERICITY: 1.5, MEAN_S1: 0.001}
BASELINE = [{"time": 12.0, "survival": 0.95}, {"time": 60.0, "survival": 0.8}]


def _expected(features: dict[str, float]) -> dict[str, Any]:
    lp = sum(COEFFICIENTS[name] * value for name, value in features.items())
    return {"score": lp, "survival": [point["survival"] ** math.exp(lp) for point in BASELINE]}


def write_dce_test_bundle(root: Path) -> None:
    """A copy of the repository's models plus the ``dce-test`` Cox bundle, re-locked."""
    shutil.copytree(PROJECT_ROOT / "models", root)
    document = linear_document(
        {"type": "cox", "coefficients": COEFFICIENTS, "survival": {"time_unit": "months", "baseline": BASELINE}},
        id="dce-test",
        intended_use="Test bundle for the pipeline demonstration; not for clinical use.",
        risk_groups={
            "applies_to": "score",
            "cutoffs": [1.0],
            "labels": ["low", "high"],
            "tie": "upper",
            "direction": "higher_is_worse",
        },
    )
    document["required_inputs"] = {"modality": "MR", "phases": ["pre_contrast", "post_contrast"]}
    document["plan"] = {
        "region_profile": {"stroma_width_mm": 20},
        "feature_settings": {"setting": {"binCount": 16}},
        "features": [SPHERICITY, MEAN_S1],
    }
    document["inputs"] = [{"name": SPHERICITY, "valid_range": [0.0, 1.0]}, {"name": MEAN_S1}]
    document.pop("evaluation", None)
    case = {SPHERICITY: 0.7, MEAN_S1: 300.0}
    write_scoring_bundle(root, document, [{"features": case, "expected": _expected(case)}])
    write_lock(root)


@pytest.fixture
def orthanc_and_platform(tmp_path: Path) -> Iterator[tuple[OrthancServer, Platform]]:
    models = tmp_path / "models"
    write_dce_test_bundle(models)
    orthanc = OrthancServer(tmp_path / "orthanc", modalities={})
    overrides = {f"ONCOHABITAT_{user}_MODELS_DIR": str(models) for user in ("SCORING", "ORCHESTRATOR", "REGIONS")}
    overrides["ONCOHABITAT_SEGMENTATION_MODELS_DIR"] = str(models)
    overrides["ONCOHABITAT_ORCHESTRATOR_EXPORT_DESTINATION"] = f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"
    platform = Platform(tmp_path / "platform", overrides)
    orthanc.modalities["oncohabitat"] = ("ONCOHABITAT", "127.0.0.1", platform.dicom_port)
    orthanc.start()
    try:
        platform.start()
        yield orthanc, platform
    finally:
        platform.stop()
        orthanc.stop()


def _instances_of(orthanc: OrthancServer, modality: str) -> list[Dataset]:
    datasets = []
    for series_id in orthanc.get("/series"):
        series = orthanc.get(f"/series/{series_id}")
        if series["MainDicomTags"].get("Modality") != modality:
            continue
        for instance_id in series["Instances"]:
            with urllib.request.urlopen(f"{orthanc.url}/instances/{instance_id}/file", timeout=60) as response:
                datasets.append(pydicom.dcmread(io.BytesIO(response.read())))
    return datasets


def _walk(items: Any) -> Iterator[Dataset]:
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def _model_numbers(sr: Dataset, key: str) -> dict[tuple[str, bool], float]:
    for item in _walk(sr.ContentSequence):
        if item.ValueType != "CONTAINER" or item.ConceptNameCodeSequence[0].CodeMeaning != "Measurement Group":
            continue
        texts = [str(c.TextValue) for c in item.ContentSequence if c.ValueType == "TEXT"]
        if f"Tumour: {key}" not in texts:
            continue
        numbers = {}
        for child in item.ContentSequence:
            if child.ValueType == "NUM":
                code = child.ConceptNameCodeSequence[0]
                derived = any(
                    c.ConceptNameCodeSequence[0].CodeMeaning == "Derivation" for c in child.get("ContentSequence", [])
                )
                measured = child.MeasuredValueSequence[0]  # the exact double where DS (16 characters) rounds
                value = float(measured.get("FloatingPointValue", measured.NumericValue))
                numbers[(str(code.CodeValue), derived)] = numbers[(str(code.CodeMeaning), derived)] = value
        return numbers
    raise AssertionError(f"no measurement group for {key}")


def test_dce_study_comes_back_to_orthanc_as_seg_sr_and_pdf(
    orthanc_and_platform: tuple[OrthancServer, Platform], tmp_path: Path
) -> None:
    orthanc, platform = orthanc_and_platform
    study = generate_study(tmp_path / "study", size="ispy", seed=4242)
    files = sorted(p for p in study.dicom_dir.rglob("*") if p.is_file())
    (study_id,) = orthanc.upload(files)
    orthanc.store_to("oncohabitat", study_id)
    (job,) = platform.wait_for_jobs(1, timeout_s=240)
    assert job.state == pipeline_pb2.JOB_STATE_DONE, (job, platform.log("orchestrator"))
    result = platform.pipeline().GetResult(pipeline_pb2.GetResultRequest(job_id=job.job_id), timeout=10)
    deadline = time.monotonic() + 30
    while not {"SEG", "SR", "DOC"} <= set(orthanc.series_modalities()) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert len(orthanc.get("/studies")) == 1  # filed under the source study
    assert len(result.exported_sop_instance_keys) == 3

    (seg,) = _instances_of(orthanc, "SEG")
    labels = [str(item.SegmentLabel) for item in seg.SegmentSequence]
    habitats = [label for label in labels if label.startswith("Habitat")]
    assert habitats and labels == ["Tumour", *habitats, "Peritumoral ring 5 mm", "Stroma band 20 mm"]

    (sr,) = _instances_of(orthanc, "SR")
    model = next(m for m in result.models if m.model_id == "dce-test")  # besides the shipped demonstration models
    numbers = _model_numbers(sr, f"{model.model_id}@{model.model_version}")
    assert numbers[("Prognostic risk score", False)] == model.score
    assert numbers[("Risk group cut-off", False)] == model.cutoff
    for point in model.survival:
        assert numbers[(f"Survival probability at {point.time:g} months", False)] == point.probability
    for name, value in model.features.items():
        assert numbers[(private_code_value(name), False)] == value
        assert numbers[(private_code_value(name), True)] == model.contributions[name]
    evidence = {
        str(item.ReferencedSOPInstanceUID)
        for study_item in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study_item.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert str(seg.SOPInstanceUID) in evidence and len(evidence) > 1

    (pdf,) = _instances_of(orthanc, "DOC")
    assert WARNING_TEXT.encode() in bytes(pdf.EncapsulatedDocument)
    assert pdf.StudyInstanceUID == seg.StudyInstanceUID == sr.StudyInstanceUID
