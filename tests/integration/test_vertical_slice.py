"""End-to-end on real DICOM: PACS push -> job -> features -> published CT signature (seed 003) -> SR back.

Pushes the real soft-tissue-sarcoma CT + its RTSTRUCT (IBSI validation set) through every service.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pydicom
import pytest
from radiomics import featureextractor

from oncohabitat.bundles import load_bundle
from oncohabitat.common.errors import error_detail_from
from oncohabitat.dicomio import load_mask, load_series
from oncohabitat.v1 import pipeline_pb2, scoring_pb2, scoring_pb2_grpc
from tests.conftest import PROJECT_ROOT
from tests.support.dcmtk import StoreSCP, storescu
from tests.support.platform import Platform

pytestmark = pytest.mark.integration

BUNDLE_DIR = PROJECT_ROOT / "models" / "scoring" / "seed003-ct-dfs" / "1.0.0"
PUBLISHED = {
    "tumour/S0/original_firstorder_Kurtosis": -5.570173e-03,
    "tumour/S0/original_glcm_Correlation": 1.004042e00,
    "tumour/S0/original_glcm_MaximumProbability": -9.648413e-01,
    "tumour/S0/original_glszm_LargeAreaEmphasis": 1.643472e-08,
}
SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"  # key-image summary


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreSCP]:
    scp = StoreSCP(tmp_path_factory.mktemp("pacs-receiver"))
    scp.start()
    yield scp
    scp.stop()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, receiver: StoreSCP) -> Iterator[Platform]:
    running = Platform(
        tmp_path_factory.mktemp("platform"), {"ONCOHABITAT_ORCHESTRATOR_EXPORT_DESTINATION": receiver.destination}
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def ct_job(platform: Platform, sts_ct_dir: Path) -> pipeline_pb2.JobResult:
    pushed = storescu(platform.dicom_port, [sts_ct_dir / "image", sts_ct_dir / "mask"])
    assert pushed.returncode == 0, pushed.stderr
    (job,) = platform.wait_for_jobs(1, timeout_s=120)
    assert job.state == pipeline_pb2.JOB_STATE_DONE, (job, platform.log("orchestrator"))
    return platform.pipeline().GetResult(pipeline_pb2.GetResultRequest(job_id=job.job_id), timeout=10)


def _direct_pyradiomics(sts_ct_dir: Path) -> dict[str, float]:
    series = load_series(sorted((sts_ct_dir / "image").glob("*.dcm")))
    mask = load_mask(sts_ct_dir / "mask" / "RS.dcm", series)
    settings = load_bundle(BUNDLE_DIR).manifest.feature_settings.to_pyradiomics()
    extractor = featureextractor.RadiomicsFeatureExtractor(settings)
    values = extractor.execute(series.image, mask.image, label=1)
    return {name: float(values[name.rsplit("/", 1)[1]]) for name in PUBLISHED}


def test_features_equal_a_direct_pyradiomics_run(ct_job: pipeline_pb2.JobResult, sts_ct_dir: Path) -> None:
    (model,) = ct_job.models
    assert model.model_id == "seed003-ct-dfs" and model.model_version == "1.0.0"
    direct = _direct_pyradiomics(sts_ct_dir)
    assert set(model.features) == set(PUBLISHED)
    for name, value in direct.items():
        assert model.features[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
    assert ct_job.segmentation_method == "supplied-rtstruct"


def test_score_equals_the_published_formula(ct_job: pipeline_pb2.JobResult) -> None:
    (model,) = ct_job.models
    expected = sum(model.features[name] * coefficient for name, coefficient in PUBLISHED.items())
    assert model.score == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert model.risk_group == ("high" if expected > 0.185 else "low")
    assert model.cutoff == 0.185
    for name, coefficient in PUBLISHED.items():
        assert model.contributions[name] == pytest.approx(model.features[name] * coefficient, rel=1e-12)
    assert model.provenance.parameter_hashes["manifest"] == load_bundle(BUNDLE_DIR).manifest_sha256
    assert {c.name for c in model.provenance.components} >= {"pyradiomics", "SimpleITK", "oncohabitat"}


def test_seg_and_sr_come_back_to_the_receiver(ct_job: pipeline_pb2.JobResult, receiver: StoreSCP) -> None:
    received = receiver.received()
    classes = sorted(str(ds.SOPClassUID) for ds in received)
    assert classes == sorted([SEG_STORAGE, SR_STORAGE, PDF_STORAGE])
    assert len(ct_job.exported_sop_instance_keys) == 3
    (sr,) = [ds for ds in received if ds.SOPClassUID == SR_STORAGE]
    source = pydicom.dcmread(next(iter(sorted(Path(str(sr.filename)).parent.glob("*")))), stop_before_pixels=True)
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    text = json.dumps(sr.to_json_dict())
    (model,) = ct_job.models
    assert "seed003-ct-dfs" in text and "original_glcm_Correlation" in text
    assert repr(model.score)[:8] in text or f"{model.score:.6g}"[:6] in text


def test_study_without_mask_needs_review(platform: Platform, sts_ct_dir: Path, tmp_path: Path, ct_job: object) -> None:
    # the same CT under a new study UID, without its RTSTRUCT
    out = tmp_path / "ct-only"
    out.mkdir()
    new_study = pydicom.uid.generate_uid()
    new_series = pydicom.uid.generate_uid()
    for path in sorted((sts_ct_dir / "image").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = new_study, new_series
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(out / path.name)
    assert storescu(platform.dicom_port, [out]).returncode == 0
    jobs = platform.wait_for_jobs(2, timeout_s=120)
    (review,) = [job for job in jobs if job.state == pipeline_pb2.JOB_STATE_NEEDS_REVIEW]
    assert "NO_MASK:" in review.reason and review.stage == "load_study"
    with pytest.raises(grpc.RpcError) as not_done:
        platform.pipeline().GetResult(pipeline_pb2.GetResultRequest(job_id=review.job_id), timeout=10)
    assert not_done.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_score_request_missing_a_feature_is_invalid_argument(platform: Platform) -> None:
    stub = scoring_pb2_grpc.ScoringStub(platform.channel("scoring"))
    features = {name: 0.5 for name in PUBLISHED if name != "tumour/S0/original_glcm_Correlation"}
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.Score(scoring_pb2.ScoreRequest(model_id="seed003-ct-dfs", features=features), timeout=10)
    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tumour/S0/original_glcm_Correlation" in excinfo.value.details()
    detail = error_detail_from(excinfo.value)
    assert detail is not None and detail.reason == "FEATURE_MISSING"
    features["tumour/S0/original_glcm_Correlation"] = math.nan
    with pytest.raises(grpc.RpcError) as nan:
        stub.Score(scoring_pb2.ScoreRequest(model_id="seed003-ct-dfs", features=features), timeout=10)
    assert nan.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_scoring_refuses_a_tampered_bundle(tmp_path: Path) -> None:
    models = tmp_path / "models"
    target = models / "scoring" / "seed003-ct-dfs" / "1.0.0"
    target.mkdir(parents=True)
    (target / "test_vectors.json").write_bytes((BUNDLE_DIR / "test_vectors.json").read_bytes())
    (models / "bundles.lock.json").write_bytes((PROJECT_ROOT / "models" / "bundles.lock.json").read_bytes())
    manifest = json.loads((BUNDLE_DIR / "manifest.json").read_text())
    manifest["model"]["coefficients"] = {k: v * 2 for k, v in manifest["model"]["coefficients"].items()}
    (target / "manifest.json").write_text(json.dumps(manifest))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "oncohabitat.scoring"],
        env={
            "PATH": "/usr/bin:/bin",
            "ONCOHABITAT_SCORING_MODELS_DIR": str(models),
            "ONCOHABITAT_SCORING_PORT": "0",
            "ONCOHABITAT_SCORING_METRICS_PORT": "0",
            "ONCOHABITAT_SCORING_DATA_DIR": str(tmp_path / "data"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stderr
    assert "cannot start" in result.stderr and "HASH_MISMATCH" in result.stderr
    assert time.monotonic() - started < 30


def test_demo_ct_prints_the_result_and_a_resend_reuses_the_job(
    platform: Platform, ct_job: pipeline_pb2.JobResult
) -> None:
    env = {**platform.env, "COLUMNS": "200"}
    demo = subprocess.run(
        [sys.executable, "-m", "oncohabitat.cli", "demo", "ct", "--timeout-s", "120"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    (model,) = ct_job.models
    assert "seed003-ct-dfs" in demo.stdout and f"{model.score:.6g}" in demo.stdout
    assert "not a breast cancer" in demo.stdout
    assert f"job {ct_job.job.job_id}" in demo.stdout  # byte-identical re-send: same job, no new run
    jobs = platform.pipeline().ListJobs(pipeline_pb2.ListJobsRequest(), timeout=5).jobs
    assert [j.job_id for j in jobs].count(ct_job.job.job_id) == 1
