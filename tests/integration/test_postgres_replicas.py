"""Several orchestrator replicas on one PostgreSQL job database, with real processes killed with SIGKILL.

Each replica is its own process running the orchestrator's runner (two worker threads, lease owner names and
restart rule from ``orchestrator.lease``, exactly as ``python -m oncohabitat.orchestrator`` builds them) over a
:class:`PostgresJobStore` on a real server. The stages stand in for the pipeline: ``load`` and ``segment`` take
a while, ``export`` "sends" the job's objects to a log that plays the PACS (objects keyed by a SOP Instance
UID derived from the job id, as the real export stage does, so a resend overwrites instead of duplicating).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from oncohabitat.orchestrator.jobs import JobState, parse_rfc3339
from oncohabitat.orchestrator.jobstore_postgres import PostgresJobStore
from tests.support.postgres import PostgresServer, start_server_or_fail

pytestmark = pytest.mark.integration

REPLICA = textwrap.dedent(
    """
    import os, sys, time
    from oncohabitat.orchestrator.jobstore_postgres import PostgresJobStore
    from oncohabitat.orchestrator.lease import resume_own_jobs, worker_ids
    from oncohabitat.orchestrator.runner import FunctionStage, JobRunner, StageOutcome

    url, replica, log, lease_s, stage_s, hang_first = sys.argv[1:7]
    lease_s, stage_s, hang_first = float(lease_s), float(stage_s), hang_first == "1"

    def record(line):
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, (line + "\\n").encode())
        os.close(fd)

    def work(name):
        def run(job, previous):
            record(f"start {name} {job.job_id} {replica}")
            if hang_first and name == "segment" and job.attempts == 1:
                time.sleep(600)  # killed in here
            time.sleep(stage_s)
            return StageOutcome.ok({"by": replica})
        return FunctionStage(name, run)

    def export(job, previous):
        uid = "2.25." + str(int(job.job_id, 16))  # deterministic, as export_stage derives UIDs from the job id
        record(f"export {job.job_id} {uid} {replica}")
        return StageOutcome.ok({"sop_instance_uid": uid})

    store = PostgresJobStore(url)
    resume_own_jobs(store, replica)
    stages = [work("load"), work("segment"), FunctionStage("export", export)]
    runners = [JobRunner(store, stages, w, lease_s=lease_s, poll_interval_s=0.1) for w in worker_ids(replica, 2)]
    for runner in runners:
        runner.start()
    record(f"ready {replica}")
    while True:
        time.sleep(1)
    """
)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    started = start_server_or_fail()
    yield started
    started.stop()


class Replicas:
    """Replica processes of one test, all killed at the end."""

    def __init__(self, url: str, log: Path) -> None:
        self.url, self.log = url, log
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(
        self, replica: str, *, lease_s: float, stage_s: float, hang_first: bool = False
    ) -> subprocess.Popen[bytes]:
        hang = "1" if hang_first else "0"
        process = subprocess.Popen(
            [sys.executable, "-c", REPLICA, self.url, replica, str(self.log), str(lease_s), str(stage_s), hang],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.processes.append(process)
        return process

    def lines(self) -> list[list[str]]:
        return [line.split() for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def wait_for(self, predicate: str, count: int, timeout_s: float, replica: str = "") -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            lines = [" ".join(words) for words in self.lines() if not replica or words[-1] == replica]
            if sum(1 for line in lines if line.startswith(predicate)) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"{count} x {predicate!r} not seen within {timeout_s} s")

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(30)


@pytest.fixture
def replicas(server: PostgresServer, tmp_path: Path) -> Iterator[Replicas]:
    group = Replicas(server.create_database(), tmp_path / "pacs.log")
    PostgresJobStore(group.url).close()  # schema first, so the replicas start on a migrated database
    yield group
    group.stop_all()


def _digest(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def _wait_all_finished(store: PostgresJobStore, job_ids: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs = [store.get(job_id) for job_id in job_ids]
        if all(job is not None and job.state.is_terminal for job in jobs):
            return
        time.sleep(0.2)
    states = Counter(job.state.value for job in (store.get(j) for j in job_ids) if job is not None)
    raise AssertionError(f"jobs not finished within {timeout_s} s: {dict(states)}")


def test_a_replica_killed_mid_run_leaves_every_job_done_exactly_once(replicas: Replicas) -> None:
    lease_s = 3.0
    store = PostgresJobStore(replicas.url)
    job_ids = [store.submit(f"study-{n}", _digest(n), {})[0] for n in range(20)]
    victim = replicas.start("replica-a", lease_s=lease_s, stage_s=3.0)  # slow stages: surely mid-stage when killed
    replicas.start("replica-b", lease_s=lease_s, stage_s=0.4)
    replicas.wait_for("ready", 2, timeout_s=120)
    replicas.wait_for("start segment", 1, timeout_s=120, replica="replica-a")
    victim.send_signal(signal.SIGKILL)
    victim.wait(30)
    killed_at = time.time()
    # what the dead replica held (its renewals stopped <= 1 s before the kill: nobody took them over yet)
    held = [job.job_id for job in store.list(JobState.RUNNING) if (job.lease_owner or "").startswith("replica-a:")]

    _wait_all_finished(store, job_ids, timeout_s=lease_s + 120)
    try:
        jobs = {job_id: store.get(job_id) for job_id in job_ids}
        assert all(job is not None and job.state is JobState.DONE for job in jobs.values())
        for job_id in job_ids:  # every stage result persisted once, by one replica each
            assert list(store.load_stage_results(job_id)) == ["load", "segment", "export"]
        exports = [words for words in replicas.lines() if words[0] == "export"]
        objects = {(job_id, uid) for _, job_id, uid, _ in exports}
        assert {job_id for job_id, _ in objects} == set(job_ids) and len(objects) == 20  # one object per job
        stored_uids = {store.load_stage_results(j)["export"]["sop_instance_uid"] for j in job_ids}
        assert stored_uids == {uid for _, uid in objects}
        # nobody waited longer than the lease + 60 s after the kill; the victim's jobs were taken over
        finished_last = max(parse_rfc3339(job.updated_at).timestamp() for job in jobs.values() if job is not None)
        assert finished_last - killed_at <= lease_s + 60
        takeovers = [
            parse_rfc3339(event.at).timestamp() - killed_at
            for job_id in held
            for event in store.events_since(job_id)
            if "lease expired" in event.reason
        ]
        assert held and len(takeovers) >= len(held)
        sends = Counter(job_id for _, job_id, _, _ in exports)
        print(  # the figures the issue asks for (pytest -s)
            f"killed replica-a holding {len(held)} jobs; taken over after {min(takeovers):.1f}-{max(takeovers):.1f} s "
            f"(lease {lease_s} s); all 20 DONE {finished_last - killed_at:.1f} s after the kill; "
            f"{sum(sends.values())} sends for 20 objects (resends overwrite the same UID)"
        )
    finally:
        store.close()


def test_a_restarted_replica_resumes_its_own_jobs_without_waiting_for_the_lease(replicas: Replicas) -> None:
    lease_s = 120.0
    store = PostgresJobStore(replicas.url)
    job_id, _ = store.submit("study", _digest(0), {})
    first = replicas.start("replica-r", lease_s=lease_s, stage_s=0.1, hang_first=True)
    replicas.wait_for("start segment", 1, timeout_s=120)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    restarted_at = time.time()
    replicas.start("replica-r", lease_s=lease_s, stage_s=0.1, hang_first=True)
    _wait_all_finished(store, [job_id], timeout_s=90)
    try:
        job = store.get(job_id)
        assert job is not None and job.state is JobState.DONE and job.attempts == 2
        resumed = parse_rfc3339(job.updated_at).timestamp() - restarted_at
        assert resumed < 60 < lease_s  # well before the 120 s lease would have expired
        print(f"restarted replica finished its own job {resumed:.1f} s after the restart (lease {lease_s:.0f} s)")
    finally:
        store.close()
