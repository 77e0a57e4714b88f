"""The platform's main job on an ispy-size phantom DCE study, all six services running (issue 18, must show):

- every shipped demonstration bundle gives a result (score, outputs, regions, MSI) and the listener's DCE
  classification travelled with the hand-off;
- the study sent twice (byte-identical) is one job; a series added after completion re-runs it (LATE_POLICY
  ``rerun``: a new job for the new content);
- a study missing a phase a requested model needs ends NEEDS_REVIEW naming the phase (UploadStudy);
- a submission with a seed point runs seeded fuzzy c-means (UploadStudy); non-DICOM uploads are INVALID_ARGUMENT;
- ``oncohabitat jobs`` / ``result`` / ``demo`` read the public API of the running platform.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pydicom
import pytest
from pydicom.uid import generate_uid

from oncohabitat.bundles import write_lock, write_scoring_bundle
from oncohabitat.orchestrator.jobstore import SqliteJobStore
from oncohabitat.phantom import PhantomStudy, generate_study
from oncohabitat.v1 import listener_pb2, pipeline_pb2, segmentation_pb2
from tests.conftest import PROJECT_ROOT
from tests.support.dcmtk import storescu
from tests.support.platform import Platform
from tests.unit.test_scoring_model import linear_document

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "oncohabitat.cli"]
NEEDS_S3 = "tumour/S3/original_firstorder_Mean"


def write_needs_s3_bundle(root: Path) -> None:
    """The repository's models plus ``dce-needs-s3`` (a linear score on the mean of phase S3), re-locked."""
    shutil.copytree(PROJECT_ROOT / "models", root)
    document = linear_document({"type": "linear_score", "coefficients": {NEEDS_S3: 0.001}}, id="dce-needs-s3")
    document["required_inputs"] = {"modality": "MR", "phases": ["pre_contrast", "post_contrast"]}
    document["plan"] = {"region_profile": {}, "features": [NEEDS_S3]}
    document["inputs"] = [{"name": NEEDS_S3}]
    document.pop("evaluation", None)
    write_scoring_bundle(root, document, [{"features": {NEEDS_S3: 300.0}, "expected": {"score": 0.3}}])
    write_lock(root)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    workdir = tmp_path_factory.mktemp("main-job")
    models = workdir / "models"
    write_needs_s3_bundle(models)
    overrides = {f"ONCOHABITAT_{name}_MODELS_DIR": str(models) for name in ("SCORING", "REGIONS")}
    overrides["ONCOHABITAT_SEGMENTATION_MODELS_DIR"] = str(models)
    overrides["ONCOHABITAT_FEATURES_WORKERS"] = "2"
    running = Platform(workdir / "platform", overrides)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def ispy(tmp_path_factory: pytest.TempPathFactory) -> PhantomStudy:
    return generate_study(tmp_path_factory.mktemp("ispy"), size="ispy", seed=1818)


def _store(platform: Platform) -> SqliteJobStore:
    return SqliteJobStore(platform.data_dir / "jobs.sqlite3")


def _handed_off_job(platform: Platform, study_uid: str, not_job: str = "", timeout_s: float = 120.0) -> str:
    admin, key = platform.listener_admin(), platform.study_key(study_uid)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            study = admin.GetStudy(listener_pb2.GetStudyRequest(study_key=key), timeout=5)
        except grpc.RpcError:
            study = None
        if study is not None and study.state == listener_pb2.STUDY_STATE_HANDED_OFF and study.job_id != not_job:
            return study.job_id
        time.sleep(0.3)
    raise TimeoutError(platform.log("listener"))


def _chunks(
    files: list[Path], header: pipeline_pb2.UploadHeader, size: int = 1 << 20
) -> Iterator[pipeline_pb2.UploadChunk]:
    yield pipeline_pb2.UploadChunk(header=header)
    for path in files:
        data = path.read_bytes()
        for start in range(0, len(data), size):
            yield pipeline_pb2.UploadChunk(data=data[start : start + size], end_of_instance=start + size >= len(data))


def test_every_demonstration_bundle_gives_a_result_on_the_ispy_phantom(platform: Platform, ispy: PhantomStudy) -> None:
    pushed = storescu(platform.dicom_port, [ispy.dicom_dir])
    assert pushed.returncode == 0, pushed.stderr
    job = platform.wait_for_job(_handed_off_job(platform, ispy.study_instance_uid))
    assert job.state == pipeline_pb2.JOB_STATE_DONE, (job.reason, platform.log("orchestrator"))
    result = platform.pipeline().GetResult(pipeline_pb2.GetResultRequest(job_id=job.job_id), timeout=10)
    demo_ids = {p.name for p in (PROJECT_ROOT / "models" / "scoring").iterdir() if p.name.startswith("demo-")}
    assert demo_ids and demo_ids | {"dce-needs-s3"} == {m.model_id for m in result.models}
    for model in result.models:
        assert model.provenance.model_id == model.model_id and model.manifest_sha256
        assert model.risk_group or model.model_id == "dce-needs-s3"
    regions = {r.region: r for r in result.regions}
    assert {"tumour", "habitat_1", "habitat_2", "habitat_3"} <= set(regions)
    fractions = sum(regions[f"habitat_{k}"].fraction_of_tumour for k in (1, 2, 3))
    assert fractions == pytest.approx(1.0, abs=0.02) and "SER" in regions["tumour"].mean_values
    assert result.msi_features and result.tumour_volume_ml > 0 and result.segmentation_method == "onnx"
    stored = _store(platform).get(job.job_id)
    assert stored is not None and stored.request["dce_classification"]["eligible"]  # classified once, by the listener


def _pushed_and_handed_off(platform: Platform, study: PhantomStudy) -> str:
    """Push ``study`` (a no-op when an earlier test already did) and return its job id once handed off."""
    pushed = storescu(platform.dicom_port, [study.dicom_dir])
    assert pushed.returncode == 0, pushed.stderr
    return _handed_off_job(platform, study.study_instance_uid)


def test_a_study_sent_twice_is_one_job(platform: Platform, ispy: PhantomStudy) -> None:
    first = _pushed_and_handed_off(platform, ispy)
    before = platform.pipeline().ListJobs(pipeline_pb2.ListJobsRequest(), timeout=5).jobs
    pushed = storescu(platform.dicom_port, [ispy.dicom_dir])
    assert pushed.returncode == 0, pushed.stderr
    time.sleep(3.0)  # > the quiet period (1 s): a reopened study would be complete and handed off again by now
    after = platform.pipeline().ListJobs(pipeline_pb2.ListJobsRequest(), timeout=5).jobs
    assert len(after) == len(before) and _handed_off_job(platform, ispy.study_instance_uid) == first


def test_a_series_added_after_completion_reruns_the_study(
    platform: Platform, ispy: PhantomStudy, tmp_path: Path
) -> None:
    first = _pushed_and_handed_off(platform, ispy)
    platform.wait_for_job(first)
    series_uid = generate_uid()
    for n, source in enumerate(ispy.phase_files[0][:10]):
        dataset = pydicom.dcmread(source)
        dataset.SeriesInstanceUID, dataset.SeriesDescription, dataset.SeriesNumber = series_uid, "T2 FSE AX", 90
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.save_as(tmp_path / f"t2-{n}.dcm")
    pushed = storescu(platform.dicom_port, [tmp_path])
    assert pushed.returncode == 0, pushed.stderr
    second = _handed_off_job(platform, ispy.study_instance_uid, not_job=first)  # LATE_POLICY rerun: a new job
    job = platform.wait_for_job(second)
    assert job.state == pipeline_pb2.JOB_STATE_DONE, job.reason  # the T2 series is not a DCE phase: same result
    store = _store(platform)
    before, after = store.get(first), store.get(second)
    assert before is not None and after is not None
    # the re-run reads the whole study as it is now: the first job's instances plus the ten new ones
    assert len(after.request["instance_paths"]) == len(before.request["instance_paths"]) + 10


def test_a_study_missing_a_phase_a_model_needs_ends_needs_review(platform: Platform, ispy: PhantomStudy) -> None:
    files = [path for phase in ispy.phase_files[:3] for path in phase]  # S0-S2: no S3
    header = pipeline_pb2.UploadHeader(model_ids=["dce-needs-s3"])
    response = platform.pipeline().UploadStudy(_chunks(files, header), timeout=120)
    job = platform.wait_for_job(response.job_id)
    assert job.state == pipeline_pb2.JOB_STATE_NEEDS_REVIEW
    assert "MODEL_NOT_ELIGIBLE" in job.reason and "needs phase S3 (the study has S0-S2)" in job.reason


def test_a_submission_with_a_seed_point_runs_seeded_fcm(platform: Platform, tmp_path: Path) -> None:
    study = generate_study(tmp_path / "small", size="small", seed=77)
    assert study.lesion is not None
    x, y, z = study.lesion.centre_lps_mm
    header = pipeline_pb2.UploadHeader(seed_point=segmentation_pb2.PointMm(x=x, y=y, z=z))
    files = sorted(p for p in study.dicom_dir.rglob("*") if p.is_file())
    response = platform.pipeline().UploadStudy(_chunks(files, header), timeout=120)
    assert response.created
    again = platform.pipeline().UploadStudy(_chunks(files, header), timeout=120)
    assert again.job_id == response.job_id and not again.created  # same content, same inputs: same job
    platform.wait_for_job(response.job_id)
    store = _store(platform)
    assert store.load_stage_results(response.job_id)["segment"]["method"] == "seeded-fcm"
    stored = store.get(response.job_id)
    assert stored is not None and stored.request["seed_point_mm"] == pytest.approx([x, y, z])


def test_an_upload_of_non_dicom_data_is_invalid_argument(platform: Platform) -> None:
    chunks = [
        pipeline_pb2.UploadChunk(header=pipeline_pb2.UploadHeader()),
        pipeline_pb2.UploadChunk(data=b"this is not DICOM" * 100, end_of_instance=True),
    ]
    with pytest.raises(grpc.RpcError) as caught:
        platform.pipeline().UploadStudy(iter(chunks), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _cli(platform: Platform, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **platform.env, "COLUMNS": "200"}
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout_s)


def test_jobs_and_result_commands_read_the_public_api(platform: Platform, ispy: PhantomStudy) -> None:
    listed = _cli(platform, "jobs")
    assert listed.returncode == 0, listed.stderr
    assert "DONE" in listed.stdout and "NEEDS_REVIEW" in listed.stdout
    done = [
        j
        for j in platform.pipeline().ListJobs(pipeline_pb2.ListJobsRequest(), timeout=5).jobs
        if j.state == pipeline_pb2.JOB_STATE_DONE
    ]
    shown = _cli(platform, "result", done[-1].job_id)
    assert shown.returncode == 0, shown.stderr
    assert "demo-seed001-dfs-cox" in shown.stdout and "habitat_1" in shown.stdout and "MSI" in shown.stdout
    as_json = _cli(platform, "result", done[-1].job_id, "--json")
    assert '"models"' in as_json.stdout and '"regions"' in as_json.stdout
    missing = _cli(platform, "result", "0" * 32)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stdout


def test_demo_pushes_the_ispy_phantom_and_prints_each_stage_and_the_results(platform: Platform, tmp_path: Path) -> None:
    demo = _cli(platform, "demo", "--study-dir", str(tmp_path / "study"), timeout_s=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "case: phantom DCE-MRI study, size ispy" in demo.stdout
    for stage in ("load_study", "segment", "regions", "features", "score", "export"):
        assert f"stage {stage}" in demo.stdout, demo.stdout
    assert "DONE" in demo.stdout and "habitat_1" in demo.stdout
    assert "demonstration model, not for clinical use" in demo.stdout
