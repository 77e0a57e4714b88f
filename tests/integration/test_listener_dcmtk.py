"""Listener against dcmtk storescu: real CT, phantom DCE studies of both layouts and the real MR series are
stored, classified (phases and times), completed and handed off exactly once."""

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

from oncohabitat.dicomio.identifiers import uid_key
from oncohabitat.listener.index import StudyIndex, StudyState
from oncohabitat.listener.storage import INDEX_FILE
from oncohabitat.phantom import PhantomStudy, generate_study
from tests.conftest import PROJECT_ROOT, free_port, require_tool

pytestmark = [
    pytest.mark.integration,
    # the reference CT carries an over-long SH value; pydicom warns when reading it
    pytest.mark.filterwarnings("ignore:The value length:UserWarning"),
]

AE_TITLE = "ONCOTEST"
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


class ListenerProcess:
    """``python -m tests.support.listener_server`` in a subprocess."""

    def __init__(self, root: Path, handoff_log: Path, *extra: str, quiet_period_s: float = 0.5) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.listener_server",
                "--root",
                str(root),
                "--port",
                str(self.port),
                "--ae-title",
                AE_TITLE,
                "--quiet-period-s",
                str(quiet_period_s),
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

    def rss_kib(self) -> int:
        """Resident set size of the listener process, KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("VmRSS not found")


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


def classification_of(root: Path) -> dict[str, dict[str, object]]:
    """study_key -> stored classification JSON of every study of a stopped listener."""
    index = StudyIndex(root / INDEX_FILE)
    try:
        return {s.study_key: json.loads(s.classification or "{}") for s in index.list_studies()}
    finally:
        index.close()


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PhantomStudy]:
    base = tmp_path_factory.mktemp("phantoms")
    return {
        "per-phase": generate_study(base / "per", size="small", seed=21, layout="per-phase"),
        "multi-phase": generate_study(base / "multi", size="small", seed=22, layout="multi-phase", trigger_time=True),
    }


def assert_phases_match(classification: dict[str, object], phantom: PhantomStudy) -> None:
    assert classification["eligible"] is True and classification["layout"] == phantom.layout
    phases = classification["phases"]
    assert isinstance(phases, list)
    assert [p["time_from_pre_s"] for p in phases] == pytest.approx(list(phantom.phase_times_s))
    expected = [t - phantom.injection_time_s for t in phantom.phase_times_s]
    assert [p["time_after_injection_s"] for p in phases] == pytest.approx(expected)
    assert [p["role"] for p in phases] == ["pre-contrast"] + ["post-contrast"] * (len(expected) - 1)
    assert {p["slices"] for p in phases} == {phantom.size_xyz[2]}


def test_storescu_pushes_dce_studies_of_both_layouts_and_the_real_mr(
    phantoms: dict[str, PhantomStudy], sts_ct_dir: Path, server_dirs: tuple[Path, Path]
) -> None:
    root, log = server_dirs
    real_mr = sts_ct_dir.parent / "MR_T1"
    server = ListenerProcess(root, log)
    try:
        for directory in (phantoms["per-phase"].dicom_dir, phantoms["multi-phase"].dicom_dir, real_mr):
            push = subprocess.run(
                storescu_command(server.port, directory), capture_output=True, text=True, env=DCMTK_ENV, timeout=120
            )
            assert push.returncode == 0, push.stderr[-2000:]
        handoffs = wait_for_handoffs(log, 3)
        time.sleep(1.0)
        assert len(read_handoffs(log)) == 3  # once per study
    finally:
        server.stop()
    by_key = classification_of(root)

    for phantom in phantoms.values():
        key = uid_key(phantom.study_instance_uid)
        assert_phases_match(by_key[key], phantom)
        assert any(h["study_key"] == key and h["instances"] == sum(map(len, phantom.phase_files)) for h in handoffs)
    (mr_key,) = set(by_key) - {uid_key(p.study_instance_uid) for p in phantoms.values()}
    assert by_key[mr_key]["reason_code"] == "NO_DYNAMIC_SERIES" and by_key[mr_key]["eligible"] is False
