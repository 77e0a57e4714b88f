"""The public Pipeline API over real gRPC (servicer + SQLite job store; no runner, so jobs stay QUEUED)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from oncohabitat.common.errors import error_detail_from
from oncohabitat.common.server import ServiceRuntime
from oncohabitat.common.settings import ServiceSettings
from oncohabitat.orchestrator.jobs import JobState
from oncohabitat.orchestrator.jobstore import SqliteJobStore
from oncohabitat.orchestrator.servicer import PipelineServicer
from oncohabitat.v1 import pipeline_pb2, pipeline_pb2_grpc

pytestmark = pytest.mark.integration
STUDY_KEY = "ab" * 16
DIGEST = hashlib.sha256(b"content").hexdigest()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[pipeline_pb2_grpc.PipelineStub, SqliteJobStore]]:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    servicer = PipelineServicer(store)
    runtime = ServiceRuntime(
        name="orchestrator-api",
        settings=ServiceSettings(port=0, metrics_port=0, data_dir=tmp_path),
        registrations=[lambda server: pipeline_pb2_grpc.add_PipelineServicer_to_server(servicer, server)],
        service_names=["oncohabitat.v1.Pipeline"],
    )
    runtime.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{runtime.port}")
    yield pipeline_pb2_grpc.PipelineStub(channel), store
    channel.close()
    runtime.stop(0)
    store.close()


def _submit(stub: pipeline_pb2_grpc.PipelineStub, **fields: object) -> pipeline_pb2.SubmitStudyResponse:
    request = {"study_key": STUDY_KEY, "content_digest": DIGEST, "instance_paths": [f"instances/{STUDY_KEY}/b/c.dcm"]}
    request.update(fields)
    return stub.SubmitStudy(pipeline_pb2.SubmitStudyRequest(**request), timeout=5)  # type: ignore[arg-type]


def test_submit_is_idempotent_and_jobs_are_listed(api: tuple[pipeline_pb2_grpc.PipelineStub, SqliteJobStore]) -> None:
    stub, _ = api
    first, again = _submit(stub), _submit(stub)
    assert first.created and not again.created and first.job_id == again.job_id
    other = _submit(stub, content_digest=hashlib.sha256(b"updated").hexdigest())
    assert other.created and other.job_id != first.job_id
    jobs = stub.ListJobs(pipeline_pb2.ListJobsRequest(), timeout=5).jobs
    assert {j.job_id for j in jobs} == {first.job_id, other.job_id}
    assert all(j.state == pipeline_pb2.JOB_STATE_QUEUED for j in jobs)
    queued = stub.ListJobs(pipeline_pb2.ListJobsRequest(state=pipeline_pb2.JOB_STATE_DONE), timeout=5).jobs
    assert list(queued) == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"study_key": "../etc"}, "study_key"),
        ({"content_digest": "abc"}, "content_digest"),
        ({"instance_paths": ["/etc/passwd"]}, "instance_paths"),
        ({"instance_paths": ["a/../../x.dcm"]}, "instance_paths"),
        ({"instance_paths": []}, "instance_paths"),
        ({"export_destination": "no-port"}, "export_destination"),
    ],
)
def test_bad_submissions_are_invalid_argument(
    api: tuple[pipeline_pb2_grpc.PipelineStub, SqliteJobStore], fields: dict[str, object], field: str
) -> None:
    stub, _ = api
    with pytest.raises(grpc.RpcError) as excinfo:
        _submit(stub, **fields)
    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    detail = error_detail_from(excinfo.value)
    assert detail is not None and detail.field == field


def test_unknown_job_is_not_found_and_unfinished_result_is_a_precondition(
    api: tuple[pipeline_pb2_grpc.PipelineStub, SqliteJobStore],
) -> None:
    stub, _ = api
    with pytest.raises(grpc.RpcError) as missing:
        stub.GetJob(pipeline_pb2.GetJobRequest(job_id="0" * 32), timeout=5)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    job_id = _submit(stub).job_id
    with pytest.raises(grpc.RpcError) as unfinished:
        stub.GetResult(pipeline_pb2.GetResultRequest(job_id=job_id), timeout=5)
    assert unfinished.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_watch_streams_state_changes_until_the_job_ends(
    api: tuple[pipeline_pb2_grpc.PipelineStub, SqliteJobStore],
) -> None:
    stub, store = api
    job_id = _submit(stub).job_id
    seen: list[int] = []
    first_seen = threading.Event()

    def watch() -> None:
        for job in stub.WatchJob(pipeline_pb2.WatchJobRequest(job_id=job_id), timeout=20):
            seen.append(job.state)
            first_seen.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert first_seen.wait(10)
    claimed = store.claim_next("test-worker", lease_s=30)
    assert claimed is not None and claimed.job_id == job_id
    store.finish(job_id, JobState.DONE, worker_id="test-worker")
    watcher.join(20)
    assert not watcher.is_alive()
    assert seen[0] == pipeline_pb2.JOB_STATE_QUEUED and seen[-1] == pipeline_pb2.JOB_STATE_DONE
    assert pipeline_pb2.JOB_STATE_RUNNING in seen or len(seen) == 2
    result = stub.GetResult(pipeline_pb2.GetResultRequest(job_id=job_id), timeout=5)
    assert result.job.state == pipeline_pb2.JOB_STATE_DONE and list(result.models) == []


def test_cancel_queued_job(api: tuple[pipeline_pb2_grpc.PipelineStub, SqliteJobStore]) -> None:
    stub, store = api
    job_id = _submit(stub).job_id
    cancelled = stub.CancelJob(pipeline_pb2.CancelJobRequest(job_id=job_id), timeout=5)
    assert cancelled.state == pipeline_pb2.JOB_STATE_CANCELLED
    assert store.claim_next("test-worker", lease_s=30) is None
