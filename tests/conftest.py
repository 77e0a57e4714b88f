"""Shared pytest fixtures: paths to the project's reference data and small helpers."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``tests/data`` (real DICOM and reference feature values, copied with their licences; see its README)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sts_ct_dir(shared_data: Path) -> Path:
    """Real soft-tissue-sarcoma CT series (60 slices) from the IBSI validation set."""
    return shared_data / "ibsi" / "ibsi_validation" / "dicom" / "STS_001" / "CT"


_HANDED_OUT_PORTS: set[int] = set()
_HANDED_OUT_LOCK = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed out before.

    The kernel may give a just-released port again, so ports picked in a row (a whole platform's) could
    repeat (seen once: segmentation's gRPC port equal to features' metrics port); those are skipped.
    """
    with _HANDED_OUT_LOCK:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in _HANDED_OUT_PORTS:
                _HANDED_OUT_PORTS.add(port)
                return port


def require_tool(name: str) -> str:
    """Path of an external (Debian) tool the test needs; fails (never skips) when it is missing.

    The virtualenv's own bin folder is skipped: pynetdicom installs console scripts named like dcmtk's tools
    (storescu, storescp, ...), and the tests mean the real dcmtk peers.
    """
    venv_bin = Path(sys.prefix) / "bin"
    search = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != venv_bin.resolve()
    )
    path = shutil.which(name, path=search)
    if path is None:
        pytest.fail(f"{name} not found on PATH: the test command installs it (scripts/test.sh)")
    return path
