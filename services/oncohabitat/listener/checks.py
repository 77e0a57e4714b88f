"""Checks on a received data set before anything is stored: identity UIDs, deflate and pixel budgets.

Only the header is parsed (pydicom ``read_dataset`` stopping after (0028,0100) Bits Allocated), so
pixel data is never decoded here. A Deflated Explicit VR Little Endian data set is inflated as a
stream into a counter (only the first :data:`HEADER_PREFIX_BYTES` are kept for parsing) and refused
as soon as its inflated size exceeds the budget: a "deflate bomb" costs a bounded buffer, never its
inflated size. Declared pixel memory (Rows x Columns x Frames x Samples x Bits Allocated / 8)
above the pixel budget is refused before any decoder sees it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from io import BytesIO
from typing import IO, BinaryIO, cast

from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import data_element_generator, read_dataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from oncohabitat.listener import status
from oncohabitat.listener.errors import InvalidInstanceError
from oncohabitat.listener.identifiers import is_valid_uid

#: Inflated bytes kept from a deflated data set for header parsing.
HEADER_PREFIX_BYTES = 4 * 1024 * 1024
_INFLATE_CHUNK = 256 * 1024
_DEFER_BYTES = 1024
_UNDEFINED_LENGTH = 0xFFFFFFFF
_LAST_HEADER_TAG = 0x00280100  # Bits Allocated: every attribute read here precedes it
_MAX_TEXT = 64
_REQUIRED_UIDS = (
    ("SOPClassUID", 0x00080016),
    ("SOPInstanceUID", 0x00080018),
    ("StudyInstanceUID", 0x0020000D),
    ("SeriesInstanceUID", 0x0020000E),
)
_PARSE_ERRORS = (InvalidDicomError, ValueError, TypeError, KeyError, EOFError, OSError, struct.error, IndexError)


@dataclass(frozen=True)
class Budgets:
    """Limits on one instance, in bytes: inflated size of a deflated data set, declared pixel memory."""

    max_inflated_bytes: int = 256 * 1024 * 1024
    max_pixel_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class InstanceHeader:
    """Validated identity of an instance plus the header fields the index keeps (no patient data)."""

    sop_class_uid: str
    sop_uid: str
    study_uid: str
    series_uid: str
    modality: str
    series_number: int | None
    series_description: str
    declared_pixel_bytes: int


def inflate_prefix(stream: IO[bytes], max_inflated_bytes: int) -> tuple[bytes, bool]:
    """Inflate a raw-deflate stream, keeping its first :data:`HEADER_PREFIX_BYTES` bytes.

    Returns:
        the kept bytes, and whether they are the whole inflated data set.

    Raises:
        InvalidInstanceError: ``deflate_budget`` (0xA702) as soon as the inflated size passes
            ``max_inflated_bytes``; ``unreadable`` (0xC001) for a corrupt or truncated stream.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    kept = bytearray()
    total = 0
    try:
        while True:
            chunk = stream.read(_INFLATE_CHUNK)
            pending = chunk
            while True:
                out = inflater.decompress(pending, _INFLATE_CHUNK)
                total += len(out)
                if total > max_inflated_bytes:
                    raise InvalidInstanceError(
                        "deflate_budget", status.DEFLATE_BUDGET_EXCEEDED, "deflated data set inflates beyond the budget"
                    )
                if len(kept) < HEADER_PREFIX_BYTES:
                    kept += out[: HEADER_PREFIX_BYTES - len(kept)]
                pending = inflater.unconsumed_tail
                if not pending:
                    break
            if not chunk or inflater.eof:
                break
    except zlib.error as exc:
        raise InvalidInstanceError("unreadable", status.CANNOT_PARSE, "deflated data set is corrupt") from exc
    if not inflater.eof:
        raise InvalidInstanceError("unreadable", status.CANNOT_PARSE, "deflated data set is truncated")
    return bytes(kept), total <= HEADER_PREFIX_BYTES


def _stop_after_header(tag: int, _vr: str | None, _length: int) -> bool:
    return tag > _LAST_HEADER_TAG


def _raw_bytes(ds: Dataset, tag: int) -> bytes | None:
    """The undecoded value of a raw element (no pydicom conversion: this runs per instance)."""
    element = ds.get_item(tag)
    if element is None:
        return None
    value = element.value
    if isinstance(value, bytes):
        return value
    return None if value is None else str(value).encode("ascii", errors="replace")


def _text(ds: Dataset, tag: int) -> str | None:
    """Text value with NUL/space padding removed; non-ASCII bytes become U+FFFD; None when absent."""
    value = _raw_bytes(ds, tag)
    if value is None:
        return None
    return value.decode("ascii", errors="replace").rstrip("\x00 ")


def _us(ds: Dataset, tag: int, little_endian: bool, default: int) -> int:
    """An unsigned short (US) value, first of several."""
    value = _raw_bytes(ds, tag)
    if not value:
        return default
    if len(value) < 2:
        raise ValueError("US value shorter than 2 bytes")
    return int.from_bytes(value[:2], "little" if little_endian else "big")


def _is(ds: Dataset, tag: int, default: int) -> int:
    """An integer string (IS) value, first of several."""
    text = _text(ds, tag)
    if not text:
        return default
    return int(text.split("\\")[0].strip() or default)


def read_header(stream: IO[bytes], transfer_syntax: str) -> Dataset:
    """Parse the data set header (up to Bits Allocated) from ``stream`` in ``transfer_syntax``.

    Raises:
        InvalidInstanceError: ``unreadable`` (0xC001).
    """
    syntax = UID(transfer_syntax)
    try:
        return read_dataset(
            cast(BinaryIO, stream), syntax.is_implicit_VR, syntax.is_little_endian, stop_when=_stop_after_header
        )
    except _PARSE_ERRORS as exc:
        raise InvalidInstanceError("unreadable", status.CANNOT_PARSE, "data set could not be parsed") from exc


def check_complete(ds: Dataset, stream: IO[bytes], transfer_syntax: str) -> None:
    """Check that the data set's elements end exactly where the data ends (nothing truncated).

    ``ds`` is the header :func:`read_header` parsed from ``stream``; the remaining elements are
    walked from the stream's position with their values skipped (``defer_size``), so pixel data
    is never loaded. Encapsulated (undefined-length) values are scanned to their delimiter.

    Raises:
        InvalidInstanceError: ``unreadable`` (0xC001) for a truncated or structurally broken data set.
    """
    syntax = UID(transfer_syntax)
    position = stream.tell()
    end = stream.seek(0, 2)
    stream.seek(position)
    truncated = InvalidInstanceError("unreadable", status.CANNOT_PARSE, "data set is truncated")
    last_end = 0
    for element in ds.elements():
        length = getattr(element, "length", 0)
        tell = getattr(element, "value_tell", None)
        if tell is not None and length != _UNDEFINED_LENGTH:
            last_end = max(last_end, tell + length)
    try:
        for element in data_element_generator(
            cast(BinaryIO, stream), syntax.is_implicit_VR, syntax.is_little_endian, defer_size=_DEFER_BYTES
        ):
            length = getattr(element, "length", _UNDEFINED_LENGTH)  # sequences come back parsed
            tell = getattr(element, "value_tell", None)
            last_end = stream.tell() if length == _UNDEFINED_LENGTH or tell is None else int(tell) + int(length)
    except _PARSE_ERRORS as exc:
        raise truncated from exc
    if last_end != end:  # value cut short, or bytes left that are no complete element
        raise truncated


def check_header(ds: Dataset, budgets: Budgets, little_endian: bool = True) -> InstanceHeader:
    """Validate identity UIDs and the pixel budget of a parsed header (raw elements).

    Raises:
        InvalidInstanceError: ``missing_uid`` (0xC002), ``invalid_uid`` (0xC003), ``unreadable``
            (0xC001: non-numeric image attributes) or ``pixel_budget`` (0xA701).
    """
    try:
        uids = {name: _text(ds, tag) for name, tag in _REQUIRED_UIDS}
        modality = _text(ds, 0x00080060) or ""
        description = _text(ds, 0x0008103E) or ""
        rows = _us(ds, 0x00280010, little_endian, 0)
        columns = _us(ds, 0x00280011, little_endian, 0)
        samples = max(_us(ds, 0x00280002, little_endian, 1), 1)
        bits = _us(ds, 0x00280100, little_endian, 0)
        frames = max(_is(ds, 0x00280008, 1), 1)
        series_number = _is(ds, 0x00200011, -1)
    except _PARSE_ERRORS as exc:
        raise InvalidInstanceError("unreadable", status.CANNOT_PARSE, "data set could not be parsed") from exc
    for name, _tag in _REQUIRED_UIDS:
        value = uids[name]
        if not value:
            raise InvalidInstanceError("missing_uid", status.MISSING_UID, f"{name} is missing")
        if not is_valid_uid(value):
            raise InvalidInstanceError(
                "invalid_uid", status.INVALID_UID, f"{name} is not a conformant UID (digits and dots, <= 64)"
            )
    declared = rows * columns * frames * samples * bits // 8
    if declared > budgets.max_pixel_bytes:
        raise InvalidInstanceError(
            "pixel_budget", status.PIXEL_BUDGET_EXCEEDED, "declared pixel data exceeds the pixel budget"
        )
    return InstanceHeader(
        sop_class_uid=str(uids["SOPClassUID"]),
        sop_uid=str(uids["SOPInstanceUID"]),
        study_uid=str(uids["StudyInstanceUID"]),
        series_uid=str(uids["SeriesInstanceUID"]),
        modality=modality.strip()[:16],
        series_number=None if series_number < 0 else series_number,
        series_description=description.strip()[:_MAX_TEXT],
        declared_pixel_bytes=declared,
    )


def inspect_body(stream: IO[bytes], transfer_syntax: str, budgets: Budgets) -> InstanceHeader:
    """Run every check on a data set body (``stream`` positioned at its first byte).

    Raises:
        InvalidInstanceError: see :func:`inflate_prefix`, :func:`read_header`, :func:`check_header`,
            :func:`check_complete`.
    """
    syntax = UID(transfer_syntax)
    complete = True
    if syntax.is_deflated:
        inflated, complete = inflate_prefix(stream, budgets.max_inflated_bytes)
        stream = BytesIO(inflated)
    ds = read_header(stream, transfer_syntax)
    header = check_header(ds, budgets, syntax.is_little_endian)
    if complete:  # an inflated data set larger than the kept prefix is checked by the inflater only
        check_complete(ds, stream, ExplicitVRLittleEndian if syntax.is_deflated else transfer_syntax)
    return header
