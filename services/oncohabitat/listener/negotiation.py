"""Association negotiation as acceptor with pynetdicom's PDU classes: A-ASSOCIATE-RQ decoding,
presentation context and SCP/SCU role negotiation, A-ASSOCIATE-AC/-RJ encoding. Access control is
the caller's (:mod:`.access`).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.uid import UID
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor

from oncohabitat.listener.pdu_io import ASSOCIATE_RQ, HEADER, PduError

#: DICOM application context name (PS3.7 annex A.2.1).
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

# A-ASSOCIATE-RJ (result, source, diagnostic), PS3.8 9.3.4.
REJECT_CALLING_AE = (0x01, 0x01, 0x03)  # permanent, service user, calling AE title not recognised
REJECT_CALLED_AE = (0x01, 0x01, 0x07)  # permanent, service user, called AE title not recognised
REJECT_APPLICATION_CONTEXT = (0x01, 0x01, 0x02)  # permanent, service user, application context not supported
REJECT_BUSY = (0x02, 0x03, 0x02)  # transient, service provider (presentation), local limit exceeded
REJECT_NO_RESOURCES = (0x02, 0x01, 0x01)  # transient, service user, no reason given (disk watermark)

_DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, struct.error, UnicodeDecodeError, AttributeError)


@dataclass(frozen=True)
class AssociationRequest:
    """A decoded A-ASSOCIATE-RQ (``peer_max_pdu``: the peer's Maximum Length Received, 0 = unlimited)."""

    calling_ae: str
    called_ae: str
    application_context: str
    peer_max_pdu: int
    primitive: A_ASSOCIATE


def decode_request(body: bytes | bytearray) -> AssociationRequest:
    """Decode an A-ASSOCIATE-RQ body (without its 6-byte header); PduError when it cannot be."""
    pdu = A_ASSOCIATE_RQ()
    try:
        pdu.decode(HEADER.pack(ASSOCIATE_RQ, 0, len(body)) + bytes(body))
        primitive = pdu.to_primitive()
        calling = str(primitive.calling_ae_title).strip()
        called = str(primitive.called_ae_title).strip()
        context_name = str(primitive.application_context_name or "")
        peer_max = int(primitive.maximum_length_received or 0)
    except _DECODE_ERRORS as exc:
        raise PduError(f"A-ASSOCIATE-RQ cannot be decoded ({type(exc).__name__})") from exc
    return AssociationRequest(calling, called, context_name, peer_max, primitive)


def negotiate_contexts(
    request: AssociationRequest, supported: Sequence[PresentationContext]
) -> tuple[list[PresentationContext], list[SCP_SCU_RoleSelectionNegotiation]]:
    """Presentation context results (accepted and rejected, by context ID) and role items to answer."""
    roles = {
        UID(item.sop_class_uid): (item.scu_role, item.scp_role)
        for item in request.primitive.user_information
        if isinstance(item, SCP_SCU_RoleSelectionNegotiation) and item.sop_class_uid is not None
    }
    results, role_items = negotiate_as_acceptor(
        request.primitive.presentation_context_definition_list, list(supported), roles or None
    )
    return list(results), list(role_items)


def encode_accept(
    request: AssociationRequest,
    results: Sequence[PresentationContext],
    role_items: Sequence[SCP_SCU_RoleSelectionNegotiation],
    max_pdu: int,
) -> bytes:
    """The A-ASSOCIATE-AC PDU: our maximum P-DATA length ``max_pdu`` (bytes) and implementation UID."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = UID(APPLICATION_CONTEXT)
    primitive.calling_ae_title = request.primitive.calling_ae_title
    primitive.called_ae_title = request.primitive.called_ae_title
    primitive.result = 0x00
    primitive.result_source = 0x01
    primitive.presentation_context_definition_results_list = list(results)
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = max_pdu
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = PYNETDICOM_IMPLEMENTATION_VERSION
    primitive.user_information = [max_length, implementation, version, *role_items]
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def encode_reject(result: int, source: int, diagnostic: int) -> bytes:
    """An A-ASSOCIATE-RJ PDU (see the ``REJECT_*`` triples)."""
    primitive = A_ASSOCIATE()
    primitive.result = result
    primitive.result_source = source
    primitive.diagnostic = diagnostic
    pdu = A_ASSOCIATE_RJ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())
