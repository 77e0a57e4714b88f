"""Concurrent associations with real peers, each served on its own thread: every instance of
concurrent pushes is stored, a peer that stops reading its replies, stalls mid-message or sends a
hostile header loses its own association only, and a slow store (large data set, a duplicate
waiting for the materialiser) never stalls the other associations."""

from __future__ import annotations

import contextlib
import json
import logging
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, MRImageStorage, generate_uid
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from oncohabitat.dicomio.identifiers import uid_key
from oncohabitat.listener import pdu_io, status
from oncohabitat.listener.index import StudyIndex
from oncohabitat.listener.scp import ListenerSCP
from oncohabitat.listener.storage import INDEX_FILE, InstanceStore, StorePolicy
from tests.support.dimse_commands import echo_command
from tests.support.raw_peer import RawPeer, encode_store_request

pytestmark = [pytest.mark.integration]

MIB = 1024 * 1024


def mr_instance(study: str, series: str, number: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, series, "MR"
    ds.InstanceNumber = number
    ds.Rows = ds.Columns = 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.full((32, 32), number, dtype=np.uint16).tobytes()
    return ds


def open_scp(root: Path, **kwargs: object) -> tuple[ListenerSCP, InstanceStore]:
    root.mkdir(parents=True)
    index = StudyIndex(root / INDEX_FILE)
    store = InstanceStore(root, index, policy=StorePolicy(journal_segments=2, journal_segment_bytes=8 * MIB))
    scp = ListenerSCP(
        store,
        ae_title="ONCOTEST",
        host="127.0.0.1",
        port=0,
        **kwargs,  # type: ignore[arg-type]
    )
    scp.start()
    return scp, store


@pytest.fixture
def short_timeouts_scp(tmp_path: Path) -> Iterator[tuple[ListenerSCP, InstanceStore]]:
    scp, store = open_scp(tmp_path / "root", dimse_timeout_s=1.0, network_timeout_s=5.0)
    yield scp, store
    scp.stop()
    store.close()
    store.index.close()


def push(port: int, instances: list[Dataset]) -> list[int]:
    """C-STORE each instance on one association; the statuses.

    A raw peer, not pynetdicom: pynetdicom's SCU loses responses that arrive very quickly when
    several of its associations run in threads of one process (pydicom/pynetdicom#850).
    """
    peer = RawPeer("127.0.0.1", port, timeout_s=30)
    try:
        peer.associate([(MRImageStorage, [ExplicitVRLittleEndian])], called_ae="ONCOTEST")
        statuses = []
        for message_id, ds in enumerate(instances, start=1):
            body = encode(ds, False, True)
            assert body is not None
            statuses.append(peer.c_store(MRImageStorage, ds.SOPInstanceUID, body, message_id=message_id).status)
        assert peer.release()
        return statuses
    finally:
        peer.close()


def test_concurrent_associations_store_every_instance(tmp_path: Path) -> None:
    scp, store = open_scp(tmp_path / "root")
    try:
        study = generate_uid()
        batches = [[mr_instance(study, generate_uid(), n) for n in range(1, 16)] for _ in range(4)]
        statuses: list[list[int]] = [[] for _ in batches]
        threads = [
            threading.Thread(target=lambda k=k: statuses[k].extend(push(scp.port, batches[k])))
            for k in range(len(batches))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert statuses == [[status.SUCCESS] * 15] * 4
        assert store.flush(20)
        for batch in batches:
            for ds in batch:
                record = store.index.get_instance(ds.SOPInstanceUID)
                assert record is not None and (store.root / record.path).is_file()
        deadline = time.monotonic() + 5
        while scp.active_associations and time.monotonic() < deadline:
            time.sleep(0.02)
        assert scp.active_associations == 0  # each association accounted for once it ended
    finally:
        scp.stop()
        store.close()
        store.index.close()


def test_a_peer_that_stops_reading_replies_loses_only_its_own_association(
    short_timeouts_scp: tuple[ListenerSCP, InstanceStore],
) -> None:
    scp, _store = short_timeouts_scp
    hog = RawPeer("127.0.0.1", scp.port, timeout_s=10)
    hog.associate([(Verification, [ImplicitVRLittleEndian])], called_ae="ONCOTEST")
    context_id = next(iter(hog.accepted))
    request = echo_command(1)
    hog.sock.settimeout(0.5)
    with contextlib.suppress(OSError):  # echo requests, replies never read: the buffers fill up
        for _ in range(200_000):
            hog.send_message(context_id, request, None)
    study = generate_uid()  # another association is served normally
    assert push(scp.port, [mr_instance(study, generate_uid(), n) for n in range(1, 4)]) == [status.SUCCESS] * 3
    assert hog.closed_by_peer(10.0)  # the listener gave up on the peer that does not read
    hog.close()


def test_a_message_stalled_mid_data_set_is_cut_off_by_the_dimse_timeout(
    short_timeouts_scp: tuple[ListenerSCP, InstanceStore],
) -> None:
    scp, store = short_timeouts_scp
    staller = RawPeer("127.0.0.1", scp.port, timeout_s=10)
    staller.associate([(MRImageStorage, [ImplicitVRLittleEndian])], called_ae="ONCOTEST")
    sop_uid = generate_uid()
    staller.send_message(  # the first element of a data set, never flagged as the last fragment
        staller.context_for(MRImageStorage),
        encode_store_request(1, MRImageStorage, sop_uid),
        b"\x08\x00\x16\x00\x1a\x00\x00\x00" + MRImageStorage.encode() + b"\x00",
        last=False,
    )
    started = time.monotonic()
    assert staller.closed_by_peer(5.0)
    assert 0.8 <= time.monotonic() - started < 4.0  # the 1 s DIMSE timeout, not the 5 s network one
    staller.close()
    assert store.index.get_instance(sop_uid) is None


def close_all(peers: list[RawPeer], scp: ListenerSCP, store: InstanceStore) -> None:
    """Close the peers, then stop the listener and release its store and index."""
    for peer in peers:
        peer.close()
    scp.stop()
    store.close()
    store.index.close()


def echoed_peers(scp: ListenerSCP, contexts: list[tuple[str, list[str]]], count: int = 2) -> list[RawPeer]:
    """``count`` associated raw peers, each past two echoes, the second once all are associated (all
    are served at once from then on). ``contexts`` must include Verification."""
    peers = [RawPeer("127.0.0.1", scp.port, timeout_s=30) for _ in range(count)]
    for peer in peers:
        peer.associate(contexts, called_ae="ONCOTEST")
    for message_id in (1, 2):
        for peer in peers:
            peer.send_message(peer.context_for(Verification), echo_command(message_id), None)
            assert peer.read_response().status == status.SUCCESS
    return peers


def test_an_oversized_pdu_header_behind_a_valid_pdu_ends_the_association_at_once(
    short_timeouts_scp: tuple[ListenerSCP, InstanceStore],
) -> None:
    """A valid echo and, in the same segment, a header announcing ~4 GiB: the echo is answered and the
    association aborted now, not when the 5 s network timeout finds it idle."""
    scp, _store = short_timeouts_scp
    peers = echoed_peers(scp, [(Verification, [ImplicitVRLittleEndian])])
    try:
        hostile = peers[0]
        context_id = next(iter(hostile.accepted))
        echo = pdu_io.encode_pdata(context_id, pdu_io.CONTROL_COMMAND | pdu_io.CONTROL_LAST, echo_command(2))
        hostile.sock.sendall(echo + pdu_io.HEADER.pack(pdu_io.P_DATA_TF, 0, 0xFFFFFFF0))
        assert hostile.read_response().status == status.SUCCESS
        started = time.monotonic()
        assert hostile.closed_by_peer(4.0)
        assert time.monotonic() - started < 2.0
        peers[1].send_message(next(iter(peers[1].accepted)), echo_command(3), None)
        assert peers[1].read_response().status == status.SUCCESS  # the other association is untouched
    finally:
        for peer in peers:
            peer.close()


def element_flood_body(sop_uid: str, empty_elements: int) -> bytes:
    """An implicit-VR MR data set: a valid header, then ``empty_elements`` zero-length private elements
    (every one parsed by the structure check: slow to walk, small on the wire)."""

    def element(group: int, number: int, value: bytes) -> bytes:
        return struct.pack("<HHL", group, number, len(value)) + value

    study, series = generate_uid(), generate_uid()
    header = b"".join(
        element(group, number, value.encode() + b"\0" * (len(value) % 2))
        for group, number, value in (
            (0x0008, 0x0016, MRImageStorage),
            (0x0008, 0x0018, sop_uid),
            (0x0020, 0x000D, study),
            (0x0020, 0x000E, series),
        )
    )
    return header + struct.pack("<HHL", 0x0029, 0x1010, 0) * empty_elements


def test_a_slow_large_data_set_does_not_stall_the_other_associations(tmp_path: Path) -> None:
    """~9 MiB of empty elements take the checks a while (~2 s measured with the pydicom walk): another
    association's echo is answered meanwhile, and the large one gets its success although its wait may
    outlast the 1 s network timeout (no timeout applies while its store runs)."""
    scp, store = open_scp(tmp_path / "root", dimse_timeout_s=1.0, network_timeout_s=1.0)
    peers = echoed_peers(scp, [(Verification, [ImplicitVRLittleEndian]), (MRImageStorage, [ImplicitVRLittleEndian])])
    try:
        large, other = peers
        sop_uid = generate_uid()
        body = element_flood_body(sop_uid, 1_200_000)
        large.send_message(
            large.context_for(MRImageStorage), encode_store_request(2, MRImageStorage, sop_uid), body, fragment=200_000
        )
        time.sleep(0.3)  # the data set has arrived: its checks run
        started = time.monotonic()
        other.send_message(other.context_for(Verification), echo_command(3), None)
        assert other.read_response().status == status.SUCCESS
        assert time.monotonic() - started < 1.0
        assert large.read_response().status == status.SUCCESS
        assert store.flush(10) and store.index.get_instance(sop_uid) is not None
    finally:
        close_all(peers, scp, store)


def test_a_duplicate_waiting_for_the_materialiser_does_not_stall_the_other_associations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-sent UID whose first version is not indexed yet waits for the materialiser (here 2 s) on its
    association's thread, so another association's echo is answered meanwhile."""
    scp, store = open_scp(tmp_path / "root")
    materialiser = store._materialiser
    assert materialiser is not None
    monkeypatch.setattr(materialiser, "_defer_idle_s", 60.0)  # the first version stays held back
    real_flush = materialiser.flush

    def slow_flush(timeout_s: float = 30.0) -> bool:  # a large held-back backlog
        time.sleep(2.0)
        return real_flush(timeout_s)

    monkeypatch.setattr(materialiser, "flush", slow_flush)
    contexts = [(Verification, [ImplicitVRLittleEndian]), (MRImageStorage, [ExplicitVRLittleEndian])]
    peers = echoed_peers(scp, contexts)
    try:
        first, again = peers
        instance = mr_instance(generate_uid(), generate_uid(), 1)
        body = encode(instance, False, True)
        assert first.c_store(MRImageStorage, instance.SOPInstanceUID, body, message_id=2).status == status.SUCCESS
        instance.InstanceNumber = 2  # other bytes, same UID
        changed = encode(instance, False, True)
        assert again.c_store(MRImageStorage, instance.SOPInstanceUID, changed, message_id=2).status == status.SUCCESS
        started = time.monotonic()
        first.send_message(first.context_for(Verification), echo_command(3), None)
        assert first.read_response().status == status.SUCCESS
        assert time.monotonic() - started < 1.0
        assert store.flush(10)
        record = store.index.get_instance(instance.SOPInstanceUID)
        assert record is not None and store.path_of(record).read_bytes().endswith(body)  # keep the first
    finally:
        close_all(peers, scp, store)


def test_a_duplicate_checked_after_the_reply_is_counted_in_its_closing_audit_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The re-sent UID's check waits ~1 s for the materialiser after the reply; its peer releases at
    once. The association's ``association_closed`` event comes once the check ran, with the duplicate."""
    scp, store = open_scp(tmp_path / "root")
    materialiser = store._materialiser
    assert materialiser is not None
    monkeypatch.setattr(materialiser, "_defer_idle_s", 60.0)  # the first version stays held back
    real_flush = materialiser.flush

    def slow_flush(timeout_s: float = 30.0) -> bool:
        time.sleep(1.0)
        return real_flush(timeout_s)

    monkeypatch.setattr(materialiser, "flush", slow_flush)
    peers = echoed_peers(scp, [(Verification, [ImplicitVRLittleEndian]), (MRImageStorage, [ExplicitVRLittleEndian])])
    try:
        with caplog.at_level(logging.INFO, logger="oncohabitat.listener.audit"):
            first, again = peers
            instance = mr_instance(generate_uid(), generate_uid(), 1)
            body = encode(instance, False, True)
            assert first.c_store(MRImageStorage, instance.SOPInstanceUID, body, message_id=2).status == status.SUCCESS
            instance.InstanceNumber = 2  # other bytes, same UID: its check waits for the materialiser
            changed = encode(instance, False, True)
            assert again.c_store(MRImageStorage, instance.SOPInstanceUID, changed, message_id=2).status == 0
            assert again.release()  # before its check has run
            assert first.release()
            deadline = time.monotonic() + 10
            while len([r for r in caplog.records if getattr(r, "audit_event", "") == "association_closed"]) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        closed = [r for r in caplog.records if getattr(r, "audit_event", "") == "association_closed"]
        counts = [
            (json.loads(r.audit_instances_by_study), r.audit_duplicates)  # type: ignore[attr-defined]
            for r in closed
        ]
        study_key = uid_key(instance.StudyInstanceUID)
        assert sorted(counts, key=lambda c: c[1]) == [({study_key: 1}, 0), ({}, 1)]
    finally:
        close_all(peers, scp, store)
