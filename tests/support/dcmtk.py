"""Real DICOM peers from Debian's dcmtk: storescp (receiver) and storescu (sender)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pydicom

from tests.conftest import free_port, require_tool

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}  # dcmtk uses Nagle's algorithm otherwise


class StoreSCP:
    """``storescp`` writing every received object under ``directory`` (bit-preserving, ``+B``)."""

    def __init__(self, directory: Path, ae_title: str = "RECEIVER") -> None:
        self.directory = directory
        self.ae_title = ae_title
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def destination(self) -> str:
        """``AE@HOST:PORT`` as the orchestrator's export setting expects."""
        return f"{self.ae_title}@127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start listening (returns once the port accepts connections)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [require_tool("storescp"), "-aet", self.ae_title, "-od", str(self.directory), "+B", str(self.port)],
            env=DCMTK_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)

    def stop(self) -> None:
        """Terminate storescp."""
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)

    def received(self) -> list[pydicom.Dataset]:
        """Every object received so far."""
        return [pydicom.dcmread(p) for p in sorted(self.directory.iterdir()) if p.is_file()]


def storescu(port: int, paths: list[Path], called_ae: str = "ONCOHABITAT") -> subprocess.CompletedProcess[str]:
    """Push files/directories with dcmtk's storescu (recursive scan, only DICOM files)."""
    return subprocess.run(
        [require_tool("storescu"), "-aec", called_ae, "+sd", "+r", "127.0.0.1", str(port), *map(str, paths)],
        env=DCMTK_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
