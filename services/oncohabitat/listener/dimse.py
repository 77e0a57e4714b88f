"""DIMSE command sets of the Storage and Verification SCP (PS3.7 section 9.3).

Requests are decoded with pydicom's ``read_dataset`` (implicit VR little endian, as every command
set is), reading raw element values. Responses are fixed, small command sets; they are encoded here with ``struct``
(about 5 us instead of ~120 us through a pydicom ``Dataset``: this runs once per received
instance). The unit tests decode every response with pynetdicom to prove the encoding.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset

from oncohabitat.listener.pdu_io import PduError

C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
#: CommandDataSetType value meaning "no data set follows".
NO_DATASET = 0x0101
#: Largest command set accepted (they are a few hundred bytes).
MAX_COMMAND_BYTES = 64 * 1024
_ERROR_COMMENT_LENGTH = 64


@dataclass(frozen=True)
class Command:
    """The fields of a request command set the SCP uses (UIDs as raw text, not yet validated)."""

    command_field: int
    message_id: int
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    has_dataset: bool


def raw_text(ds: Dataset, keyword: str) -> str | None:
    """An element's text without pydicom's value conversion/validation (which logs bad values).

    Trailing NUL/space padding is removed; bytes that are not ASCII become U+FFFD (an invalid
    UID); multi-valued or non-text values give ``""``; a missing element gives None.
    """
    element = ds.get_item(keyword)
    if element is None:
        return None
    value = element.value
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str):
        return ""
    return value.rstrip("\x00 ")


def _raw_us(ds: Dataset, tag: int) -> int | None:
    element = ds.get_item(tag)
    if element is None or not isinstance(element.value, bytes) or len(element.value) != 2:
        return None
    return int.from_bytes(element.value, "little")


def decode_command(data: bytes) -> Command:
    """Decode a complete command set (raw element values: no pydicom value conversion per message).

    Raises:
        PduError: the command set is not decodable or lacks CommandField/MessageID.
    """
    try:
        ds = read_dataset(BytesIO(data), True, True)
        command_field = _raw_us(ds, 0x00000100)
        message_id = _raw_us(ds, 0x00000110)
        dataset_type = _raw_us(ds, 0x00000800)
        sop_class = raw_text(ds, "AffectedSOPClassUID") or ""
        sop_instance = raw_text(ds, "AffectedSOPInstanceUID") or ""
    except (ValueError, TypeError, KeyError, IndexError, struct.error, EOFError, AttributeError) as exc:
        raise PduError(f"command set cannot be decoded ({type(exc).__name__})") from exc
    if command_field is None or message_id is None:
        raise PduError("command set lacks a CommandField or MessageID")
    return Command(
        command_field=command_field,
        message_id=message_id,
        affected_sop_class_uid=sop_class,
        affected_sop_instance_uid=sop_instance,
        has_dataset=dataset_type is not None and dataset_type != NO_DATASET,
    )


def _element(group: int, element: int, value: bytes) -> bytes:
    return struct.pack("<HHL", group, element, len(value)) + value


def _uid(value: str) -> bytes:
    raw = value.encode("ascii", errors="replace")
    return raw + b"\x00" if len(raw) % 2 else raw


def _text(value: str) -> bytes:
    raw = value.encode("ascii", errors="replace")[:_ERROR_COMMENT_LENGTH]
    return raw + b" " if len(raw) % 2 else raw


def encode_response(
    command_field: int,
    message_id: int,
    sop_class_uid: str,
    sop_instance_uid: str,
    status: int,
    error_comment: str = "",
) -> bytes:
    """A response command set (no data set) in implicit VR little endian, group length first.

    ``error_comment`` (at most 64 ASCII characters, never patient data) is sent with failures.
    """
    elements = [
        _element(0x0000, 0x0002, _uid(sop_class_uid)) if sop_class_uid else b"",
        _element(0x0000, 0x0100, struct.pack("<H", command_field)),
        _element(0x0000, 0x0120, struct.pack("<H", message_id & 0xFFFF)),
        _element(0x0000, 0x0800, struct.pack("<H", NO_DATASET)),
        _element(0x0000, 0x0900, struct.pack("<H", status)),
        _element(0x0000, 0x0902, _text(error_comment)) if error_comment else b"",
        _element(0x0000, 0x1000, _uid(sop_instance_uid)) if sop_instance_uid else b"",
    ]
    body = b"".join(elements)
    return _element(0x0000, 0x0000, struct.pack("<L", len(body))) + body
