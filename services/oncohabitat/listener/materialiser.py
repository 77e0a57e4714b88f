"""Turns journaled instances into Part-10 files and index rows, off the reply path; checkpoints the journal.

An association thread appends a received instance to the :class:`~.journal.IntakeJournal`
(durable) and answers success, then hands its location and index record to
:meth:`Materialiser.submit`. A worker *process* (:mod:`.materialiser_worker`) reads the entries
back, writes the files and commits their index rows in batches; a receiver thread here applies
its reports. A separate process because that work (inode allocation in the kernel, SQLite,
Python) would otherwise hold the GIL while an association waits for its reply (measured here:
~1,000 instead of ~1,250 instances/s on one association before this split).

Until its row is committed an instance is *pending*: the store consults :meth:`pending` for
duplicates and completion waits while a study has pending instances (:meth:`has_pending`).

Intake first: while associations keep submitting, instances are held back (up to ``defer_bytes`` of
entries) and sent to the worker once intake pauses for ``defer_idle_s`` or the backlog reaches the
bound; a sustained push beyond the bound materialises concurrently. The worker's CPU then does not
compete with the reply path during a burst (measured here: 1,443-1,523 instead of 1,329-1,343
instances/s on one association for a 57 MB push), and PACS traffic comes in bursts (series by
series). The instances are durable in the journal meanwhile; only their files and rows wait.

Checkpoint: one file-system sync (the worker's files, their directories and the index WAL
together), then the journal learns through which sequence everything is materialised durably,
so that segment space can be reused. It runs when a writer waits for journal space, after
``checkpoint_bytes`` of materialised entries, after ``idle_checkpoint_s`` without new reports, and
at :meth:`stop`. If the worker dies it is restarted and every pending instance is sent again
(materialising is idempotent: an indexed instance is reported ``IDENTICAL``, its file untouched).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from oncohabitat.common.blobstore import sync_filesystem
from oncohabitat.listener import metrics
from oncohabitat.listener.index import AddOutcome, AddResult, InstanceRecord, StudyState
from oncohabitat.listener.journal import IntakeJournal, JournalLocation
from oncohabitat.listener.materialiser_worker import DoneItem, WorkerConfig, WorkItem

_LOG = logging.getLogger(__name__)
_POLL_S = 0.02
#: Locations sent to the worker in one message at most (a partial batch goes at the next poll, <= _POLL_S).
_SEND_BATCH = 32
_PIPE_BYTES = 1024 * 1024
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


@dataclass(frozen=True)
class PendingInstance:
    """An acknowledged instance whose file and index row are not written yet."""

    location: JournalLocation
    record: InstanceRecord
    study_uid: str


#: Receives each materialised instance with its index outcome.
ResultCallback = Callable[[PendingInstance, AddResult], None]


def _result(item: DoneItem) -> AddResult:
    _sequence, outcome, reopened_from, held_in = item
    return AddResult(
        AddOutcome(outcome),
        StudyState(reopened_from) if reopened_from else None,
        StudyState(held_in) if held_in else None,
    )


class Materialiser:
    """Worker process + receiver thread (see module doc).

    Args:
        journal: the intake journal the instances were appended to.
        root: store root (its file system is synced at checkpoints).
        config: what the worker needs (paths, index settings, batch size).
        on_result: called per materialised instance with its index outcome (late arrivals).
        sync: sync the file system before each checkpoint (False with a non-syncing journal).
        checkpoint_bytes: checkpoint after this many bytes of materialised entries.
        defer_bytes: most bytes of entries held back while intake is busy (0 = send at once).
        defer_idle_s: intake pause after which held-back entries are sent, s.
        idle_checkpoint_s: checkpoint after this long without reports, s.
        restart_backoff_s: wait before restarting a worker that died, s.
        start_timeout_s: longest wait for a new worker to report ready, s.
    """

    def __init__(
        self,
        journal: IntakeJournal,
        root: Path,
        config: WorkerConfig,
        on_result: ResultCallback,
        *,
        sync: bool = True,
        checkpoint_bytes: int = 16 * 1024 * 1024,
        defer_bytes: int = 64 * 1024 * 1024,
        defer_idle_s: float = 0.05,
        idle_checkpoint_s: float = 1.0,
        restart_backoff_s: float = 1.0,
        start_timeout_s: float = 60.0,
    ) -> None:
        self._journal = journal
        self._root = root
        self._config = config
        self._on_result = on_result
        self._sync = sync
        self._checkpoint_bytes = checkpoint_bytes
        self._defer_bytes = defer_bytes
        self._defer_idle_s = defer_idle_s
        self._idle_checkpoint_s = idle_checkpoint_s
        self._restart_backoff_s = restart_backoff_s
        self._start_timeout_s = start_timeout_s
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._checkpoint_lock = threading.Lock()
        self._by_sequence: dict[int, PendingInstance] = {}
        self._by_sop: dict[str, PendingInstance] = {}
        self._pending_studies: dict[str, int] = {}
        self._done: set[int] = set()
        self._materialised_through = journal.last_sequence
        self._bytes_since_checkpoint = 0
        self._stopping = False
        self._process: subprocess.Popen[bytes] | None = None
        self._to_worker: Connection | None = None
        self._from_worker: Connection | None = None
        self._receiver: threading.Thread | None = None
        self._outgoing: list[WorkItem] = []
        self._outgoing_bytes = 0
        self._last_submit = 0.0

    # ---- association side ------------------------------------------------------------------

    def submit(self, item: PendingInstance) -> None:
        """Queue a journaled instance; it is pending from now until its index row is committed."""
        with self._cond:
            self._by_sequence[item.location.sequence] = item
            self._by_sop[item.record.sop_uid] = item
            key = item.record.study_key
            self._pending_studies[key] = self._pending_studies.get(key, 0) + 1
            metrics.JOURNAL_PENDING.set(len(self._by_sequence))
            self._outgoing.append((item.location, item.record, item.study_uid))
            self._outgoing_bytes += item.location.size
            self._last_submit = time.monotonic()
            full = len(self._outgoing) >= _SEND_BATCH and self._outgoing_bytes >= self._defer_bytes
        if full:
            self._send_outgoing()

    def skip(self, sequence: int) -> None:
        """A journaled entry that will not be materialised (a duplicate): the checkpoint may pass it."""
        with self._cond:
            self._done.add(sequence)
            self._advance_mark()

    def pending(self, sop_uid: str) -> PendingInstance | None:
        """The pending instance with this SOP Instance UID, if any."""
        with self._cond:
            return self._by_sop.get(sop_uid)

    def has_pending(self, study_key: str) -> bool:
        """True while instances of this study are acknowledged but not yet indexed."""
        with self._cond:
            return study_key in self._pending_studies

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every submitted instance is indexed; False on timeout."""
        self._send_outgoing()
        with self._cond:
            return self._cond.wait_for(lambda: not self._by_sequence, timeout_s)

    def _send_outgoing(self) -> None:
        """Send the submitted instances not yet sent (the worker batches them further)."""
        with self._cond:
            items, self._outgoing = self._outgoing, []
            self._outgoing_bytes = 0
        if items:
            self._send(items)

    def _send(self, items: list[WorkItem]) -> None:
        """Send work to the worker; a broken pipe is left to the receiver (it restarts and re-sends)."""
        with self._send_lock:
            if self._to_worker is None:
                return
            try:
                self._to_worker.send(("work", items))
            except OSError as exc:
                _LOG.warning("materialiser worker unreachable (%s); it is restarted", exc.strerror or exc)

    # ---- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker process and the receiver thread (no-op when running)."""
        if self._receiver is not None:
            return
        self._stopping = False
        self._spawn()
        self._receiver = threading.Thread(target=self._receive_loop, name="listener-materialiser", daemon=True)
        self._receiver.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Materialise what is pending, stop the worker and the receiver, checkpoint."""
        if self._receiver is None:
            return
        if not self.flush(timeout_s):
            _LOG.error("materialiser stopping with instances pending: they are recovered from the journal at start")
        with self._cond:
            self._stopping = True
        with self._send_lock:
            if self._to_worker is not None:
                with contextlib.suppress(OSError):
                    self._to_worker.send(("stop",))
        self._receiver.join(timeout_s)
        self._receiver = None
        self._end_worker(timeout_s)
        self.checkpoint()

    def _spawn(self) -> None:
        """Start a worker process connected by two pipes; return once it reported ready.

        Waiting for its ``("ready",)`` (its imports and index open: ~0.3 s of CPU here) keeps that
        start-up off the first instances received (one association, measured here: 1,555-1,768
        instances/s pushed right after the start against 1,882-1,898 once the worker was up), and
        a worker that cannot start is reported here rather than restarted in a loop.

        Raises:
            OSError, subprocess.SubprocessError: no pipe or process, or the worker exited or did
                not report ready within ``start_timeout_s`` (every descriptor is closed again).
        """
        to_child_r, to_child_w = os.pipe()
        try:
            from_child_r, from_child_w = os.pipe()
        except OSError:
            os.close(to_child_r)
            os.close(to_child_w)
            raise
        with contextlib.suppress(OSError):  # a larger pipe: submit() never waits on a busy worker
            fcntl.fcntl(to_child_w, _F_SETPIPE_SZ, _PIPE_BYTES)
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "oncohabitat.listener.materialiser_worker",
                    self._config.to_json(),
                    str(to_child_r),
                    str(from_child_w),
                ],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            os.close(to_child_w)
            os.close(from_child_r)
            raise
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        from_worker = Connection(from_child_r, writable=False)
        ready = False
        deadline = time.monotonic() + self._start_timeout_s
        try:  # in slices: a stop() meanwhile ends the wait (a restart then gives up)
            while not self._stopping and time.monotonic() < deadline:
                if from_worker.poll(_POLL_S):
                    ready = from_worker.recv() == ("ready",)
                    break
        except (EOFError, OSError):
            ready = False
        if not ready:
            from_worker.close()
            os.close(to_child_w)
            if process.poll() is None:
                process.kill()
            process.wait()
            raise subprocess.SubprocessError(f"materialiser worker did not start (exit status {process.returncode})")
        with self._send_lock:
            self._process = process
            self._to_worker = Connection(to_child_w, readable=False)
        self._from_worker = from_worker

    def _end_worker(self, timeout_s: float) -> None:
        with self._send_lock:
            process, self._process = self._process, None
            if self._to_worker is not None:
                self._to_worker.close()
                self._to_worker = None
        if self._from_worker is not None:
            self._from_worker.close()
            self._from_worker = None
        if process is not None:
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _restart(self) -> bool:
        """Replace a dead worker and send it every pending instance again (in sequence order).

        A worker that cannot be started (no process or pipe: EAGAIN, EMFILE) is retried every
        ``restart_backoff_s`` until it starts; False when stopping meanwhile.
        """
        metrics.JOURNAL_ERRORS.labels(stage="materialise").inc()
        _LOG.error("materialiser worker exited unexpectedly; restarting it")
        self._end_worker(5.0)
        failing = False
        while True:
            time.sleep(self._restart_backoff_s)
            if self._stopping:
                return False
            try:
                self._spawn()
            except (OSError, subprocess.SubprocessError) as exc:
                if not failing and not self._stopping:  # once per spell: retried every restart_backoff_s
                    _LOG.error("materialiser worker cannot be started (%s); retrying", type(exc).__name__)
                failing = True
                continue
            if self._stopping:  # stop() ran while it started: it found no worker to end
                self._end_worker(5.0)
                return False
            break
        if failing:
            _LOG.info("materialiser worker started again")
        with self._cond:
            pending = [self._by_sequence[s] for s in sorted(self._by_sequence)]
            self._outgoing = []  # all of them are in ``pending``
            self._outgoing_bytes = 0
        if pending:
            self._send([(item.location, item.record, item.study_uid) for item in pending])
        return True

    # ---- receiving -------------------------------------------------------------------------

    def _receive_loop(self) -> None:
        last_report = time.monotonic()
        while True:
            if self._journal.space_wanted or time.monotonic() - self._last_submit >= self._defer_idle_s:
                self._send_outgoing()
            connection = self._from_worker
            assert connection is not None
            try:
                if connection.poll(_POLL_S):
                    message = connection.recv()
                    if message[0] == "done":
                        self._apply(message[1])
                        last_report = time.monotonic()
            except (EOFError, OSError):
                if self._stopping or not self._restart():
                    return
                continue
            idle = time.monotonic() - last_report >= self._idle_checkpoint_s
            if (
                self._journal.space_wanted
                or self._bytes_since_checkpoint >= self._checkpoint_bytes
                or (idle and self._materialised_through > self._journal.checkpointed_through)
            ):
                self.checkpoint()

    def _apply(self, items: list[DoneItem]) -> None:
        """Record a committed batch: report outcomes, release pending entries, advance the mark."""
        started = time.perf_counter()
        for done in items:
            with self._cond:
                item = self._by_sequence.get(done[0])
            if item is None:
                continue  # reported twice (re-sent after a restart)
            try:
                self._on_result(item, _result(done))
            except Exception:  # noqa: BLE001 - reporting must not stop materialisation
                _LOG.error("reporting a materialised instance failed", exc_info=True)
            with self._cond:
                del self._by_sequence[done[0]]
                if self._by_sop.get(item.record.sop_uid) is item:
                    del self._by_sop[item.record.sop_uid]
                key = item.record.study_key
                left = self._pending_studies.get(key, 0) - 1
                if left > 0:
                    self._pending_studies[key] = left
                else:
                    self._pending_studies.pop(key, None)
                self._done.add(done[0])
                self._bytes_since_checkpoint += item.location.size
        with self._cond:
            self._advance_mark()
            metrics.JOURNAL_PENDING.set(len(self._by_sequence))
            self._cond.notify_all()
        metrics.MATERIALISE_SECONDS.observe(time.perf_counter() - started)

    def _advance_mark(self) -> None:
        """Move the materialised mark over contiguous finished sequences (condition held)."""
        while self._materialised_through + 1 in self._done:
            self._materialised_through += 1
            self._done.discard(self._materialised_through)

    def checkpoint(self) -> None:
        """Sync the file system and advance the journal's checkpoint to what is materialised."""
        with self._checkpoint_lock:
            with self._cond:
                through = self._materialised_through
                written = self._bytes_since_checkpoint
            if through <= self._journal.checkpointed_through:
                return
            started = time.perf_counter()
            try:
                if self._sync:
                    sync_filesystem(self._root)
                self._journal.checkpoint(through)
            except OSError as exc:
                metrics.JOURNAL_ERRORS.labels(stage="checkpoint").inc()
                _LOG.error("journal checkpoint failed (will retry): %s", exc.strerror or exc)
                return
            with self._cond:
                self._bytes_since_checkpoint -= written
            metrics.CHECKPOINT_SECONDS.observe(time.perf_counter() - started)
