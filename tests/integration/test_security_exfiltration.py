"""No way out for patient data: submissions naming paths, another study's key or an unlisted destination are
refused and send nothing anywhere; a submission by reference (a held study's key, a configured destination by
name) runs, its instances resolved by the platform itself."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from oncohabitat.common.auth import SUBMIT, TokenRecord, hash_token, new_token, read_tokens_file, write_tokens_file
from oncohabitat.common.errors import error_detail_from
from oncohabitat.common.security import ClientSecurity
from oncohabitat.v1 import pipeline_pb2, pipeline_pb2_grpc
from tests.support.dcmtk import StoreSCP, storescu
from tests.support.platform import Platform

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def receivers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StoreSCP, StoreSCP]]:
    pacs = StoreSCP(tmp_path_factory.mktemp("pacs"), ae_title="PACS")
    outside = StoreSCP(tmp_path_factory.mktemp("outside"), ae_title="OUTSIDE")
    pacs.start()
    outside.start()
    yield pacs, outside
    pacs.stop()
    outside.stop()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, receivers: tuple[StoreSCP, StoreSCP]) -> Iterator[Platform]:
    pacs, _ = receivers
    running = Platform(
        tmp_path_factory.mktemp("platform"),
        {"ONCOHABITAT_ORCHESTRATOR_EXPORT_DESTINATIONS": f"HOSPITAL={pacs.destination}"},
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def held_study(platform: Platform, sts_ct_dir: Path) -> str:
    """Push the CT study over C-STORE; returns its key once the listener's own job finished."""
    pushed = storescu(platform.dicom_port, [sts_ct_dir / "image", sts_ct_dir / "mask"])
    assert pushed.returncode == 0, pushed.stderr
    (job,) = platform.wait_for_jobs(1, timeout_s=180)
    assert job.state == pipeline_pb2.JOB_STATE_DONE, platform.log("orchestrator")
    return job.study_key


def _client(platform: Platform, role: str) -> pipeline_pb2_grpc.PipelineStub:
    """A Pipeline stub with a fresh token of ``role`` added to the deployment's tokens file."""
    path = Path(platform.env["ONCOHABITAT_AUTH_TOKENS_FILE"])
    token = new_token()
    records = [
        *read_tokens_file(path),
        TokenRecord(f"{role}-{secrets.token_hex(4)}", hash_token(token), frozenset({role})),
    ]
    write_tokens_file(path, records)
    security = ClientSecurity(token, platform.security.credentials, platform.security.server_name)
    return pipeline_pb2_grpc.PipelineStub(platform.channel("orchestrator", security))


def _refused(stub: pipeline_pb2_grpc.PipelineStub, **fields: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as refused:
        stub.SubmitStudy(pipeline_pb2.SubmitStudyRequest(**fields), timeout=30)  # type: ignore[arg-type]
    detail = error_detail_from(refused.value)
    return refused.value.code(), detail.reason if detail else ""


def test_exfiltration_attempts_are_refused_and_send_nothing(
    platform: Platform, held_study: str, receivers: tuple[StoreSCP, StoreSCP]
) -> None:
    pacs, outside = receivers
    submitter, service = _client(platform, SUBMIT), _client(platform, "service")
    store = platform.data_dir / "dicom"
    paths = sorted(p.relative_to(store).as_posix() for p in (store / "instances" / held_study).glob("*/*.dcm"))
    assert paths
    digest = secrets.token_hex(32)
    jobs_before = len(platform.pipeline().ListJobs(pipeline_pb2.ListJobsRequest(), timeout=10).jobs)
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    # the incident of the issue: random key and digest, the study's paths, an outside node
    attempt = {"study_key": secrets.token_hex(16), "content_digest": digest, "instance_paths": paths}
    assert _refused(submitter, **attempt, export_destination=outside.destination) == (
        invalid,
        "INSTANCE_PATHS_NOT_ACCEPTED",
    )
    assert _refused(submitter, study_key=held_study, instance_paths=paths)[1] == "INSTANCE_PATHS_NOT_ACCEPTED"
    assert _refused(submitter, study_key=secrets.token_hex(16)) == (grpc.StatusCode.NOT_FOUND, "STUDY_NOT_FOUND")
    for unlisted in (outside.destination, "OUTSIDE", f"PACS@127.0.0.1:{outside.port}"):
        assert _refused(submitter, study_key=held_study, export_destination=unlisted) == (
            invalid,
            "EXPORT_DESTINATION_NOT_ALLOWED",
        )
    # even the platform's own role cannot hand another study's files in under a new key, nor pick a new address
    assert _refused(service, **attempt)[1] == "INSTANCE_PATH_INVALID"
    listener_like = {"study_key": held_study, "content_digest": digest, "instance_paths": paths}
    assert _refused(service, **listener_like, export_destination=outside.destination)[1] == (
        "EXPORT_DESTINATION_NOT_ALLOWED"
    )
    assert len(platform.pipeline().ListJobs(pipeline_pb2.ListJobsRequest(), timeout=10).jobs) == jobs_before

    # by reference, to the configured destination by name: runs, exports to that node only
    sent_before = len(pacs.received())
    accepted = submitter.SubmitStudy(
        pipeline_pb2.SubmitStudyRequest(study_key=held_study, export_destination="HOSPITAL"), timeout=60
    )
    assert accepted.created
    jobs = platform.wait_for_jobs(jobs_before + 1, timeout_s=180)
    (job,) = [j for j in jobs if j.job_id == accepted.job_id]
    assert job.state == pipeline_pb2.JOB_STATE_DONE, platform.log("orchestrator")
    assert len(pacs.received()) == sent_before + 3  # SEG, SR, PDF
    assert outside.received() == []
