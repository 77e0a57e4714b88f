"""PHI canaries: studies whose patient and visit attributes carry unique strings run end to end (a job that
finishes DONE and exports, a lesion-free one that does not, refused submissions) with DEBUG logging in every
service: none of those strings appears in any log, audit event, metric, error message or API response."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pydicom
import pytest

from oncohabitat.common.topology import SERVICES
from oncohabitat.phantom import generate_study
from oncohabitat.v1 import listener_pb2, pipeline_pb2
from tests.conftest import free_port
from tests.support.dcmtk import StoreSCP, storescu
from tests.support.platform import Platform

pytestmark = pytest.mark.integration


def _canaries(tag: str) -> dict[str, str]:
    return {
        "PatientName": f"CANARY{tag}NAME^ZQXW",
        "PatientID": f"CANARY{tag}PID",
        "PatientBirthDate": "19230417" if tag == "A" else "19190923",
        "AccessionNumber": f"CANARY{tag}ACC",
        "InstitutionName": f"CANARY{tag}INST Hospital",
        "ReferringPhysicianName": f"CANARY{tag}REF^DOC",
    }


def _needles() -> list[str]:
    values = [*_canaries("A").values(), *_canaries("B").values()]
    parts = {piece for value in values for piece in value.replace("^", " ").split() if len(piece) >= 6}
    dates = {"1923-04-17", "1919-09-23"}
    return sorted({*values, *parts, *dates})


def _mark(directory: Path, tag: str) -> None:
    for path in directory.rglob("*.dcm"):
        dataset = pydicom.dcmread(path)
        for keyword, value in _canaries(tag).items():
            setattr(dataset, keyword, value)
        dataset.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreSCP]:
    scp = StoreSCP(tmp_path_factory.mktemp("pacs"))
    scp.start()
    yield scp
    scp.stop()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, receiver: StoreSCP) -> Iterator[Platform]:
    settings = {f"{s.env_prefix}LOG_LEVEL": "DEBUG" for s in SERVICES}
    settings["ONCOHABITAT_ORCHESTRATOR_EXPORT_DESTINATION"] = receiver.destination
    settings["ONCOHABITAT_ORCHESTRATOR_EXPORT_DESTINATIONS"] = f"DOWN=DEAD@127.0.0.1:{free_port()}"  # nobody there
    settings["ONCOHABITAT_ORCHESTRATOR_EXPORT_RETRIES"] = "0"
    settings["ONCOHABITAT_ORCHESTRATOR_MAX_ATTEMPTS"] = "1"
    running = Platform(tmp_path_factory.mktemp("canaries"), settings)
    running.start()
    yield running
    running.stop()


def test_phi_never_leaves_the_data(platform: Platform, receiver: StoreSCP, tmp_path: Path) -> None:
    good = generate_study(tmp_path / "a", size="small", seed=4711, layout="multi-phase", trigger_time=True)
    bad = generate_study(tmp_path / "b", size="small", seed=4712, layout="multi-phase", lesion=False, trigger_time=True)
    _mark(good.dicom_dir, "A")
    _mark(bad.dicom_dir, "B")
    for study in (good, bad):
        pushed = storescu(platform.dicom_port, [study.dicom_dir])
        assert pushed.returncode == 0, pushed.stderr
    jobs = platform.wait_for_jobs(2, timeout_s=300)
    # failure path: study B again, by reference, to a configured node that is down
    key_b = platform.study_key(bad.study_instance_uid)
    platform.pipeline().SubmitStudy(
        pipeline_pb2.SubmitStudyRequest(study_key=key_b, export_destination="DOWN"), timeout=60
    )
    jobs = platform.wait_for_jobs(3, timeout_s=300)
    states = sorted(pipeline_pb2.JobState.Name(job.state) for job in jobs)
    assert "JOB_STATE_DONE" in states and "JOB_STATE_FAILED" in states, states
    assert any(str(d.PatientName).startswith("CANARYA") for d in receiver.received())  # the PACS gets it, rightly
    stored = b"".join(p.read_bytes() for p in (platform.data_dir / "dicom").rglob("*.dcm"))
    assert b"CANARYAPID" in stored and b"CANARYBREF" in stored  # the canaries are in the platform's data

    responses: list[str] = []
    pipeline, admin = platform.pipeline(), platform.listener_admin()
    responses.append(str(pipeline.ListJobs(pipeline_pb2.ListJobsRequest(), timeout=10)))
    for job in jobs:
        responses.append(str(pipeline.GetJob(pipeline_pb2.GetJobRequest(job_id=job.job_id), timeout=10)))
        try:
            responses.append(str(pipeline.GetResult(pipeline_pb2.GetResultRequest(job_id=job.job_id), timeout=10)))
        except grpc.RpcError as exc:
            responses.append(f"{exc.code()} {exc.details()}")  # type: ignore[attr-defined]
    studies = admin.ListStudies(listener_pb2.ListStudiesRequest(page_size=100), timeout=10)
    responses.append(str(studies))
    for study in studies.studies:
        responses.append(str(admin.GetStudy(listener_pb2.GetStudyRequest(study_key=study.study_key), timeout=10)))
    for bad_request in (
        pipeline_pb2.SubmitStudyRequest(study_key=jobs[0].study_key, export_destination="CANARYAPID@1.2.3.4:104"),
        pipeline_pb2.SubmitStudyRequest(study_key="CANARYAPID"),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            pipeline.SubmitStudy(bad_request, timeout=30)
        responses.append(str(refused.value.details()))  # type: ignore[attr-defined]

    metrics = []
    for service in SERVICES:
        url = f"http://127.0.0.1:{platform.env[service.env_prefix + 'METRICS_PORT']}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            metrics.append(reply.read().decode())
    logs = {path.name: path.read_text(errors="replace") for path in (platform.data_dir / "logs").iterdir()}
    assert "audit.jsonl" in logs and sum(len(text) for text in logs.values()) > 10_000
    assert "DEBUG" in logs["orchestrator.log"] or '"level": "debug"' in logs["orchestrator.log"].lower()

    haystacks = {**logs, "responses": "\n".join(responses), "metrics": "\n".join(metrics)}
    found = {
        (name, needle): text.count(needle)
        for name, text in haystacks.items()
        for needle in _needles()
        if needle.upper() in text.upper()  # the refused requests above carried one: not echoed, not logged
    }
    assert found == {}
