"""A raw DICOM association requestor for tests: sends well-formed or hostile PDUs on purpose.

Real SCUs (dcmtk, pynetdicom) refuse to send most of what the listener must survive (4 GiB PDU
announcements, deflate bombs, UIDs such as ``../x``, truncated data sets, stalls mid-message), so
the defence tests use this peer. PDUs are encoded with pynetdicom's PDU classes and pydicom; only
the framing is done here. A test helper (tests and benchmarks), not part of the service.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID
from pynetdicom.dsutils import encode
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, ImplementationClassUIDNotification, MaximumLengthNotification
from pynetdicom.presentation import PresentationContext

from oncohabitat.listener import pdu_io
from oncohabitat.listener.negotiation import APPLICATION_CONTEXT


class AssociationRejectedError(Exception):
    """The listener answered A-ASSOCIATE-RJ with ``(result, source, diagnostic)``."""

    def __init__(self, result: int, source: int, diagnostic: int) -> None:
        super().__init__(f"association rejected ({result}, {source}, {diagnostic})")
        self.result, self.source, self.diagnostic = result, source, diagnostic


@dataclass(frozen=True)
class StoreResponse:
    """Status and Error Comment of a C-STORE-RSP."""

    status: int
    error_comment: str


def encode_store_request(message_id: int, sop_class_uid: str, sop_instance_uid: str) -> bytes:
    """A C-STORE-RQ command set (implicit VR LE, group length first); UIDs are sent as given."""
    ds = Dataset()
    ds.AffectedSOPClassUID = sop_class_uid
    ds.CommandField = 0x0001
    ds.MessageID = message_id
    ds.Priority = 0
    ds.CommandDataSetType = 0x0000
    ds.AffectedSOPInstanceUID = sop_instance_uid
    body = encode(ds, True, True)
    assert body is not None
    return struct.pack("<HHLL", 0, 0, 4, len(body)) + body


def encode_associate_request(
    contexts: Sequence[tuple[str, Sequence[str]]],
    *,
    calling_ae: str = "RAWPEER",
    called_ae: str = "ONCOHABITAT",
    max_pdu: int = 16384,
) -> bytes:
    """An A-ASSOCIATE-RQ PDU proposing ``contexts`` (presentation context ids 1, 3, 5, ...)."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = UID(APPLICATION_CONTEXT)
    primitive.calling_ae_title = calling_ae
    primitive.called_ae_title = called_ae
    requested = []
    for index, (abstract, syntaxes) in enumerate(contexts):
        context = PresentationContext()
        context.context_id = 2 * index + 1
        context.abstract_syntax = UID(abstract)
        context.transfer_syntax = [UID(ts) for ts in syntaxes]
        requested.append(context)
    primitive.presentation_context_definition_list = requested
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = max_pdu
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    primitive.user_information = [max_length, implementation]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


class RawPeer:
    """One TCP connection to the listener (``timeout_s`` for every socket operation).

    ``source_ip``: the local address to connect from (e.g. ``127.0.0.2``: another peer address on
    the loopback network); None = the system's choice.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout_s: float = 10.0,
        tls: ssl.SSLContext | None = None,
        source_ip: str | None = None,
    ) -> None:
        source = (source_ip, 0) if source_ip is not None else None
        sock = socket.create_connection((host, port), timeout=timeout_s, source_address=source)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = tls.wrap_socket(sock, server_hostname=host) if tls is not None else sock
        self.accepted: dict[int, tuple[str, str]] = {}

    def associate(
        self,
        contexts: Sequence[tuple[str, Sequence[str]]],
        *,
        calling_ae: str = "RAWPEER",
        called_ae: str = "ONCOHABITAT",
        max_pdu: int = 16384,
    ) -> dict[int, tuple[str, str]]:
        """Request an association; returns accepted ``{context_id: (abstract, transfer syntax)}``.

        Raises:
            AssociationRejectedError: the listener rejected the association.
            ConnectionClosedError: the listener closed the connection instead.
        """
        self.sock.sendall(
            encode_associate_request(contexts, calling_ae=calling_ae, called_ae=called_ae, max_pdu=max_pdu)
        )
        reply = pdu_io.read_pdu(self.sock, {pdu_io.ASSOCIATE_AC: 1 << 20, pdu_io.ASSOCIATE_RJ: 64, pdu_io.ABORT: 64})
        raw = pdu_io.HEADER.pack(reply.pdu_type, 0, len(reply.body)) + bytes(reply.body)
        if reply.pdu_type == pdu_io.ASSOCIATE_RJ:
            rj = A_ASSOCIATE_RJ()
            rj.decode(raw)
            raise AssociationRejectedError(int(rj.result or 0), int(rj.source or 0), int(rj.reason_diagnostic or 0))
        if reply.pdu_type != pdu_io.ASSOCIATE_AC:
            raise pdu_io.ConnectionClosedError("association aborted")
        ac = A_ASSOCIATE_AC()
        ac.decode(raw)
        by_id = {2 * index + 1: str(abstract) for index, (abstract, _) in enumerate(contexts)}  # as requested
        self.accepted = {
            int(cx.context_id): (by_id[int(cx.context_id)], str(cx.transfer_syntax[0]))
            for cx in ac.to_primitive().presentation_context_definition_results_list
            if cx.result == 0 and cx.context_id is not None
        }
        return self.accepted

    def context_for(self, sop_class_uid: str) -> int:
        """The accepted context ID of a SOP class."""
        return next(cid for cid, (abstract, _) in self.accepted.items() if abstract == sop_class_uid)

    def send_message(
        self, context_id: int, command: bytes, dataset: bytes | None, *, fragment: int = 16000, last: bool = True
    ) -> None:
        """Send a command set and (optionally) a data set as P-DATA-TF PDUs of ``fragment`` bytes.

        With ``last=False`` the data set's final fragment is not flagged as last (a stalled message).
        """
        self.sock.sendall(pdu_io.encode_pdata(context_id, pdu_io.CONTROL_COMMAND | pdu_io.CONTROL_LAST, command))
        if dataset is None:
            return
        chunks = [dataset[i : i + fragment] for i in range(0, len(dataset), fragment)] or [b""]
        for index, chunk in enumerate(chunks):
            flag = pdu_io.CONTROL_LAST if last and index == len(chunks) - 1 else 0
            self.sock.sendall(pdu_io.encode_pdata(context_id, flag, chunk))

    def read_response(self) -> StoreResponse:
        """Read the next response command set.

        Raises:
            ConnectionClosedError: the listener aborted or closed the association.
        """
        pdu = pdu_io.read_pdu(self.sock, {pdu_io.P_DATA_TF: 1 << 20, pdu_io.ABORT: 64})
        if pdu.pdu_type != pdu_io.P_DATA_TF:
            raise pdu_io.ConnectionClosedError("association aborted by the listener")
        data = b"".join(bytes(chunk) for _, _, chunk in pdu_io.iter_pdvs(pdu.body))
        ds = read_dataset(BytesIO(data), True, True)
        comment = ds.get("ErrorComment", "")
        return StoreResponse(int(ds.Status), str(comment).strip())

    def c_store(
        self, sop_class_uid: str, sop_instance_uid: str, dataset: bytes, *, message_id: int = 1, context_id: int = 0
    ) -> StoreResponse:
        """C-STORE ``dataset`` (already encoded in the context's transfer syntax) and read the answer."""
        cid = context_id or self.context_for(sop_class_uid)
        self.send_message(cid, encode_store_request(message_id, sop_class_uid, sop_instance_uid), dataset)
        return self.read_response()

    def release(self) -> bool:
        """Send A-RELEASE-RQ; True when A-RELEASE-RP came back."""
        self.sock.sendall(pdu_io.HEADER.pack(pdu_io.RELEASE_RQ, 0, 4) + b"\x00" * 4)
        try:
            reply = pdu_io.read_pdu(self.sock, {pdu_io.RELEASE_RP: 64, pdu_io.ABORT: 64, pdu_io.P_DATA_TF: 1 << 20})
        except (pdu_io.ConnectionClosedError, OSError):
            return False
        return reply.pdu_type == pdu_io.RELEASE_RP

    def read_abort(self, wait_s: float = 5.0) -> bool:
        """True when the listener's next PDU within ``wait_s`` is an A-ABORT (then the connection closes)."""
        self.sock.settimeout(wait_s)
        try:
            pdu = pdu_io.read_pdu(self.sock, {pdu_io.ABORT: 64, pdu_io.P_DATA_TF: 1 << 20, pdu_io.RELEASE_RP: 64})
        except (pdu_io.ConnectionClosedError, pdu_io.PduError, OSError):
            return False
        return pdu.pdu_type == pdu_io.ABORT

    def closed_by_peer(self, wait_s: float = 5.0) -> bool:
        """True when the listener closed the connection (EOF or reset) within ``wait_s``."""
        self.sock.settimeout(wait_s)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except TimeoutError:
            return False
        except OSError:
            return True

    def close(self) -> None:
        """Close the connection."""
        try:
            self.sock.close()
        except OSError:
            pass
