"""JobRunner: resume, retries, failures, review, cancellation, graceful stop, leases and two concurrent runners."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from oncohabitat.orchestrator.jobs import InvalidJobError, Job, JobState
from oncohabitat.orchestrator.jobstore import SqliteJobStore
from oncohabitat.orchestrator.retry import RetryPolicy, TransientStageError
from oncohabitat.orchestrator.runner import FunctionStage, JobRunner, StageOutcome, StageResults
from tests.support.clock import FakeClock

Behaviour = Callable[[Job, StageResults, int], StageOutcome]


class SimulatedCrash(BaseException):
    """Escapes the runner like a kill would: nothing after the stage runs."""


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


class Recorder:
    """Builds stages that count their calls per (job_id, stage) and record what they saw."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.seen: dict[str, dict[str, Any]] = {}
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def stage(self, name: str, behaviour: Behaviour | None = None) -> FunctionStage:
        def run(job: Job, previous: StageResults) -> StageOutcome:
            with self._lock:
                self.calls[(job.job_id, name)] += 1
                self.threads.add(threading.current_thread().name)
                call = self.calls[(job.job_id, name)]
                self.seen[name] = {k: dict(v) for k, v in previous.items()}
            if behaviour is not None:
                return behaviour(job, previous, call)
            return StageOutcome.ok({"stage": name, "attempts": job.attempts})

        return FunctionStage(name, run)

    def count(self, name: str) -> int:
        return sum(n for (_, stage), n in self.calls.items() if stage == name)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[SqliteJobStore]:
    with SqliteJobStore(tmp_path / "jobs.db", clock=clock) as opened:
        yield opened


def make_runner(store: SqliteJobStore, stages: list[FunctionStage], worker: str = "w1", **kwargs: Any) -> JobRunner:
    kwargs.setdefault("retry_policy", RetryPolicy(max_attempts=3, base_delay_s=10, max_delay_s=60, jitter=0))
    return JobRunner(store, stages, worker, lease_s=30, poll_interval_s=0.01, heartbeat=False, **kwargs)


def test_all_stages_run_in_order_and_see_earlier_results(store: SqliteJobStore) -> None:
    rec = Recorder()
    job_id, _ = store.submit("s", digest("x"), {"model_ids": ["m"]})
    runner = make_runner(store, [rec.stage("load"), rec.stage("segment"), rec.stage("score")])

    job = runner.run_once()

    assert job is not None and job.job_id == job_id and job.state is JobState.DONE and job.stage == "score"
    assert rec.seen["score"] == {
        "load": {"stage": "load", "attempts": 1},
        "segment": {"stage": "segment", "attempts": 1},
    }
    assert list(store.load_stage_results(job_id)) == ["load", "segment", "score"]
    assert runner.run_once() is None


def test_resume_after_crash_skips_finished_stages(store: SqliteJobStore, clock: FakeClock) -> None:
    rec = Recorder()

    def crash_first_time(job: Job, previous: StageResults, call: int) -> StageOutcome:
        if call == 1:
            raise SimulatedCrash
        return StageOutcome.ok({"segmented": True})

    stages = [rec.stage("load"), rec.stage("segment", crash_first_time), rec.stage("score")]
    job_id, _ = store.submit("s", digest("x"), {})
    with pytest.raises(SimulatedCrash):
        make_runner(store, stages, "w1").run_once()
    crashed = store.get(job_id)
    assert crashed is not None and crashed.state is JobState.RUNNING and crashed.stage == "segment"

    fresh = make_runner(store, stages, "w2")
    assert fresh.run_once() is None  # lease still held by the dead worker
    clock.advance(31)
    job = fresh.run_once()

    assert job is not None and job.state is JobState.DONE and job.attempts == 2
    assert (rec.count("load"), rec.count("segment"), rec.count("score")) == (1, 2, 1)
    assert rec.seen["segment"] == {"load": {"stage": "load", "attempts": 1}}
    assert store.load_stage_results(job_id)["segment"] == {"segmented": True}


def test_transient_errors_are_retried_with_backoff_then_done(store: SqliteJobStore, clock: FakeClock) -> None:
    rec = Recorder()

    def flaky(job: Job, previous: StageResults, call: int) -> StageOutcome:
        if call == 1:
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connect failed")
        if call == 2:
            raise TransientStageError("association rejected")
        return StageOutcome.ok({"ok": True})

    store.submit("s", digest("x"), {})
    runner = make_runner(store, [rec.stage("load"), rec.stage("segment", flaky)])

    job = runner.run_once()
    assert job is not None and job.state is JobState.QUEUED and job.attempts == 1
    assert "RpcError(UNAVAILABLE)" in job.reason and "connect failed" not in job.reason
    assert runner.run_once() is None  # 10 s backoff not over
    clock.advance(10)
    job = runner.run_once()
    assert job is not None and job.state is JobState.QUEUED and "TransientStageError" in job.reason
    clock.advance(19)
    assert runner.run_once() is None  # second delay is 20 s
    clock.advance(1)
    job = runner.run_once()

    assert job is not None and job.state is JobState.DONE and job.attempts == 3 and job.reason == ""
    assert (rec.count("load"), rec.count("segment")) == (1, 3)


def test_transient_errors_fail_the_job_after_max_attempts(store: SqliteJobStore, clock: FakeClock) -> None:
    rec = Recorder()

    def always_busy(job: Job, previous: StageResults, call: int) -> StageOutcome:
        raise FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "PatientName=DOE^JANE")

    job_id, _ = store.submit("s", digest("x"), {})
    runner = make_runner(store, [rec.stage("score", always_busy)])
    for _ in range(3):
        clock.advance(3600)
        runner.run_once()

    job = store.get(job_id)
    assert job is not None and job.state is JobState.FAILED and job.attempts == 3
    assert job.reason == "stage 'score': transient RpcError(RESOURCE_EXHAUSTED) persisted after 3 attempts"
    assert rec.count("score") == 3
    clock.advance(3600)
    assert runner.run_once() is None


def test_permanent_error_fails_with_a_curated_reason(store: SqliteJobStore) -> None:
    rec = Recorder()

    def broken(job: Job, previous: StageResults, call: int) -> StageOutcome:
        raise ValueError("bad header for patient DOE^JANE, id 12345")

    job_id, _ = store.submit("s", digest("x"), {})
    job = make_runner(store, [rec.stage("load"), rec.stage("segment", broken), rec.stage("score")]).run_once()

    assert job is not None and job.state is JobState.FAILED and job.attempts == 1
    assert job.reason == "stage 'segment': ValueError"
    assert all("DOE" not in event.reason for event in store.events_since(job_id))
    assert rec.count("score") == 0
    assert list(store.load_stage_results(job_id)) == ["load"]


def test_non_transient_grpc_status_is_permanent(store: SqliteJobStore) -> None:
    rec = Recorder()

    def invalid(job: Job, previous: StageResults, call: int) -> StageOutcome:
        raise FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "no DCE series")

    store.submit("s", digest("x"), {})
    job = make_runner(store, [rec.stage("segment", invalid)]).run_once()
    assert job is not None and job.state is JobState.FAILED
    assert job.reason == "stage 'segment': RpcError(INVALID_ARGUMENT)"


@pytest.mark.parametrize(
    ("outcome", "state"),
    [
        (StageOutcome.needs_review("no enhancing lesion found"), JobState.NEEDS_REVIEW),
        (StageOutcome.failed("bundle input missing"), JobState.FAILED),
    ],
)
def test_review_and_failed_outcomes_stop_the_job(store: SqliteJobStore, outcome: StageOutcome, state: JobState) -> None:
    rec = Recorder()
    job_id, _ = store.submit("s", digest("x"), {})
    stages = [rec.stage("load"), rec.stage("qc", lambda job, prev, call: outcome), rec.stage("score")]

    job = make_runner(store, stages).run_once()

    assert job is not None and job.state is state and job.reason == f"stage 'qc': {outcome.reason}"
    assert rec.count("score") == 0
    assert list(store.load_stage_results(job_id)) == ["load"]


def test_invalid_stage_results_fail_the_job(store: SqliteJobStore) -> None:
    rec = Recorder()
    store.submit("s", digest("x"), {})
    stages = [rec.stage("load", lambda job, prev, call: StageOutcome.ok({"PatientID": "123"}))]
    job = make_runner(store, stages).run_once()
    assert job is not None and job.state is JobState.FAILED and "patient identifier" in job.reason
    assert "123" not in job.reason

    store.submit("t", digest("y"), {})
    not_an_outcome = FunctionStage("load", lambda job, prev: {"x": 1})  # type: ignore[arg-type,return-value]
    job = make_runner(store, [not_an_outcome]).run_once()
    assert job is not None and job.state is JobState.FAILED and "instead of a StageOutcome" in job.reason


def test_cancel_between_stages_stops_the_job(store: SqliteJobStore) -> None:
    rec = Recorder()
    job_id, _ = store.submit("s", digest("x"), {})

    def cancelled_meanwhile(job: Job, previous: StageResults, call: int) -> StageOutcome:
        store.cancel(job.job_id)  # as CancelJob would, while the stage runs
        return StageOutcome.ok({"late": True})

    stages = [rec.stage("load"), rec.stage("segment", cancelled_meanwhile), rec.stage("score")]
    job = make_runner(store, stages).run_once()

    assert job is not None and job.state is JobState.CANCELLED
    assert rec.count("score") == 0
    assert list(store.load_stage_results(job_id)) == ["load"]  # the cancelled stage's result is refused


def test_crash_loops_end_in_failed(store: SqliteJobStore, clock: FakeClock) -> None:
    rec = Recorder()

    def always_crash(job: Job, previous: StageResults, call: int) -> StageOutcome:
        raise SimulatedCrash

    job_id, _ = store.submit("s", digest("x"), {})
    runner = make_runner(store, [rec.stage("segment", always_crash)])
    for _ in range(3):
        with pytest.raises(SimulatedCrash):
            runner.run_once()
        clock.advance(31)
    job = runner.run_once()

    assert job is not None and job.job_id == job_id and job.state is JobState.FAILED
    assert rec.count("segment") == 3 and "gave up after 3 attempts" in job.reason


def test_stop_finishes_the_current_stage_then_releases_the_job(store: SqliteJobStore) -> None:
    rec = Recorder()
    started, proceed = threading.Event(), threading.Event()

    def slow(job: Job, previous: StageResults, call: int) -> StageOutcome:
        started.set()
        assert proceed.wait(10)
        return StageOutcome.ok({"slow": True})

    job_id, _ = store.submit("s", digest("x"), {})
    stages = [rec.stage("load", slow), rec.stage("segment")]
    runner = make_runner(store, stages)
    runner.start()
    assert started.wait(10)
    assert not runner.stop(timeout=0.05)  # still inside the stage
    proceed.set()
    assert runner.stop(timeout=10) and not runner.is_alive()

    job = store.get(job_id)
    assert job is not None and job.state is JobState.QUEUED and job.attempts == 0
    assert store.load_stage_results(job_id) == {"load": {"slow": True}}
    assert rec.count("segment") == 0

    done = make_runner(store, stages, "w2").run_once()
    assert done is not None and done.state is JobState.DONE
    assert (rec.count("load"), rec.count("segment")) == (1, 1)


def test_heartbeat_keeps_a_long_stage_leased(tmp_path: Path) -> None:
    """Real clock: a 1.6 s stage under a 0.75 s lease is never taken over by a second worker."""
    rec = Recorder()
    takeovers: list[Job] = []

    with SqliteJobStore(tmp_path / "jobs.db") as store, SqliteJobStore(tmp_path / "jobs.db") as rival:

        def long_stage(job: Job, previous: StageResults, call: int) -> StageOutcome:
            deadline = time.monotonic() + 1.6
            while time.monotonic() < deadline:
                if (taken := rival.claim_next("rival", lease_s=0.75)) is not None:
                    takeovers.append(taken)
                time.sleep(0.05)
            return StageOutcome.ok()

        job_id, _ = store.submit("s", digest("x"), {})
        runner = JobRunner(store, [rec.stage("long", long_stage)], "w1", lease_s=0.75, poll_interval_s=0.01)
        job = runner.run_once()

    assert takeovers == []
    assert job is not None and job.job_id == job_id and job.state is JobState.DONE and job.attempts == 1


def test_two_runners_on_one_database_run_each_stage_once(tmp_path: Path) -> None:
    rec = Recorder()

    def work(job: Job, previous: StageResults, call: int) -> StageOutcome:
        time.sleep(0.002)
        return StageOutcome.ok({"n": len(previous)})

    stages = [rec.stage(name, work) for name in ("load", "segment", "score")]
    db = tmp_path / "jobs.db"
    with SqliteJobStore(db) as seed:
        job_ids = [seed.submit(f"s{i}", digest(str(i)), {})[0] for i in range(16)]
    stores = [SqliteJobStore(db), SqliteJobStore(db)]
    runners = [
        JobRunner(store, stages, f"w{i}", lease_s=30, poll_interval_s=0.005, rng=random.Random(i))
        for i, store in enumerate(stores)
    ]
    for runner in runners:
        runner.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(
        (j := stores[0].get(job_id)) is None or j.state is not JobState.DONE for job_id in job_ids
    ):
        time.sleep(0.02)
    assert all(runner.stop(timeout=10) for runner in runners)

    jobs = [stores[0].get(job_id) for job_id in job_ids]
    assert [(j.state, j.attempts) if j else None for j in jobs] == [(JobState.DONE, 1)] * len(job_ids)
    assert rec.calls == Counter({(job_id, stage.name): 1 for job_id in job_ids for stage in stages})
    assert rec.threads == {"job-runner-w0", "job-runner-w1"}  # both runners really competed
    for store in stores:
        store.close()


def test_runner_validates_its_configuration(store: SqliteJobStore) -> None:
    rec = Recorder()
    with pytest.raises(InvalidJobError, match="unique"):
        make_runner(store, [rec.stage("a"), rec.stage("a")])
    with pytest.raises(InvalidJobError, match="at least one"):
        make_runner(store, [])
    with pytest.raises(InvalidJobError, match="non-empty"):
        make_runner(store, [rec.stage(" ")])
    with pytest.raises(InvalidJobError, match="reason"):
        StageOutcome.needs_review("  ")
