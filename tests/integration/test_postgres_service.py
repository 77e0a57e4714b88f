"""The orchestrator service itself (``python -m oncohabitat.orchestrator``) on PostgreSQL: two replicas with their
own REPLICA_ID share one job database; jobs queued in it are claimed by either, each once, and both replicas'
ListJobs and queue metrics show the same shared queue; ``oncohabitat jobs`` pages through it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from oncohabitat.common.credentials import client_environment
from oncohabitat.orchestrator.jobstore_postgres import PostgresJobStore
from oncohabitat.v1 import pipeline_pb2
from tests.support.platform import Platform
from tests.support.postgres import PostgresServer, start_server_or_fail

pytestmark = pytest.mark.integration


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "oncohabitat.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    started = start_server_or_fail()
    yield started
    started.stop()


def test_two_orchestrator_services_share_the_postgresql_queue(server: PostgresServer, tmp_path: Path) -> None:
    # a small queue (8 jobs that end at load_study): claims are not spread evenly; test_postgres_replicas.py shows
    # both replicas working and the takeover
    url = server.create_database()
    replicas = [
        Platform(
            tmp_path / name,
            {
                "ONCOHABITAT_ORCHESTRATOR_DATABASE_URL": url,
                "ONCOHABITAT_ORCHESTRATOR_REPLICA_ID": name,
                "ONCOHABITAT_ORCHESTRATOR_LEASE_S": "5",
            },
        )
        for name in ("orch-a", "orch-b")
    ]
    try:
        for replica in replicas:
            replica.start(["orchestrator"])
        with PostgresJobStore(url) as store:  # as a hand-off would queue them (no instances: load_study refuses)
            job_ids = [store.submit(f"s{n}", hashlib.sha256(bytes([n])).hexdigest(), {})[0] for n in range(8)]
            deadline = time.monotonic() + 120
            while not all(job.state.is_terminal for job in (store.get(j) for j in job_ids) if job is not None):
                assert time.monotonic() < deadline, replicas[0].log("orchestrator")
                time.sleep(0.3)
            owners = {
                event.reason
                for job_id in job_ids
                for event in store.events_since(job_id)
                if "lease expired" in event.reason
            }
            assert owners == set()  # nobody's lease expired: each job was claimed once
            attempts = {store.get(j).attempts for j in job_ids}  # type: ignore[union-attr]
            assert attempts == {1}
        claims = [
            line.split("job ", 1)[1].split(":", 1)[0]
            for replica in replicas
            for line in (replica.data_dir / "logs" / "orchestrator.log").read_text().splitlines()
            if "claimed by orch-" in line
        ]
        assert sorted(claims) == sorted(job_ids)  # each job claimed once, by one of the replicas
        listed = [
            {job.job_id for job in replica.pipeline().ListJobs(pipeline_pb2.ListJobsRequest(), timeout=10).jobs}
            for replica in replicas
        ]
        assert listed[0] == listed[1] == set(job_ids)
        cli_env = {
            **os.environ,
            **client_environment(replicas[1].data_dir),
            "ONCOHABITAT_ORCHESTRATOR_PORT": replicas[1].env["ONCOHABITAT_ORCHESTRATOR_PORT"],
            "COLUMNS": "200",
        }
        first = _cli(cli_env, "jobs", "--limit", "5")
        assert "more: --page-token " in first
        token = first.rsplit("more: --page-token ", 1)[1].split()[0]
        rest = json.loads(_cli(cli_env, "jobs", "--limit", "5", "--page-token", token, "--json"))
        assert len(rest) == 3 and {row["job_id"] for row in rest} < set(job_ids)
        for replica in replicas:
            port = replica.env["ONCOHABITAT_ORCHESTRATOR_METRICS_PORT"]
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            finished = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("oncohabitat_orchestrator_jobs_finished_total{")
            )
            assert finished == 8, text
    finally:
        for replica in replicas:
            replica.stop()
