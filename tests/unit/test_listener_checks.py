"""The listener checks and command decoding agree with a plain pydicom reading of the same bytes.

``inspect_body`` walks raw elements once with pydicom's ``data_element_generator`` and
``decode_command`` keeps raw command values; here both are compared with
``pydicom.dcmread``/``read_dataset`` (or pynetdicom) on real files: the project's phantom (MR, CT,
RTSTRUCT, SEG), pydicom's test files (explicit/implicit VR, big endian, deflated, JPEG/RLE/JPEG
2000 encapsulated, multi-frame, SR, RT), the listener benchmark's MR instance and re-encodings of
them; then truncated and garbage variants must be refused for the right reason."""

from __future__ import annotations

import random
import struct
import warnings
import zlib
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import data_element_generator, read_dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from pynetdicom.dimse_messages import C_ECHO_RQ
from pynetdicom.dimse_primitives import C_ECHO
from pynetdicom.dsutils import decode, encode

from benchmarks.bench_listener import mr_instance
from oncohabitat.dicomio.identifiers import is_valid_uid
from oncohabitat.listener import status
from oncohabitat.listener.checks import Budgets, InstanceHeader, inspect_body
from oncohabitat.listener.dimse import C_STORE_RQ, NO_DATASET, Command, decode_command
from oncohabitat.listener.errors import InvalidInstanceError
from oncohabitat.listener.pdu_io import PduError
from oncohabitat.listener.storage import split_part10
from oncohabitat.phantom import generate_ct_study, generate_study
from tests.support.dimse_commands import echo_command, store_command

#: pydicom test files (pydicom and pydicom-data), one per encoding or structure worth covering.
PYDICOM_FILES = (
    "CT_small.dcm",  # explicit VR LE, sequences in the header
    "MR_small_implicit.dcm",  # implicit VR LE
    "MR_small_bigendian.dcm",  # explicit VR BE
    "emri_small.dcm",  # multi-frame (10 frames)
    "emri_small_big_endian.dcm",  # multi-frame, big endian
    "JPEG-lossy.dcm",  # encapsulated JPEG
    "SC_rgb_jpeg_dcmtk.dcm",  # encapsulated JPEG, RGB
    "MR_small_RLE.dcm",  # encapsulated RLE
    "MR_small_jp2klossless.dcm",  # encapsulated JPEG 2000
    "liver.dcm",  # SEG, multi-frame, many sequences
    "image_dfl.dcm",  # deflated, 8 bytes after the end of the deflate stream
    "rtplan.dcm",  # implicit VR, sequences, no pixel data
    "rtdose.dcm",  # implicit VR multi-frame
    "test-SR.dcm",  # nested content sequences, no pixel data
    "waveform_ecg.dcm",  # waveform sequence
)
UNREADABLE = ("unreadable", status.CANNOT_PARSE)
SOP_UID = "1.2.826.0.1.3680043.8.498.1"


def _testdata(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    if path is None:  # pragma: no cover - pydicom-data is a pinned dev dependency
        pytest.skip(f"pydicom test file {name} is not installed")
    return Path(str(path)).read_bytes()


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value)


def _int(ds: Dataset, keyword: str, default: int) -> int:
    value = ds.get(keyword)
    return default if value in (None, "") else int(value)


def _expected(ds: Dataset, budgets: Budgets) -> InstanceHeader | tuple[str, int]:
    """What the checks must answer for ``ds`` as pydicom reads it: the header, or (reason, status)."""
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        value = _text(ds, keyword).rstrip("\x00 ")
        if not value:
            return ("missing_uid", status.MISSING_UID)
        if not is_valid_uid(value):
            return ("invalid_uid", status.INVALID_UID)
    declared = (
        _int(ds, "Rows", 0)
        * _int(ds, "Columns", 0)
        * max(_int(ds, "NumberOfFrames", 1), 1)
        * max(_int(ds, "SamplesPerPixel", 1), 1)
        * _int(ds, "BitsAllocated", 0)
        // 8
    )
    if declared > budgets.max_pixel_bytes:
        return ("pixel_budget", status.PIXEL_BUDGET_EXCEEDED)
    series_number = _int(ds, "SeriesNumber", -1)
    return InstanceHeader(
        sop_class_uid=_text(ds, "SOPClassUID"),
        sop_uid=_text(ds, "SOPInstanceUID"),
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        modality=_text(ds, "Modality").strip()[:16],
        series_number=None if series_number < 0 else series_number,
        series_description=_text(ds, "SeriesDescription").strip()[:64],
        declared_pixel_bytes=declared,
    )


def _outcome(body: bytes, transfer_syntax: str, budgets: Budgets | None = None) -> InstanceHeader | tuple[str, int]:
    try:
        return inspect_body(BytesIO(body), transfer_syntax, budgets or Budgets())
    except InvalidInstanceError as error:
        return (error.reason, error.status)


def _split(raw: bytes) -> tuple[bytes, str]:
    transfer_syntax, offset = split_part10(raw)
    return raw[offset:], transfer_syntax


def _mr(**values: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, SOP_UID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = "1.2.3", "1.2.3.4", "MR"
    ds.SeriesDescription, ds.SeriesNumber = " t1 dyn ", 7
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = 8, 8, 16, 1
    for key, value in values.items():
        setattr(ds, key, value)
    return ds


def _undefined_length_sequence(ds: Dataset, keyword: str) -> None:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = MRImageStorage, "1.2.3.5"
    item.is_undefined_length_sequence_item = True
    setattr(ds, keyword, Sequence([item, Dataset()]))
    ds[keyword].is_undefined_length = True


def _boundaries(body: bytes, implicit: bool, little: bool) -> Iterator[tuple[int, int]]:
    """(start, end) stream offsets of each top-level element, values skipped."""
    stream = BytesIO(body)
    start = 0
    for element in data_element_generator(stream, implicit, little, defer_size=64):
        if isinstance(element, RawDataElement) and element.length != 0xFFFFFFFF:
            end = element.value_tell + element.length
        else:  # undefined length: parsed up to its delimiter
            end = stream.tell()
        yield start, end
        start = end


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("phantom")
    mr = generate_study(root / "mr", size="small", seed=11)
    ct = generate_ct_study(root / "ct", seed=11, mask="both")
    return [mr.phase_files[0][0], mr.phase_files[-1][5], ct.ct_files[0], *ct.mask_files.values()]


@pytest.mark.timeout(60)  # image_dfl.dcm once made the inflater spin forever
@pytest.mark.parametrize("name", PYDICOM_FILES)
def test_pydicom_test_files_match_dcmread(name: str) -> None:
    raw = _testdata(name)
    body, transfer_syntax = _split(raw)
    expected = _expected(pydicom.dcmread(BytesIO(raw)), Budgets())
    assert isinstance(expected, InstanceHeader)
    assert _outcome(body, transfer_syntax) == expected


def test_phantom_files_match_dcmread(phantom_files: list[Path]) -> None:
    assert len(phantom_files) >= 5  # MR, MR, CT, RTSTRUCT, SEG
    for path in phantom_files:
        raw = path.read_bytes()
        body, transfer_syntax = _split(raw)
        expected = _expected(pydicom.dcmread(BytesIO(raw)), Budgets())
        assert isinstance(expected, InstanceHeader), path
        assert _outcome(body, transfer_syntax) == expected, path


@pytest.mark.parametrize(
    ("transfer_syntax", "implicit", "little"),
    [
        (ImplicitVRLittleEndian, True, True),
        (ExplicitVRLittleEndian, False, True),
        (ExplicitVRBigEndian, False, False),
        (DeflatedExplicitVRLittleEndian, False, True),
    ],
)
def test_every_encoding_of_phantom_instances_matches(
    phantom_files: list[Path], transfer_syntax: str, implicit: bool, little: bool
) -> None:
    for path in phantom_files:
        ds = pydicom.dcmread(path)
        body = encode(ds, implicit, little)
        assert body is not None
        if transfer_syntax == DeflatedExplicitVRLittleEndian:
            deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
            body = deflater.compress(body) + deflater.flush()
        assert _outcome(body, transfer_syntax) == _expected(ds, Budgets()), path


@pytest.mark.parametrize(
    ("name", "implicit", "little"),
    [("CT_small.dcm", False, True), ("MR_small_implicit.dcm", True, True), ("MR_small_bigendian.dcm", False, False)],
)
def test_cuts_at_element_boundaries_are_complete_data_sets(name: str, implicit: bool, little: bool) -> None:
    body, transfer_syntax = _split(_testdata(name))
    for _start, end in _boundaries(body, implicit, little):
        ds = read_dataset(BytesIO(body[:end]), implicit, little)
        assert _outcome(body[:end], transfer_syntax) == _expected(ds, Budgets()), end


@pytest.mark.parametrize(
    ("name", "implicit", "little"),
    [
        ("CT_small.dcm", False, True),
        ("MR_small_implicit.dcm", True, True),
        ("MR_small_bigendian.dcm", False, False),
        ("JPEG-lossy.dcm", False, True),
        ("emri_small.dcm", False, True),
    ],
)
@pytest.mark.filterwarnings("ignore::UserWarning")  # cuts inside Specific Character Set
def test_cuts_inside_elements_are_refused(name: str, implicit: bool, little: bool) -> None:
    body, transfer_syntax = _split(_testdata(name))
    elements = list(_boundaries(body, implicit, little))
    header_end = max(end for (start, end) in elements if _tag_at(body, start, little) <= 0x00280100)
    for start, end in elements:
        for cut in sorted({start + 1, start + 7, (start + end) // 2, end - 1}):
            if not start < cut < end:
                continue
            reason = _outcome(body[:cut], transfer_syntax)
            if start >= header_end:  # every header attribute is there: only the structure is wrong
                assert reason == UNREADABLE, cut
            else:
                assert isinstance(reason, tuple) and reason[0] in ("unreadable", "missing_uid", "invalid_uid"), cut


def _tag_at(body: bytes, offset: int, little: bool) -> int:
    order: Literal["little", "big"] = "little" if little else "big"
    return int.from_bytes(body[offset : offset + 2], order) << 16 | int.from_bytes(body[offset + 2 : offset + 4], order)


def test_encapsulated_pixel_data_cut_before_its_delimiter_is_refused() -> None:
    body, transfer_syntax = _split(_testdata("SC_rgb_jpeg_dcmtk.dcm"))
    delimiter = body.rindex(b"\xfe\xff\xdd\xe0")
    assert isinstance(_outcome(body, transfer_syntax), InstanceHeader)
    for cut in (delimiter, delimiter + 4, delimiter - 1):
        assert _outcome(body[:cut], transfer_syntax) == UNREADABLE, cut


@pytest.mark.parametrize("extra", [b"\x00", b"\x00\x00", b"\x00" * 7, b"item-delimiter"])
@pytest.mark.parametrize("transfer_syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_trailing_bytes_that_are_no_element_are_refused(extra: bytes, transfer_syntax: str) -> None:
    syntax = UID(transfer_syntax)
    if extra == b"item-delimiter":  # (FFFE,E00D) at the top level ends pydicom's walk early
        extra = b"\xfe\xff\x0d\xe0" if syntax.is_little_endian else b"\xff\xfe\xe0\x0d"
        extra += b"\x00" * 4
    ds = _mr(PixelData=b"\x01\x02" * 64)
    body = encode(ds, syntax.is_implicit_VR, syntax.is_little_endian)
    assert body is not None
    assert _outcome(body, transfer_syntax) == _expected(ds, Budgets())
    assert _outcome(body + extra, transfer_syntax) == UNREADABLE


@pytest.mark.parametrize(("implicit", "little"), [(True, True), (False, True), (False, False)])
def test_undefined_length_sequences_in_the_header_and_after_it(implicit: bool, little: bool) -> None:
    transfer_syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    ds = _mr(PixelData=b"\x00\x01" * 64)
    _undefined_length_sequence(ds, "ReferencedImageSequence")  # (0008,1140): among the header attributes
    _undefined_length_sequence(ds, "ReferencedInstanceSequence")  # (0008,114A)
    body = encode(ds, implicit, little)
    assert body is not None
    assert body.count(b"\xff\xff\xff\xff") >= 4  # both sequences and their items have undefined length
    assert _outcome(body, transfer_syntax) == _expected(ds, Budgets())
    cut_inside = body.index(b"1.2.3.5")
    assert _outcome(body[:cut_inside], transfer_syntax) == UNREADABLE

    tail = _mr()  # no pixel data: the data set ends with an undefined-length sequence
    del tail.Rows, tail.Columns, tail.BitsAllocated, tail.SamplesPerPixel
    _undefined_length_sequence(tail, "DimensionOrganizationSequence")  # (0020,9221), last element
    tail_body = encode(tail, implicit, little)
    assert tail_body is not None
    assert _outcome(tail_body, transfer_syntax) == _expected(tail, Budgets())
    assert _outcome(tail_body[:-1], transfer_syntax) == UNREADABLE
    assert _outcome(tail_body[:-8], transfer_syntax) == UNREADABLE  # sequence delimiter missing


def test_values_longer_than_the_skip_size_are_still_checked() -> None:
    with pydicom.config.disable_value_validation():
        padded = _mr(SeriesInstanceUID="1.2.3.4" + " " * 3000, SeriesDescription="x" * 2000)
        long_uid = _mr(StudyInstanceUID="1" * 3000)
    body = encode(padded, True, True)
    assert body is not None
    header = inspect_body(BytesIO(body), ImplicitVRLittleEndian, Budgets())
    assert (header.series_uid, header.series_description) == ("1.2.3.4", "x" * 64)
    body = encode(long_uid, False, True)
    assert body is not None
    assert _outcome(body, ExplicitVRLittleEndian) == ("invalid_uid", status.INVALID_UID)


def test_pixel_budget_counts_frames_of_a_real_multiframe_file() -> None:
    body, transfer_syntax = _split(_testdata("emri_small.dcm"))
    declared = 64 * 64 * 10 * 2
    header = inspect_body(BytesIO(body), transfer_syntax, Budgets(max_pixel_bytes=declared))
    assert header.declared_pixel_bytes == declared
    over = _outcome(body, transfer_syntax, Budgets(max_pixel_bytes=declared - 1))
    assert over == ("pixel_budget", status.PIXEL_BUDGET_EXCEEDED)


def test_the_benchmark_instance_matches_dcmread() -> None:
    """The ~57 KB MR instance benchmarks/bench_listener.py pushes (168 x 168 x 16 bit)."""
    ds = mr_instance(1, generate_uid(), generate_uid(), np.random.default_rng(0))
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    raw = out.getvalue()
    body, transfer_syntax = _split(raw)
    header = _outcome(body, transfer_syntax)
    assert header == _expected(pydicom.dcmread(BytesIO(raw)), Budgets())
    assert isinstance(header, InstanceHeader)
    assert (header.series_description, header.declared_pixel_bytes) == ("benchmark", 168 * 168 * 2)
    over = Budgets(max_pixel_bytes=168 * 168 * 2 - 1)
    assert _outcome(body, transfer_syntax, over) == ("pixel_budget", status.PIXEL_BUDGET_EXCEEDED)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm", "MR_truncated.dcm"])
def test_a_spooled_file_is_checked_as_the_same_bytes_in_memory(name: str, tmp_path: Path) -> None:
    body, transfer_syntax = _split(_testdata(name))
    path = tmp_path / "body"
    path.write_bytes(body)
    with path.open("rb") as stream:
        try:
            from_file: InstanceHeader | tuple[str, int] = inspect_body(stream, transfer_syntax, Budgets())
        except InvalidInstanceError as error:
            from_file = (error.reason, error.status)
    assert from_file == _outcome(body, transfer_syntax)


@pytest.mark.parametrize("vr", [b"ZZ", b"XX"])
def test_a_character_set_of_unknown_vr_inside_an_item_is_unreadable(vr: bytes) -> None:
    """pydicom cannot decode it (NotImplementedError): refused as unreadable, not an internal error."""
    ds = _mr(PixelData=b"\x01\x02" * 64)
    _undefined_length_sequence(ds, "ReferencedImageSequence")
    body = encode(ds, False, True)
    assert body is not None
    charset = struct.pack("<HH2sH", 0x0008, 0x0005, vr, 10) + b"ISO_IR 100"
    item_start = body.index(b"\xfe\xff\x00\xe0\xff\xff\xff\xff") + 8  # the first item's first element
    body = body[:item_start] + charset + body[item_start:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _outcome(body, ExplicitVRLittleEndian) == UNREADABLE


def test_header_failures_come_before_structure_failures() -> None:
    ds = _mr(PixelData=b"\x00" * 128)
    del ds.SeriesInstanceUID
    body = encode(ds, False, True)
    assert body is not None
    assert _outcome(body[:-3], ExplicitVRLittleEndian) == ("missing_uid", status.MISSING_UID)
    assert _outcome(body + b"\x00", ExplicitVRLittleEndian, Budgets(max_pixel_bytes=1)) == (
        "missing_uid",
        status.MISSING_UID,
    )
    body = encode(_mr(NumberOfFrames=123, PixelData=b"\x00" * 128), False, True)
    assert body is not None and body.count(b"123 ") == 1
    body = body.replace(b"123 ", b"abc ")  # Number of Frames that is not an integer string
    assert _outcome(body, ExplicitVRLittleEndian) == UNREADABLE


def test_undefined_length_value_without_delimiter() -> None:
    body = encode(_mr(), True, True)
    assert body is not None
    cut_value = b"\xff\xff\xff\xffabcd"  # undefined length, no sequence delimiter follows
    # in the header (0020,1040): pydicom's read_dataset drops the whole header on this EOFError
    in_header = body + b"\x20\x00\x40\x10" + cut_value
    assert _outcome(in_header, ImplicitVRLittleEndian) == ("missing_uid", status.MISSING_UID)
    after_header = body + b"\xe0\x7f\x10\x00" + cut_value  # (7FE0,0010): the header is complete
    assert _outcome(after_header, ImplicitVRLittleEndian) == UNREADABLE


def test_vr_encoding_mismatch_is_read_as_pydicom_reads_it() -> None:
    ds = _mr(PixelData=b"\x00\x01" * 64)
    implicit_body = encode(ds, True, True)
    assert implicit_body is not None
    with pytest.warns(UserWarning, match="Expected explicit VR, but found implicit VR"):
        header = inspect_body(BytesIO(implicit_body), ExplicitVRLittleEndian, Budgets())
    assert header == _expected(ds, Budgets())


def test_garbage_is_refused() -> None:
    rng = random.Random(20)
    samples = [b"", b"garbage!" * 8, b"\x08\x00\x16\x00UI\xff\x7f" + b"\x00" * 10, b"\xff" * 64]
    samples += [rng.randbytes(rng.randint(1, 200)) for _ in range(300)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for data in samples:
            for transfer_syntax in (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian):
                outcome = _outcome(data, transfer_syntax)
                assert isinstance(outcome, tuple) and outcome[0] in ("unreadable", "missing_uid", "invalid_uid")
            assert _outcome(data, DeflatedExplicitVRLittleEndian) == UNREADABLE


@pytest.mark.parametrize("move_originator", [False, True])
@pytest.mark.parametrize("sop_uid", [SOP_UID, "1.2.3", "1.2.840.113619.2.55.3.604688119.969.1268071029.320"])
def test_store_command_matches_pynetdicom(sop_uid: str, move_originator: bool) -> None:
    data = store_command(0xFFFF, sop_uid, move_originator)
    reference = decode(BytesIO(data), True, True)
    command = decode_command(data)
    assert command.command_field == reference.CommandField == 0x0001
    assert command.message_id == reference.MessageID == 0xFFFF
    assert command.affected_sop_class_uid == reference.AffectedSOPClassUID == MRImageStorage
    assert command.affected_sop_instance_uid == reference.AffectedSOPInstanceUID == sop_uid
    assert command.has_dataset is (reference.CommandDataSetType != NO_DATASET) is True


def test_echo_and_explicit_vr_commands_match_pynetdicom() -> None:
    primitive = C_ECHO()
    primitive.MessageID = 5
    message = C_ECHO_RQ()
    message.primitive_to_message(primitive)
    data = encode(message.command_set, True, True)
    assert data is not None
    command = decode_command(data)
    assert (command.command_field, command.message_id, command.has_dataset) == (0x0030, 5, False)
    assert command.affected_sop_instance_uid == ""
    explicit = encode(decode(BytesIO(store_command(3, SOP_UID, False)), True, True), False, True)
    assert explicit is not None
    with pytest.warns(UserWarning, match="found explicit VR"):  # not conformant, read as pydicom reads it
        assert decode_command(explicit) == decode_command(store_command(3, SOP_UID, False))


def test_store_and_echo_commands_decode_to_their_fields() -> None:
    assert decode_command(store_command(7, "1.2.3")) == Command(C_STORE_RQ, 7, MRImageStorage, "1.2.3", True)
    assert decode_command(echo_command(5)) == Command(0x0030, 5, "", "", False)
    data = store_command(1, "1.2.3").replace(b"\x00\x00\x00\x10\x06\x00\x00\x001.2.3\x00", b"")
    empty_uid = data + struct.pack("<HHL", 0, 0x1000, 0)  # an empty Affected SOP Instance UID
    assert decode_command(empty_uid).affected_sop_instance_uid == ""


def test_garbage_commands_are_protocol_errors() -> None:
    rng = random.Random(7)
    data = store_command(1, SOP_UID, False)
    samples = [b"", b"\x00" * 3, data[:10], rng.randbytes(40)]
    samples.append(b"\x00\x00\x34\x12\xff\xff\xff\xff\xfe\xff\x00\xe0\x10\x00\x00\x00\x01")  # cut sequence item
    samples += [rng.randbytes(rng.randint(0, 80)) for _ in range(300)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for sample in samples:
            with pytest.raises(PduError):
                decode_command(sample)
    without_message_id = data.replace(b"\x00\x00\x10\x01", b"\x00\x00\x12\x01")
    with pytest.raises(PduError, match="lacks"):
        decode_command(without_message_id)
