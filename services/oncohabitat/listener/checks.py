"""Checks on a received data set before anything is stored: identity UIDs, deflate and pixel budgets.

One walk with pydicom's ``data_element_generator`` (raw elements, no ``Dataset``; any VR encoding and
byte order, in memory or spooled) skips values over :data:`_DEFER_BYTES` unread, keeps the few header
attributes checked here undecoded, and checks that the elements end exactly where the data ends. A
deflated data set is inflated as a stream into a counter (the first :data:`HEADER_PREFIX_BYTES` kept)
and refused once past the inflated budget: a "deflate bomb" costs a bounded buffer. Declared pixel
memory (Rows x Columns x Frames x Samples x Bits Allocated / 8, bytes) above the pixel budget is
refused before any decoder sees it.

Refusal precedence: a parse error among the header attributes (tags up to (0028,0100) Bits
Allocated) is ``unreadable`` at once, except a header value cut before its delimiter, which leaves
an empty header as pydicom's ``read_dataset`` does (``missing_uid``); then UIDs and the pixel
budget; then the structure of the rest (truncation, trailing bytes).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from itertools import chain
from typing import IO, BinaryIO, cast

from pydicom import config
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _is_implicit_vr, data_element_generator
from pydicom.fileutil import read_undefined_length_value
from pydicom.tag import SequenceDelimiterTag
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from oncohabitat.dicomio.identifiers import is_valid_uid
from oncohabitat.listener import status
from oncohabitat.listener.errors import InvalidInstanceError

#: Inflated bytes kept from a deflated data set for header parsing.
HEADER_PREFIX_BYTES = 4 * 1024 * 1024
_INFLATE_CHUNK = 256 * 1024
_DEFER_BYTES = 1024
_UNDEFINED_LENGTH = 0xFFFFFFFF
_LAST_HEADER_TAG = 0x00280100  # Bits Allocated: every attribute read here precedes it
_MAX_TEXT = 64
_SOP_CLASS, _SOP_INSTANCE, _STUDY, _SERIES = 0x00080016, 0x00080018, 0x0020000D, 0x0020000E
_REQUIRED_UIDS = (
    ("SOPClassUID", _SOP_CLASS),
    ("SOPInstanceUID", _SOP_INSTANCE),
    ("StudyInstanceUID", _STUDY),
    ("SeriesInstanceUID", _SERIES),
)
_MODALITY, _SERIES_DESCRIPTION, _SERIES_NUMBER = 0x00080060, 0x0008103E, 0x00200011
_SAMPLES, _FRAMES, _ROWS, _COLUMNS, _BITS = 0x00280002, 0x00280008, 0x00280010, 0x00280011, 0x00280100
_WANTED_TAGS = frozenset(
    {tag for _name, tag in _REQUIRED_UIDS}
    | {_MODALITY, _SERIES_DESCRIPTION, _SERIES_NUMBER, _SAMPLES, _FRAMES, _ROWS, _COLUMNS, _BITS}
)
#: NotImplementedError: values pydicom cannot decode (e.g. a charset in an item of unknown VRs): unreadable.
_PARSE_ERRORS = (
    InvalidDicomError,
    ValueError,
    TypeError,
    KeyError,
    EOFError,
    OSError,
    struct.error,
    IndexError,
    NotImplementedError,
)

Element = RawDataElement | DataElement


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
                if not pending or inflater.eof:  # bytes after the end of the stream stay in the tail
                    break
            if not chunk or inflater.eof:
                break
    except zlib.error as exc:
        raise InvalidInstanceError("unreadable", status.CANNOT_PARSE, "deflated data set is corrupt") from exc
    if not inflater.eof:
        raise InvalidInstanceError("unreadable", status.CANNOT_PARSE, "deflated data set is truncated")
    return bytes(kept), total <= HEADER_PREFIX_BYTES


@lru_cache(maxsize=64)
def _syntax_flags(transfer_syntax: str) -> tuple[bool, bool, bool]:
    """(implicit VR, little endian, deflated) of a transfer syntax UID (cached: ``UID`` is slow); else ValueError."""
    syntax = UID(transfer_syntax)
    return syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated


def _stop_after_header(tag: int, _vr: str | None, _length: int) -> bool:
    return tag > _LAST_HEADER_TAG


def _unreadable(message: str = "data set could not be parsed") -> InvalidInstanceError:
    return InvalidInstanceError("unreadable", status.CANNOT_PARSE, message)


def _elements(stream: BinaryIO, implicit: bool, little: bool, whole: bool) -> tuple[Iterator[Element], bool]:
    """The top-level elements of ``stream`` (values over :data:`_DEFER_BYTES` left None) and the header's VR flag.

    The header's (implicit) VR encoding comes from its first element, as in pydicom's ``read_dataset`` (a mismatch
    warns, or raises in RAISE mode); later elements use the transfer syntax's. ``whole=False``: header only.
    """
    start = stream.tell()
    header_implicit = _is_implicit_vr(stream, implicit, little, _stop_after_header, is_sequence=False)
    stream.seek(start)
    if not whole:
        header_only = data_element_generator(stream, header_implicit, little, _stop_after_header, _DEFER_BYTES)
        return header_only, header_implicit
    rest = data_element_generator(stream, implicit, little, defer_size=_DEFER_BYTES)
    if header_implicit == implicit:  # the usual case: one walk, no per-element callback
        return rest, header_implicit
    header = data_element_generator(stream, header_implicit, little, _stop_after_header, _DEFER_BYTES)
    return chain(header, rest), header_implicit


def _fails_in_header(stream: BinaryIO, position: int, implicit: bool, little: bool) -> bool:
    """Whether the element at ``position`` (whose parsing failed) belongs to the header: its tag is at most
    Bits Allocated, or pydicom failed before the tag (a 4-byte explicit-VR length cut by the end of data)."""
    stream.seek(position)
    head = stream.read(12)
    if len(head) < 8:  # pydicom reads a whole tag-VR-length before failing: not expected here
        return True
    group, element = struct.unpack("<HH" if little else ">HH", head[:4])
    if (group << 16 | element) <= _LAST_HEADER_TAG:
        return True
    return not implicit and len(head) < 12 and head[4:6].decode("latin-1") in EXPLICIT_VR_LENGTH_32


def _end_of(element: Element | None, position_after: int) -> int:
    """Stream offset just past ``element``: its value's end, or where a parsed (undefined-length) value ended."""
    if type(element) is RawDataElement and element.length != _UNDEFINED_LENGTH:
        return element.value_tell + element.length  # also right for a value skipped past a cut end
    return position_after


def _scan(stream: BinaryIO, implicit: bool, little: bool, whole: bool) -> tuple[dict[int, Element], bool]:
    """Walk the data set once: the wanted header elements, and whether every element parses and the last
    one ends exactly at the end of the data (no value cut short, no trailing partial element).

    Raises:
        InvalidInstanceError: ``unreadable`` for a parse error among the header elements.
    """
    start = stream.tell()
    try:
        elements, header_implicit = _elements(stream, implicit, little, whole)
    except InvalidDicomError as exc:  # VR mismatch in pydicom's RAISE validation mode
        raise _unreadable() from exc
    wanted: dict[int, Element] = {}
    in_header = True
    last: Element | None = None
    last_position = start  # stream position once ``last`` was parsed
    tell = stream.tell
    try:
        for element in elements:
            last, last_position = element, tell()
            tag = element.tag.real  # a plain int: BaseTag compares through Python methods
            if tag > _LAST_HEADER_TAG:
                in_header = False
                break
            if tag in _WANTED_TAGS:
                wanted[tag] = element
        for element in elements:  # the rest: only where the last element ends matters
            last, last_position = element, tell()
    except _PARSE_ERRORS as exc:
        if in_header and _fails_in_header(stream, _end_of(last, last_position), header_implicit, little):
            if not isinstance(exc, EOFError) or config.settings.reading_validation_mode == config.RAISE:
                raise _unreadable() from exc
            # outside RAISE mode read_dataset swallows an EOFError, dropping every element: ``missing_uid``
            wanted.clear()
        return wanted, False
    if not whole:
        return wanted, True
    return wanted, _end_of(last, last_position) == stream.seek(0, 2)


def _raw_bytes(stream: BinaryIO, element: Element | None, little: bool) -> bytes | None:
    """The undecoded value of an element, read back if the walk skipped it; None when empty or missing
    (no pydicom conversion: this runs per instance)."""
    if element is None:
        return None
    value = element.value
    if value is None and type(element) is RawDataElement and element.length:
        position = stream.tell()
        stream.seek(element.value_tell)
        if element.length == _UNDEFINED_LENGTH:
            value = read_undefined_length_value(stream, little, SequenceDelimiterTag)
        else:
            value = stream.read(element.length)
        stream.seek(position)
    if isinstance(value, bytes):
        return value
    return None if value is None else str(value).encode("ascii", errors="replace")


def _text(value: bytes | None) -> str | None:
    """Text value with NUL/space padding removed; non-ASCII bytes become U+FFFD; None when absent."""
    if value is None:
        return None
    return value.decode("ascii", errors="replace").rstrip("\x00 ")


_U16 = {True: struct.Struct("<H").unpack_from, False: struct.Struct(">H").unpack_from}


def _us(value: bytes | None, little_endian: bool, default: int) -> int:
    """The first unsigned short (US) of a value in the data set's byte order; ``struct.error`` under 2 bytes."""
    if not value:
        return default
    return int(_U16[little_endian](value)[0])


def _is(value: bytes | None, default: int) -> int:
    """An integer string (IS) value, first of several."""
    text = _text(value)
    if not text:
        return default
    return int(text.split("\\")[0].strip() or default)


def _uid(value: bytes | None) -> tuple[str, bool]:
    """A UID's text (see :func:`_text`; ``""`` when absent) and whether it is valid."""
    text = _text(value) or ""
    return text, is_valid_uid(text)


def check_header(values: Mapping[int, bytes | None], budgets: Budgets, little_endian: bool = True) -> InstanceHeader:
    """Validate identity UIDs and the pixel budget from raw header values (tag -> undecoded bytes).

    Raises:
        InvalidInstanceError: ``missing_uid`` (0xC002), ``invalid_uid`` (0xC003), ``unreadable``
            (0xC001: non-numeric image attributes) or ``pixel_budget`` (0xA701).
    """
    get = values.get
    try:
        sop_class_uid, sop_class_ok = _uid(get(_SOP_CLASS))
        sop_uid, sop_ok = _uid(get(_SOP_INSTANCE))
        study_uid, study_ok = _uid(get(_STUDY))
        series_uid, series_ok = _uid(get(_SERIES))
        modality = _text(get(_MODALITY)) or ""
        description = _text(get(_SERIES_DESCRIPTION)) or ""
        rows = _us(get(_ROWS), little_endian, 0)
        columns = _us(get(_COLUMNS), little_endian, 0)
        samples = max(_us(get(_SAMPLES), little_endian, 1), 1)
        bits = _us(get(_BITS), little_endian, 0)
        frames = max(_is(get(_FRAMES), 1), 1)
        series_number = _is(get(_SERIES_NUMBER), -1)
    except _PARSE_ERRORS as exc:
        raise _unreadable() from exc
    if not (sop_class_ok and sop_ok and study_ok and series_ok):  # the first failing UID, in table order
        for (name, _tag), (value, valid) in zip(
            _REQUIRED_UIDS,
            ((sop_class_uid, sop_class_ok), (sop_uid, sop_ok), (study_uid, study_ok), (series_uid, series_ok)),
            strict=True,
        ):
            if not value:
                raise InvalidInstanceError("missing_uid", status.MISSING_UID, f"{name} is missing")
            if not valid:
                raise InvalidInstanceError(
                    "invalid_uid", status.INVALID_UID, f"{name} is not a conformant UID (digits and dots, <= 64)"
                )
    declared = rows * columns * frames * samples * bits // 8
    if declared > budgets.max_pixel_bytes:
        raise InvalidInstanceError(
            "pixel_budget", status.PIXEL_BUDGET_EXCEEDED, "declared pixel data exceeds the pixel budget"
        )
    return InstanceHeader(
        sop_class_uid=sop_class_uid,
        sop_uid=sop_uid,
        study_uid=study_uid,
        series_uid=series_uid,
        modality=modality.strip()[:16],
        series_number=None if series_number < 0 else series_number,
        series_description=description.strip()[:_MAX_TEXT],
        declared_pixel_bytes=declared,
    )


def inspect_body(stream: IO[bytes], transfer_syntax: str, budgets: Budgets) -> InstanceHeader:
    """Run every check on a data set body (``stream`` positioned at its first byte, seekable).

    Raises:
        InvalidInstanceError: ``deflate_budget`` / ``unreadable`` (see :func:`inflate_prefix`),
            ``unreadable`` for a header that does not parse, then ``missing_uid``, ``invalid_uid``,
            ``pixel_budget`` (see :func:`check_header`), then ``unreadable`` for a truncated or
            structurally broken data set.
        ValueError: ``transfer_syntax`` is not a transfer syntax UID.
    """
    implicit, little, deflated = _syntax_flags(transfer_syntax)
    whole = True
    if deflated:
        inflated, whole = inflate_prefix(stream, budgets.max_inflated_bytes)
        stream = BytesIO(inflated)
    # an inflated data set larger than the kept prefix is checked by the inflater only, not walked
    body = cast(BinaryIO, stream)
    wanted, sound = _scan(body, implicit, little, whole)
    header = check_header({tag: _raw_bytes(body, element, little) for tag, element in wanted.items()}, budgets, little)
    if not sound:
        raise _unreadable("data set is truncated")
    return header
