"""README command 1 in miniature: `oncohabitat up` starts all six services, `status` sees them SERVING,
SIGTERM stops everything within 5 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oncohabitat.common.health_client import check_health
from oncohabitat.common.topology import SERVICES
from tests.conftest import free_port

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "oncohabitat.cli"]


def _port_config(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    env: dict[str, str] = {}
    for spec in SERVICES:
        env[f"{spec.env_prefix}PORT"] = str(free_port())
        env[f"{spec.env_prefix}METRICS_PORT"] = str(free_port())
    env["ONCOHABITAT_LISTENER_DICOM_PORT"] = str(free_port())
    config = tmp_path / "ports.env"
    config.write_text("# test ports\n" + "".join(f"{k}={v}\n" for k, v in env.items()))
    return config, env


def test_up_status_and_sigterm(tmp_path: Path) -> None:
    config, ports = _port_config(tmp_path)
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [*CLI, "up", "--data-dir", str(tmp_path / "data"), "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 90
        while b"All services SERVING" not in (tmp_path / "up.log").read_bytes():
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, "platform did not start within 90 s"
            time.sleep(0.3)
        status = subprocess.run(
            [*CLI, "status"],
            env={**os.environ, **ports, "COLUMNS": "200", "ONCOHABITAT_DATA_DIR": str(tmp_path / "data")},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        for spec in SERVICES:
            assert f"{spec.name}" in status.stdout
        assert status.stdout.count("SERVING") == len(SERVICES) == 6
        assert "NOT_SERVING" not in status.stdout
        started = time.monotonic()
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        if up.poll() is None:
            up.kill()
        log.close()
    assert up.returncode == 0, (tmp_path / "up.log").read_text()
    assert elapsed < 5.0, f"stop took {elapsed:.2f} s"
    for spec in SERVICES:
        assert check_health(f"127.0.0.1:{ports[spec.env_prefix + 'PORT']}", timeout_s=0.5) == "UNREACHABLE"
    assert (tmp_path / "data" / "logs" / "scoring.log").stat().st_size > 0


def test_status_fails_when_nothing_runs(tmp_path: Path) -> None:
    _, ports = _port_config(tmp_path)
    status = subprocess.run(
        [*CLI, "status", "--timeout-s", "0.5"], env={**os.environ, **ports}, capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 1
    assert "UNREACHABLE" in status.stdout


def test_service_refuses_invalid_configuration(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "oncohabitat.regions"],
        env={**os.environ, "ONCOHABITAT_REGIONS_PORT": "not-a-port", "ONCOHABITAT_REGIONS_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "invalid configuration" in result.stderr and "port" in result.stderr


def test_version() -> None:
    result = subprocess.run([*CLI, "version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.startswith("oncohabitat ")
