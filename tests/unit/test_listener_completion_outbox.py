"""Study completion after a quiet period, hand-off outbox with backoff, and restart recovery."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pydicom
import pytest
from prometheus_client import REGISTRY

from oncohabitat.dicomio.identifiers import uid_key
from oncohabitat.listener import classify as classify_module
from oncohabitat.listener import status
from oncohabitat.listener._worker import PollingWorker
from oncohabitat.listener.classify import DceStudyClassifier, StudyVerdict
from oncohabitat.listener.completion import CompletionMonitor, HandoffPolicy
from oncohabitat.listener.errors import HandoffRejectedError
from oncohabitat.listener.index import StudyIndex, StudyState
from oncohabitat.listener.outbox import Outbox
from oncohabitat.listener.storage import INDEX_FILE, InstanceStore
from oncohabitat.phantom import generate_study

QUIET_S = 0.5


class FakeClock:
    """Settable wall clock (epoch seconds)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingHandoff:
    """Hand-off that fails ``failures`` times with ConnectionError, then returns job ids."""

    def __init__(self, failures: int = 0, exc: Exception | None = None) -> None:
        self.failures = failures
        self.exc = exc or ConnectionError("orchestrator unavailable")
        self.calls: list[tuple[str, str, list[Path]]] = []
        self.reruns: list[bool] = []

    def __call__(self, study_key: str, content_digest: str, instance_paths: Sequence[Path], rerun: bool = False) -> str:
        self.calls.append((study_key, content_digest, list(instance_paths)))
        self.reruns.append(rerun)
        if self.failures > 0:
            self.failures -= 1
            raise self.exc
        return f"job-{len(self.calls)}"


class Listener:
    """Index + store on one root with a fake clock; ``reopen`` simulates a process restart."""

    def __init__(self, root: Path, clock: FakeClock) -> None:
        self.root = root
        self.clock = clock
        root.mkdir(parents=True, exist_ok=True)
        self.index = StudyIndex(root / INDEX_FILE)
        self.store = InstanceStore(root, self.index, clock=clock)

    def close(self) -> None:
        self.store.close()
        self.index.close()

    def reopen(self) -> Listener:
        self.close()
        return Listener(self.root, self.clock)

    def ingest(self, path: Path) -> str:
        result = self.store.store_part10(path.read_bytes())
        assert result.status == status.SUCCESS and result.study_key is not None
        return result.study_key


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def listener(tmp_path: Path, clock: FakeClock) -> Iterator[Listener]:
    handle = Listener(tmp_path / "root", clock)
    yield handle
    handle.close()


@pytest.fixture
def ct_files(sts_ct_dir: Path) -> list[Path]:
    return sorted((sts_ct_dir / "image").glob("*.dcm"))[:4]


def expected_digest(files: Sequence[Path], listener: Listener) -> str:
    """Independent computation of the documented content digest from the stored files."""
    pairs = []
    for path in files:
        sop_uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        record = listener.index.get_instance(sop_uid)
        assert record is not None
        pairs.append((sop_uid, hashlib.sha256(listener.store.path_of(record).read_bytes()).hexdigest()))
    text = "".join(f"{sop} {sha}\n" for sop, sha in sorted(pairs))
    return hashlib.sha256(text.encode()).hexdigest()


def test_study_completes_only_after_quiet_period(listener: Listener, clock: FakeClock, ct_files: list[Path]) -> None:
    completed: list[tuple[str, str]] = []
    monitor = CompletionMonitor(
        listener.index, quiet_period_s=QUIET_S, clock=clock, on_complete=lambda k, d: completed.append((k, d))
    )
    key = listener.ingest(ct_files[0])
    clock.advance(0.4)
    key_again = listener.ingest(ct_files[1])  # restarts the quiet period
    assert key_again == key
    clock.advance(0.4)
    assert monitor.run_once() == []
    for path in ct_files[2:]:
        listener.ingest(path)
    clock.advance(QUIET_S + 0.01)
    latency = "oncohabitat_listener_study_completion_seconds"
    count, total = (REGISTRY.get_sample_value(f"{latency}{suffix}") or 0.0 for suffix in ("_count", "_sum"))
    completions = REGISTRY.get_sample_value("oncohabitat_listener_studies_completed_total") or 0.0
    assert monitor.run_once() == [key]
    study = listener.index.get_study(key)
    assert study is not None
    assert REGISTRY.get_sample_value(f"{latency}_count") == count + 1
    # first instance to completion on the fake clock: 0.4 s + 0.4 s + the quiet period
    assert REGISTRY.get_sample_value(f"{latency}_sum") == pytest.approx(total + 0.8 + QUIET_S + 0.01)
    assert REGISTRY.get_sample_value("oncohabitat_listener_studies_completed_total") == completions + 1
    assert study.state is StudyState.COMPLETE
    assert study.instance_count == len(ct_files)
    assert study.content_digest == expected_digest(ct_files, listener)
    assert completed == [(key, study.content_digest)]
    assert monitor.run_once() == []  # completes once


def test_a_study_with_pending_instances_does_not_complete(
    listener: Listener, clock: FakeClock, ct_files: list[Path]
) -> None:
    pending: set[str] = set()
    monitor = CompletionMonitor(listener.index, quiet_period_s=QUIET_S, clock=clock, has_pending=pending.__contains__)
    key = listener.ingest(ct_files[0])
    pending.add(key)  # acknowledged instances of the study are still being materialised
    clock.advance(QUIET_S * 10)
    assert monitor.run_once() == []
    study = listener.index.get_study(key)
    assert study is not None and study.state is StudyState.RECEIVING
    pending.clear()
    assert monitor.run_once() == [key]


def test_new_instance_reopens_a_completed_study(listener: Listener, clock: FakeClock, ct_files: list[Path]) -> None:
    monitor = CompletionMonitor(listener.index, quiet_period_s=QUIET_S, clock=clock)
    key = listener.ingest(ct_files[0])
    clock.advance(1.0)
    monitor.run_once()
    first = listener.index.get_study(key)
    assert first is not None and first.state is StudyState.COMPLETE
    listener.ingest(ct_files[1])
    reopened = listener.index.get_study(key)
    assert reopened is not None
    assert reopened.state is StudyState.RECEIVING and reopened.content_digest is None
    assert reopened.reason.startswith("reopened")
    clock.advance(1.0)
    assert monitor.run_once() == [key]
    again = listener.index.get_study(key)
    assert again is not None and again.content_digest not in (None, first.content_digest)


def test_identical_resend_does_not_reopen_a_handed_off_study(
    listener: Listener, clock: FakeClock, ct_files: list[Path]
) -> None:
    handoff = RecordingHandoff()
    monitor = CompletionMonitor(listener.index, quiet_period_s=QUIET_S, clock=clock)
    outbox = Outbox(listener.index, listener.root, handoff, clock=clock)
    key = listener.ingest(ct_files[0])
    clock.advance(1.0)
    monitor.run_once()
    assert outbox.run_once() == 1
    listener.ingest(ct_files[0])
    study = listener.index.get_study(key)
    assert study is not None and study.state is StudyState.HANDED_OFF and study.job_id == "job-1"


def test_completion_thread_completes_in_real_time(tmp_path: Path, ct_files: list[Path]) -> None:
    """The thread completes the study by itself, not before the quiet period after its instance.

    Waits on the state with a generous deadline (a busy machine may delay the thread by seconds) and
    checks the times the index recorded, not how long the test waited.
    """
    index = StudyIndex(tmp_path / INDEX_FILE)
    store = InstanceStore(tmp_path, index)
    monitor = CompletionMonitor(index, quiet_period_s=QUIET_S, poll_interval_s=0.05)
    monitor.start()
    try:
        key = store.store_part10(ct_files[0].read_bytes()).study_key
        assert key is not None
        deadline = time.monotonic() + 60.0
        study = index.get_study(key)
        while study is not None and study.state is StudyState.RECEIVING and time.monotonic() < deadline:
            time.sleep(0.02)
            study = index.get_study(key)
        assert study is not None and study.state is StudyState.COMPLETE
        assert study.completed_at is not None
        assert study.completed_at - study.last_received_at >= QUIET_S
    finally:
        monitor.stop()
        store.close()
        index.close()


def test_outbox_retries_with_capped_exponential_backoff(
    listener: Listener, clock: FakeClock, ct_files: list[Path]
) -> None:
    handoff = RecordingHandoff(failures=3)
    monitor = CompletionMonitor(listener.index, quiet_period_s=QUIET_S, clock=clock)
    outbox = Outbox(listener.index, listener.root, handoff, base_backoff_s=2.0, max_backoff_s=5.0, clock=clock)
    key = ""
    for path in ct_files:
        key = listener.ingest(path)
    clock.advance(1.0)
    monitor.run_once()
    digest = listener.index.get_study(key).content_digest  # type: ignore[union-attr]

    delays = []
    for _ in range(3):
        assert outbox.run_once() == 0
        study = listener.index.get_study(key)
        assert study is not None and study.state is StudyState.COMPLETE
        assert study.next_handoff_at is not None
        delays.append(round(study.next_handoff_at - clock.now, 6))
        calls = len(handoff.calls)
        assert outbox.run_once() == 0 and len(handoff.calls) == calls  # not due yet
        clock.advance(delays[-1])
    assert delays == [2.0, 4.0, 5.0]
    assert outbox.run_once() == 1
    study = listener.index.get_study(key)
    assert study is not None
    assert (study.state, study.job_id, study.handoff_attempts) == (StudyState.HANDED_OFF, "job-4", 3)
    assert len(handoff.calls) == 4
    study_key, sent_digest, paths = handoff.calls[-1]
    assert (study_key, sent_digest) == (key, digest)
    assert len(paths) == len(ct_files) and all(p.is_file() and p.is_relative_to(listener.root) for p in paths)
    assert outbox.run_once() == 0 and len(handoff.calls) == 4


def test_rejected_handoff_is_not_retried(listener: Listener, clock: FakeClock, ct_files: list[Path]) -> None:
    handoff = RecordingHandoff(failures=1, exc=HandoffRejectedError("no eligible model"))
    outbox = Outbox(listener.index, listener.root, handoff, clock=clock)
    key = listener.ingest(ct_files[0])
    clock.advance(1.0)
    CompletionMonitor(listener.index, quiet_period_s=QUIET_S, clock=clock).run_once()
    outbox.run_once()
    clock.advance(1000.0)
    outbox.run_once()
    study = listener.index.get_study(key)
    assert study is not None and study.state is StudyState.REJECTED
    assert "no eligible model" in study.reason
    assert len(handoff.calls) == 1
    assert outbox.resubmit(key) == "job-2"
    assert handoff.reruns == [False, True]  # the automatic hand-off, then the operator's re-run
    study = listener.index.get_study(key)
    assert study is not None and study.state is StudyState.HANDED_OFF and study.job_id == "job-2"


def test_restart_completes_and_hands_off_from_the_database(
    listener: Listener, clock: FakeClock, ct_files: list[Path]
) -> None:
    key = ""
    for path in ct_files:
        key = listener.ingest(path)
    restarted = listener.reopen()  # "crash" while RECEIVING
    try:
        clock.advance(60.0)  # the quiet period elapsed while the listener was down
        monitor = CompletionMonitor(restarted.index, quiet_period_s=QUIET_S, clock=clock)
        assert monitor.run_once() == [key]
        failing = Outbox(restarted.index, restarted.root, RecordingHandoff(failures=1), clock=clock)
        assert failing.run_once() == 0
        restarted = restarted.reopen()  # restart with a pending, failed hand-off
        handoff = RecordingHandoff()
        outbox = Outbox(restarted.index, restarted.root, handoff, base_backoff_s=1.0, clock=clock)
        assert outbox.run_once() == 0 and handoff.calls == []  # backoff survives the restart
        clock.advance(1.0)
        assert outbox.run_once() == 1
        study = restarted.index.get_study(key)
        assert study is not None and study.state is StudyState.HANDED_OFF
        assert study.content_digest == expected_digest(ct_files, restarted)
        assert [call[0] for call in handoff.calls] == [key]
    finally:
        restarted.close()


def test_downtime_is_not_quiet_time_a_push_cut_off_by_a_restart_completes_once(
    listener: Listener, clock: FakeClock, ct_files: list[Path]
) -> None:
    """A restart slower than the quiet period must not complete (and hand off) the half-received study
    at once: the resumed push would make it a second job. Quiet time counts from the start."""
    key = listener.ingest(ct_files[0])
    restarted = listener.reopen()  # the push is cut off by a crash
    try:
        clock.advance(60.0)  # down for a minute: longer than the quiet period
        monitor = CompletionMonitor(restarted.index, quiet_period_s=QUIET_S, clock=clock, poll_interval_s=3600)
        monitor.start()  # its first check runs at once: nothing is due
        monitor.stop()
        assert monitor.run_once() == []
        clock.advance(QUIET_S / 2)
        for path in ct_files[1:]:  # the sender resumes within the quiet period after the start
            restarted.ingest(path)
        clock.advance(QUIET_S / 2 + 0.01)
        assert monitor.run_once() == []  # quiet since the start, not since the last instance
        clock.advance(QUIET_S / 2)
        assert monitor.run_once() == [key]
        study = restarted.index.get_study(key)
        assert study is not None and study.state is StudyState.COMPLETE
        assert study.instance_count == len(ct_files)
        assert study.content_digest == expected_digest(ct_files, restarted)
    finally:
        restarted.close()


def test_after_a_restart_a_study_left_quiet_completes_one_quiet_period_after_the_start(
    listener: Listener, clock: FakeClock, ct_files: list[Path]
) -> None:
    key = listener.ingest(ct_files[0])
    restarted = listener.reopen()
    try:
        clock.advance(60.0)
        monitor = CompletionMonitor(restarted.index, quiet_period_s=QUIET_S, clock=clock, poll_interval_s=3600)
        monitor.start()
        monitor.stop()
        clock.advance(QUIET_S - 0.01)
        assert monitor.run_once() == []
        clock.advance(0.02)
        assert monitor.run_once() == [key]
    finally:
        restarted.close()


def test_study_key_is_an_opaque_hash(listener: Listener, ct_files: list[Path]) -> None:
    key = listener.ingest(ct_files[0])
    uid = str(pydicom.dcmread(ct_files[0], stop_before_pixels=True).StudyInstanceUID)
    assert key == hashlib.sha256(uid.encode()).hexdigest()[:32] == uid_key(uid)


def test_polling_worker_survives_a_failing_step() -> None:
    calls: list[int] = []

    def step() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("transient")

    worker = PollingWorker("test-worker", step, 0.01)
    worker.start()
    try:
        deadline = time.monotonic() + 5.0
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(calls) >= 3 and worker.running
    finally:
        worker.stop()
    assert not worker.running


def test_a_failing_study_does_not_stall_the_others(listener: Listener, clock: FakeClock, ct_files: list[Path]) -> None:
    """One study's completion raising unexpectedly: the others complete; it is retried at the next poll."""
    first = listener.ingest(ct_files[0])
    mr = generate_study(listener.root.parent / "mr", size="small", seed=5, layout="per-phase")
    second = listener.ingest(mr.phase_files[0][0])
    broken = {first}

    def classifier(study_key: str) -> StudyVerdict:
        if study_key in broken:
            raise NotImplementedError("a header value pydicom cannot decode")
        return StudyVerdict(True, "ELIGIBLE", "", "{}")

    monitor = CompletionMonitor(listener.index, quiet_period_s=QUIET_S, clock=clock, classifier=classifier)
    clock.advance(QUIET_S + 0.01)
    assert monitor.run_once() == [second]
    study = listener.index.get_study(first)
    assert study is not None and study.state is StudyState.RECEIVING
    broken.clear()
    assert monitor.run_once() == [first]


def test_a_classification_that_raises_ends_the_study_with_a_reason(
    listener: Listener, clock: FakeClock, ct_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def cannot_decode(*_args: object) -> None:
        raise NotImplementedError("Unknown Value Representation")

    monkeypatch.setattr(classify_module, "classify_study_files", cannot_decode)
    key = listener.ingest(ct_files[0])
    classifier = DceStudyClassifier(listener.index, listener.root)
    monitor = CompletionMonitor(
        listener.index,
        quiet_period_s=QUIET_S,
        clock=clock,
        classifier=classifier,
        handoff_policy=HandoffPolicy.ELIGIBLE,
    )
    clock.advance(QUIET_S + 0.01)
    assert monitor.run_once() == [key]
    study = listener.index.get_study(key)
    assert study is not None and study.state is StudyState.REJECTED
    assert study.eligible is False and "CLASSIFICATION_FAILED" in (study.reason or "")


def test_a_study_that_keeps_failing_is_logged_once_and_counted_every_time(
    listener: Listener, clock: FakeClock, ct_files: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    key = listener.ingest(ct_files[0])

    def broken(_study_key: str) -> StudyVerdict:
        raise RuntimeError("classifier bug")

    monitor = CompletionMonitor(listener.index, quiet_period_s=QUIET_S, clock=clock, classifier=broken)
    clock.advance(QUIET_S + 0.01)
    errors = REGISTRY.get_sample_value("oncohabitat_listener_completion_errors_total") or 0.0
    with caplog.at_level(logging.ERROR, logger="oncohabitat.listener.completion"):
        for _ in range(3):
            assert monitor.run_once() == []
    assert REGISTRY.get_sample_value("oncohabitat_listener_completion_errors_total") == errors + 3
    assert [r.getMessage() for r in caplog.records] == [
        f"study {key}: completion failed (RuntimeError); retried at every poll"
    ]


def test_a_resubmission_is_not_overtaken_by_the_poller(
    listener: Listener, clock: FakeClock, ct_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The background poller, running just after ResubmitStudy requeued the study, cannot hand it off first
    (as an ordinary hand-off, which would find the finished job instead of re-running it)."""
    key = listener.ingest(ct_files[0])
    clock.advance(QUIET_S + 0.01)
    CompletionMonitor(listener.index, quiet_period_s=QUIET_S, clock=clock).run_once()
    calls: list[bool] = []

    def handoff(_key: str, digest: str, _paths: Sequence[Path], rerun: bool = False) -> str:
        calls.append(rerun)
        return f"job-{len(calls)}"

    outbox = Outbox(listener.index, listener.root, handoff, clock=clock)
    outbox.run_once()  # the ordinary hand-off
    requeue = listener.index.requeue
    pollers: list[threading.Thread] = []

    def requeue_then_poll(study_key: str, now: float) -> object:
        result = requeue(study_key, now)
        poller = threading.Thread(target=outbox.run_once)  # the poller wakes right here
        poller.start()
        poller.join(0.3)
        pollers.append(poller)
        return result

    monkeypatch.setattr(listener.index, "requeue", requeue_then_poll)
    assert outbox.resubmit(key) == "job-2"
    pollers[0].join(10)
    assert calls == [False, True]  # the re-run was the only hand-off after the requeue
