"""Wire-level pieces of the listener: PDU framing limits, DIMSE command sets, Part-10 prefix,
negotiation PDUs, the data set spool and the pre-storage checks (deflate/pixel budgets)."""

from __future__ import annotations

import socket
import struct
import threading
import time
import zlib
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, MRImageStorage
from pynetdicom.dsutils import decode, encode
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ
from pynetdicom.presentation import PresentationContext

from oncohabitat.listener import pdu_io, status
from oncohabitat.listener.checks import Budgets, inflate_prefix, inspect_body
from oncohabitat.listener.dimse import C_STORE_RQ, C_STORE_RSP, decode_command, encode_response
from oncohabitat.listener.errors import InvalidInstanceError
from oncohabitat.listener.negotiation import (
    REJECT_CALLING_AE,
    decode_request,
    encode_accept,
    encode_reject,
    negotiate_contexts,
)
from oncohabitat.listener.part10 import file_meta_prefix
from oncohabitat.listener.spool import TEMP_SUFFIX, DatasetSpool
from tests.support.raw_peer import encode_store_request

SOP_UID = "1.2.826.0.1.3680043.8.498.1"


def socket_pair_with(data: bytes) -> socket.socket:
    left, right = socket.socketpair()
    left.sendall(data)
    left.close()
    right.settimeout(2.0)
    return right


def test_read_pdu_refuses_oversized_announcement_before_reading_the_body() -> None:
    sock = socket_pair_with(pdu_io.HEADER.pack(pdu_io.P_DATA_TF, 0, 0xFFFFFFFF) + b"x" * 100)
    with pytest.raises(pdu_io.PduTooLargeError) as error:
        pdu_io.read_pdu(sock, {pdu_io.P_DATA_TF: 16384})
    assert error.value.announced == 0xFFFFFFFF and error.value.limit == 16384


def test_read_pdu_reads_exact_body_and_rejects_unknown_types() -> None:
    sock = socket_pair_with(pdu_io.encode_pdata(1, 3, b"abc") + b"\x09\x00\x00\x00\x00\x00")
    pdu = pdu_io.read_pdu(sock, {pdu_io.P_DATA_TF: 100})
    assert pdu.pdu_type == pdu_io.P_DATA_TF
    assert [(cid, ctl, bytes(data)) for cid, ctl, data in pdu_io.iter_pdvs(pdu.body)] == [(1, 3, b"abc")]
    with pytest.raises(pdu_io.PduError, match="unexpected PDU type 0x09"):
        pdu_io.read_pdu(sock, {pdu_io.P_DATA_TF: 100})


def test_truncated_pdu_is_a_closed_connection() -> None:
    sock = socket_pair_with(pdu_io.HEADER.pack(pdu_io.P_DATA_TF, 0, 50) + b"short")
    with pytest.raises(pdu_io.ConnectionClosedError):
        pdu_io.read_pdu(sock, {pdu_io.P_DATA_TF: 100})


def test_pdu_reader_splits_read_ahead_into_pdus_and_bounds_allocation() -> None:
    big = bytes(range(256)) * 400  # 102,400 bytes: larger than the read-ahead buffer
    stream = (
        pdu_io.encode_pdata(1, 3, b"cmd")
        + pdu_io.encode_pdata(1, 2, big)
        + pdu_io.encode_pdata(3, 1, b"x")
        + pdu_io.HEADER.pack(pdu_io.P_DATA_TF, 0, 0xFFFFFFFF)
    )
    left, right = socket.socketpair()
    right.settimeout(2.0)
    writer = threading.Thread(target=lambda: (left.sendall(stream), left.close()))
    writer.start()
    reader = pdu_io.PduReader(right, chunk=4096)
    limits = {pdu_io.P_DATA_TF: 200_000}
    bodies = [[(c, ctl, bytes(d)) for c, ctl, d in pdu_io.iter_pdvs(reader.read(limits).body)] for _ in range(3)]
    assert bodies == [[(1, 3, b"cmd")], [(1, 2, big)], [(3, 1, b"x")]]
    with pytest.raises(pdu_io.PduTooLargeError):
        reader.read(limits)
    writer.join(5)
    with pytest.raises(pdu_io.ConnectionClosedError):  # a PDU cut by the peer closing
        pdu_io.PduReader(socket_pair_with(pdu_io.HEADER.pack(pdu_io.P_DATA_TF, 0, 50) + b"short")).read(limits)


def test_pdu_reader_waits_at_most_the_socket_timeout_per_receive_and_keeps_what_it_read() -> None:
    left, right = socket.socketpair()
    right.settimeout(0.3)
    reader = pdu_io.PduReader(right)
    limits = {pdu_io.P_DATA_TF: 100}
    pdu = pdu_io.encode_pdata(1, 3, b"abc")
    left.sendall(pdu[:4])
    started = time.monotonic()
    with pytest.raises(TimeoutError):  # the header starts, then the peer goes silent
        reader.read(limits)
    assert 0.25 <= time.monotonic() - started < 1.5
    left.sendall(pdu[4:])
    body = reader.read(limits).body  # the bytes already read are kept
    assert [bytes(d) for _c, _ctl, d in pdu_io.iter_pdvs(body)] == [b"abc"]
    right.settimeout(0.1)
    started = time.monotonic()
    with pytest.raises(TimeoutError):  # nothing at all
        reader.read(limits)
    assert 0.05 <= time.monotonic() - started < 1.0
    left.close()
    right.close()


@pytest.mark.parametrize(
    "body",
    [b"", b"\x00\x00\x00\x01\x01", b"\x00\x00\x00\xff\x01\x03abc", b"\x00\x00\x00\x01\x01\x03"],
)
def test_malformed_pdv_items_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(pdu_io.PduError):
        list(pdu_io.iter_pdvs(bytearray(body)))


def test_command_round_trip_with_pynetdicom() -> None:
    request = decode_command(encode_store_request(7, MRImageStorage, SOP_UID))
    assert (request.command_field, request.message_id, request.has_dataset) == (C_STORE_RQ, 7, True)
    assert (request.affected_sop_class_uid, request.affected_sop_instance_uid) == (MRImageStorage, SOP_UID)
    response = decode(
        BytesIO(encode_response(C_STORE_RSP, 7, MRImageStorage, SOP_UID, 0xA701, "pixel_budget")), True, True
    )
    assert (
        response.CommandGroupLength
        == len(encode_response(C_STORE_RSP, 7, MRImageStorage, SOP_UID, 0xA701, "pixel_budget")) - 12
    )
    assert (response.CommandField, response.MessageIDBeingRespondedTo, response.Status) == (C_STORE_RSP, 7, 0xA701)
    assert response.CommandDataSetType == 0x0101 and response.ErrorComment == "pixel_budget"
    assert (response.AffectedSOPClassUID, response.AffectedSOPInstanceUID) == (MRImageStorage, SOP_UID)


def test_command_without_message_id_is_refused() -> None:
    ds = Dataset()
    ds.CommandField = 1
    with pytest.raises(pdu_io.PduError):
        decode_command(encode(ds, True, True) or b"")
    with pytest.raises(pdu_io.PduError):
        decode_command(b"\x00\x00\x00\x01\xff\xff\xff\x7f")


def test_part10_prefix_reads_back_with_pydicom(tmp_path: Path) -> None:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, SOP_UID, "MR"
    body = encode(ds, False, True)
    assert body is not None
    path = tmp_path / "x.dcm"
    path.write_bytes(file_meta_prefix(MRImageStorage, SOP_UID, ExplicitVRLittleEndian) + body)
    read = pydicom.dcmread(path)
    assert read.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert read.file_meta.MediaStorageSOPInstanceUID == SOP_UID and read.SOPInstanceUID == SOP_UID
    assert file_meta_prefix(MRImageStorage, SOP_UID, ExplicitVRLittleEndian) == file_meta_prefix(
        MRImageStorage, SOP_UID, ExplicitVRLittleEndian
    )


def _requested(*contexts: tuple[str, list[str]]) -> list[PresentationContext]:
    out = []
    for index, (abstract, syntaxes) in enumerate(contexts):
        cx = PresentationContext()
        cx.context_id = 2 * index + 1
        cx.abstract_syntax = abstract
        cx.transfer_syntax = syntaxes
        out.append(cx)
    return out


def test_negotiation_accepts_supported_contexts_and_pynetdicom_decodes_the_answer() -> None:
    from pynetdicom.pdu import A_ASSOCIATE_RQ
    from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification

    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title, primitive.called_ae_title = "MODALITY", "ONCOHABITAT"
    primitive.presentation_context_definition_list = _requested(
        (MRImageStorage, [DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian]),
        ("1.2.3.4", [ImplicitVRLittleEndian]),
    )
    item = MaximumLengthNotification()
    item.maximum_length_received = 32768
    primitive.user_information = [item]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    request = decode_request(pdu.encode()[6:])
    assert (request.calling_ae, request.called_ae, request.peer_max_pdu) == ("MODALITY", "ONCOHABITAT", 32768)
    supported = _requested((MRImageStorage, [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]))
    results, roles = negotiate_contexts(request, supported)
    assert {(cx.context_id, cx.result) for cx in results} == {(1, 0), (3, 3)}
    # the acceptor's preference order decides (ours lists uncompressed syntaxes first)
    assert str(next(cx for cx in results if cx.context_id == 1).transfer_syntax[0]) == ImplicitVRLittleEndian
    ac = A_ASSOCIATE_AC()
    ac.decode(encode_accept(request, results, roles, 65536))
    assert ac.to_primitive().maximum_length_received == 65536
    rj = A_ASSOCIATE_RJ()
    rj.decode(encode_reject(*REJECT_CALLING_AE))
    assert (rj.result, rj.source, rj.reason_diagnostic) == REJECT_CALLING_AE


def test_spool_stays_in_memory_then_spills_then_overflows(tmp_path: Path) -> None:
    small = DatasetSpool(b"P", tmp_path, memory_limit=10, max_bytes=100)
    small.append(b"abc")
    assert small.in_memory and small.getvalue() == b"Pabc"
    big = DatasetSpool(b"P", tmp_path, memory_limit=10, max_bytes=100)
    for _ in range(5):
        big.append(memoryview(b"0123456789"))
    assert not big.in_memory and big.path is not None and big.path.name.endswith(TEMP_SUFFIX)
    with big.open_body() as stream:
        assert stream.read() == b"0123456789" * 5
    import hashlib

    assert big.sha256() == hashlib.sha256(b"P" + b"0123456789" * 5).hexdigest()
    path = big.finish_file(fsync=False)
    assert path.read_bytes() == b"P" + b"0123456789" * 5
    over = DatasetSpool(b"P", tmp_path, memory_limit=10, max_bytes=30)
    for _ in range(5):
        over.append(b"0123456789")
    assert over.overflowed and over.dataset_bytes == 50
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(TEMP_SUFFIX)]
    assert leftovers == [path]  # the overflowing spool deleted its file; the finished one is the caller's


def _mr_header(**values: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, SOP_UID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = "1.2.3", "1.2.3.4", "MR"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = 64, 64, 16, 1
    for key, value in values.items():
        setattr(ds, key, value)
    return ds


def test_pixel_budget_counts_rows_columns_frames_samples_and_bits() -> None:
    body = encode(_mr_header(NumberOfFrames=4), True, True)
    header = inspect_body(BytesIO(body), ImplicitVRLittleEndian, Budgets(max_pixel_bytes=64 * 64 * 4 * 2))
    assert header.declared_pixel_bytes == 64 * 64 * 4 * 2 and header.sop_uid == SOP_UID
    with pytest.raises(InvalidInstanceError) as error:
        inspect_body(BytesIO(body), ImplicitVRLittleEndian, Budgets(max_pixel_bytes=64 * 64 * 4 * 2 - 1))
    assert (error.value.reason, error.value.status) == ("pixel_budget", status.PIXEL_BUDGET_EXCEEDED)


def _deflated(raw_chunks: int, chunk: bytes) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [deflater.compress(chunk) for _ in range(raw_chunks)]
    return b"".join(out) + deflater.flush()


def test_inflation_stops_at_the_budget_without_holding_the_output() -> None:
    bomb = _deflated(256, b"\x00" * (1 << 20))  # 256 MiB of zeros in ~250 KiB
    assert len(bomb) < 1 << 20
    with pytest.raises(InvalidInstanceError) as error:
        inflate_prefix(BytesIO(bomb), 32 << 20)
    assert error.value.reason == "deflate_budget"
    body = encode(_mr_header(), False, True)
    assert body is not None
    deflated = _deflated(1, body)
    header = inspect_body(BytesIO(deflated), DeflatedExplicitVRLittleEndian, Budgets())
    assert header.study_uid == "1.2.3"
    with pytest.raises(InvalidInstanceError) as corrupt:
        inflate_prefix(BytesIO(b"\xff" * 64), 1 << 20)
    assert corrupt.value.reason == "unreadable"
    with pytest.raises(InvalidInstanceError, match="truncated"):
        inflate_prefix(BytesIO(deflated[: len(deflated) // 2]), 1 << 20)
    assert inflate_prefix(BytesIO(deflated), 1 << 20) == (body, True)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    ("keyword", "value", "reason"),
    [
        ("SOPInstanceUID", "../x", "invalid_uid"),
        ("StudyInstanceUID", "/etc/x", "invalid_uid"),
        ("SeriesInstanceUID", "1" * 65, "invalid_uid"),
        ("StudyInstanceUID", "1.2\x003", "invalid_uid"),
        ("SeriesInstanceUID", "1.2.abc", "invalid_uid"),
        ("StudyInstanceUID", "", "missing_uid"),
    ],
)
def test_hostile_uids_are_refused_by_the_checks(keyword: str, value: str, reason: str) -> None:
    ds = _mr_header()
    with pydicom.config.disable_value_validation():
        setattr(ds, keyword, value)
        body = encode(ds, True, True)
    assert body is not None
    with pytest.raises(InvalidInstanceError) as error:
        inspect_body(BytesIO(body), ImplicitVRLittleEndian, Budgets())
    assert error.value.reason == reason


def test_garbage_and_truncated_bodies_are_unreadable() -> None:
    ds = _mr_header()
    ds.PixelData = b"\x01\x02" * 4096
    body = encode(ds, False, True)
    assert body is not None
    inspect_body(BytesIO(body), ExplicitVRLittleEndian, Budgets())  # complete: accepted
    for data in (
        b"\x08\x00\x16\x00UI\xff\x7f" + b"\x00" * 10,
        body[: len(body) // 2 + 3],  # cut inside the pixel data
        body[:-1],
        body[:60],  # cut inside the header
        body + b"\x00\x00",  # trailing bytes that are no element
        b"garbage!" * 8,
    ):
        with pytest.raises(InvalidInstanceError) as error:
            inspect_body(BytesIO(data), ExplicitVRLittleEndian, Budgets())
        assert error.value.reason in ("unreadable", "missing_uid", "invalid_uid")
    assert read_dataset(BytesIO(body), False, True).SOPInstanceUID == SOP_UID
    assert struct.calcsize("<HHLL") == 12
