"""``oncohabitat up``: every service as its own process on localhost, stopped together.

Each child gets the shared environment (one data directory, addresses of its peers) plus anything from an
optional env-style config file; the peers' addresses follow their ports (:func:`peer_addresses`). A child
that dies is restarted by :mod:`oncohabitat.supervisor`. On SIGINT/SIGTERM every child receives SIGTERM and
has ``grace_s`` seconds to stop before it is killed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from oncohabitat.bundles.registry import default_bundle_root
from oncohabitat.common.health_client import check_health
from oncohabitat.common.topology import DEFAULT_DICOM_PORT, SERVICES, ServiceSpec
from oncohabitat.common.topology import spec as service_spec

logger = logging.getLogger(__name__)


@dataclass
class RunningService:
    """A started child process and where it listens."""

    spec: ServiceSpec
    process: subprocess.Popen[bytes]
    address: str
    metrics_address: str


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, optional quotes) -> dict. Unknown keys are passed through."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{path}:{number}: expected KEY=VALUE")
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def platform_environment(data_dir: Path, host: str, overrides: Mapping[str, str]) -> dict[str, str]:
    """Environment shared by every child: data directory, bind host, peer addresses, model bundles."""
    env = dict(os.environ)
    for bundle_user in ("SCORING", "SEGMENTATION", "REGIONS"):  # the orchestrator asks scoring for its models
        env.setdefault(f"ONCOHABITAT_{bundle_user}_MODELS_DIR", str(default_bundle_root()))
    env.setdefault("ONCOHABITAT_DATA_DIR", str(data_dir))
    for service in SERVICES:
        env.setdefault(f"{service.env_prefix}DATA_DIR", str(data_dir))
        env.setdefault(f"{service.env_prefix}HOST", host)
        # in-flight RPCs get 3 s, so the whole platform stops within ``up``'s 4 s budget
        env.setdefault(f"{service.env_prefix}GRACE_PERIOD_S", "3")
    env.update(overrides)
    env.update(peer_addresses(env))  # the ports in --config are also where the services reach each other
    rules = env.get("ONCOHABITAT_LISTENER_DCE_RULES_FILE")
    if rules:  # the orchestrator assembles the phases the listener classified: same rules unless set apart
        env.setdefault("ONCOHABITAT_ORCHESTRATOR_DCE_RULES_FILE", rules)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# (client service, setting naming its peer's address, peer service)
PEERS: tuple[tuple[str, str, str], ...] = (
    ("orchestrator", "SEGMENTATION_ADDRESS", "segmentation"),
    ("orchestrator", "REGIONS_ADDRESS", "regions"),
    ("orchestrator", "FEATURES_ADDRESS", "features"),
    ("orchestrator", "SCORING_ADDRESS", "scoring"),
    ("listener", "ORCHESTRATOR_ADDRESS", "orchestrator"),
)


def peer_addresses(env: Mapping[str, str]) -> dict[str, str]:
    """Each service's address settings for its peers, from the peers' HOST/PORT in ``env``.

    An address set explicitly (environment or ``--config``) is kept; a peer bound to every interface
    (``0.0.0.0`` / ``::``) is reached over loopback.
    """
    addresses: dict[str, str] = {}
    for client, setting, peer in PEERS:
        key = f"{service_spec(client).env_prefix}{setting}"
        if key in env:
            continue
        peer_spec = service_spec(peer)
        host = env.get(f"{peer_spec.env_prefix}HOST", "127.0.0.1")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        port = _port_of(peer_spec, env, "PORT", peer_spec.default_port)
        addresses[key] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return addresses


def _port_of(spec: ServiceSpec, env: Mapping[str, str], key: str, default: int) -> int:
    return int(env.get(f"{spec.env_prefix}{key}", default))


def start_services(
    env: Mapping[str, str], log_dir: Path, services: Sequence[ServiceSpec] = SERVICES
) -> list[RunningService]:
    """Start each service (``python -m <module>``), logs to ``log_dir/<name>.log``."""
    return [start_service(spec, env, log_dir) for spec in services]


def start_service(spec: ServiceSpec, env: Mapping[str, str], log_dir: Path) -> RunningService:
    """Start one service (``python -m <module>``), appending to ``log_dir/<name>.log`` (also for a restart)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    host = env.get(f"{spec.env_prefix}HOST", "127.0.0.1")
    port = _port_of(spec, env, "PORT", spec.default_port)
    metrics_port = _port_of(spec, env, "METRICS_PORT", spec.default_metrics_port)
    log = (log_dir / f"{spec.name}.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", spec.module],
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    return RunningService(spec, process, f"{host}:{port}", f"http://{host}:{metrics_port}/metrics")


def wait_until_serving(running: Sequence[RunningService], timeout_s: float = 60.0) -> dict[str, str]:
    """Poll health until every service is SERVING, one exits, or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    states = {r.spec.name: "STARTING" for r in running}
    while time.monotonic() < deadline:
        for service in running:
            if service.process.poll() is not None:
                states[service.spec.name] = f"EXITED({service.process.returncode})"
            elif states[service.spec.name] != "SERVING":
                states[service.spec.name] = check_health(service.address, timeout_s=1.0)
        if all(s == "SERVING" or s.startswith("EXITED") for s in states.values()):
            break
        time.sleep(0.2)
    return states


def stop_services(running: Sequence[RunningService], grace_s: float = 4.0) -> dict[str, int | None]:
    """SIGTERM every child, wait up to ``grace_s`` s in total, SIGKILL the rest. Returns exit codes."""
    for service in running:
        if service.process.poll() is None:
            service.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for service in running:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            service.process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop within %.1f s: killing it", service.spec.name, grace_s)
            service.process.kill()
            service.process.wait()
    return {s.spec.name: s.process.returncode for s in running}


def dicom_port(env: Mapping[str, str]) -> int:
    """The listener's DICOM port in this environment."""
    return int(env.get("ONCOHABITAT_LISTENER_DICOM_PORT", DEFAULT_DICOM_PORT))
