"""``oncohabitat up`` supervises its services: a service killed with SIGKILL is back (SERVING) within 10 s while
the others, DICOM intake included, keep running, and its jobs finish; a service that keeps dying makes ``up``
give up with a non-zero exit; the ports in ``--config`` are the addresses the services call each other on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oncohabitat.common.channels import make_channel
from oncohabitat.common.credentials import client_environment
from oncohabitat.common.health_client import check_health
from oncohabitat.common.security import ClientSecurity
from oncohabitat.common.topology import SERVICES, ServiceSpec, spec
from oncohabitat.launcher import peer_addresses, platform_environment, start_services, stop_services
from oncohabitat.supervisor import RestartPolicy, Supervisor
from oncohabitat.v1 import pipeline_pb2, pipeline_pb2_grpc
from tests.conftest import free_port
from tests.support.dcmtk import storescu

CLI = [sys.executable, "-m", "oncohabitat.cli"]


def test_a_service_that_keeps_dying_is_restarted_with_backoff_then_given_up(tmp_path: Path) -> None:
    crasher = ServiceSpec("crasher", "oncohabitat.no_such_module", "none", free_port(), free_port())
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    running = start_services(env, tmp_path / "logs", [crasher])
    messages: list[str] = []
    policy = RestartPolicy(initial_backoff_s=0.05, max_backoff_s=0.4, max_restarts=3, window_s=60)
    supervisor = Supervisor(running, env, tmp_path / "logs", policy, report=messages.append)
    deadline = time.monotonic() + 60
    reason = None
    while reason is None:
        assert time.monotonic() < deadline, messages
        reason = supervisor.tick()
        time.sleep(0.02)
    assert "crasher exited (1) after 3 restarts" in reason and "giving up" in reason
    assert supervisor.restarts == {"crasher": 3}
    assert [m for m in messages if "restarting in" in m] == [
        "crasher exited (1); restarting in 0.1 s",
        "crasher exited (1); restarting in 0.1 s",
        "crasher exited (1); restarting in 0.2 s",
    ]
    stop_services(supervisor.running)


def test_config_ports_are_the_addresses_the_services_use() -> None:
    overrides = {"ONCOHABITAT_SCORING_PORT": "61055", "ONCOHABITAT_ORCHESTRATOR_PORT": "61050"}
    overrides["ONCOHABITAT_REGIONS_ADDRESS_UNUSED"] = "x"
    env = platform_environment(Path("/tmp/unused"), "0.0.0.0", overrides)
    assert env["ONCOHABITAT_ORCHESTRATOR_SCORING_ADDRESS"] == "127.0.0.1:61055"
    assert env["ONCOHABITAT_ORCHESTRATOR_SEGMENTATION_ADDRESS"] == "127.0.0.1:50052"
    assert env["ONCOHABITAT_LISTENER_ORCHESTRATOR_ADDRESS"] == "127.0.0.1:61050"
    explicit = {"ONCOHABITAT_ORCHESTRATOR_SCORING_ADDRESS": "10.0.0.1:50055,10.0.0.2:50055"}
    assert "ONCOHABITAT_ORCHESTRATOR_SCORING_ADDRESS" not in peer_addresses(explicit)  # a list set by hand stays


def _port_config(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    env: dict[str, str] = {}
    for service in SERVICES:
        env[f"{service.env_prefix}PORT"] = str(free_port())
        env[f"{service.env_prefix}METRICS_PORT"] = str(free_port())
    env["ONCOHABITAT_LISTENER_DICOM_PORT"] = str(free_port())
    env["ONCOHABITAT_LISTENER_QUIET_PERIOD_S"] = "1.0"
    env["ONCOHABITAT_LISTENER_MIN_FREE_DISK_MB"] = "64"
    env["ONCOHABITAT_ORCHESTRATOR_POLL_INTERVAL_S"] = "0.2"
    config = tmp_path / "ports.env"
    config.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return config, env


def _child_pid(parent: int, module: str) -> int:
    """The pid of ``up``'s child running ``python -m module``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and module.encode() in cmdline:
            return int(entry.name)
    raise LookupError(module)


class Up:
    """An ``oncohabitat up`` process on free ports, with the operator's credentials."""

    def __init__(self, tmp_path: Path, *extra: str) -> None:
        self.config, self.ports = _port_config(tmp_path)
        self.data_dir = tmp_path / "data"
        self.log_path = tmp_path / "up.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*CLI, "up", "--data-dir", str(self.data_dir), "--config", str(self.config), *extra],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env={**os.environ, "COLUMNS": "200"},
        )

    def wait_serving(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while b"All services SERVING" not in self.log_path.read_bytes():
            assert self.process.poll() is None, self.log_path.read_text()
            assert time.monotonic() < deadline, "platform did not start"
            time.sleep(0.3)
        self.security = ClientSecurity.from_environment(client_environment(self.data_dir))

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[spec(name).env_prefix + 'PORT']}"

    def health(self, name: str) -> str:
        return check_health(self.address(name), timeout_s=1.0, security=self.security)

    def pipeline(self) -> pipeline_pb2_grpc.PipelineStub:
        channel = make_channel(self.address("orchestrator"), "oncohabitat.v1.Pipeline", security=self.security)
        return pipeline_pb2_grpc.PipelineStub(channel)

    def kill(self, name: str) -> float:
        """SIGKILL one service; returns how long it took to be SERVING again (s)."""
        module = spec(name).module
        victim = _child_pid(self.process.pid, module)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        while True:  # until `up` started a new process
            assert time.monotonic() - killed < 60, self.log_path.read_text()
            try:
                if _child_pid(self.process.pid, module) != victim:
                    break
            except LookupError:
                pass
            time.sleep(0.02)
        while self.health(name) != "SERVING":
            assert self.process.poll() is None, self.log_path.read_text()
            assert time.monotonic() - killed < 60, self.log_path.read_text()
            time.sleep(0.1)
        return time.monotonic() - killed

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()


@pytest.mark.integration
def test_up_restarts_a_killed_service_within_10_s_and_its_job_finishes(tmp_path: Path, sts_ct_dir: Path) -> None:
    up = Up(tmp_path)
    try:
        up.wait_serving()
        listener_pid = _child_pid(up.process.pid, "oncohabitat.listener")
        back_s = up.kill("scoring")
        assert back_s < 10, f"scoring back after {back_s:.1f} s"

        pushed = storescu(int(up.ports["ONCOHABITAT_LISTENER_DICOM_PORT"]), [sts_ct_dir / "image", sts_ct_dir / "mask"])
        assert pushed.returncode == 0, pushed.stderr
        stub = up.pipeline()
        deadline = time.monotonic() + 120
        jobs: list[pipeline_pb2.Job] = []
        while not any(job.state == pipeline_pb2.JOB_STATE_RUNNING for job in jobs):
            assert time.monotonic() < deadline, jobs
            jobs = list(stub.ListJobs(pipeline_pb2.ListJobsRequest(), timeout=10).jobs)
            time.sleep(0.05)
        (job,) = jobs
        orchestrator_back_s = up.kill("orchestrator")  # mid-job: its lease is 120 s, the restart resumes at once
        killed_at = time.monotonic()  # the orchestrator SERVING again
        stub = up.pipeline()
        while job.state in (pipeline_pb2.JOB_STATE_QUEUED, pipeline_pb2.JOB_STATE_RUNNING):
            assert time.monotonic() - killed_at < 100, (job, (up.data_dir / "logs" / "orchestrator.log").read_text())
            time.sleep(0.3)
            job = stub.GetJob(pipeline_pb2.GetJobRequest(job_id=job.job_id), timeout=10)
        finished_s = time.monotonic() - killed_at + orchestrator_back_s  # from the kill itself
        assert job.state == pipeline_pb2.JOB_STATE_DONE, job
        assert job.attempts == 2  # claimed again by the restarted orchestrator
        assert orchestrator_back_s < 10 and finished_s < 100  # not after the 120 s lease
        assert _child_pid(up.process.pid, "oncohabitat.listener") == listener_pid  # DICOM intake never stopped
        print(  # the figures the issue asks for (pytest -s)
            f"scoring back in {back_s:.1f} s; orchestrator back in {orchestrator_back_s:.1f} s, "
            f"its job DONE {finished_s:.1f} s after the kill (lease 120 s)"
        )
        assert up.process.poll() is None
    finally:
        up.close()
    assert up.process.returncode == 0, up.log_path.read_text()


@pytest.mark.integration
def test_up_exits_non_zero_when_it_gives_up(tmp_path: Path) -> None:
    up = Up(tmp_path, "--max-restarts", "0")
    try:
        up.wait_serving()
        os.kill(_child_pid(up.process.pid, spec("features").module), signal.SIGKILL)
        up.process.wait(60)
    finally:
        up.close()
    text = up.log_path.read_text()
    assert up.process.returncode == 1, text
    assert "features exited (-9) after 0 restarts" in text and "giving up" in text
    for service in SERVICES:  # everything stopped
        assert check_health(up.address(service.name), timeout_s=0.5) == "UNREACHABLE"
