"""One DICOM association as acceptor, served from acceptance to close on its own thread.

Life cycle::

    [TLS handshake] -> A-ASSOCIATE-RQ (ACSE timeout) -> access checks -> A-ASSOCIATE-AC | -RJ
    -> data phase (:mod:`.data_phase`): C-ECHO / C-STORE (idle timeout until the first message,
       network timeout between messages, DIMSE timeout inside one)
    -> A-RELEASE-RQ/RP | A-ABORT | timeout | protocol error (A-ABORT sent) -> socket closed

Blocking reads with explicit timeouts, no polling; the ACSE and idle deadlines are totals checked
from the acceptor thread. PDU lengths are bounded before allocation (:mod:`.pdu_io`). Every failure
maps to an outcome label and ends this association only, never the process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pynetdicom.presentation import PresentationContext

from oncohabitat.listener import audit, metrics, negotiation, pdu_io
from oncohabitat.listener.access import AccessPolicy
from oncohabitat.listener.cstore import StoreHandler
from oncohabitat.listener.data_phase import AssociationAbort, DataPhase, Stats

_LOG = logging.getLogger(__name__)

#: Refusal reasons answered "transient, local limit exceeded" (PS3.8 9.3.4: result 2, source 3,
#: reason 2): the association limit and the limit of the peer's address.
LIMIT_REASONS = frozenset({"busy", "peer_limit"})


@dataclass(frozen=True)
class AssociationConfig:
    """Protocol settings of the acceptor (times in s, sizes in bytes).

    Attributes:
        contexts: presentation contexts we support.
        max_pdu_bytes: largest P-DATA-TF PDU we accept (announced as Maximum Length Received).
        max_request_bytes: largest A-ASSOCIATE-RQ accepted.
        acse_timeout_s: TLS handshake and A-ASSOCIATE-RQ together, a total from the connection's
            acceptance (trickled bytes cannot stretch it; see :meth:`Association.expire_setup`).
        dimse_timeout_s: longest wait for the next fragment of a started message, and for sending a reply.
        network_timeout_s: longest idle time between messages.
        idle_timeout_s: an association without a DIMSE message this long after its A-ASSOCIATE-AC
            is aborted (a total, see :meth:`Association.expire_idle`); 0 = off.
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
    """Serves one accepted TCP connection (``peer``: ``(ip, port)``) until it ends (see module doc).

    ``busy_reason`` is called once the request is decoded: a non-empty reason label refuses the
    association transiently (``"busy"``: association limit, ``"peer_limit"``: the peer address's
    limit, ``"disk_low"``: watermark). ``on_closed`` is called once, when it has ended.
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
        # abort-as-idle time; under _setup_lock set with the A-ASSOCIATE-AC, cleared by the 1st command
        self._idle_deadline: float | None = None
        self._idle_expired = False  # expire_idle() shut its reading side down

    def run(self) -> None:
        """Serve the connection on this thread until it ends, then :meth:`end` it; never raises."""
        outcome = "closed"
        try:
            if self._handshake() and self._negotiate():
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
                outcome = self._data.serve()
        except Exception as exc:  # noqa: BLE001 - boundary of one association (see outcome_of)
            outcome = self.outcome_of(exc)
        if self._setup_expired:
            outcome = "acse_timeout"
            if not self._rejection_audited:  # a refusal whose A-ASSOCIATE-RJ was cut off is audited already
                self._reject_audit(outcome, "")
        self.end(outcome)

    def expire_setup(self, now: float) -> bool:
        """Interrupt the association if it is still being set up at ``now`` (monotonic s) past its ACSE
        deadline (another thread); True the first time.

        Socket timeouts bound each wait, not the set-up: a peer sending one byte per timeout would
        hold a slot indefinitely. Interrupts again at every call (a TLS wrap may swap the socket).
        """
        with self._setup_lock:
            if not self._setting_up or now < self._setup_deadline:
                return False
            first = not self._setup_expired
            self._setup_expired = True
        self.interrupt()
        return first

    def expire_idle(self, now: float) -> bool:
        """Shut the reading side down if the association is still idle (established, no DIMSE command
        yet) at ``now`` past its idle deadline (another thread); True the first time.

        :meth:`end` then sends the A-ABORT from the serving thread (a TLS connection cannot be
        written from two threads) and labels the outcome ``idle_timeout``.
        """
        with self._setup_lock:
            deadline = self._idle_deadline
            if deadline is None or now < deadline or self._idle_expired or self._ended:
                return False
            self._idle_expired = True
        with contextlib.suppress(OSError):  # already closed
            socket.socket.shutdown(self._sock, socket.SHUT_RD)
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
            idle = self._idle_deadline
            return "idle_timeout" if idle is not None and time.monotonic() >= idle else "timeout"
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
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            if outcome not in ("released", "rejected", "refused"):
                metrics.ABORTS.labels(reason=outcome).inc()
            if self._accepted:  # established: its closing audit event
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
        finally:
            if self._on_closed is not None:
                self._on_closed()

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
        request = negotiation.decode_request(pdu.body)
        self._calling_ae = request.calling_ae[:16]
        refusal = self._refusal(request)
        if refusal is not None:
            reason, triple = refusal
            self._reject_audit(reason, request.called_ae)  # recorded before the peer learns it
            self._sock.sendall(negotiation.encode_reject(*triple))
            return False
        results, roles = negotiation.negotiate_contexts(request, self._config.contexts)
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
        self._sock.sendall(negotiation.encode_accept(request, results, roles, self._config.max_pdu_bytes))
        return True

    def _refusal(self, request: negotiation.AssociationRequest) -> tuple[str, tuple[int, int, int]] | None:
        access = self._config.access
        if request.application_context != negotiation.APPLICATION_CONTEXT:
            return "application_context", negotiation.REJECT_APPLICATION_CONTEXT
        if not access.called_allowed(request.called_ae):
            return "called_ae_not_recognised", negotiation.REJECT_CALLED_AE
        if not access.calling_allowed(request.calling_ae):
            return "calling_ae_not_allowed", negotiation.REJECT_CALLING_AE
        busy = self._busy_reason()
        if busy:
            return busy, negotiation.REJECT_BUSY if busy in LIMIT_REASONS else negotiation.REJECT_NO_RESOURCES
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

    def _no_longer_idle(self) -> None:
        with self._setup_lock:
            self._idle_deadline = None

    def _send_quietly(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self._sock.settimeout(1.0)
            self._sock.sendall(data)

    def interrupt(self) -> None:
        """Shut the TCP connection down (from another thread) so that the serving thread's read returns;
        under any TLS layer, as ``SSLSocket.shutdown`` would drop the TLS state that thread is using."""
        with contextlib.suppress(OSError):  # already closed
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
