"""Shared pytest fixtures: paths to the project's reference data and small helpers."""

from __future__ import annotations

import os
import shutil
import socket
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

    Python console scripts are skipped: pynetdicom installs some named like dcmtk's tools (storescu,
    storescp, ...) in every virtualenv that has it, and the tests mean the real dcmtk peers.
    """
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        path = shutil.which(name, path=folder) if folder else None
        if path is not None and not _is_python_script(Path(path)):
            return path
    pytest.fail(f"{name} not found on PATH: the test command installs it (scripts/test.sh)")


def _is_python_script(path: Path) -> bool:
    """True for a script whose ``#!`` line names a Python interpreter."""
    with path.open("rb") as handle:
        first = handle.readline(256)
    return first.startswith(b"#!") and b"python" in first
