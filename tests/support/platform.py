"""The whole platform as separate processes on free ports, for end-to-end tests.

Each service can be killed (SIGKILL) and restarted individually, which is what the crash tests need;
``oncohabitat up`` itself is covered by ``tests/integration/test_cli_up.py``.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc

from oncohabitat.common.channels import make_channel
from oncohabitat.common.credentials import client_environment, ensure_credentials, service_environment
from oncohabitat.common.health_client import check_health
from oncohabitat.common.security import ClientSecurity
from oncohabitat.common.topology import SERVICES, spec
from oncohabitat.dicomio.identifiers import uid_key
from oncohabitat.launcher import RunningService, platform_environment, start_services, stop_services
from oncohabitat.v1 import listener_pb2_grpc, pipeline_pb2, pipeline_pb2_grpc
from tests.conftest import free_port

#: Job states after which a job changes no more.
TERMINAL_STATES = frozenset(
    {
        pipeline_pb2.JOB_STATE_DONE,
        pipeline_pb2.JOB_STATE_NEEDS_REVIEW,
        pipeline_pb2.JOB_STATE_FAILED,
        pipeline_pb2.JOB_STATE_CANCELLED,
    }
)


class Platform:
    """All six services with a shared data directory under ``workdir``, secured as ``oncohabitat up`` does
    (generated tokens and mutual TLS); :meth:`channel` and the stubs present the admin token."""

    def __init__(self, workdir: Path, overrides: dict[str, str] | None = None, tls: bool = True) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        ensure_credentials(self.data_dir.resolve(), tls=tls)
        ports: dict[str, str] = dict(service_environment(self.data_dir.resolve()))
        for service in SERVICES:
            ports[f"{service.env_prefix}PORT"] = str(free_port())
            ports[f"{service.env_prefix}METRICS_PORT"] = str(free_port())
        self.dicom_port = free_port()
        ports["ONCOHABITAT_LISTENER_DICOM_PORT"] = str(self.dicom_port)
        ports["ONCOHABITAT_LISTENER_QUIET_PERIOD_S"] = "1.0"
        ports["ONCOHABITAT_LISTENER_MIN_FREE_DISK_MB"] = "64"  # CI disks can be small; the default is 1 GiB
        ports["ONCOHABITAT_ORCHESTRATOR_POLL_INTERVAL_S"] = "0.2"
        for name in ("segmentation", "regions", "features", "scoring"):
            ports[f"ONCOHABITAT_ORCHESTRATOR_{name.upper()}_ADDRESS"] = (
                f"127.0.0.1:{ports[spec(name).env_prefix + 'PORT']}"
            )
        ports["ONCOHABITAT_LISTENER_ORCHESTRATOR_ADDRESS"] = f"127.0.0.1:{ports['ONCOHABITAT_ORCHESTRATOR_PORT']}"
        self.env = platform_environment(self.data_dir.resolve(), "127.0.0.1", {**ports, **(overrides or {})})
        self.running: dict[str, RunningService] = {}
        self.security = ClientSecurity.from_environment(client_environment(self.data_dir))

    def channel(self, name: str, security: ClientSecurity | None = None) -> grpc.Channel:
        """A channel to a service with the admin token (or ``security``), as the CLI makes it."""
        return make_channel(self.address(name), spec(name).grpc_service, security=security or self.security)

    def study_key(self, study_uid: str) -> str:
        """The opaque key this deployment gives a Study Instance UID (keyed with its secret)."""
        secret = Path(self.env["ONCOHABITAT_STUDY_KEY_SECRET_FILE"]).read_bytes().strip()
        return uid_key(study_uid, secret)

    def address(self, name: str) -> str:
        """gRPC address of a service."""
        return f"127.0.0.1:{self.env[spec(name).env_prefix + 'PORT']}"

    def start(self, names: list[str] | None = None, timeout_s: float = 60.0) -> None:
        """Start the named services (default all) and wait until each is SERVING."""
        selected = [s for s in SERVICES if names is None or s.name in names]
        for service in start_services(self.env, self.data_dir / "logs", selected):
            self.running[service.spec.name] = service
        deadline = time.monotonic() + timeout_s
        try:
            for service in selected:
                while check_health(self.address(service.name), timeout_s=1.0, security=self.security) != "SERVING":
                    process = self.running[service.name].process
                    if process.poll() is not None:
                        raise RuntimeError(f"{service.name} exited ({process.returncode}): {self.log(service.name)}")
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{service.name} not SERVING: {self.log(service.name)}")
                    time.sleep(0.1)
        except BaseException:
            self.stop()  # never leave half a platform running behind a failed test
            raise

    def kill(self, name: str) -> None:
        """SIGKILL one service (a crash: no cleanup at all)."""
        process = self.running.pop(name).process
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        """SIGTERM everything still running."""
        stop_services(list(self.running.values()))
        self.running.clear()

    def log(self, name: str) -> str:
        """The last lines of a service's log."""
        path = self.data_dir / "logs" / f"{name}.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def pipeline(self) -> pipeline_pb2_grpc.PipelineStub:
        """A stub for the public API (admin token; no retries beyond UNAVAILABLE)."""
        return pipeline_pb2_grpc.PipelineStub(self.channel("orchestrator"))

    def listener_admin(self) -> listener_pb2_grpc.ListenerAdminStub:
        """A stub for the listener's admin API (admin token)."""
        return listener_pb2_grpc.ListenerAdminStub(self.channel("listener"))

    def wait_for_job(self, job_id: str, timeout_s: float = 300.0) -> pipeline_pb2.Job:
        """Wait until job ``job_id`` is finished (any terminal state); returns it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.pipeline().GetJob(pipeline_pb2.GetJobRequest(job_id=job_id), timeout=5)
            if job.state in TERMINAL_STATES:
                return job
            time.sleep(0.3)
        raise TimeoutError(self.log("orchestrator"))

    def wait_for_jobs(self, count: int, timeout_s: float = 60.0) -> list[pipeline_pb2.Job]:
        """Wait until ``count`` jobs exist and all are finished; returns them."""
        deadline = time.monotonic() + timeout_s
        terminal = TERMINAL_STATES
        jobs: list[pipeline_pb2.Job] = []
        while time.monotonic() < deadline:
            try:
                jobs = list(self.pipeline().ListJobs(pipeline_pb2.ListJobsRequest(), timeout=5).jobs)
            except grpc.RpcError:
                jobs = []
            if len(jobs) >= count and all(job.state in terminal for job in jobs):
                return jobs
            time.sleep(0.3)
        raise TimeoutError(f"jobs not finished: {jobs}\n{self.log('orchestrator')}\n{self.log('listener')}")
