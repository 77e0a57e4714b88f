"""The Part-10 prefix (preamble, ``DICM``, file meta group) of a received instance (PS3.10 7.1).

Built with ``struct`` (~3 us instead of ~190 us with pydicom's ``write_file_meta_info``, once per
instance). A pure function of SOP class, SOP instance and transfer syntax (no calling AE, no time):
a byte-identical re-send gives a byte-identical file. The unit tests read it back with pydicom.
"""

from __future__ import annotations

import struct

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

PREAMBLE = b"\x00" * 128 + b"DICM"


def _short(element: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _uid(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _sh(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b" " if len(raw) % 2 else raw


def file_meta_prefix(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> bytes:
    """Preamble + ``DICM`` + explicit-VR-little-endian group 0002 for one instance (validated UIDs)."""
    body = b"".join(
        (
            struct.pack("<HH2sHL", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01",
            _short(0x0002, b"UI", _uid(sop_class_uid)),
            _short(0x0003, b"UI", _uid(sop_instance_uid)),
            _short(0x0010, b"UI", _uid(transfer_syntax)),
            _short(0x0012, b"UI", _uid(PYNETDICOM_IMPLEMENTATION_UID)),
            _short(0x0013, b"SH", _sh(PYNETDICOM_IMPLEMENTATION_VERSION)),
        )
    )
    group_length = struct.pack("<HH2sHL", 0x0002, 0x0000, b"UL", 4, len(body))
    return PREAMBLE + group_length + body
