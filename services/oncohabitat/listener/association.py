"""One DICOM association as acceptor, on its own thread with blocking reads and explicit timeouts.

Life cycle::

    [TLS handshake] -> A-ASSOCIATE-RQ (ACSE timeout) -> access checks -> A-ASSOCIATE-AC | -RJ
    -> P-DATA loop: C-ECHO / C-STORE (idle timeout until the first message, network timeout between
       messages, DIMSE timeout inside one)
    -> A-RELEASE-RQ/RP | A-ABORT | timeout | protocol error (A-ABORT sent) -> socket closed

Only the parts of the DICOM Upper Layer protocol an acceptor of Storage and Verification needs
are implemented; the PDU and command set encodings come from pynetdicom (:mod:`.negotiation`,
:mod:`.dimse`). Compared to pynetdicom's own acceptor (a reactor thread and an association thread
per connection, polling queues with 1 ms sleeps), every received byte is handled by one thread
without polling, PDU lengths are bounded before allocation, and each data set is streamed into
a bounded :class:`~.spool.DatasetSpool`. No failure of one association can take the process
down: every exception ends in a logged abort of that association only.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pynetdicom.presentation import PresentationContext

from oncohabitat.common.polling import DEFAULT_POLL_WINDOW_S
from oncohabitat.dicomio.identifiers import is_valid_uid
from oncohabitat.listener import audit, metrics, pdu_io, status
from oncohabitat.listener.access import AccessPolicy
from oncohabitat.listener.cstore import StoreHandler, StoreRequest, StoreResult
from oncohabitat.listener.dimse import (
    C_ECHO_RQ,
    C_ECHO_RSP,
    C_STORE_RQ,
    C_STORE_RSP,
    MAX_COMMAND_BYTES,
    Command,
    decode_command,
    encode_response,
)
from oncohabitat.listener.index import AddOutcome
from oncohabitat.listener.negotiation import (
    APPLICATION_CONTEXT,
    REJECT_APPLICATION_CONTEXT,
    REJECT_BUSY,
    REJECT_CALLED_AE,
    REJECT_CALLING_AE,
    REJECT_NO_RESOURCES,
    AssociationRequest,
    decode_request,
    encode_accept,
    encode_reject,
    negotiate_contexts,
)
from oncohabitat.listener.spool import DatasetSpool

_LOG = logging.getLogger(__name__)

#: Status answered for a C-STORE on a context whose abstract syntax is another SOP class.
SOP_CLASS_NOT_SUPPORTED = 0x0122
#: The Verification SOP Class: a C-ECHO is answered with success only on a context of this class.
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
_RELEASE_OR_ABORT = 64  # A-RELEASE-RQ / A-ABORT bodies are 4 bytes
#: Longest single blocking receive on a plain TCP association (s); timeouts are checked after each.
_RECEIVE_SLICE_S = 1.0
#: Refusal reasons answered "transient, local limit exceeded" (PS3.8 9.3.4: result 2, source 3,
#: reason 2): the association limit and the limit of the peer's address.
LIMIT_REASONS = frozenset({"busy", "peer_limit"})
#: What :meth:`Association._serve` returns once the reactor took the association over.
_HANDED_OVER = "handed_over"


class DataPhaseServer(Protocol):
    """Takes over the data phase of negotiated plain-TCP associations (the :mod:`.reactor`)."""

    def wanted(self) -> bool: ...  # pragma: no cover

    def adopt(self, association: Association) -> None: ...  # pragma: no cover


@dataclass(frozen=True)
class AssociationConfig:
    """Protocol settings of the acceptor (times in s, sizes in bytes).

    Attributes:
        ae_title: our AE title.
        access: who may associate.
        contexts: presentation contexts we support (abstract syntax + transfer syntaxes).
        max_pdu_bytes: largest P-DATA-TF PDU we accept (announced as Maximum Length Received).
        max_request_bytes: largest A-ASSOCIATE-RQ accepted.
        acse_timeout_s: TLS handshake and A-ASSOCIATE-RQ together, from the connection's
            acceptance (a total: a peer trickling bytes cannot stretch it; see
            :meth:`Association.expire_setup`).
        dimse_timeout_s: longest wait for the next fragment once a message has started.
        network_timeout_s: longest idle time between messages.
        idle_timeout_s: an association established this long without a DIMSE message from its
            peer is aborted (a total from the A-ASSOCIATE-AC: trickled bytes do not stretch it; see
            :meth:`Association.expire_idle`); 0 = off.
        tls: server TLS context (None = plain TCP).
        receive_spin_s: how long a receive on the association's own thread polls before it
            sleeps while the peer sends back to back (see :class:`~.pdu_io.PduReader`; 0 = never).
    """

    ae_title: str
    access: AccessPolicy
    contexts: tuple[PresentationContext, ...]
    max_pdu_bytes: int = 262_144
    max_request_bytes: int = 65_536
    acse_timeout_s: float = 30.0
    dimse_timeout_s: float = 30.0
    network_timeout_s: float = 60.0
    idle_timeout_s: float = 10.0
    tls: ssl.SSLContext | None = None
    receive_spin_s: float = DEFAULT_POLL_WINDOW_S


class _Abort(Exception):  # noqa: N818 - internal control flow: end the association with a reason label
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _PendingStore:
    """A C-STORE whose command arrived and whose data set is being received."""

    context_id: int
    command: Command
    transfer_syntax: str
    spool: DatasetSpool | None
    early: tuple[str, int] | None = None  # refusal decided from the command alone (reason, status)


#: Largest data set (Part-10 bytes) the reactor checks and stores on its own thread. A larger one is
#: stored on a background thread (:attr:`StagedStore.store`) so that its checks (a pydicom walk of
#: every element for a spooled data set: ~2 s for 8 MiB of empty elements, measured here) never stall
#: the other associations; the fast walker takes ~20 ms for 1 MiB of the worst case.
REACTOR_INLINE_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class StagedStore:
    """A completed C-STORE the reactor answers after its round.

    Either ``result`` is set (stored in the round; its journal entry awaits the round's sync) or
    ``store`` is (a large data set, to be stored off the reactor thread: call it, then answer).
    """

    association: Association
    pending: _PendingStore
    result: StoreResult | None
    store: Callable[[], StoreResult] | None = None


@dataclass
class _Stats:
    stored: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    refused: int = 0


class Association:
    """Serves one accepted TCP connection until release, abort or timeout (see module doc).

    Args:
        sock: the connected socket (TCP_NODELAY set by the server).
        peer: ``(ip, port)`` of the peer.
        config: protocol settings.
        sink: where data sets go.
        busy_reason: called once the request is decoded; a non-empty reason label refuses the
            association transiently (``"busy"``: association limit, ``"peer_limit"``: the peer
            address's limit, ``"disk_low"``: watermark).
    """

    def __init__(
        self,
        sock: socket.socket,
        peer: tuple[str, int],
        config: AssociationConfig,
        sink: StoreHandler,
        busy_reason: Callable[[], str],
        *,
        on_closed: Callable[[], None] | None = None,
        data_phase: DataPhaseServer | None = None,
    ) -> None:
        self._sock = sock
        self._peer_ip = peer[0]
        self._config = config
        self._sink = sink
        self._busy_reason = busy_reason
        self._on_closed = on_closed
        self._data_phase = data_phase
        self._calling_ae = ""
        self._accepted: dict[int, PresentationContext] = {}
        self._peer_max_pdu = 0
        self._stats = _Stats()
        self._stats_lock = threading.Lock()
        self._follow_ups_elsewhere = 0  # after-reply steps running on another thread (guarded by _stats_lock)
        self._closed_outcome: str | None = None  # set by end(); its audit event waits for those steps
        self._audited = False  # the association_closed event was emitted
        self._command = bytearray()  # command fragments of the message being received
        self._command_context = 0  # their presentation context
        self._current: _PendingStore | None = None  # the C-STORE whose data set is being received
        self._nonblocking = False
        self._ended = False
        self._setup_lock = threading.Lock()
        self._setup_deadline = time.monotonic() + config.acse_timeout_s
        self._setting_up = True  # until the A-ASSOCIATE-AC is sent
        self._setup_expired = False
        self._rejection_audited = False
        #: Until the peer's first DIMSE command: when the association is aborted as idle (set with
        #: the A-ASSOCIATE-AC; guarded by _setup_lock where it is set or cleared).
        self._idle_deadline: float | None = None
        self._idle_expired = False  # expire_idle() shut its reading side down
        self.limits = {
            pdu_io.P_DATA_TF: config.max_pdu_bytes,
            pdu_io.RELEASE_RQ: _RELEASE_OR_ABORT,
            pdu_io.ABORT: _RELEASE_OR_ABORT,
        }

    # ---- entry point ---------------------------------------------------------------------

    @property
    def sock(self) -> socket.socket:
        """The connection's socket."""
        return self._sock

    @property
    def in_message(self) -> bool:
        """True once a message has started (the DIMSE timeout applies, not the network timeout)."""
        return self._current is not None or bool(self._command)

    def run(self) -> None:
        """Serve the connection (or hand its data phase to the reactor); never raises.

        The socket is closed and the association accounted for (metrics, audit, ``on_closed``)
        exactly once, by :meth:`end`: here, or by the reactor that took the data phase over.
        """
        outcome = "closed"
        try:
            if self._handshake() and self._negotiate():
                outcome = self._serve()
                if outcome == _HANDED_OVER:
                    return
        except Exception as exc:  # noqa: BLE001 - boundary of one association (see outcome_of)
            outcome = self.outcome_of(exc)
        if self._setup_expired:
            outcome = "acse_timeout"
            if not self._rejection_audited:  # a refusal whose A-ASSOCIATE-RJ was cut off is audited already
                self._reject_audit(outcome, "")
        self.end(outcome)

    def expire_setup(self, now: float) -> bool:
        """End the association if it is still being set up past its ACSE deadline (another thread).

        The socket timeouts bound each wait for bytes, not the whole set-up: a peer sending one
        byte per timeout would hold an association slot, before any access check, indefinitely.
        ``now``: ``time.monotonic()``. Interrupts again at every call until the set-up has ended
        (a TLS wrap may have swapped the socket just then). True the first time it interrupts.
        """
        with self._setup_lock:
            if not self._setting_up or now < self._setup_deadline:
                return False
            first = not self._setup_expired
            self._setup_expired = True
        self.interrupt()
        return first

    @property
    def idle_deadline(self) -> float | None:
        """When the association is aborted as idle (``time.monotonic()``); None once the peer sent a DIMSE command."""
        return self._idle_deadline

    def _idle_passed(self) -> bool:
        deadline = self._idle_deadline
        return deadline is not None and time.monotonic() >= deadline

    def expire_idle(self, now: float) -> bool:
        """End the association if it is still idle past its idle deadline (another thread).

        Idle: established, and no DIMSE command from the peer yet. The reading side of the connection
        is shut down; the serving thread's blocked read then returns and :meth:`end` sends the
        A-ABORT (from the thread that owns the connection: a TLS connection cannot be written from
        two threads) and labels the outcome ``idle_timeout``. The reactor checks its own
        associations' deadlines (:attr:`idle_deadline`). True the first time it expires.
        """
        with self._setup_lock:
            deadline = self._idle_deadline
            if deadline is None or now < deadline or self._idle_expired or self._ended:
                return False
            self._idle_expired = True
        try:
            socket.socket.shutdown(self._sock, socket.SHUT_RD)
        except OSError:  # already closed
            pass
        return True

    def outcome_of(self, exc: BaseException) -> str:
        """The outcome label of an association ended by ``exc``; aborts the association where due."""
        if isinstance(exc, _Abort):
            self._send_quietly(pdu_io.encode_abort())
            return exc.reason
        if isinstance(exc, pdu_io.PduTooLargeError):
            _LOG.warning("peer %s announced a %d-byte PDU (limit %d): aborted", self._peer_ip, exc.announced, exc.limit)
            self._send_quietly(pdu_io.encode_abort(0x02, 0x06))
            return "pdu_too_large"
        if isinstance(exc, pdu_io.PduError):
            _LOG.warning("protocol error from %s: %s", self._peer_ip, exc)
            self._send_quietly(pdu_io.encode_abort(0x02, 0x02))
            return "protocol_error"
        if isinstance(exc, TimeoutError | BlockingIOError):  # BlockingIOError: a send could not proceed
            self._send_quietly(pdu_io.encode_abort())
            return "idle_timeout" if self._idle_passed() else "timeout"
        if isinstance(exc, pdu_io.ConnectionClosedError | ConnectionError | ssl.SSLError):
            _LOG.info("connection from %s lost: %s", self._peer_ip, type(exc).__name__)
            return "connection_lost"
        if isinstance(exc, OSError):
            _LOG.info("connection from %s failed: %s", self._peer_ip, exc.strerror or type(exc).__name__)
            return "connection_lost"
        _LOG.error("association with %s failed unexpectedly", self._peer_ip, exc_info=exc)
        self._send_quietly(pdu_io.encode_abort())
        return "internal_error"

    def end(self, outcome: str) -> None:
        """Close the connection and account for the association (once; later calls do nothing)."""
        if self._ended:
            return
        self._ended = True
        try:
            if self._idle_expired and outcome == "connection_lost":  # expire_idle() shut the reading side
                self._send_quietly(pdu_io.encode_abort())
                outcome = "idle_timeout"
            self._discard(self._current)
            self._current = None
            self._close()
            if outcome not in ("released", "rejected", "refused"):
                metrics.ABORTS.labels(reason=outcome).inc()
            with self._stats_lock:
                self._closed_outcome = outcome
                audit_now = self._follow_ups_elsewhere == 0
            if audit_now:  # otherwise the last after-reply step still running emits it
                self._audit_closed(outcome)
        finally:
            if self._on_closed is not None:
                self._on_closed()

    def _audit_closed(self, outcome: str) -> None:
        """The ``association_closed`` audit event, once every instance of the association is counted.

        Emitted once: an after-reply step started after :meth:`end` (a pipelined C-STORE of the same
        reactor round) must not emit it again.
        """
        with self._stats_lock:
            if self._audited:
                return
            self._audited = True
        if self._accepted or self._stats.stored:
            audit.emit(
                "association_closed",
                calling_ae=self._calling_ae,
                peer_ip=self._peer_ip,
                outcome=outcome,
                instances_by_study=json.dumps(dict(self._stats.stored), sort_keys=True),
                duplicates=self._stats.duplicates,
                refused=self._stats.refused,
            )

    # ---- association set-up --------------------------------------------------------------

    def _handshake(self) -> bool:
        self._sock.settimeout(self._config.acse_timeout_s)
        if self._config.tls is None:
            return True
        try:
            self._sock = self._config.tls.wrap_socket(self._sock, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            if not self._setup_expired:  # else audited as acse_timeout
                self._reject_audit("tls_handshake_failed", "")
            _LOG.info("TLS handshake with %s failed: %s", self._peer_ip, type(exc).__name__)
            return False
        return True

    def _negotiate(self) -> bool:
        pdu = pdu_io.read_pdu(self._sock, {pdu_io.ASSOCIATE_RQ: self._config.max_request_bytes})
        request = decode_request(pdu.body)
        self._calling_ae = request.calling_ae[:16]
        refusal = self._refusal(request)
        if refusal is not None:
            reason, triple = refusal
            self._reject_audit(reason, request.called_ae)  # recorded before the peer learns it
            self._sock.sendall(encode_reject(*triple))
            return False
        results, roles = negotiate_contexts(request, self._config.contexts)
        self._accepted = {int(cx.context_id): cx for cx in results if cx.result == 0x00 and cx.context_id is not None}
        self._peer_max_pdu = request.peer_max_pdu
        with self._setup_lock:
            if self._setup_expired:  # interrupted meanwhile: the socket is shut down
                return False
            self._setting_up = False
            if self._config.idle_timeout_s > 0:
                self._idle_deadline = time.monotonic() + self._config.idle_timeout_s
        metrics.ASSOCIATIONS.labels(outcome="accepted").inc()
        audit.emit(  # recorded before the peer learns it (a peer never acts on an unrecorded association)
            "association_accepted",
            calling_ae=self._calling_ae,
            called_ae=request.called_ae[:16],
            peer_ip=self._peer_ip,
            contexts_accepted=len(self._accepted),
            contexts_rejected=len(results) - len(self._accepted),
        )
        self._sock.sendall(encode_accept(request, results, roles, self._config.max_pdu_bytes))
        return True

    def _refusal(self, request: AssociationRequest) -> tuple[str, tuple[int, int, int]] | None:
        access = self._config.access
        if request.application_context != APPLICATION_CONTEXT:
            return "application_context", REJECT_APPLICATION_CONTEXT
        if not access.called_allowed(request.called_ae):
            return "called_ae_not_recognised", REJECT_CALLED_AE
        if not access.calling_allowed(request.calling_ae):
            return "calling_ae_not_allowed", REJECT_CALLING_AE
        busy = self._busy_reason()
        if busy:
            return busy, REJECT_BUSY if busy in LIMIT_REASONS else REJECT_NO_RESOURCES
        return None

    def _reject_audit(self, reason: str, called_ae: str) -> None:
        self._rejection_audited = True
        metrics.ASSOCIATIONS.labels(outcome=reason).inc()
        audit.emit(
            "association_rejected",
            calling_ae=self._calling_ae,
            called_ae=called_ae[:16],
            peer_ip=self._peer_ip,
            reason=reason,
        )

    # ---- message loop --------------------------------------------------------------------

    def _serve(self) -> str:
        """The data phase on this thread, with blocking reads: PDUs until release or abort.

        A plain-TCP association is handed over to the reactor (``data_phase``) at a message
        boundary once the reactor is wanted (several concurrent associations): one association
        alone is served fastest by its own thread; several, by the reactor (see :mod:`.reactor`).
        Returns :data:`_HANDED_OVER` then.
        """
        config = self._config
        data_phase = self._data_phase if config.tls is None else None
        kernel_timeouts = config.tls is None
        if kernel_timeouts:  # one system call per receive/send, none per timeout change (pdu_io doc)
            receive_slice_s = min(_RECEIVE_SLICE_S, config.dimse_timeout_s, config.network_timeout_s)
            pdu_io.use_kernel_timeouts(self._sock, receive_slice_s, config.dimse_timeout_s)
            # Polling only with the reactor on: an association is then served on its own thread
            # only while it is the only one, so its polling never keeps the GIL from another.
            spin_s = config.receive_spin_s if data_phase is not None else 0.0
            reader = pdu_io.PduReader(self._sock, receive_slice_s=receive_slice_s, spin_s=spin_s)
        else:
            reader = pdu_io.PduReader(self._sock)
        current_timeout = self._sock.gettimeout()
        while True:
            if data_phase is not None and reader.buffered == 0 and not self.in_message and data_phase.wanted():
                self._sock.setblocking(False)
                self._nonblocking = True
                data_phase.adopt(self)
                return _HANDED_OVER
            timeout = config.dimse_timeout_s if self.in_message else config.network_timeout_s
            if not kernel_timeouts and timeout != current_timeout:  # a system call: only when it changes
                self._sock.settimeout(timeout)
                current_timeout = timeout
            outcome = self.handle_pdu(reader.read(self.limits, timeout), None)
            if outcome is not None:
                return outcome

    def handle_pdu(self, pdu: pdu_io.Pdu, staged: list[StagedStore] | None) -> str | None:
        """Act on one received PDU; the outcome once the association ends (release, peer abort).

        ``staged``: None on the association's own thread (each C-STORE is stored, made durable and
        answered at once); the reactor's list otherwise: a C-STORE whose journal entry awaits the
        round's sync is appended there and answered by the reactor (:meth:`answer_store`, then
        :meth:`follow_up_store`).

        Raises:
            _Abort, PduError, OSError: the association must end (see :meth:`outcome_of`).
        """
        if pdu.pdu_type == pdu_io.ABORT:
            return "peer_abort"
        if pdu.pdu_type == pdu_io.RELEASE_RQ:
            if self.in_message:
                raise _Abort("release_mid_message")
            self._sock.sendall(pdu_io.RELEASE_RP_PDU)
            return "released"
        for context_id, control, data in pdu_io.iter_pdvs(pdu.body):
            if context_id not in self._accepted:
                raise _Abort("unknown_context")
            pending = self._current
            if control & pdu_io.CONTROL_COMMAND:
                if pending is not None:
                    raise _Abort("command_mid_dataset")
                command = self._command
                if command and context_id != self._command_context:
                    raise _Abort("command_context_changed")  # one message's fragments share a context
                self._command_context = context_id
                command += data
                if len(command) > MAX_COMMAND_BYTES:
                    raise _Abort("command_too_large")
                if control & pdu_io.CONTROL_LAST:
                    if self._idle_deadline is not None:  # the first DIMSE message: no longer idle
                        with self._setup_lock:
                            self._idle_deadline = None
                    self._current = self._on_command(context_id, decode_command(bytes(command)), staged)
                    command.clear()
            else:
                if pending is None or pending.context_id != context_id:
                    raise _Abort("unexpected_dataset")
                if pending.spool is not None:
                    self._append(pending, data)
                if control & pdu_io.CONTROL_LAST:
                    self._current = None
                    self._finish_store(pending, staged)
        return None

    @staticmethod
    def _append(pending: _PendingStore, data: memoryview) -> None:
        assert pending.spool is not None
        try:
            pending.spool.append(data)
        except OSError as exc:  # spilling to disk failed: refuse this instance, stay in step with the peer
            _LOG.error("data set spool cannot be written: %s", exc.strerror)
            pending.spool = None
            pending.early = ("write_error", status.OUT_OF_RESOURCES)

    def _on_command(self, context_id: int, command: Command, staged: list[StagedStore] | None) -> _PendingStore | None:
        context = self._accepted[context_id]
        if command.command_field == C_ECHO_RQ:
            if command.has_dataset:
                raise _Abort("echo_with_dataset")
            verification = str(context.abstract_syntax) == VERIFICATION_SOP_CLASS
            self._respond(
                context_id, C_ECHO_RSP, command, "", status.SUCCESS if verification else SOP_CLASS_NOT_SUPPORTED
            )
            return None
        if command.command_field != C_STORE_RQ:
            raise _Abort("unsupported_command")
        transfer_syntax = str(context.transfer_syntax[0])
        pending = _PendingStore(context_id, command, transfer_syntax, None)
        sop_class, sop_uid = command.affected_sop_class_uid, command.affected_sop_instance_uid
        if not command.has_dataset:
            pending.early = ("missing_dataset", status.CANNOT_PARSE)
        elif not (is_valid_uid(sop_class) and is_valid_uid(sop_uid)):
            pending.early = ("invalid_uid", status.INVALID_UID)
        elif sop_class != str(context.abstract_syntax):
            pending.early = ("sop_class_not_supported", SOP_CLASS_NOT_SUPPORTED)
        elif not self._sink.accepting():
            pending.early = ("disk_low", status.OUT_OF_RESOURCES)
        else:
            pending.spool = self._sink.open_spool(sop_class, sop_uid, transfer_syntax)
        if not command.has_dataset:
            self._finish_store(pending, staged)
            return None
        return pending

    def _finish_store(self, pending: _PendingStore, staged: list[StagedStore] | None) -> None:
        """Store a completely received C-STORE; answer it now, or stage it for the reactor's sync."""
        spool = pending.spool
        if staged is not None and pending.early is None and spool is not None and spool.size > REACTOR_INLINE_MAX_BYTES:
            staged.append(StagedStore(self, pending, None, store=lambda: self._store(pending, defer_sync=False)))
            return
        result = self._store(pending, defer_sync=staged is not None)
        if result.settle is not None and staged is not None:
            staged.append(StagedStore(self, pending, result))
            return
        self.complete_store(pending, result)

    def _store(self, pending: _PendingStore, *, defer_sync: bool) -> StoreResult:
        """Check and store a completely received C-STORE (never raises); the result to answer."""
        command = pending.command
        if pending.early is not None or pending.spool is None:
            reason, code = pending.early or ("internal_error", status.UNEXPECTED_ERROR)
            return self._sink.refuse(reason, code)
        try:
            request = StoreRequest(
                pending.spool,
                command.affected_sop_class_uid,
                command.affected_sop_instance_uid,
                pending.transfer_syntax,
            )
            return self._sink.handle_store(request, defer_sync=defer_sync)
        except Exception:  # noqa: BLE001 - store boundary: answer a failure, keep the association
            pending.spool.discard()
            _LOG.error("C-STORE handler failed unexpectedly", exc_info=True)
            return self._sink.refuse("internal_error", status.UNEXPECTED_ERROR)

    def complete_store(self, pending: _PendingStore, result: StoreResult) -> None:
        """Answer a stored C-STORE, then run the store's after-reply work (always, even if the reply fails).

        Raises:
            Exception: the reply could not be sent (the association must end).
        """
        settled, error = self.answer_store(pending, result)
        self.follow_up_store(settled)
        if error is not None:
            raise error

    def answer_store(self, pending: _PendingStore, result: StoreResult) -> tuple[StoreResult, Exception | None]:
        """Wait for durability where the store deferred it, then send the C-STORE-RSP.

        Returns the result answered (to pass to :meth:`follow_up_store`) and the error that kept
        the reply from being sent, if any (the association must then end).
        """
        if result.settle is not None:
            result = self._settle(result.settle)
        command = pending.command
        try:
            self._respond(
                pending.context_id,
                C_STORE_RSP,
                command,
                command.affected_sop_class_uid,
                result.status,
                result.reason if result.status != status.SUCCESS else "",
            )
        except Exception as exc:  # noqa: BLE001 - returned: the follow-up must run first
            return result, exc
        return result, None

    def follow_up_store(self, result: StoreResult) -> None:
        """Run the store's after-reply work and count the final outcome (for the audit event)."""
        if result.follow_up is not None:
            result = self._follow_up(result.follow_up)
        self._count(result)

    def follow_up_elsewhere(self, result: StoreResult) -> Callable[[], None]:
        """:meth:`follow_up_store` of ``result`` as a callable for another thread.

        The association may end before it has run (its peer released after the reply); the
        closing audit event then waits for it, so that its counts include this instance.
        """
        with self._stats_lock:
            self._follow_ups_elsewhere += 1

        def run() -> None:
            try:
                self.follow_up_store(result)
            finally:
                with self._stats_lock:
                    self._follow_ups_elsewhere -= 1
                    outcome = self._closed_outcome if self._follow_ups_elsewhere == 0 else None
                if outcome is not None:  # end() ran meanwhile and left the audit event to this step
                    self._audit_closed(outcome)

        return run

    def _settle(self, settle: Callable[[], StoreResult]) -> StoreResult:
        """Wait for the store's durability (journal sync); the result to answer."""
        try:
            return settle()
        except Exception:  # noqa: BLE001 - store boundary: answer a failure, keep the association
            _LOG.error("C-STORE durability wait failed unexpectedly", exc_info=True)
            return self._sink.refuse("internal_error", status.UNEXPECTED_ERROR)

    def _follow_up(self, follow_up: Callable[[], StoreResult]) -> StoreResult:
        """Run the store's after-reply work (duplicate checks, hand-off to the materialiser)."""
        try:
            return follow_up()
        except Exception:  # noqa: BLE001 - store boundary: the instance is journaled, log and go on
            _LOG.error("C-STORE follow-up failed unexpectedly", exc_info=True)
            return StoreResult(status.SUCCESS)

    def _count(self, result: StoreResult) -> None:
        with self._stats_lock:  # the reactor's background thread counts too
            if result.outcome is AddOutcome.STORED or result.outcome is AddOutcome.REPLACED:
                self._stats.stored[result.study_key or ""] += 1
            elif result.outcome is not None:
                self._stats.duplicates += 1
            else:
                self._stats.refused += 1

    # ---- sending -------------------------------------------------------------------------

    def _respond(
        self, context_id: int, field_: int, command: Command, sop_class: str, code: int, comment: str = ""
    ) -> None:
        data = encode_response(
            field_,
            command.message_id,
            sop_class or command.affected_sop_class_uid,
            command.affected_sop_instance_uid,
            code,
            comment,
        )
        limit = self._peer_max_pdu - 6 if self._peer_max_pdu > 6 else len(data)
        chunks = [data[i : i + limit] for i in range(0, len(data), limit)]
        control = pdu_io.CONTROL_COMMAND
        self._sock.sendall(
            b"".join(
                pdu_io.encode_pdata(context_id, control | (pdu_io.CONTROL_LAST if i == len(chunks) - 1 else 0), chunk)
                for i, chunk in enumerate(chunks)
            )
        )

    @staticmethod
    def _discard(pending: _PendingStore | None) -> None:
        if pending is not None and pending.spool is not None:
            pending.spool.discard()

    def _send_quietly(self, data: bytes) -> None:
        try:
            if self._nonblocking:  # the reactor's socket: never wait for a peer that does not read
                self._sock.send(data)
            else:
                self._sock.settimeout(1.0)
                self._sock.sendall(data)
        except OSError:
            pass

    def interrupt(self) -> None:
        """Shut the connection down from another thread (the listener is stopping).

        The serving thread's blocked read then returns and the association ends. Works on a TLS
        connection too: the TCP connection is shut down under the TLS layer (``SSLSocket.shutdown``
        would also drop the TLS state the serving thread is using).
        """
        try:
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
        except OSError:  # already closed
            pass

    def _close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
