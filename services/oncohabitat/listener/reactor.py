"""Data phase of plain-TCP associations on one thread: readiness events, one journal sync per round.

Why: with a thread per association, every receive, journal write, sync and send releases and
re-takes the GIL, and with several busy associations those hand-offs cost more than the work
(measured here, 4 concurrent storescu pushes: 0.6 ms of listener CPU per instance against 0.43 ms
for one association, and 4 associations no faster than one). Here one thread waits on all
negotiated plain-TCP connections at once (``selectors``: epoll on Linux) and, per *round*:

1. for each readable connection, receives what is there (:class:`~.pdu_io.PduAssembler`) and acts
   on each complete PDU (:meth:`~.association.Association.handle_pdu`); a completed C-STORE is
   checked and written to the intake journal without waiting for its sync (*staged*);
2. makes every staged entry durable with one ``fdatasync`` (group commit: the first
   :attr:`~.cstore.StoreResult.settle` syncs through the newest entry, the others find it done);
3. answers every staged C-STORE, then runs their after-reply work (duplicate checks, hand-off to
   the materialiser; a duplicate of a UID not yet indexed waits for the materialiser, so its
   check runs on the background thread below);
4. every :data:`_TIMEOUT_CHECK_S`, ends the connections whose DIMSE, network or idle timeout has
   passed (idle: no DIMSE message since the association was accepted; a total, see
   :attr:`~.association.Association.idle_deadline`).

A data set larger than :data:`~.association.REACTOR_INLINE_MAX_BYTES` is checked and stored on a
background thread (its own durable write, no round sync) and answered by the loop once done: its
checks can take seconds (a pydicom walk of every element), and the loop serves everyone else
meanwhile.

Association set-up (TLS handshake, A-ASSOCIATE negotiation) stays on the association's own thread.
Its data phase stays there too while it is the only association (no loop overhead: the fastest
way to serve one peer); once several are served at once, each hands its connection over at its
next message boundary (:meth:`DataReactor.adopt`) and its thread ends. TLS connections keep their
thread for the whole association. Sockets here are non-blocking: a reply that cannot be sent at
once (a peer that stopped reading while it keeps sending) ends that association, never the loop.
Other direct-path stores (duplicates, a full journal) run on this thread and delay the round: they
are rare and bounded by the disk.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from oncohabitat.listener import pdu_io
from oncohabitat.listener.association import Association, StagedStore
from oncohabitat.listener.cstore import StoreResult

_LOG = logging.getLogger(__name__)

#: Timeouts are checked this often (s): their precision; the loop does no timeout work in between.
_TIMEOUT_CHECK_S = 0.1


@dataclass(eq=False)
class _Connection:
    """One adopted association and its reading state."""

    association: Association
    assembler: pdu_io.PduAssembler = field(default_factory=pdu_io.PduAssembler)
    last_activity: float = field(default_factory=time.monotonic)
    #: Its C-STOREs being stored in the background: meanwhile it is not read (one operation at a
    #: time, as negotiated) and no timeout applies (the peer rightly waits for the reply).
    in_background: int = 0


class DataReactor:
    """Serves the data phase of adopted associations on one thread (see module doc).

    Args:
        dimse_timeout_s: longest wait for the next fragment once a message has started, s.
        network_timeout_s: longest idle time between messages, s.
        concurrency: how many associations the server serves now; the reactor is :meth:`wanted`
            from two on (one association alone is faster on its own thread, measured here:
            1,700-1,830 against 1,600-1,750 instances/s with one storescu push).
    """

    def __init__(
        self, *, dimse_timeout_s: float, network_timeout_s: float, concurrency: Callable[[], int] = lambda: 2
    ) -> None:
        self._dimse_timeout_s = dimse_timeout_s
        self._network_timeout_s = network_timeout_s
        self._concurrency = concurrency
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._adopted: list[Association] = []
        self._connections: set[_Connection] = set()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._large_stores: ThreadPoolExecutor | None = None  # while the loop runs
        self._waiting_follow_ups: ThreadPoolExecutor | None = None  # likewise: never behind a large store
        self._in_background: list[tuple[StagedStore, Future[StoreResult]]] = []

    def start(self) -> None:
        """Start the loop thread (no-op when running)."""
        if self._thread is not None:
            return
        self._stopping = False
        self._large_stores = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dicom-large-store")
        self._waiting_follow_ups = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dicom-duplicate-check")
        self._thread = threading.Thread(target=self._loop, name="dicom-reactor", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """End every association served here ("closed") and stop the loop."""
        if self._thread is None:
            return
        with self._lock:
            self._stopping = True
        self._wake()
        self._thread.join(timeout_s)
        self._thread = None

    def wanted(self) -> bool:
        """True when associations should move here (several at once, or some already here).

        Never once the loop stopped (or failed): associations then keep their own threads.
        """
        return not self._stopping and (bool(self._connections) or self._concurrency() > 1)

    def adopt(self, association: Association) -> None:
        """Take over a negotiated association whose socket is non-blocking (called from its thread)."""
        with self._lock:
            accepted = not self._stopping
            if accepted:
                self._adopted.append(association)
        if not accepted:  # stopping: nobody would serve it
            association.end("closed")
            return
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # a full wake-up pipe already wakes the loop
            self._wake_writer.send(b"\0")

    # ---- the loop --------------------------------------------------------------------------

    def _loop(self) -> None:
        next_check = time.monotonic() + _TIMEOUT_CHECK_S
        select = self._selector.select
        try:
            while not self._stopping:
                if self._adopted:  # a plain read first: the lock only when there is something
                    with self._lock:
                        adopted, self._adopted = self._adopted, []
                    for association in adopted:
                        self._register(association)
                staged: list[StagedStore] = []
                for key, _events in select(max(next_check - time.monotonic(), 0.0)):
                    if key.data is None:
                        self._drain_wakeups()
                    else:
                        self._receive(key.data, staged)
                if staged:
                    self._answer(staged)
                if self._in_background:
                    self._answer_background(wait=False)
                now = time.monotonic()
                if now >= next_check:
                    self._expire(now)
                    next_check = now + _TIMEOUT_CHECK_S
        except Exception:  # noqa: BLE001 - the loop must not die silently: end what it serves
            _LOG.critical("DICOM reactor failed; its associations are closed", exc_info=True)
        finally:
            self._answer_background(wait=True)  # their follow-ups hand journaled instances on
            self._end_all()
            if self._large_stores is not None:
                self._large_stores.shutdown(wait=True)
            if self._waiting_follow_ups is not None:
                self._waiting_follow_ups.shutdown(wait=True)

    def _register(self, association: Association) -> None:
        connection = _Connection(association)
        try:
            self._selector.register(association.sock, selectors.EVENT_READ, connection)
        except (OSError, ValueError):  # its socket was closed meanwhile
            association.end("connection_lost")
            return
        with self._lock:
            self._connections.add(connection)

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while self._wake_reader.recv(4096):
                pass

    def _receive(self, connection: _Connection, staged: list[StagedStore]) -> None:
        """Receive and act on what one connection has ready; end it on release, abort or error."""
        association = connection.association
        connection.last_activity = time.monotonic()
        try:
            for pdu in connection.assembler.receive(association.sock, association.limits):
                outcome = association.handle_pdu(pdu, staged)
                if outcome is not None:
                    self._end(connection, outcome)
                    return
            connection.assembler.raise_deferred_error()
        except Exception as exc:  # noqa: BLE001 - one association's failure ends that association only
            self._end(connection, association.outcome_of(exc))

    def _answer(self, staged: list[StagedStore]) -> None:
        """Sync and answer the round's staged C-STOREs, then run their follow-ups (see module doc).

        Large data sets (``store`` set) go to the background thread instead; answered when done.
        """
        stored = []
        for item in staged:
            if item.result is not None:
                stored.append((item, item.result))
            else:
                assert item.store is not None and self._large_stores is not None
                future = self._large_stores.submit(item.store)
                future.add_done_callback(lambda _done: self._wake())
                self._in_background.append((item, future))
                self._pause(item.association)
        self._answer_stored(stored)  # the first settle syncs every entry written in the round

    def _connection_of(self, association: Association) -> _Connection | None:
        with self._lock:
            return next((c for c in self._connections if c.association is association), None)

    def _pause(self, association: Association) -> None:
        """Stop reading an association while one of its C-STOREs is stored in the background."""
        connection = self._connection_of(association)
        if connection is None:
            return
        connection.in_background += 1
        if connection.in_background == 1:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(association.sock)

    def _resume(self, association: Association) -> None:
        """Read an association again once its background C-STOREs are answered (its timeouts restart)."""
        connection = self._connection_of(association)
        if connection is None:
            return
        connection.in_background -= 1
        if connection.in_background == 0:
            connection.last_activity = time.monotonic()
            try:
                self._selector.register(association.sock, selectors.EVENT_READ, connection)
            except (OSError, ValueError):  # closed meanwhile
                self._end(connection, "connection_lost")

    def _answer_background(self, *, wait: bool) -> None:
        """Answer the large data sets stored in the background by now (``wait``: all of them)."""
        done, still = [], []
        for item, future in self._in_background:
            if wait or future.done():
                done.append((item, future.result()))  # the store never raises (Association._store)
            else:
                still.append((item, future))
        self._in_background = still
        self._answer_stored(done)
        for item, _result in done:
            self._resume(item.association)

    def _answer_stored(self, stored: list[tuple[StagedStore, StoreResult]]) -> None:
        answered = [(item.association, *item.association.answer_store(item.pending, result)) for item, result in stored]
        for association, result, error in answered:
            waits = result.follow_up_waits
            if waits is not None and self._waiting_follow_ups is not None and waits():
                # a duplicate of a UID still being materialised: its check waits for the worker
                # (order among versions: by arrival time, see StoreDuplicates._commit)
                self._waiting_follow_ups.submit(association.follow_up_elsewhere(result))
            else:
                association.follow_up_store(result)
            if error is not None:  # the reply could not be sent: that association ends
                self._end_association(association, association.outcome_of(error))

    def _deadline(self, connection: _Connection) -> float:
        if connection.in_background:
            return float("inf")
        association = connection.association
        timeout = self._dimse_timeout_s if association.in_message else self._network_timeout_s
        idle_deadline = association.idle_deadline  # until its first DIMSE command
        if idle_deadline is not None:
            return min(connection.last_activity + timeout, idle_deadline)
        return connection.last_activity + timeout

    def _expire(self, now: float) -> None:
        with self._lock:
            expired = [c for c in self._connections if self._deadline(c) <= now]
        for connection in expired:
            association = connection.association
            self._end(connection, association.outcome_of(TimeoutError("no data within the timeout")))

    def _end(self, connection: _Connection, outcome: str) -> None:
        with self._lock:
            self._connections.discard(connection)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(connection.association.sock)
        connection.association.end(outcome)

    def _end_association(self, association: Association, outcome: str) -> None:
        with self._lock:
            connection = next((c for c in self._connections if c.association is association), None)
        if connection is not None:
            self._end(connection, outcome)
        else:
            association.end(outcome)

    def _end_all(self) -> None:
        with self._lock:
            connections = list(self._connections)
            adopted, self._adopted = self._adopted, []
            self._stopping = True
        for connection in connections:
            self._end(connection, "closed")
        for association in adopted:
            association.end("closed")
