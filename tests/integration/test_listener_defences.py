"""Defences of the listener against hostile peers, each measured on a real listener process.

Every test here fails without its defence: without the PDU length limit the listener allocates
(or accumulates) what a peer announces; without the budgets a deflate or pixel bomb is stored
(and inflated in memory while parsing); without UID validation hostile UIDs are stored; without
the watermark C-STOREs succeed on a full disk; without the DIMSE timeout a stalled peer holds its
association forever. Hostile input is sent by :class:`RawPeer` (real SCUs refuse to send it).
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, MRImageStorage
from pynetdicom.dsutils import encode

from oncohabitat.listener import pdu_io, status
from tests.integration.test_listener_dcmtk import AE_TITLE, ListenerProcess
from tests.support.listener_store import wait_for_instance_files
from tests.support.raw_peer import AssociationRejectedError, RawPeer, encode_store_request

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::UserWarning")]

MIB = 1024 * 1024
Verification = "1.2.840.10008.1.1"
MEMORY_LIMIT_KIB = 64 * 1024
#: 20 connections announcing 4 GiB PDUs, each then streaming 8 MiB: a reader that kept what arrives
#: would grow by 160 MiB, well past the limit.
ATTACKERS = 20
ATTACK_STREAM_BYTES = 8 * MIB
STUDY, SERIES = "1.2.826.0.1.3680043.8.498.7001", "1.2.826.0.1.3680043.8.498.7002"


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[ListenerProcess]:
    server = ListenerProcess(
        tmp_path / "root",
        tmp_path / "handoffs.jsonl",
        "--set",
        "dimse_timeout_s=1.0",
        "--set",
        "memory_spool_mb=4",
        "--set",
        "min_free_disk_mb=1",
        "--set",
        f"max_associations={ATTACKERS + 4}",  # every attacker is read (none turned away as busy)
        "--set",
        f"max_associations_per_peer={ATTACKERS + 4}",  # all from 127.0.0.1
        "--free-bytes-file",
        str(tmp_path / "free_bytes"),
    )
    yield server
    server.stop()


def mr_dataset(sop_uid: str, **values: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, sop_uid, "MR"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, SERIES
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 16, 12, 11
    ds.SamplesPerPixel, ds.PixelRepresentation, ds.PhotometricInterpretation = 1, 0, "MONOCHROME2"
    ds.PixelData = b"\x00\x01" * 64
    for key, value in values.items():
        setattr(ds, key, value)
    return ds


def explicit(ds: Dataset) -> bytes:
    with pydicom.config.disable_value_validation():
        body = encode(ds, False, True)
    assert body is not None
    return body


def mr_peer(port: int, syntax: str = ExplicitVRLittleEndian) -> RawPeer:
    peer = RawPeer("127.0.0.1", port, timeout_s=15)
    peer.associate([(MRImageStorage, [syntax]), (Verification, ["1.2.840.10008.1.2"])], called_ae=AE_TITLE)
    return peer


def files_under(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()]


def test_huge_pdu_announcements_are_not_allocated_and_are_closed(listener: ListenerProcess) -> None:
    before = listener.rss_kib()
    closed: list[bool] = []

    def attack(established: bool) -> None:
        peer = RawPeer("127.0.0.1", listener.port, timeout_s=15) if not established else mr_peer(listener.port)
        pdu_type = pdu_io.P_DATA_TF if established else pdu_io.ASSOCIATE_RQ
        try:
            peer.sock.sendall(pdu_io.HEADER.pack(pdu_type, 0, 0xFFFFFFFF))  # 4 GiB announced
            for _ in range(ATTACK_STREAM_BYTES // 65536):  # then stream, as a real attacker would
                peer.sock.sendall(b"\x00" * 65536)
        except OSError:
            pass  # the listener closed the connection while we were still sending
        closed.append(peer.closed_by_peer(10.0))
        peer.close()

    threads = [threading.Thread(target=attack, args=(i % 2 == 0,)) for i in range(ATTACKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert closed == [True] * ATTACKERS
    growth = listener.rss_kib() - before
    assert growth < MEMORY_LIMIT_KIB, f"memory grew by {growth} KiB"
    echo = mr_peer(listener.port)  # still serving
    assert echo.release()


def deflated_bomb(inflated_mib: int) -> bytes:
    """A valid MR header followed by a private OB element of ``inflated_mib`` MiB of zeros, raw-deflated."""
    header = explicit(mr_dataset("1.2.826.0.1.3680043.8.498.7100"))
    length = inflated_mib * MIB
    private = (
        struct.pack("<HH2sH", 0x0009, 0x0010, b"LO", 4)
        + b"BOMB"
        + struct.pack("<HH2sHL", 0x0009, 0x1000, b"OB", 0, length)
    )
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [deflater.compress(header.split(b"\xe0\x7f\x10\x00")[0] + private)]
    zeros = b"\x00" * MIB
    parts.extend(deflater.compress(zeros) for _ in range(inflated_mib))
    parts.append(deflater.flush())
    return b"".join(parts)


def test_deflate_bomb_is_refused_before_it_is_inflated(listener: ListenerProcess) -> None:
    bomb = deflated_bomb(400)  # inflates to 400 MiB; budget 256 MiB
    assert len(bomb) < 1 * MIB
    before = listener.rss_kib()
    peer = mr_peer(listener.port, DeflatedExplicitVRLittleEndian)
    response = peer.c_store(MRImageStorage, "1.2.826.0.1.3680043.8.498.7100", bomb)
    assert (response.status, response.error_comment) == (status.DEFLATE_BUDGET_EXCEEDED, "deflate_budget")
    assert peer.release()
    growth = listener.rss_kib() - before
    assert growth < MEMORY_LIMIT_KIB, f"memory grew by {growth} KiB"
    assert files_under(listener_root(listener) / "instances") == []


def listener_root(listener: ListenerProcess) -> Path:
    args = listener.process.args
    assert isinstance(args, list)
    return Path(str(args[args.index("--root") + 1]))


def test_pixel_bomb_is_refused_from_its_header(listener: ListenerProcess) -> None:
    peer = mr_peer(listener.port)
    bomb = mr_dataset("1.2.826.0.1.3680043.8.498.7200", Rows=65535, Columns=65535, NumberOfFrames="1000")
    response = peer.c_store(MRImageStorage, "1.2.826.0.1.3680043.8.498.7200", explicit(bomb))
    assert (response.status, response.error_comment) == (status.PIXEL_BUDGET_EXCEEDED, "pixel_budget")
    fine = mr_dataset("1.2.826.0.1.3680043.8.498.7201")
    assert peer.c_store(MRImageStorage, "1.2.826.0.1.3680043.8.498.7201", explicit(fine), message_id=2).status == 0
    assert peer.release()
    assert len(wait_for_instance_files(listener_root(listener) / "instances", 1)) == 1


HOSTILE = ["../x", "/etc/x", "1" * 65, "1.2\x003.4", "1.2.abc", "..", "1.2.3/../../x"]


@pytest.mark.parametrize("where", ["command", "study", "series"])
def test_hostile_uids_never_reach_the_file_system(listener: ListenerProcess, tmp_path: Path, where: str) -> None:
    peer = mr_peer(listener.port)
    for number, uid in enumerate(HOSTILE, start=1):
        sop = uid if where == "command" else f"1.2.826.0.1.3680043.8.498.73{number:02d}"
        values = (
            {"StudyInstanceUID": uid} if where == "study" else {"SeriesInstanceUID": uid} if where == "series" else {}
        )
        with pydicom.config.disable_value_validation():
            ds = mr_dataset(sop, **values)
        response = peer.c_store(MRImageStorage, sop, explicit(ds), message_id=number)
        assert response.status == status.INVALID_UID and response.error_comment == "invalid_uid", uid
    assert peer.release()
    root = listener_root(listener)
    outside = [p for p in files_under(tmp_path) if not p.is_relative_to(root) and p.name != "handoffs.jsonl"]
    assert outside == []
    assert files_under(root / "instances") == [] and not Path("/etc/x").exists()


def test_disk_watermark_refuses_then_resumes_by_itself(listener: ListenerProcess, tmp_path: Path) -> None:
    free = tmp_path / "free_bytes"
    free.write_text("0")
    time.sleep(1.1)  # the guard re-measures at most once per second
    with pytest.raises(AssociationRejectedError) as rejected:
        mr_peer(listener.port)
    assert rejected.value.result == 2  # transient
    free.write_text(str(10 * 1024 * MIB))
    time.sleep(1.1)
    peer = mr_peer(listener.port)
    assert (
        peer.c_store(
            MRImageStorage, "1.2.826.0.1.3680043.8.498.7401", explicit(mr_dataset("1.2.826.0.1.3680043.8.498.7401"))
        ).status
        == 0
    )
    free.write_text("0")
    time.sleep(1.1)
    refused = peer.c_store(
        MRImageStorage,
        "1.2.826.0.1.3680043.8.498.7402",
        explicit(mr_dataset("1.2.826.0.1.3680043.8.498.7402")),
        message_id=2,
    )
    assert (refused.status, refused.error_comment) == (status.OUT_OF_RESOURCES, "disk_low")
    free.write_text(str(10 * 1024 * MIB))
    time.sleep(1.1)
    again = peer.c_store(
        MRImageStorage,
        "1.2.826.0.1.3680043.8.498.7402",
        explicit(mr_dataset("1.2.826.0.1.3680043.8.498.7402")),
        message_id=3,
    )
    assert again.status == status.SUCCESS
    assert peer.release()
    assert len(wait_for_instance_files(listener_root(listener) / "instances", 2)) == 2


def test_garbage_truncated_and_stalled_data_sets_fail_fast_without_a_crash(listener: ListenerProcess) -> None:
    good = explicit(mr_dataset("1.2.826.0.1.3680043.8.498.7501"))
    peer = mr_peer(listener.port)
    started = time.monotonic()
    garbage = peer.c_store(
        MRImageStorage, "1.2.826.0.1.3680043.8.498.7501", b"\x08\x00\x16\x00UI\xff\x7f" + b"\xab" * 999
    )
    truncated = peer.c_store(MRImageStorage, "1.2.826.0.1.3680043.8.498.7501", good[: len(good) // 3], message_id=2)
    noise = peer.c_store(MRImageStorage, "1.2.826.0.1.3680043.8.498.7501", bytes(range(256)) * 8, message_id=3)
    assert truncated.status == status.CANNOT_PARSE
    assert {garbage.status, noise.status} <= {status.CANNOT_PARSE, status.MISSING_UID, status.INVALID_UID}
    assert time.monotonic() - started < 5.0
    # a data set that never ends: aborted after the DIMSE timeout (1 s here)
    command = encode_store_request(4, MRImageStorage, "1.2.826.0.1.3680043.8.498.7502")
    peer.send_message(peer.context_for(MRImageStorage), command, good[:100], last=False)
    started = time.monotonic()
    assert peer.closed_by_peer(10.0)
    assert time.monotonic() - started < 5.0
    peer.close()
    # protocol garbage: unknown PDU type, then a P-DATA on a context that was never negotiated
    for payload in (b"\x09\x00\x00\x00\x00\x04abcd", pdu_io.encode_pdata(99, 3, b"x")):
        attacker = mr_peer(listener.port)
        attacker.sock.sendall(payload)
        assert attacker.closed_by_peer(5.0)
        attacker.close()
    survivor = mr_peer(listener.port)
    assert survivor.c_store(MRImageStorage, "1.2.826.0.1.3680043.8.498.7501", good).status == status.SUCCESS
    assert survivor.release()
    assert listener.process.poll() is None
