"""One DICOM association as acceptor, on its own thread with blocking reads and explicit timeouts.

Life cycle::

    [TLS handshake] -> A-ASSOCIATE-RQ (ACSE timeout) -> access checks -> A-ASSOCIATE-AC | -RJ
    -> data phase (:mod:`.data_phase`): C-ECHO / C-STORE (idle timeout until the first message,
       network timeout between messages, DIMSE timeout inside one)
    -> A-RELEASE-RQ/RP | A-ABORT | timeout | protocol error (A-ABORT sent) -> socket closed

This module owns the connection: its set-up (TLS handshake, negotiation, refusals), its deadlines
checked from the acceptor thread (ACSE, idle), the mapping of every failure to an outcome label,
and its end (socket closed, metrics, audit). Every association, plain TCP or TLS, is served from
acceptance to close by one thread of its own (the only concurrency mode).

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
from collections.abc import Callable
from dataclasses import dataclass

from pynetdicom.presentation import PresentationContext

from oncohabitat.listener import audit, metrics, pdu_io
from oncohabitat.listener.access import AccessPolicy
from oncohabitat.listener.cstore import StoreHandler
from oncohabitat.listener.data_phase import AssociationAbort, DataPhase, Stats
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

_LOG = logging.getLogger(__name__)

#: Refusal reasons answered "transient, local limit exceeded" (PS3.8 9.3.4: result 2, source 3,
#: reason 2): the association limit and the limit of the peer's address.
LIMIT_REASONS = frozenset({"busy", "peer_limit"})


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
        dimse_timeout_s: longest wait for the next fragment once a message has started (also
            bounds the sending of a reply within a message).
        network_timeout_s: longest idle time between messages.
        idle_timeout_s: an association established this long without a DIMSE message from its
            peer is aborted (a total from the A-ASSOCIATE-AC: trickled bytes do not stretch it; see
            :meth:`Association.expire_idle`); 0 = off.
        tls: server TLS context (None = plain TCP).
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
    ) -> None:
        self._sock = sock
        self._peer_ip = peer[0]
        self._config = config
        self._sink = sink
        self._busy_reason = busy_reason
        self._on_closed = on_closed
        self._calling_ae = ""
        self._accepted: dict[int, PresentationContext] = {}
        self._peer_max_pdu = 0
        self._data: DataPhase | None = None  # from the A-ASSOCIATE-AC on
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

    # ---- entry point ---------------------------------------------------------------------

    def run(self) -> None:
        """Serve the connection on this thread until it ends; never raises.

        The socket is closed and the association accounted for (metrics, audit, ``on_closed``)
        exactly once, by :meth:`end`.
        """
        outcome = "closed"
        try:
            if self._handshake() and self._negotiate():
                outcome = self._serve()
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

    def _idle_passed(self) -> bool:
        deadline = self._idle_deadline
        return deadline is not None and time.monotonic() >= deadline

    def expire_idle(self, now: float) -> bool:
        """End the association if it is still idle past its idle deadline (another thread).

        Idle: established, and no DIMSE command from the peer yet. The reading side of the connection
        is shut down; the serving thread's blocked read then returns and :meth:`end` sends the
        A-ABORT (from the thread that owns the connection: a TLS connection cannot be written from
        two threads) and labels the outcome ``idle_timeout``. True the first time it expires.
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
        if isinstance(exc, AssociationAbort):
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
        if isinstance(exc, TimeoutError):  # a receive or a send outlasted the socket's timeout
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
            if self._data is not None:
                self._data.discard()
            self._close()
            if outcome not in ("released", "rejected", "refused"):
                metrics.ABORTS.labels(reason=outcome).inc()
            self._audit_closed(outcome)
        finally:
            if self._on_closed is not None:
                self._on_closed()

    def _audit_closed(self, outcome: str) -> None:
        """The ``association_closed`` audit event of an established association (every instance's
        final outcome is counted: the after-reply work ran on this thread)."""
        if not self._accepted:
            return
        stats = self._data.stats if self._data is not None else Stats()
        audit.emit(
            "association_closed",
            calling_ae=self._calling_ae,
            peer_ip=self._peer_ip,
            outcome=outcome,
            instances_by_study=json.dumps(dict(stats.stored), sort_keys=True),
            duplicates=stats.duplicates,
            refused=stats.refused,
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

    # ---- data phase ----------------------------------------------------------------------

    def _serve(self) -> str:
        """The data phase on this thread (:class:`~.data_phase.DataPhase`); its outcome."""
        config = self._config
        self._data = DataPhase(
            self._sock,
            self._accepted,
            self._peer_max_pdu,
            self._sink,
            max_pdu_bytes=config.max_pdu_bytes,
            dimse_timeout_s=config.dimse_timeout_s,
            network_timeout_s=config.network_timeout_s,
            on_first_command=self._no_longer_idle,
        )
        return self._data.serve()

    def _no_longer_idle(self) -> None:
        with self._setup_lock:
            self._idle_deadline = None

    # ---- sending -------------------------------------------------------------------------

    def _send_quietly(self, data: bytes) -> None:
        try:
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
