"""A real Orthanc PACS (Debian package ``orthanc``) started on free ports with a temporary configuration."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import free_port, require_tool


class OrthancServer:
    """Orthanc with its own storage, HTTP (REST) and DICOM ports; ``modalities`` are its known peers."""

    def __init__(self, workdir: Path, modalities: dict[str, tuple[str, str, int]], aet: str = "ORTHANC") -> None:
        self.binary = require_tool("Orthanc")
        self.workdir = workdir
        self.aet = aet
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.modalities = modalities
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the REST API."""
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Write the configuration, start Orthanc and wait until its REST API answers."""
        storage = self.workdir / "orthanc-storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "oncohabitat-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [],
            "DicomCheckCalledAet": False,
            "DicomModalities": {name: list(peer) for name, peer in self.modalities.items()},
            "DicomScpTimeout": 30,
        }
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(config))
        log = (self.workdir / "orthanc.log").open("wb")
        self._process = subprocess.Popen([self.binary, str(config_path)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {(self.workdir / 'orthanc.log').read_text()[-2000:]}")
            try:
                self.get("/system")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        raise TimeoutError("Orthanc did not start")

    def stop(self) -> None:
        """Terminate Orthanc."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()

    def _request(self, method: str, path: str, body: bytes | None = None, timeout_s: float = 120.0) -> Any:
        request = urllib.request.Request(self.url + path, data=body, method=method)
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read() or b"null")

    def get(self, path: str) -> Any:
        """GET a REST resource (JSON)."""
        return self._request("GET", path)

    def post(self, path: str, body: bytes | dict[str, Any]) -> Any:
        """POST raw bytes or a JSON body."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self._request("POST", path, data)

    def upload(self, files: list[Path]) -> set[str]:
        """Upload DICOM files over REST; returns the Orthanc study ids."""
        return {self.post("/instances", f.read_bytes())["ParentStudy"] for f in files}

    def store_to(self, modality: str, resource_id: str) -> Any:
        """Ask Orthanc to C-STORE a resource (study) to a configured modality (synchronously)."""
        return self.post(f"/modalities/{modality}/store", {"Resources": [resource_id], "Synchronous": True})

    def series_modalities(self) -> list[str]:
        """Modality of every series Orthanc holds."""
        return [self.get(f"/series/{sid}")["MainDicomTags"].get("Modality", "") for sid in self.get("/series")]
