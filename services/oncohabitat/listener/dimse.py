"""DIMSE command sets of the Storage and Verification SCP (PS3.7 section 9.3).

Requests are decoded without a ``Dataset``: pydicom's ``data_element_generator`` walks the command set,
keeping only the raw values of the five fields used (pydicom's reading quirks and errors apply).
Responses are small fixed command sets encoded with ``struct`` (far cheaper than a ``Dataset``, once
per instance); the unit tests decode them with pynetdicom.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from io import BytesIO

from pydicom import config
from pydicom.dataset import Dataset
from pydicom.filereader import _is_implicit_vr, data_element_generator

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
    return value.rstrip("\x00 ") if isinstance(value, str) else _raw_uid(value)


_COMMAND_FIELD, _MESSAGE_ID, _DATASET_TYPE = 0x00000100, 0x00000110, 0x00000800
_AFFECTED_SOP_CLASS, _AFFECTED_SOP_INSTANCE = 0x00000002, 0x00001000
_COMMAND_TAGS = frozenset({_COMMAND_FIELD, _MESSAGE_ID, _DATASET_TYPE, _AFFECTED_SOP_CLASS, _AFFECTED_SOP_INSTANCE})
_DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, struct.error, EOFError, AttributeError, OSError)


def _raw_us(value: object) -> int | None:
    """A raw US value (exactly 2 bytes, little endian), else None."""
    if isinstance(value, bytes) and len(value) == 2:
        return value[0] | value[1] << 8
    return None


def _raw_uid(value: object) -> str:
    """A raw text value (bytes) without padding, as :func:`raw_text`; ``""`` for non-bytes values."""
    if not isinstance(value, bytes):
        return ""
    return value.decode("ascii", errors="replace").rstrip("\x00 ")


def _command_values(data: bytes) -> dict[int, object]:
    """Raw values of the command fields used, last occurrence winning, read as pydicom's ``read_dataset``
    does: VR encoding from the first element, an element cut by the end ends the walk (unless RAISE mode).
    """
    stream = BytesIO(data)
    implicit = _is_implicit_vr(stream, True, True, None, is_sequence=False)
    stream.seek(0)
    values: dict[int, object] = {}
    try:
        for element in data_element_generator(stream, implicit, True):
            tag = element.tag.real  # a plain int: BaseTag compares through Python methods
            if tag in _COMMAND_TAGS:
                values[tag] = element.value
    except EOFError:
        if config.settings.reading_validation_mode == config.RAISE:
            raise
    return values


def decode_command(data: bytes) -> Command:
    """Decode a complete command set; PduError when it is not decodable or lacks CommandField/MessageID."""
    try:
        values = _command_values(data)
    except _DECODE_ERRORS as exc:
        raise PduError(f"command set cannot be decoded ({type(exc).__name__})") from exc
    command_field, message_id = _raw_us(values.get(_COMMAND_FIELD)), _raw_us(values.get(_MESSAGE_ID))
    if command_field is None or message_id is None:
        raise PduError("command set lacks a CommandField or MessageID")
    dataset_type = _raw_us(values.get(_DATASET_TYPE))
    sop_class, sop_uid = _raw_uid(values.get(_AFFECTED_SOP_CLASS)), _raw_uid(values.get(_AFFECTED_SOP_INSTANCE))
    return Command(command_field, message_id, sop_class, sop_uid, dataset_type not in (None, NO_DATASET))


def _element(element: int, value: bytes) -> bytes:
    """A group 0000 element, implicit VR little endian."""
    return struct.pack("<HHL", 0x0000, element, len(value)) + value


def _even(value: str, pad: bytes, limit: int | None = None) -> bytes:
    """ASCII (others as ``?``), cut to ``limit`` characters, padded with ``pad`` to an even length."""
    raw = value.encode("ascii", errors="replace")[:limit]
    return raw + pad if len(raw) % 2 else raw


def encode_response(
    command_field: int, message_id: int, sop_class_uid: str, sop_instance_uid: str, status: int, error_comment: str = ""
) -> bytes:
    """A response command set (no data set) in implicit VR little endian, group length first.

    ``error_comment`` (at most 64 ASCII characters, never patient data) is sent with failures.
    """
    elements = [
        _element(0x0002, _even(sop_class_uid, b"\x00")) if sop_class_uid else b"",
        _element(0x0100, struct.pack("<H", command_field)),
        _element(0x0120, struct.pack("<H", message_id & 0xFFFF)),
        _element(0x0800, struct.pack("<H", NO_DATASET)),
        _element(0x0900, struct.pack("<H", status)),
        _element(0x0902, _even(error_comment, b" ", _ERROR_COMMENT_LENGTH)) if error_comment else b"",
        _element(0x1000, _even(sop_instance_uid, b"\x00")) if sop_instance_uid else b"",
    ]
    body = b"".join(elements)
    return _element(0x0000, struct.pack("<L", len(body))) + body
