"""The data phase of an established association: P-DATA-TF PDUs -> DIMSE messages -> C-ECHO / C-STORE.

Runs on the association's thread after the A-ASSOCIATE-AC; blocking reads are bounded by the network
timeout (between messages) or the DIMSE timeout (within one). A command is reassembled (at most
:data:`~.dimse.MAX_COMMAND_BYTES`); a C-STORE's data set streams into a bounded :class:`~.spool.DatasetSpool`,
then goes to the :class:`~.cstore.StoreHandler`, whose success means durable: only then is the C-STORE-RSP sent.
"""

from __future__ import annotations

import logging
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from pynetdicom.presentation import PresentationContext

from oncohabitat.dicomio.identifiers import is_valid_uid
from oncohabitat.listener import dimse, pdu_io, status
from oncohabitat.listener.cstore import StoreHandler, StoreRequest, StoreResult
from oncohabitat.listener.dimse import MAX_COMMAND_BYTES, Command, decode_command, encode_response
from oncohabitat.listener.index import AddOutcome
from oncohabitat.listener.spool import DatasetSpool

_LOG = logging.getLogger(__name__)

#: Status answered for a C-STORE on a context whose abstract syntax is another SOP class.
SOP_CLASS_NOT_SUPPORTED = 0x0122
#: The Verification SOP Class: a C-ECHO is answered with success only on a context of this class.
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
_RELEASE_OR_ABORT = 64  # A-RELEASE-RQ / A-ABORT bodies are 4 bytes


class AssociationAbort(Exception):  # noqa: N818 - control flow: end the association with a reason label
    """The peer broke the DIMSE protocol: the association is aborted; ``reason`` is the outcome label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class PendingStore:
    """A C-STORE whose command arrived and whose data set is being received."""

    context_id: int
    command: Command
    transfer_syntax: str
    spool: DatasetSpool | None
    early: tuple[str, int] | None = None  # refusal decided from the command alone (reason, status)


@dataclass
class Stats:
    """What an association stored, for its closing audit event (final outcomes)."""

    stored: Counter[str] = field(default_factory=Counter)  # instances stored per study key
    duplicates: int = 0
    refused: int = 0


class DataPhase:
    """Serves the DIMSE messages of one established association (``sock``: after any TLS handshake).

    ``peer_max_pdu``: the peer's Maximum Length Received (bytes, 0 = unlimited); ``max_pdu_bytes`` and the
    timeouts (s): see :class:`~.association.AssociationConfig`; ``on_first_command``: called once, when the
    peer's first DIMSE command is complete.
    """

    def __init__(
        self,
        sock: socket.socket,
        accepted: dict[int, PresentationContext],
        peer_max_pdu: int,
        sink: StoreHandler,
        *,
        max_pdu_bytes: int = 262_144,
        dimse_timeout_s: float = 30.0,
        network_timeout_s: float = 60.0,
        on_first_command: Callable[[], None] | None = None,
    ) -> None:
        self._sock = sock
        self._accepted = accepted
        self._peer_max_pdu = peer_max_pdu
        self._sink = sink
        self._dimse_timeout_s = dimse_timeout_s
        self._network_timeout_s = network_timeout_s
        self._on_first_command = on_first_command
        self._limits = {
            pdu_io.P_DATA_TF: max_pdu_bytes,
            pdu_io.RELEASE_RQ: _RELEASE_OR_ABORT,
            pdu_io.ABORT: _RELEASE_OR_ABORT,
        }
        self.stats = Stats()
        self._command = bytearray()  # command fragments of the message being received
        self._command_context = 0  # their presentation context
        self._current: PendingStore | None = None  # the C-STORE whose data set is being received

    @property
    def in_message(self) -> bool:
        """True once a message has started (the DIMSE timeout applies, not the network timeout)."""
        return self._current is not None or bool(self._command)

    def serve(self) -> str:
        """Receive and answer PDUs until release or abort; the outcome (``released``, ``peer_abort``).

        Raises:
            AssociationAbort, PduError, TimeoutError, OSError: the association must end.
        """
        reader = pdu_io.PduReader(self._sock)
        current_timeout: float | None = None
        while True:
            timeout = self._dimse_timeout_s if self.in_message else self._network_timeout_s
            if timeout != current_timeout:  # a system call: only when it changes
                self._sock.settimeout(timeout)
                current_timeout = timeout
            outcome = self.handle_pdu(reader.read(self._limits))
            if outcome is not None:
                return outcome

    def discard(self) -> None:
        """Drop the data set being received, if any (the association ended mid-message)."""
        pending, self._current = self._current, None
        if pending is not None and pending.spool is not None:
            pending.spool.discard()

    def handle_pdu(self, pdu: pdu_io.Pdu) -> str | None:
        """Act on one received PDU; the outcome once the association ends (raises as :meth:`serve`)."""
        if pdu.pdu_type == pdu_io.ABORT:
            return "peer_abort"
        if pdu.pdu_type == pdu_io.RELEASE_RQ:
            if self.in_message:
                raise AssociationAbort("release_mid_message")
            self._sock.sendall(pdu_io.RELEASE_RP_PDU)
            return "released"
        for context_id, control, data in pdu_io.iter_pdvs(pdu.body):
            if context_id not in self._accepted:
                raise AssociationAbort("unknown_context")
            pending = self._current
            if control & pdu_io.CONTROL_COMMAND:
                if pending is not None:
                    raise AssociationAbort("command_mid_dataset")
                command = self._command
                if command and context_id != self._command_context:
                    raise AssociationAbort("command_context_changed")  # one message's fragments share a context
                self._command_context = context_id
                command += data
                if len(command) > MAX_COMMAND_BYTES:
                    raise AssociationAbort("command_too_large")
                if control & pdu_io.CONTROL_LAST:
                    if self._on_first_command is not None:  # no longer idle
                        self._on_first_command()
                        self._on_first_command = None
                    self._current = self._on_command(context_id, decode_command(bytes(command)))
                    command.clear()
            else:
                if pending is None or pending.context_id != context_id:
                    raise AssociationAbort("unexpected_dataset")
                if pending.spool is not None:
                    try:
                        pending.spool.append(data)
                    except OSError as exc:  # spilling to disk failed: refuse it, stay in step with the peer
                        _LOG.error("data set spool cannot be written: %s", exc.strerror)
                        pending.spool = None
                        pending.early = ("write_error", status.OUT_OF_RESOURCES)
                if control & pdu_io.CONTROL_LAST:
                    self._current = None
                    self._finish_store(pending)
        return None

    def _on_command(self, context_id: int, command: Command) -> PendingStore | None:
        context = self._accepted[context_id]
        if command.command_field == dimse.C_ECHO_RQ:
            if command.has_dataset:
                raise AssociationAbort("echo_with_dataset")
            verification = str(context.abstract_syntax) == VERIFICATION_SOP_CLASS
            self._respond(
                context_id, dimse.C_ECHO_RSP, command, status.SUCCESS if verification else SOP_CLASS_NOT_SUPPORTED
            )
            return None
        if command.command_field != dimse.C_STORE_RQ:
            raise AssociationAbort("unsupported_command")
        transfer_syntax = str(context.transfer_syntax[0])
        pending = PendingStore(context_id, command, transfer_syntax, None)
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
            self._finish_store(pending)
            return None
        return pending

    def _finish_store(self, pending: PendingStore) -> None:
        """Store a completely received C-STORE, then answer it (raises when the reply cannot be sent)."""
        result = self._store(pending)
        self._count(result)
        comment = result.reason if result.status != status.SUCCESS else ""
        self._respond(pending.context_id, dimse.C_STORE_RSP, pending.command, result.status, comment)

    def _store(self, pending: PendingStore) -> StoreResult:
        """Store a completely received C-STORE (never raises); the result to answer."""
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
            return self._sink.handle_store(request)
        except Exception:  # noqa: BLE001 - store boundary: answer a failure, keep the association
            pending.spool.discard()
            _LOG.error("C-STORE handler failed unexpectedly", exc_info=True)
            return self._sink.refuse("internal_error", status.UNEXPECTED_ERROR)

    def _count(self, result: StoreResult) -> None:
        if result.outcome is AddOutcome.STORED or result.outcome is AddOutcome.REPLACED:
            self.stats.stored[result.study_key or ""] += 1
        elif result.outcome is not None:
            self.stats.duplicates += 1
        else:
            self.stats.refused += 1

    def _respond(self, context_id: int, field_: int, command: Command, code: int, comment: str = "") -> None:
        """Send a response command set, fragmented to the peer's maximum PDU length."""
        data = encode_response(
            field_, command.message_id, command.affected_sop_class_uid, command.affected_sop_instance_uid, code, comment
        )
        limit = self._peer_max_pdu - 6 if self._peer_max_pdu > 6 else len(data)
        chunks = [data[i : i + limit] for i in range(0, len(data), limit)]
        pdus = [pdu_io.encode_pdata(context_id, pdu_io.CONTROL_COMMAND, chunk) for chunk in chunks[:-1]]
        pdus.append(pdu_io.encode_pdata(context_id, pdu_io.CONTROL_COMMAND | pdu_io.CONTROL_LAST, chunks[-1]))
        self._sock.sendall(b"".join(pdus))
