"""ListJobs over the public API: filters (state, creation time range, model), pages that neither repeat nor skip
a job while new jobs arrive, and malformed filters refused as INVALID_ARGUMENT; CancelJob of a running job stops it
at the next stage boundary."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.orchestrator.jobs import Job, JobState
from oncohabitat.orchestrator.jobstore import SqliteJobStore
from oncohabitat.orchestrator.runner import FunctionStage, JobRunner, StageOutcome, StageResults
from oncohabitat.orchestrator.servicer import PipelineServicer
from oncohabitat.v1 import pipeline_pb2
from tests.support.clock import FakeClock


def _digest(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[SqliteJobStore]:
    with SqliteJobStore(tmp_path / "jobs.db", clock=clock) as opened:
        yield opened


def _list(servicer: PipelineServicer, **fields: Any) -> pipeline_pb2.ListJobsResponse:
    return servicer.ListJobs(pipeline_pb2.ListJobsRequest(**fields), None)


def test_list_jobs_pages_and_filters(store: SqliteJobStore, clock: FakeClock) -> None:
    servicer = PipelineServicer(store)
    ids = []
    for n in range(5):
        ids.append(store.submit(f"s{n}", _digest(n), {"model_ids": ["demo-a"]} if n < 2 else {})[0])
        clock.advance(10)
    first = _list(servicer, page_size=2)
    assert [j.job_id for j in first.jobs] == [ids[4], ids[3]] and first.next_page_token
    store.submit("late", _digest(99), {})  # a job arriving between pages shifts nothing
    second = _list(servicer, page_size=2, page_token=first.next_page_token)
    third = _list(servicer, page_size=2, page_token=second.next_page_token)
    assert [j.job_id for j in second.jobs] == [ids[2], ids[1]]
    assert [j.job_id for j in third.jobs] == [ids[0]] and third.next_page_token == ""

    created = {j.job_id: j.created_at for j in _list(servicer).jobs}
    window = _list(servicer, created_from=created[ids[1]], created_to=created[ids[4]])
    assert [j.job_id for j in window.jobs] == [ids[3], ids[2], ids[1]]
    assert [j.job_id for j in _list(servicer, model_id="demo-a").jobs] == [ids[1], ids[0]]
    assert len(_list(servicer, state=pipeline_pb2.JOB_STATE_QUEUED).jobs) == 6
    assert _list(servicer, state=pipeline_pb2.JOB_STATE_DONE).jobs == []


@pytest.mark.parametrize(
    "fields",
    [{"page_token": "garbage"}, {"created_from": "last tuesday"}, {"state": 42}, {"model_id": "x" * 300}],
)
def test_malformed_list_requests_are_invalid_argument(store: SqliteJobStore, fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        _list(PipelineServicer(store), **fields)


def test_cancel_job_stops_a_running_job_at_the_next_stage_boundary(store: SqliteJobStore) -> None:
    servicer = PipelineServicer(store)
    job_id, _ = store.submit("s", _digest(0), {})
    ran: list[str] = []

    def stage(name: str, cancel: bool = False) -> FunctionStage:
        def run(job: Job, previous: StageResults) -> StageOutcome:
            ran.append(name)
            if cancel:
                reply = servicer.CancelJob(pipeline_pb2.CancelJobRequest(job_id=job.job_id), None)
                assert reply.state == pipeline_pb2.JOB_STATE_CANCELLED
            return StageOutcome.ok({"stage": name})

        return FunctionStage(name, run)

    runner = JobRunner(store, [stage("load"), stage("segment", cancel=True), stage("export")], "w", heartbeat=False)
    runner.run_once()
    job = store.get(job_id)
    assert job is not None and job.state is JobState.CANCELLED
    assert ran == ["load", "segment"]  # the running stage finished; nothing after it ran
    assert list(store.load_stage_results(job_id)) == ["load"]  # and its result was not kept
