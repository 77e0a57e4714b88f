"""The fast element walker (listener/elements.py) answers exactly as the pydicom-based path, or not at all.

``inspect_body`` and ``decode_command`` use the walker first and pydicom's ``data_element_generator``
when the walker is not sure. Here both paths are run on the same bytes and must agree on the
outcome (header or refusal reason and status, Command or PduError); where the walker answers, the
raw values must equal the pydicom path's and that path must see a sound structure without any
warning. Inputs: every real DICOM file under ``tests/data``, every pydicom test file, implicit and
explicit VR re-encodings of them, hand-built data sets with undefined-length sequences, items and
encapsulated data, and systematic mutations (every cut in the first 2 KB and near the end, bytes
changed, length fields rewritten, garbage tails), under pydicom's default and non-default reading
settings. Finally the fast path must really be taken for ordinary files.
"""

from __future__ import annotations

import random
import struct
import warnings
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import config
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataelem import RawDataElement
from pydicom.filereader import data_element_generator
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, MRImageStorage, generate_uid
from pynetdicom.dsutils import encode

from benchmarks.bench_listener import mr_instance
from oncohabitat.listener import checks, dimse, elements, status
from oncohabitat.listener.checks import Budgets, InstanceHeader
from oncohabitat.listener.errors import InvalidInstanceError
from oncohabitat.listener.pdu_io import PduError
from oncohabitat.listener.storage import split_part10
from tests.support.dimse_commands import echo_command, store_command

LITTLE_ENDIAN = (ImplicitVRLittleEndian, ExplicitVRLittleEndian)
#: pydicom test files mutated byte by byte: sequences, implicit VR, encapsulated, UN, SR, RT, multi-frame.
MUTATED_FILES = (
    "CT_small.dcm",
    "MR_small_implicit.dcm",
    "JPEG-lossy.dcm",
    "rtplan.dcm",
    "test-SR.dcm",
    "explicit_VR-UN.dcm",
    "UN_sequence.dcm",
    "emri_small.dcm",
)
#: Files that only the pydicom path reads (not in the walker's subset), with why.
PYDICOM_ONLY = {
    "RS.dcm": "Specific Character Set inside sequence items",
    "nested_priv_SQ.dcm": "odd value length",
    "MR_truncated.dcm": "truncated",
    "rtplan_truncated.dcm": "truncated",
    "emri_small_jpeg_2k_lossless_too_short.dcm": "truncated",
    "SC_rgb_jpeg.dcm": "data set VR encoding differs from its transfer syntax",
}
Outcome = InstanceHeader | tuple[str, int] | tuple[str, str]


def _stream(data: bytes, offset: int) -> BytesIO:
    stream = BytesIO(data)
    stream.seek(offset)
    return stream


def _outcome(run: Callable[[], InstanceHeader]) -> Outcome:
    try:
        return run()
    except InvalidInstanceError as error:
        return (error.reason, error.status)
    except Exception as error:  # noqa: BLE001 - what escapes the pydicom path must escape the same way
        return ("raised", type(error).__name__)


def check_same(data: bytes, transfer_syntax: str, offset: int = 0) -> bool:
    """Assert both paths agree on ``data[offset:]``; whether the fast walker answered."""
    implicit, little, deflated = checks._syntax_flags(transfer_syntax)
    budgets = Budgets()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = _outcome(
            lambda: checks._inspect_pydicom(_stream(data, offset), implicit, little, deflated, budgets)
        )
        actual = _outcome(lambda: checks.inspect_body(_stream(data, offset), transfer_syntax, budgets))
    assert actual == reference, (offset, len(data))
    fast = checks.fast_values(_stream(data, offset), transfer_syntax)
    if fast is None:
        return False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values, sound = checks._pydicom_values(_stream(data, offset), implicit, little, True)
    assert sound and values == fast, (offset, len(data))
    assert not [str(w.message) for w in caught], "the fast path hid a warning of the pydicom path"
    return True


def _testdata(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    if path is None:  # pragma: no cover - pydicom-data is a pinned dev dependency
        pytest.skip(f"pydicom test file {name} is not installed")
    return Path(str(path)).read_bytes()


def _part10_files(shared_data: Path) -> Iterator[tuple[str, bytes, str, int]]:
    """(name, bytes, transfer syntax, data set offset) of every Part-10 file we have."""
    paths = sorted(shared_data.rglob("*.dcm")) + sorted(Path(p) for p in get_testdata_files())
    for path in paths:
        if not path.is_file():
            continue
        raw = path.read_bytes()
        try:
            transfer_syntax, offset = split_part10(raw)
        except InvalidInstanceError:
            continue
        yield path.name, raw, transfer_syntax, offset


def _body(name: str) -> tuple[bytes, str]:
    transfer_syntax, offset = split_part10(raw := _testdata(name))
    return raw[offset:], transfer_syntax


# --- hand-built data sets ---------------------------------------------------------------------------------------------

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
UNDEFINED = 0xFFFFFFFF


def element(tag: int, vr: bytes | None, value: bytes, length: int | None = None) -> bytes:
    """One element (``vr`` None: implicit VR), little endian; ``length`` overrides the value's length."""
    size = len(value) if length is None else length
    if vr is None:
        return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, size) + value
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, vr, 0, size) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, size) + value


def item(content: bytes, undefined: bool) -> bytes:
    if undefined:
        return struct.pack("<HHL", 0xFFFE, 0xE000, UNDEFINED) + content + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
    return struct.pack("<HHL", 0xFFFE, 0xE000, len(content)) + content


SEQUENCE_END = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)


def sequence(tag: int, vr: bytes | None, items: list[bytes], undefined: bool = True) -> bytes:
    content = b"".join(items)
    if undefined:
        return element(tag, vr, content + SEQUENCE_END, UNDEFINED)
    return element(tag, vr, content)


def _vr(explicit: bool, vr: bytes) -> bytes | None:
    return vr if explicit else None


def header(explicit: bool, charset: bytes = b"ISO_IR 100") -> list[tuple[int, bytes]]:
    """The checked header elements of a small MR instance, by tag (encoded)."""
    v = _vr
    return [
        (0x00080005, element(0x00080005, v(explicit, b"CS"), charset)),
        (0x00080016, element(0x00080016, v(explicit, b"UI"), MRImageStorage.encode() + b"\x00")),
        (0x00080018, element(0x00080018, v(explicit, b"UI"), b"1.2.826.0.1.3680043.8.498.1\x00")),
        (0x00080060, element(0x00080060, v(explicit, b"CS"), b"MR")),
        (0x0008103E, element(0x0008103E, v(explicit, b"LO"), b"dyn t1")),
        (0x0020000D, element(0x0020000D, v(explicit, b"UI"), b"1.2.3.4\x00")),
        (0x0020000E, element(0x0020000E, v(explicit, b"UI"), b"1.2.3.4.5\x00")),
        (0x00200011, element(0x00200011, v(explicit, b"IS"), b"7 ")),
        (0x00280002, element(0x00280002, v(explicit, b"US"), b"\x01\x00")),
        (0x00280010, element(0x00280010, v(explicit, b"US"), b"\x08\x00")),
        (0x00280011, element(0x00280011, v(explicit, b"US"), b"\x08\x00")),
        (0x00280100, element(0x00280100, v(explicit, b"US"), b"\x10\x00")),
    ]


def build(explicit: bool, extra: list[tuple[int, bytes]], pixels: bytes | None = None) -> bytes:
    """A data set: the header, ``extra`` elements placed by tag, then ``pixels`` (an encoded element)."""
    parts = sorted(header(explicit) + extra, key=lambda pair: pair[0])
    body = b"".join(encoded for _tag, encoded in parts)
    if pixels is None:
        pixels = element(0x7FE00010, _vr(explicit, b"OW"), b"\x01\x02" * 64)
    return body + pixels


def _reference_item(explicit: bool, undefined: bool) -> bytes:
    v = _vr
    content = element(0x00081150, v(explicit, b"UI"), MRImageStorage.encode() + b"\x00") + element(
        0x00081155, v(explicit, b"UI"), b"1.2.3.9\x00"
    )
    return item(content, undefined)


def synthetic_bodies() -> Iterator[tuple[str, bytes, str, bool]]:
    """(label, body, transfer syntax, whether the walker answers) of hand-built data sets."""
    for explicit in (False, True):
        syntax = ExplicitVRLittleEndian if explicit else ImplicitVRLittleEndian
        v = _vr(explicit, b"SQ")
        ref_u, ref_d = _reference_item(explicit, True), _reference_item(explicit, False)
        nested = sequence(0x00081140, v, [ref_u, item(b"", True), item(b"", False)])
        deep = nested
        for _ in range(3):  # undefined-length sequences nested in undefined and defined items
            deep = sequence(0x00081140, v, [item(deep, True), item(deep, False)])
        yield f"{syntax} undefined items in the header", build(explicit, [(0x00081140, nested)]), syntax, True
        yield f"{syntax} nested sequences", build(explicit, [(0x00081140, deep)]), syntax, True
        two = [
            (0x00081140, sequence(0x00081140, v, [ref_d, ref_u], undefined=False)),
            (0x0008114A, sequence(0x0008114A, v, [])),
        ]
        yield f"{syntax} defined sequence and empty undefined sequence", build(explicit, two), syntax, True
        after = [(0x00400275, sequence(0x00400275, v, [item(nested, True), ref_d]))]
        yield f"{syntax} sequences after the header", build(explicit, after), syntax, True
        too_deep = nested
        for _ in range(elements.MAX_DEPTH):
            too_deep = sequence(0x00081140, v, [item(too_deep, True)])
        yield f"{syntax} deeper than MAX_DEPTH", build(explicit, [(0x00081140, too_deep)]), syntax, False
        private_sq = sequence(0x00291010, _vr(explicit, b"UN"), [ref_u, ref_d])  # unknown private tag
        yield f"{syntax} private undefined-length sequence", build(explicit, [(0x00291010, private_sq)]), syntax, True
        fragments = item(b"", False) + item(b"\xff\xd8\xfe\xff\xdd\xe0\x00\x00", False) + item(b"\x01" * 10, False)
        encapsulated = element(0x7FE00010, _vr(explicit, b"OB"), fragments + SEQUENCE_END, UNDEFINED)
        yield f"{syntax} encapsulated pixel data", build(explicit, [], encapsulated), syntax, True
        # implicit VR: an unknown tag whose value starts with an item is read as a sequence (here: not one)
        blob = element(0x00291020, _vr(explicit, b"OB"), fragments + SEQUENCE_END, UNDEFINED)
        yield f"{syntax} private undefined-length value", build(explicit, [(0x00291020, blob)]), syntax, explicit
        blob = element(0x00291020, _vr(explicit, b"OB"), SEQUENCE_END, UNDEFINED)
        yield f"{syntax} empty private undefined-length value", build(explicit, [(0x00291020, blob)]), syntax, True
        empty = [(0x0008103E, element(0x0008103E, _vr(explicit, b"LO"), b""))]
        empty += [(0x00200011, element(0x00200011, _vr(explicit, b"IS"), b""))]
        yield f"{syntax} empty values", build(explicit, empty), syntax, True
        late = [(0x00291000, element(0x00291000, _vr(explicit, b"LO"), b"x "))]
        duplicate = element(0x00080018, _vr(explicit, b"UI"), b"1.2.826.0.1.3680043.8.498.2\x00")
        late_body = build(explicit, late) + duplicate  # a wanted tag after the header: ignored
        yield f"{syntax} wanted tag after the header", late_body, syntax, True
        yield f"{syntax} duplicate wanted tag", build(explicit, [(0x00080018, duplicate)]), syntax, True
        charset_item = item(element(0x00080005, _vr(explicit, b"CS"), b"ISO_IR 100"), True)
        in_item = [(0x00081140, sequence(0x00081140, v, [charset_item]))]
        yield f"{syntax} character set in an item", build(explicit, in_item), syntax, False
        for charset, plain in ((b"ISO_IR 100", True), (b"LATIN1", False)):  # out of order, after the pixel data
            late_charset = element(0x00080005, _vr(explicit, b"CS"), charset)
            yield f"{syntax} character set {charset!r} at the end", build(explicit, []) + late_charset, syntax, plain
        if not explicit:  # an undefined-length character set: pydicom reads it as encapsulated data
            undefined_charset = element(0x00080005, None, SEQUENCE_END, UNDEFINED)
            in_item = [(0x00081140, sequence(0x00081140, None, [item(undefined_charset, True)]))]
            yield "undefined-length character set in an item", build(False, in_item), syntax, False
            parts = [(t, e) for t, e in header(False) if t != 0x00080005] + [(0x00080005, undefined_charset)]
            body = b"".join(encoded for _tag, encoded in sorted(parts, key=lambda pair: pair[0]))
            yield "undefined-length character set", body, syntax, False
        else:  # an item delimiter whose length reads as an explicit VR: pydicom reads 4 more bytes
            odd_end = struct.pack("<HH2sH", 0xFFFE, 0xE00D, b"OB", 0)
            odd_item = item(b"", False)[:4] + struct.pack("<L", UNDEFINED) + odd_end
            odd = [(0x00081140, element(0x00081140, b"SQ", odd_item + SEQUENCE_END, UNDEFINED))]
            yield "item delimiter with a VR-like length", build(True, odd), syntax, False
        for charset, plain in (
            (b"ISO_IR 192", True),
            (b"ISO 2022 IR 6\\ISO 2022 IR 87", True),
            (b"\\ISO 2022 IR 87 ", True),
            (b"", True),
            (b"ISO_IR 6", True),
            (b"ISO_IR 192\\ISO 2022 IR 87", False),  # pydicom warns: stand-alone encoding
            (b"ISO-IR 100", False),  # pydicom warns: corrected spelling
            (b"LATIN1", False),  # pydicom: not a DICOM term, but a Python codec
            (b"ISO_IR\x00100", False),  # pydicom fails (ValueError from the codec lookup)
        ):
            parts = [pair for pair in header(explicit) if pair[0] != 0x00080005]
            padded = charset + b" " if len(charset) % 2 else charset
            parts.append((0x00080005, element(0x00080005, _vr(explicit, b"CS"), padded)))
            body = b"".join(encoded for _tag, encoded in sorted(parts, key=lambda pair: pair[0]))
            yield f"{syntax} character set {charset!r}", body, syntax, plain
    # explicit VR data set with implicit VR items (in SQ, and in UN of undefined length, PS3.5 6.2.2)
    implicit_items = [_reference_item(False, True), _reference_item(False, False), item(b"", False)]
    for vr in (b"SQ", b"UN"):
        extra = [(0x00081140, sequence(0x00081140, vr, implicit_items))]
        yield f"explicit with implicit items in {vr!r}", build(True, extra), ExplicitVRLittleEndian, True
    explicit_in_implicit = [_reference_item(True, True)]  # items of implicit VR data are read as implicit VR
    extra = [(0x00081140, sequence(0x00081140, None, explicit_in_implicit))]
    yield "implicit with explicit VR items", build(False, extra), ImplicitVRLittleEndian, False


def benchmark_mr() -> bytes:
    """A Part-10 MR instance as benchmarks/bench_listener.py pushes it (168 x 168 x 16 bit, ~57 KB)."""
    ds = mr_instance(1, generate_uid(), generate_uid(), np.random.default_rng(0))
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


# --- mutations --------------------------------------------------------------------------------------------------------


def cuts(body: bytes) -> list[bytes]:
    """The body cut at every offset in its first 2 KB and its last 400 bytes."""
    offsets = set(range(min(len(body), 2048))) | set(range(max(0, len(body) - 400), len(body)))
    return [body[:cut] for cut in sorted(offsets)]


def byte_changes(body: bytes, limit: int = 1024) -> Iterator[bytes]:
    """One byte changed (to 0x00, 0xFF, low bit flipped, +2) at each offset of the first ``limit`` bytes."""
    for offset in range(min(len(body), limit)):
        for value in {0x00, 0xFF, body[offset] ^ 0x01, (body[offset] + 2) & 0xFF}:
            if value != body[offset]:
                yield body[:offset] + bytes([value]) + body[offset + 1 :]


def length_changes(body: bytes, implicit: bool) -> Iterator[bytes]:
    """Each top-level element's length, and each item or delimiter's length, rewritten; delimiters swapped."""
    stream = BytesIO(body)
    start = 0
    fields: list[tuple[int, int]] = []  # (offset, size) of length fields
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            for raw in data_element_generator(stream, implicit, True, defer_size=64):
                vr = None if implicit else body[start + 4 : start + 6]
                fields.append((start + 8, 4) if vr is None or vr in _LONG_VRS else (start + 6, 2))
                if isinstance(raw, RawDataElement) and raw.length != UNDEFINED:
                    start = raw.value_tell + raw.length
                else:
                    start = stream.tell()
        except Exception:  # noqa: BLE001 - a broken body: keep what was found
            pass
    fields = [(offset - 4, 4) if size == 4 and implicit else (offset, size) for offset, size in fields]
    for marker in (b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0", b"\xfe\xff\x0d\xe0"):
        position = body.find(marker)
        while position != -1 and len(fields) < 400:
            fields.append((position + 4, 4))
            for swapped in (b"\xfe\xff\x0d\xe0", b"\xfe\xff\xdd\xe0", b"\xfe\xff\x00\xe0"):
                if swapped != marker:
                    yield body[:position] + swapped + body[position + 4 :]
            position = body.find(marker, position + 4)
    for offset, size in fields:
        if offset + size > len(body):
            continue
        old = int.from_bytes(body[offset : offset + size], "little")
        limit = (1 << (8 * size)) - 1
        for new in {0, old + 2, old - 2, old + 1, limit, UNDEFINED & limit}:
            if 0 <= new <= limit and new != old:
                yield body[:offset] + new.to_bytes(size, "little") + body[offset + size :]


def tails(body: bytes, implicit: bool) -> Iterator[bytes]:
    rng = random.Random(len(body))
    for _ in range(40):
        yield body + rng.randbytes(rng.randint(1, 24))
    yield body + element(0x7FE10010, None if implicit else b"OB", b"\x00\x00")  # a complete extra element
    yield body + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
    yield body + SEQUENCE_END
    yield body + element(0x00291010, None if implicit else b"SQ", b"", UNDEFINED)  # never delimited


def mutations(body: bytes, implicit: bool, byte_limit: int = 1024) -> Iterator[bytes]:
    yield body
    yield from cuts(body)
    yield from byte_changes(body, byte_limit)
    yield from length_changes(body, implicit)
    yield from tails(body, implicit)


def _check_all(variants: Iterator[bytes], transfer_syntax: str) -> tuple[int, int]:
    """Check every variant; (fast answers, all variants)."""
    fast = total = 0
    for variant in variants:
        fast += check_same(variant, transfer_syntax)
        total += 1
    return fast, total


# --- tests: data sets -------------------------------------------------------------------------------------------------


def test_every_real_file_agrees_and_ordinary_ones_take_the_fast_path(shared_data: Path) -> None:
    fast_names, seen = set(), 0
    for name, raw, transfer_syntax, offset in _part10_files(shared_data):
        seen += 1
        if check_same(raw, transfer_syntax, offset):  # at the data set's offset, as the spool hands it over
            fast_names.add(name)
        elif checks._syntax_flags(transfer_syntax)[1:] == (True, False):  # little endian, not deflated
            assert name in PYDICOM_ONLY, name
    assert seen > 400
    assert len(fast_names) > 150  # every shared MR/CT slice and most pydicom files


def test_shared_series_take_the_fast_path(shared_data: Path) -> None:
    images = sorted(shared_data.rglob("image/*.dcm"))
    assert len(images) >= 170
    for path in images:
        raw = path.read_bytes()
        transfer_syntax, offset = split_part10(raw)
        assert transfer_syntax in LITTLE_ENDIAN
        assert checks.fast_values(_stream(raw, offset), transfer_syntax) is not None, path


def _reencodings(raw: bytes) -> Iterator[tuple[bytes, str]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # compressed pixel data stays encapsulated: undefined-length values in implicit VR too
            ds = pydicom.dcmread(BytesIO(raw), force=True)
        except Exception:  # noqa: BLE001 - pydicom cannot read it: nothing to re-encode
            return
        for implicit, transfer_syntax in ((True, ImplicitVRLittleEndian), (False, ExplicitVRLittleEndian)):
            try:
                body = encode(ds, implicit, True)
            except Exception:  # noqa: BLE001 - not encodable in this VR encoding
                continue
            if body:
                yield body, transfer_syntax


def test_implicit_and_explicit_reencodings_agree(shared_data: Path) -> None:
    fast = total = 0
    picked = [p for d in sorted({p.parent for p in shared_data.rglob("*.dcm")}) for p in sorted(d.glob("*.dcm"))[:2]]
    testdata = [Path(p) for p in get_testdata_files() if p.endswith(".dcm")]  # a pattern would try to download
    sources = [p.read_bytes() for p in picked] + [p.read_bytes() for p in testdata]
    for raw in sources:
        for body, transfer_syntax in _reencodings(raw):
            fast += check_same(body, transfer_syntax)
            total += 1
    assert total > 150 and fast > 0.8 * total, (fast, total)


SYNTHETIC = list(synthetic_bodies())


@pytest.mark.parametrize(("label", "body", "transfer_syntax", "walked"), SYNTHETIC, ids=[b[0] for b in SYNTHETIC])
def test_hand_built_structures_and_their_mutations_agree(
    label: str, body: bytes, transfer_syntax: str, walked: bool
) -> None:
    assert check_same(body, transfer_syntax) is walked, label
    implicit = transfer_syntax == ImplicitVRLittleEndian
    byte_limit = 1024 if len(body) < 600 else 256
    fast, total = _check_all(mutations(body, implicit, byte_limit), transfer_syntax)
    assert total > 500, label
    if walked:  # most mutations of a sequence-heavy body hit its structure
        assert fast > 0.1 * total, (label, fast, total)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", MUTATED_FILES)
def test_mutations_of_real_files_agree(name: str) -> None:
    body, transfer_syntax = _body(name)
    implicit = transfer_syntax == ImplicitVRLittleEndian
    fast, total = _check_all(mutations(body, implicit), transfer_syntax)
    assert check_same(body, transfer_syntax)
    assert fast > 0.2 * total, (fast, total)


def test_mutations_of_shared_series_agree(shared_data: Path) -> None:
    dicom = shared_data / "ibsi" / "ibsi_validation" / "dicom" / "STS_001"
    for path in (dicom / "MR_T1" / "image" / "000000.dcm", dicom / "CT" / "image" / "000000.dcm"):
        transfer_syntax, offset = split_part10(raw := path.read_bytes())
        body = raw[offset:]
        fast, total = _check_all(mutations(body, transfer_syntax == ImplicitVRLittleEndian, 512), transfer_syntax)
        assert fast > 0.2 * total, (path, fast, total)


@pytest.mark.parametrize(
    "setting",
    ["raise", "no_un_as_sequence", "none_as_empty_text", "no_implicit_vr_switch", "debugging"],
)
def test_pydicom_reading_settings_are_respected(setting: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if setting == "raise":
        monkeypatch.setattr(config.settings, "reading_validation_mode", config.RAISE)
    elif setting == "no_un_as_sequence":
        monkeypatch.setattr(config.settings, "infer_sq_for_un_vr", False)
    elif setting == "none_as_empty_text":
        monkeypatch.setattr(config, "use_none_as_empty_text_VR_value", True)
    elif setting == "no_implicit_vr_switch":
        monkeypatch.setattr(config, "assume_implicit_vr_switch", False)
    else:
        monkeypatch.setattr(config, "debugging", True)
    bodies = [(body, syntax) for label, body, syntax, _walked in SYNTHETIC if "MAX_DEPTH" not in label]
    bodies += [_body(name) for name in ("CT_small.dcm", "rtplan.dcm", "UN_sequence.dcm")]
    for body, transfer_syntax in bodies:
        implicit = transfer_syntax == ImplicitVRLittleEndian
        fast, _total = _check_all(iter([body, *cuts(body)[:300], *tails(body, implicit)]), transfer_syntax)
        if setting == "debugging":
            assert fast == 0  # pydicom's debug log comes from the pydicom path


def test_fast_path_is_taken_for_ordinary_instances(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pydicom(*_args: object) -> InstanceHeader:
        raise AssertionError("fell back to the pydicom path")

    monkeypatch.setattr(checks, "_inspect_pydicom", no_pydicom)
    dicom = shared_data / "ibsi"
    paths = [
        dicom / "ibsi_validation" / "dicom" / "STS_001" / "MR_T1" / "image" / "000000.dcm",
        dicom / "ibsi_validation" / "dicom" / "STS_001" / "CT" / "image" / "000000.dcm",
        dicom / "ibsi_1_ct_radiomics_phantom" / "dicom" / "image" / "DCM_IMG_00044.dcm",
    ]
    sources = [p.read_bytes() for p in paths] + [benchmark_mr()]
    sources += [_testdata(n) for n in ("CT_small.dcm", "MR_small_implicit.dcm", "JPEG-lossy.dcm", "emri_small.dcm")]
    sources += [_testdata(n) for n in ("rtplan.dcm", "test-SR.dcm", "explicit_VR-UN.dcm", "liver.dcm")]
    for raw in sources:
        transfer_syntax, offset = split_part10(raw)
        header = checks.inspect_body(_stream(raw, offset), transfer_syntax, Budgets())
        assert is_uid(header.sop_uid) and header.declared_pixel_bytes >= 0
    # header refusals of well-formed data sets come from the fast path too
    raw = benchmark_mr()
    transfer_syntax, offset = split_part10(raw)
    with pytest.raises(InvalidInstanceError) as error:
        checks.inspect_body(_stream(raw, offset), transfer_syntax, Budgets(max_pixel_bytes=1000))
    assert error.value.reason == "pixel_budget"


def is_uid(value: str) -> bool:
    return bool(value) and set(value) <= set("0123456789.")


def test_header_values_equal_the_pydicom_values_of_the_benchmark_instance() -> None:
    raw = benchmark_mr()
    transfer_syntax, offset = split_part10(raw)
    fast = checks.fast_values(_stream(raw, offset), transfer_syntax)
    assert fast is not None and len(fast) == 10
    assert fast == checks._pydicom_values(_stream(raw, offset), False, True, True)[0]
    assert fast[0x00280010] == b"\xa8\x00" and fast[0x0008103E] == b"benchmark "


def test_walker_leaves_big_endian_deflated_and_file_streams_to_pydicom(tmp_path: Path) -> None:
    body, transfer_syntax = _body("CT_small.dcm")
    assert checks.fast_values(BytesIO(body), transfer_syntax) is not None
    path = tmp_path / "body"
    path.write_bytes(body)
    with path.open("rb") as stream:
        assert checks.fast_values(stream, transfer_syntax) is None  # a spooled file: not read into memory
        assert checks.inspect_body(stream, transfer_syntax, Budgets()) == checks.inspect_body(
            BytesIO(body), transfer_syntax, Budgets()
        )
    big, big_syntax = _body("MR_small_bigendian.dcm")
    assert checks.fast_values(BytesIO(big), big_syntax) is None
    deflated, deflated_syntax = _body("image_dfl.dcm")
    assert checks.fast_values(BytesIO(deflated), deflated_syntax) is None


# --- tests: command sets ----------------------------------------------------------------------------------------------


def _command_outcome(data: bytes) -> dimse.Command | tuple[str, str]:
    try:
        return dimse.decode_command(data)
    except PduError as error:
        return ("PduError", str(error))
    except Exception as error:  # noqa: BLE001 - what escapes the pydicom path must escape the same way
        return ("raised", type(error).__name__)


def check_same_command(data: bytes, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Assert decode_command answers as through pydicom alone; whether the fast walker answered."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        actual = _command_outcome(data)
        with monkeypatch.context() as patch:
            patch.setattr(dimse, "command_values", lambda _data, _wanted: None)
            reference = _command_outcome(data)
    assert actual == reference, data
    fast = elements.command_values(data, dimse._COMMAND_TAGS)
    if fast is None:
        return False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert dimse._command_values(data) == fast
    assert not caught
    return True


def commands() -> list[bytes]:
    sop_uids = ("1.2.3", "1.2.840.113619.2.55.3.604688119.969.1268071029.320", "1.2.826.0.1.3680043.8.498.1")
    found = [store_command(i, uid, move) for i, uid in enumerate(sop_uids) for move in (False, True)]
    found += [echo_command(5), store_command(0xFFFF, sop_uids[1])]
    empty_uid = store_command(1, sop_uids[0]).replace(b"\x00\x00\x00\x10\x06\x00\x00\x001.2.3\x00", b"")
    found.append(empty_uid + struct.pack("<HHL", 0, 0x1000, 0))  # empty Affected SOP Instance UID
    return found


def test_commands_and_their_mutations_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(3)
    fast = total = 0
    for data in commands():
        assert check_same_command(data, monkeypatch)
        variants = [data[:cut] for cut in range(len(data))]
        variants += list(byte_changes(data, len(data))) + list(length_changes(data, True))
        variants += [data + rng.randbytes(rng.randint(1, 12)) for _ in range(20)]
        variants += [data + data[:8], data + struct.pack("<HHL", 8, 5, 2) + b"\x00\x00"]
        for variant in variants:
            fast += check_same_command(variant, monkeypatch)
            total += 1
    assert fast > 0.2 * total, (fast, total)
    for _ in range(300):
        check_same_command(rng.randbytes(rng.randint(0, 80)), monkeypatch)


@pytest.mark.parametrize("setting", ["raise", "none_as_empty_text", "debugging"])
def test_command_reading_settings_are_respected(setting: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if setting == "raise":
        monkeypatch.setattr(config.settings, "reading_validation_mode", config.RAISE)
    elif setting == "none_as_empty_text":
        monkeypatch.setattr(config, "use_none_as_empty_text_VR_value", True)
    else:
        monkeypatch.setattr(config, "debugging", True)
    for data in commands():
        for variant in [data, *(data[:cut] for cut in range(len(data)))]:
            check_same_command(variant, monkeypatch)


def test_fast_path_is_taken_for_ordinary_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pydicom(_data: bytes) -> dict[int, object]:
        raise AssertionError("fell back to the pydicom path")

    monkeypatch.setattr(dimse, "_command_values", no_pydicom)
    for data in commands():
        command = dimse.decode_command(data)
        assert command.command_field in (dimse.C_STORE_RQ, dimse.C_ECHO_RQ)
    assert dimse.decode_command(store_command(7, "1.2.3")) == dimse.Command(
        dimse.C_STORE_RQ, 7, MRImageStorage, "1.2.3", True
    )


def test_values_a_peer_makes_long_are_not_cached() -> None:
    checks._cached_uid_text.cache_clear()
    assert checks._uid(b"1" * 3000) == ("1" * 3000, False)
    assert checks._uid(b"1.2.3\x00") == ("1.2.3", True)
    assert checks._cached_uid_text.cache_info().currsize == 1
    elements._plain_charset_terms.cache_clear()
    assert not elements._plain_charset(b"ISO 2022 IR 6\\" * 20)
    assert elements._plain_charset(b"ISO_IR 100")
    assert elements._plain_charset_terms.cache_info().currsize == 1


@pytest.mark.parametrize("vr", [b"ZZ", b"XX"])
def test_a_character_set_of_unknown_vr_inside_an_item_is_unreadable(vr: bytes) -> None:
    """pydicom cannot decode it (NotImplementedError): refused as unreadable, not an internal error."""
    charset_item = item(element(0x00080005, vr, b"ISO_IR 100"), True)
    body = build(True, [(0x00081140, sequence(0x00081140, b"SQ", [charset_item]))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InvalidInstanceError) as refused:
            checks.inspect_body(_stream(body, 0), ExplicitVRLittleEndian, Budgets())
    assert (refused.value.reason, refused.value.status) == ("unreadable", status.CANNOT_PARSE)
