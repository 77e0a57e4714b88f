"""Crash recovery: a runner process killed with SIGKILL mid-stage; a fresh runner finishes the job.

The killed process never gets to clean up, so this exercises the real path: the lease expires (simulated with
an injectable clock in the fresh process), the job is claimed again, finished stages are skipped and every
stage result ends up persisted exactly once.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from oncohabitat.orchestrator.jobs import Job, JobState, utc_now
from oncohabitat.orchestrator.jobstore import SqliteJobStore
from oncohabitat.orchestrator.runner import FunctionStage, JobRunner, StageOutcome, StageResults

CHILD = textwrap.dedent(
    """
    import os, sys, time
    from oncohabitat.orchestrator.jobstore import SqliteJobStore
    from oncohabitat.orchestrator.runner import FunctionStage, JobRunner, StageOutcome

    db, log = sys.argv[1], sys.argv[2]

    def record(name):
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{name} child\\n".encode())
        os.fsync(fd)
        os.close(fd)

    def load(job, previous):
        record("load")
        return StageOutcome.ok({"slices": 60, "by": "child"})

    def segment(job, previous):
        record("segment")
        time.sleep(120)  # killed in here
        return StageOutcome.ok({"by": "child"})

    def score(job, previous):
        record("score")
        return StageOutcome.ok({"by": "child"})

    stages = [FunctionStage("load", load), FunctionStage("segment", segment), FunctionStage("score", score)]
    JobRunner(SqliteJobStore(db), stages, "child", lease_s=2.0, poll_interval_s=0.05).run_once()
    """
)


def _wait_for_line(log: Path, line: str, child: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and line in log.read_text().splitlines():
            return
        if child.poll() is not None:
            pytest.fail(f"runner subprocess exited early with {child.returncode}: {child.stderr!r}")
        time.sleep(0.02)
    pytest.fail(f"runner subprocess never logged {line!r}")


@pytest.mark.integration
def test_sigkill_mid_stage_then_fresh_runner_finishes_exactly_once(tmp_path: Path) -> None:
    db, log, script = tmp_path / "jobs.db", tmp_path / "calls.log", tmp_path / "child_runner.py"
    script.write_text(CHILD)
    with SqliteJobStore(db) as store:
        job_id, _ = store.submit("study-1", hashlib.sha256(b"content").hexdigest(), {"model_ids": []})

    child = subprocess.Popen([sys.executable, str(script), str(db), str(log)], stderr=subprocess.PIPE)
    try:
        _wait_for_line(log, "segment child", child, timeout_s=60)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        assert child.stderr is not None
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL

    def later() -> datetime:  # the dead child's 2 s lease has expired for this process
        return utc_now() + timedelta(seconds=10)

    def parent_stage(name: str) -> FunctionStage:
        def run(job: Job, previous: StageResults) -> StageOutcome:
            with log.open("a") as handle:
                handle.write(f"{name} parent\n")
            return StageOutcome.ok({"by": "parent", "saw": sorted(previous)})

        return FunctionStage(name, run)

    with SqliteJobStore(db, clock=later) as store:
        crashed = store.get(job_id)
        assert crashed is not None and crashed.state is JobState.RUNNING and crashed.lease_owner == "child"
        runner = JobRunner(store, [parent_stage(n) for n in ("load", "segment", "score")], "parent", lease_s=30)
        job = runner.run_once()
        results = store.load_stage_results(job_id)

    assert job is not None and job.job_id == job_id and job.state is JobState.DONE and job.attempts == 2
    assert log.read_text().splitlines() == ["load child", "segment child", "segment parent", "score parent"]
    assert results == {
        "load": {"slices": 60, "by": "child"},
        "segment": {"by": "parent", "saw": ["load"]},
        "score": {"by": "parent", "saw": ["load", "segment"]},
    }
    with sqlite3.connect(db) as raw:
        rows = raw.execute("SELECT stage, COUNT(*) FROM stage_results WHERE job_id = ? GROUP BY stage", (job_id,))
        assert dict(rows.fetchall()) == {"load": 1, "segment": 1, "score": 1}
