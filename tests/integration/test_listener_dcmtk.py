"""Listener against dcmtk: storescu push -> stored, complete, handed off once; kill -9 durability."""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from oncohabitat.listener.index import StudyIndex, StudyState
from oncohabitat.listener.storage import INDEX_FILE, TEMP_SUFFIX
from tests.conftest import PROJECT_ROOT, free_port, require_tool

pytestmark = [
    pytest.mark.integration,
    # the reference CT carries an over-long SH value; pydicom warns when reading it
    pytest.mark.filterwarnings("ignore:The value length:UserWarning"),
]

AE_TITLE = "ONCOTEST"
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


class ListenerProcess:
    """``python -m oncohabitat.listener.testserver`` in a subprocess."""

    def __init__(self, root: Path, handoff_log: Path, *extra: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "oncohabitat.listener.testserver",
                "--root",
                str(root),
                "--port",
                str(self.port),
                "--ae-title",
                AE_TITLE,
                "--quiet-period-s",
                "0.5",
                "--handoff-log",
                str(handoff_log),
                *extra,
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=PROJECT_ROOT,
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 30.0)
        line = self.process.stdout.readline() if ready else ""
        if line.strip() != f"READY {self.port}":
            self.process.kill()
            pytest.fail(f"test listener did not start (got {line!r})")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        assert self.process.stdout is not None
        self.process.stdout.close()

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.fixture
def sources(sts_ct_dir: Path) -> dict[str, Path]:
    """SOP Instance UID -> source file, for the CT series and its RTSTRUCT."""
    files = [*sorted((sts_ct_dir / "image").glob("*.dcm")), sts_ct_dir / "mask" / "RS.dcm"]
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in files}


def storescu_command(port: int, directory: Path) -> list[str]:
    return [require_tool("storescu"), "-v", "-aec", AE_TITLE, "+sd", "+r", "127.0.0.1", str(port), str(directory)]


def acknowledged_files(lines: list[str]) -> list[Path]:
    """Files storescu sent and got a Success response for, from its verbose output."""
    acked: list[Path] = []
    current: Path | None = None
    for line in lines:
        if "Sending file: " in line:
            current = Path(line.split("Sending file: ", 1)[1].strip())
        elif "Received Store Response (Success)" in line and current is not None:
            acked.append(current)
            current = None
    return acked


def read_handoffs(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line]


def wait_for_handoffs(log: Path, count: int, timeout_s: float = 15.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = read_handoffs(log)
        if len(lines) >= count:
            return lines
        time.sleep(0.05)
    pytest.fail(f"expected {count} hand-off(s), got {len(read_handoffs(log))}")


def assert_stored_like_source(root: Path, index: StudyIndex, sop_uid: str, source: Path) -> None:
    """Indexed, bytes on disk match the indexed SHA-256, data set equal to the source's.

    dcmtk's storescu re-encodes sequences with explicit lengths, so the received bytes differ
    from the source file's; the data set content and the pixel data bytes are identical.
    """
    record = index.get_instance(sop_uid)
    assert record is not None, "acknowledged instance missing from the index"
    data = (root / record.path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == record.sha256
    stored = pydicom.dcmread(root / record.path)
    original = pydicom.dcmread(source)
    assert stored == original  # element-by-element equality of the data sets (file meta excluded)
    if "PixelData" in original:
        assert hashlib.sha256(stored.PixelData).digest() == hashlib.sha256(original.PixelData).digest()


@pytest.fixture
def server_dirs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    yield tmp_path / "root", tmp_path / "handoffs.jsonl"


def test_storescu_push_is_stored_completed_and_handed_off_once(
    sts_ct_dir: Path, sources: dict[str, Path], server_dirs: tuple[Path, Path]
) -> None:
    root, log = server_dirs
    server = ListenerProcess(root, log, "--fail-handoffs", "2")  # orchestrator down twice
    try:
        push = subprocess.run(
            storescu_command(server.port, sts_ct_dir),
            capture_output=True,
            text=True,
            env=DCMTK_ENV,
            timeout=120,
        )
        assert push.returncode == 0, push.stderr[-2000:]
        acked = acknowledged_files((push.stdout + push.stderr).splitlines())
        assert sorted(acked) == sorted(sources.values())
        (handoff,) = wait_for_handoffs(log, 1)
        time.sleep(1.0)  # two more quiet periods: no second hand-off
        assert len(read_handoffs(log)) == 1
    finally:
        server.stop()
    index = StudyIndex(root / INDEX_FILE)
    try:
        (study,) = index.list_studies()
        assert study.state is StudyState.HANDED_OFF
        assert study.instance_count == len(sources)
        assert study.handoff_attempts == 2  # failed attempts before the successful one
        assert handoff == {
            "study_key": study.study_key,
            "content_digest": study.content_digest,
            "instances": len(sources),
            "job_id": study.job_id,
        }
        for sop_uid, source in sources.items():
            assert_stored_like_source(root, index, sop_uid, source)
        modalities = {record.modality for record in index.instances(study.study_key)}
        assert modalities == {"CT", "RTSTRUCT"}
    finally:
        index.close()


def test_kill9_mid_push_loses_no_acknowledged_instance(
    sts_ct_dir: Path, sources: dict[str, Path], server_dirs: tuple[Path, Path]
) -> None:
    root, log = server_dirs
    kill_after = 15
    server = ListenerProcess(root, log, "--store-delay-s", "0.02")
    push = subprocess.Popen(
        storescu_command(server.port, sts_ct_dir / "image"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=DCMTK_ENV,
    )
    assert push.stdout is not None
    lines: list[str] = []
    try:
        for line in push.stdout:
            lines.append(line)
            if server.process.poll() is None and len(acknowledged_files(lines)) >= kill_after:
                server.kill9()
        push.wait(timeout=60)
    finally:
        if push.poll() is None:
            push.kill()
        server.stop()
    acked = acknowledged_files(lines)
    n_images = len(list((sts_ct_dir / "image").glob("*.dcm")))
    assert kill_after <= len(acked) < n_images, "the kill must interrupt the push"
    assert push.returncode != 0

    index = StudyIndex(root / INDEX_FILE)  # recovers the WAL left by the killed process
    try:
        by_path = {path: sop for sop, path in sources.items()}
        for path in acked:
            assert_stored_like_source(root, index, by_path[path], path)
    finally:
        index.close()

    # a crash mid-write leaves a temporary file; plant one in case the kill missed that window
    instance_dirs = [p for p in (root / "instances").glob("*/*") if p.is_dir()]
    planted = instance_dirs[0] / f"{'0' * 32}.dcm.deadbeef{TEMP_SUFFIX}"
    planted.write_bytes(b"partial write")

    restarted = ListenerProcess(root, log)
    try:
        assert list(root.rglob(f"*{TEMP_SUFFIX}")) == []
        push_again = subprocess.run(
            storescu_command(restarted.port, sts_ct_dir / "image"),
            capture_output=True,
            text=True,
            env=DCMTK_ENV,
            timeout=120,
        )
        assert push_again.returncode == 0, push_again.stderr[-2000:]
        handoffs = wait_for_handoffs(log, 1)
    finally:
        restarted.stop()
    assert len(handoffs) == 1 and handoffs[0]["instances"] == n_images
    index = StudyIndex(root / INDEX_FILE)
    try:
        (study,) = index.list_studies()
        assert study.instance_count == n_images and study.conflicts == 0
        assert study.state is StudyState.HANDED_OFF
    finally:
        index.close()
