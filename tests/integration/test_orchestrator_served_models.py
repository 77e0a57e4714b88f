"""The orchestrator plans with the models the scoring service serves, all six services running:

- a bundle added at runtime and loaded by scoring (ReloadModels) is planned and scored by the next job, without
  restarting the orchestrator (which mounts no bundles at all);
- a bundle scoring rejects (its signature does not verify) is never planned nor scored, though it is in the
  bundle root and pinned by the lock file;
- while scoring is down, a job's regions stage is retried (transient UNAVAILABLE), and the job finishes once
  scoring is back.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from oncohabitat.bundles import write_lock, write_scoring_bundle
from oncohabitat.bundles.signature import sign_manifest
from oncohabitat.orchestrator.jobstore import SqliteJobStore
from oncohabitat.phantom import PhantomStudy, generate_study
from oncohabitat.v1 import pipeline_pb2, scoring_pb2, scoring_pb2_grpc
from tests.support.platform import TERMINAL_STATES, Platform
from tests.unit.test_scoring_model import linear_document

pytestmark = pytest.mark.integration

S1_MEAN = "tumour/S1/original_firstorder_Mean"


def dce_bundle(root: Path, model_id: str) -> Path:
    """A linear score on the tumour's mean in phase S1 (MR, pre- and post-contrast); returns its folder."""
    document = linear_document({"type": "linear_score", "coefficients": {S1_MEAN: 0.001}}, id=model_id)
    document["required_inputs"] = {"modality": "MR", "phases": ["pre_contrast", "post_contrast"]}
    document["plan"] = {"region_profile": {}, "features": [S1_MEAN]}
    document["inputs"] = [{"name": S1_MEAN}]
    document.pop("evaluation", None)
    write_scoring_bundle(root, document, [{"features": {S1_MEAN: 300.0}, "expected": {"score": 0.3}}])
    return root / "scoring" / model_id / "1.0.0"


@pytest.fixture(scope="module")
def release_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, release_key: Ed25519PrivateKey) -> Iterator[Platform]:
    workdir = tmp_path_factory.mktemp("served-models")
    models = workdir / "scoring-models"  # scoring's bundle root only: nobody else reads it
    dce_bundle(models, "dce-first")
    write_lock(models)
    public = workdir / "release.pem"
    public.write_bytes(
        release_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    overrides = {
        "ONCOHABITAT_SCORING_MODELS_DIR": str(models),
        "ONCOHABITAT_SCORING_SIGNATURE_PUBLIC_KEY": str(public),
        "ONCOHABITAT_SCORING_RELOAD_INTERVAL_S": "0",  # only ReloadModels loads new bundles
        "ONCOHABITAT_ORCHESTRATOR_MODELS_DIR": str(workdir / "absent"),  # ignored: the setting is gone
    }
    running = Platform(workdir / "platform", overrides)
    running.start()
    yield running
    running.stop()


def _upload(platform: Platform, study: PhantomStudy) -> str:
    files = sorted(p for p in study.dicom_dir.rglob("*") if p.is_file())

    def chunks() -> Iterator[pipeline_pb2.UploadChunk]:
        yield pipeline_pb2.UploadChunk(header=pipeline_pb2.UploadHeader())
        for path in files:
            yield pipeline_pb2.UploadChunk(data=path.read_bytes(), end_of_instance=True)

    return platform.pipeline().UploadStudy(chunks(), timeout=120).job_id


def _scored(platform: Platform, job_id: str) -> set[str]:
    job = platform.wait_for_job(job_id)
    assert job.state == pipeline_pb2.JOB_STATE_DONE, (job.reason, platform.log("orchestrator"))
    result = platform.pipeline().GetResult(pipeline_pb2.GetResultRequest(job_id=job_id), timeout=10)
    planned = SqliteJobStore(platform.data_dir / "jobs.sqlite3").load_stage_results(job_id)["features"]["models"]
    assert {entry["model_id"] for entry in planned.values()} == {m.model_id for m in result.models}
    return {m.model_id for m in result.models}


def test_a_bundle_loaded_at_runtime_is_used_and_a_rejected_one_is_not(
    platform: Platform, release_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    orchestrator = platform.running["orchestrator"].process.pid
    assert _scored(platform, _upload(platform, generate_study(tmp_path / "a", size="small", seed=5))) == {"dce-first"}

    models = Path(platform.env["ONCOHABITAT_SCORING_MODELS_DIR"])
    sign_manifest(dce_bundle(models, "dce-added"), release_key)
    sign_manifest(dce_bundle(models, "dce-forged"), Ed25519PrivateKey.generate())  # not the release key
    write_lock(models)  # both pinned: only the signature tells them apart
    scoring = scoring_pb2_grpc.ScoringStub(platform.channel("scoring"))
    reloaded = scoring.ReloadModels(scoring_pb2.ReloadModelsRequest(), timeout=30)
    assert [(r.bundle, r.reason) for r in reloaded.rejected] == [("scoring/dce-forged/1.0.0", "SIGNATURE_INVALID")]
    listed = scoring.ListModels(scoring_pb2.ListModelsRequest(), timeout=10)
    assert [m.model_id for m in listed.models] == ["dce-added", "dce-first"]

    second = _upload(platform, generate_study(tmp_path / "b", size="small", seed=6))
    assert _scored(platform, second) == {"dce-first", "dce-added"}  # no dce-forged, though eligible by its plan
    assert platform.running["orchestrator"].process.pid == orchestrator  # not restarted


def test_a_job_waits_for_an_unreachable_scoring_service(platform: Platform, tmp_path: Path) -> None:
    platform.kill("scoring")
    models = Path(platform.env["ONCOHABITAT_SCORING_MODELS_DIR"])
    shutil.rmtree(models / "scoring" / "dce-forged")  # scoring's first load is strict: it would refuse to start
    write_lock(models)
    job_id = _upload(platform, generate_study(tmp_path / "c", size="small", seed=7))
    deadline = time.monotonic() + 120
    request = pipeline_pb2.GetJobRequest(job_id=job_id)
    while "UNAVAILABLE" not in (job := platform.pipeline().GetJob(request, timeout=5)).reason:
        assert job.state not in TERMINAL_STATES, job.reason
        assert time.monotonic() < deadline, platform.log("orchestrator")
        time.sleep(0.3)
    assert "transient RpcError(UNAVAILABLE)" in job.reason and "'regions'" in job.reason
    platform.start(["scoring"])
    assert _scored(platform, job_id) >= {"dce-first"}
