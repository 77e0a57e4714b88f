"""A small ``struct``-based walker over the elements of a little-endian DICOM data set held in memory.

Why: every received instance has its header checked (:mod:`oncohabitat.listener.checks`) and its
command set decoded (:mod:`oncohabitat.listener.dimse`). Walking them with pydicom's
``data_element_generator`` (a generator over a stream, one ``RawDataElement`` per element, resumed
~29 times per instance) cost ~34 us per 57 KB MR instance and ~8.5 us per C-STORE-RQ command set in
a microbenchmark (~60 us and ~28 us in the running server). Reading tag, VR and length with
``struct.unpack_from`` straight from the bytes, skipping values without copying them, brings the
whole checks to ~11 us and ~2.8 us (``timeit``, one process, against the pydicom-based code;
the walk itself is ~5.5 us of the 11).

The walker only answers for data it is sure about; for anything else it answers None and the caller
runs the pydicom-based path, so every refusal, its precedence and every pydicom quirk stay as they
were. It answers only when all of this holds (else None):

* Implicit VR or Explicit VR Little Endian (the caller excludes big endian and deflated data), and
  the first element's encoding is the transfer syntax's (pydicom's ``_is_implicit_vr`` test).
* Every element is complete and the walk ends exactly at the end of the data (nothing truncated,
  no trailing bytes); every explicit VR is a known two-letter VR; no length is odd, except the
  undefined length (0xFFFFFFFF).
* No (FFFE,xxxx) element outside its place: items and sequence delimiters only inside
  undefined-length values, item delimiters (with zero length) only ending an undefined-length item.
* An undefined-length value is a sequence where pydicom reads one (explicit SQ; explicit UN, with
  ``config.settings.infer_sq_for_un_vr``; implicit VR: SQ in the data dictionary, or a tag unknown
  to it whose value starts with an item tag), else encapsulated data: items of defined, even
  length up to a sequence delimiter with zero length (what pydicom's first, item-walking reader
  accepts; its byte-scanning fallback is never emulated). Items of an undefined-length sequence
  are read with pydicom's VR rule for items (an item of an explicit-VR data set whose first element
  has no upper-case VR is implicit VR); a defined-length item's elements end exactly at its end.
  Defined-length sequences are skipped as plain values, as pydicom does. Nesting depth at most
  :data:`MAX_DEPTH` (deeper data is left to pydicom, whose recursion fails where ours might not).
* No wanted element (nor Specific Character Set) has an undefined length; Specific Character Set
  appears only at the top level (in an item pydicom also converts it through its element hooks),
  with standard terms that pydicom converts without a warning.
* pydicom's ``config.debugging`` is off (its per-element debug log comes from the pydicom path).

Values are returned as pydicom's path leaves them: the raw bytes of the value, or for an empty value
``empty_value_for_VR(VR, raw=True)`` (None or ``b""``, depending on VR and pydicom's config).
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from functools import lru_cache
from typing import cast

from pydicom import config
from pydicom.charset import STAND_ALONE_ENCODINGS, python_encoding
from pydicom.datadict import _dictionary_vr_fast
from pydicom.dataelem import empty_value_for_VR
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

#: Deepest nesting of undefined-length sequences walked (pydicom recurses ~4 frames per level).
MAX_DEPTH = 16
#: Raw values of the wanted elements, by tag (``group << 16 | element``).
Values = dict[int, bytes | None]

_IMPLICIT_HEAD = struct.Struct("<HHL").unpack_from  # tag, 4-byte length (also items and delimiters)
_EXPLICIT_HEAD = struct.Struct("<HH2sH").unpack_from  # tag, VR, 2-byte length (or reserved)
_UINT32 = struct.Struct("<L").unpack_from
#: Explicit VR -> bytes before the value: 8, or 12 for VRs with a 4-byte length.
_HEADER_SIZE = {vr.value.encode("ascii"): 12 if vr in EXPLICIT_VR_LENGTH_32 else 8 for vr in VR if len(vr.value) == 2}
_UNDEFINED = 0xFFFFFFFF
_DELIMITER_GROUP = 0xFFFE
_ITEM, _ITEM_DELIMITER, _SEQUENCE_DELIMITER = 0xE000, 0xE00D, 0xE0DD
_ITEM_TAG_BYTES = b"\xfe\xff\x00\xe0"
_CHARSET = 0x00080005
_MAX_CHARSET_BYTES = 128  # five 16-character terms and their separators fit
_ZERO_LENGTH = b"\x00\x00\x00\x00"
# what a walk is inside of: the top level, a defined-length item, an undefined-length item
_TOP, _DEFINED_ITEM, _UNDEFINED_ITEM = 0, 1, 2


class _UnsureError(Exception):
    """The data leaves the subset the walker answers for: the pydicom-based path decides."""


def _plain_charset(raw: bytes) -> bool:
    """Whether pydicom converts this Specific Character Set value without a warning or an error.

    Mirrors ``convert_string`` + ``convert_encodings``: every term is a DICOM defined term, and a
    multi-valued set has no stand-alone encoding. Values over :data:`_MAX_CHARSET_BYTES` are not
    judged (nor cached: a peer chooses their length).
    """
    return len(raw) <= _MAX_CHARSET_BYTES and _plain_charset_terms(raw)


@lru_cache(maxsize=64)
def _plain_charset_terms(raw: bytes) -> bool:
    terms = raw.decode("latin-1").rstrip(" \x00").split("\\")
    if len(terms) > 1 and not terms[0]:
        terms[0] = "ISO_IR 6"
    if not all(term in python_encoding for term in terms):
        return False
    return len(terms) == 1 or not any(term in STAND_ALONE_ENCODINGS for term in terms)


def _empty_value(vr: bytes | None) -> bytes | None:
    """pydicom's value for an empty element (``vr`` None: implicit VR): ``b""`` or None."""
    return cast(bytes | None, empty_value_for_VR(None if vr is None else vr.decode("latin-1"), raw=True))


def _item_is_implicit(data: bytes, position: int) -> bool:
    """pydicom's VR guess for an item of an explicit-VR sequence starting at ``position``.

    Implicit unless the bytes where its first VR would be are two upper-case letters; explicit
    (the assumption) when fewer than 6 bytes remain in the data.
    """
    if len(data) - position < 6:
        return False
    first, second = data[position + 4], data[position + 5]
    return not (0x40 < first < 0x5B and 0x40 < second < 0x5B)


def _next_item(data: bytes, position: int, end: int) -> tuple[int | None, int]:
    """The next item of an undefined-length value: ``(item length, position after its header)``;
    ``(None, position after the delimiter)`` at its sequence delimiter. Anything else is unsure."""
    if end - position < 8:
        raise _UnsureError
    group, element, length = _IMPLICIT_HEAD(data, position)
    position += 8
    if group != _DELIMITER_GROUP:
        raise _UnsureError
    if element == _SEQUENCE_DELIMITER and length == 0:
        return None, position
    if element != _ITEM:
        raise _UnsureError
    return length, position


def _skip_fragments(data: bytes, position: int, end: int) -> int:
    """Skip an undefined-length value that is not a sequence (encapsulated data); its end."""
    while True:
        length, position = _next_item(data, position, end)
        if length is None:
            return position
        if length & 1:  # also an undefined fragment length
            raise _UnsureError
        position += length
        if position > end:
            raise _UnsureError


def _skip_sequence(data: bytes, position: int, end: int, implicit: bool, depth: int) -> int:
    """Skip the items of an undefined-length sequence up to its delimiter; the delimiter's end."""
    while True:
        length, position = _next_item(data, position, end)
        if length is None:
            return position
        item_implicit = implicit or _item_is_implicit(data, position)
        if length == _UNDEFINED:
            position = _walk(data, position, end, item_implicit, depth, _UNDEFINED_ITEM)
        else:
            item_end = position + length
            if length & 1 or item_end > end:
                raise _UnsureError
            position = _walk(data, position, item_end, item_implicit, depth, _DEFINED_ITEM)


def _skip_undefined(data: bytes, position: int, end: int, tag: int, vr: bytes | None, depth: int) -> int:
    """Skip an undefined-length value starting at ``position`` (``vr`` None: implicit VR); its end."""
    if depth >= MAX_DEPTH:
        raise _UnsureError
    if vr is None:  # implicit VR: pydicom looks the VR up, or looks ahead for an item
        try:
            is_sequence = _dictionary_vr_fast(tag) == VR.SQ
        except KeyError:
            if end - position < 4:
                raise _UnsureError from None
            is_sequence = data[position : position + 4] == _ITEM_TAG_BYTES
    elif vr == b"UN":
        if not config.settings.infer_sq_for_un_vr:
            raise _UnsureError
        is_sequence = True
    else:
        is_sequence = vr == b"SQ"
    if is_sequence:
        return _skip_sequence(data, position, end, vr is None, depth + 1)
    return _skip_fragments(data, position, end)


def _walk(data: bytes, position: int, end: int, implicit: bool, depth: int, context: int) -> int:
    """Walk elements from ``position`` to ``end`` (or to an undefined-length item's delimiter).

    Returns:
        where the walk ended: ``end``, or just past the item delimiter.
    """
    while position < end:
        if end - position < 8:
            raise _UnsureError
        vr: bytes | None
        if implicit:
            group, element, length = _IMPLICIT_HEAD(data, position)
            vr, value = None, position + 8
        else:
            group, element, vr, length = _EXPLICIT_HEAD(data, position)
            size = _HEADER_SIZE.get(vr, 0)
            if size == 12:
                if end - position < 12:
                    raise _UnsureError
                length = _UINT32(data, position + 8)[0]
            value = position + size
        if group == _DELIMITER_GROUP:
            if context == _UNDEFINED_ITEM and element == _ITEM_DELIMITER:
                if data[position + 4 : position + 8] == _ZERO_LENGTH:
                    return position + 8
            raise _UnsureError
        if value == position:  # explicit VR that is not a known one
            raise _UnsureError
        tag = group << 16 | element
        if length & 1:
            if length != _UNDEFINED or tag == _CHARSET:
                raise _UnsureError
            position = _skip_undefined(data, value, end, tag, vr, depth)
            continue
        position = value + length
        if position > end:
            raise _UnsureError
        if tag == _CHARSET and (context != _TOP or not _plain_charset(data[value:position])):
            raise _UnsureError
    if context == _UNDEFINED_ITEM:  # no item delimiter before the end
        raise _UnsureError
    return position


def header_values(data: bytes, start: int, implicit: bool, wanted: Collection[int], last_tag: int) -> Values | None:
    """Raw values of the ``wanted`` top-level elements of the data set ``data[start:]``.

    Only elements before the first top-level tag greater than ``last_tag`` are kept (a later
    duplicate wins); the rest is walked for its structure only.

    Returns:
        the values (tag -> raw bytes, or the empty value), or None when the walker is not sure
        (see the module docstring): the caller must then use the pydicom-based path.
    """
    end = len(data)
    if end - start < 8 or config.debugging:
        return None
    if (0x40 < data[start + 4] < 0x5B and 0x40 < data[start + 5] < 0x5B) == implicit:
        return None  # the first element is not in the transfer syntax's VR encoding
    values: Values = {}
    position = start
    # The top level is walked here rather than by _walk: this loop runs for every received instance,
    # so it keeps the wanted values on the way and, past the header, only sums lengths; anything
    # unusual is handed to _walk (nested sequences) or answers None.
    implicit_head, explicit_head, uint32, header_size = _IMPLICIT_HEAD, _EXPLICIT_HEAD, _UINT32, _HEADER_SIZE.get
    try:  # a header cut by the end of the data raises struct.error (end is the end of the data here)
        while position < end:
            vr: bytes | None
            if implicit:
                group, element, length = implicit_head(data, position)
                vr, value = None, position + 8
            else:
                group, element, vr, length = explicit_head(data, position)
                size = header_size(vr, 0)
                if size == 12:
                    length = uint32(data, position + 8)[0]
                elif not size:
                    return None
                value = position + size
            tag = group << 16 | element
            if length & 1:  # odd, or undefined
                if length != _UNDEFINED or group == _DELIMITER_GROUP or tag in wanted or tag == _CHARSET:
                    return None
                position = _skip_undefined(data, value, end, tag, vr, 0)
            else:
                position = value + length
                if position > end:
                    return None
            if tag > last_tag:
                if group == _DELIMITER_GROUP:
                    return None
                break
            if tag in wanted:
                values[tag] = data[value:position] if length else _empty_value(vr)
            elif tag == _CHARSET and not _plain_charset(data[value:position]):
                return None
        while position < end:  # after the header: only the structure matters
            if implicit:
                group, element, length = implicit_head(data, position)
                size = 8
            else:
                group, element, vr, length = explicit_head(data, position)
                size = header_size(vr, 0)
                if size == 12:
                    length = uint32(data, position + 8)[0]
            # group 8 may hold a Specific Character Set
            if length & 1 or not size or group == _DELIMITER_GROUP or group == 8:
                _walk(data, position, end, implicit, 0, _TOP)  # the careful walk decides
                break
            position += size + length
            if position > end:
                return None
    except (_UnsureError, struct.error):
        return None
    return values


def command_values(data: bytes, wanted: Collection[int]) -> Values | None:
    """Raw values of the ``wanted`` elements of a command set (implicit VR little endian, group 0000).

    Every element is read (a later duplicate wins). Answers None, for the pydicom-based path,
    unless every element is a complete group-0000 element of even, defined length, the first in
    implicit VR, and the last one ends exactly at the end of ``data``.
    """
    end = len(data)
    if end < 8 or config.debugging or (0x40 < data[4] < 0x5B and 0x40 < data[5] < 0x5B):
        return None
    values: Values = {}
    position = 0
    unpack = _IMPLICIT_HEAD
    try:
        while position < end:
            group, element, length = unpack(data, position)  # struct.error: fewer than 8 bytes left
            position += 8
            if group or length & 1:  # another group, an odd or undefined length
                return None
            value_end = position + length
            if value_end > end:
                return None
            if element in wanted:
                values[element] = data[position:value_end] if length else _empty_value(None)
            position = value_end
    except struct.error:
        return None
    return values
