"""Request command sets encoded by pynetdicom (implicit VR little endian, group length first), for
tests that send or decode them."""

from __future__ import annotations

from io import BytesIO

from pydicom.uid import MRImageStorage
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import encode


def store_command(message_id: int, sop_uid: str, move_originator: bool = False) -> bytes:
    """A C-STORE-RQ for an MR instance (optionally with the Move Originator fields)."""
    primitive = C_STORE()
    primitive.MessageID, primitive.Priority = message_id, 2
    primitive.AffectedSOPClassUID, primitive.AffectedSOPInstanceUID = MRImageStorage, sop_uid
    primitive.DataSet = BytesIO(b"\x00" * 8)
    if move_originator:
        primitive.MoveOriginatorApplicationEntityTitle, primitive.MoveOriginatorMessageID = "MOVER", 9
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    data = encode(message.command_set, True, True)
    assert data is not None
    return data


def echo_command(message_id: int) -> bytes:
    """A C-ECHO-RQ."""
    primitive = C_ECHO()
    primitive.MessageID = message_id
    message = C_ECHO_RQ()
    message.primitive_to_message(primitive)
    data = encode(message.command_set, True, True)
    assert data is not None
    return data
