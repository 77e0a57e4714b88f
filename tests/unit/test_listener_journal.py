"""Intake journal and materialiser: durable appends, recovery after a crash (torn entries, checkpoints,
ring reuse), group commit, back-pressure, and the store's journal path (duplicates, pending studies,
worker restart, re-materialisation at start)."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gc
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from queue import SimpleQueue
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset

from oncohabitat.common import blobstore
from oncohabitat.dicomio.identifiers import uid_key
from oncohabitat.listener import journal as journal_module
from oncohabitat.listener import materialiser as materialiser_module
from oncohabitat.listener import materialiser_worker, status
from oncohabitat.listener import recovery as recovery_module
from oncohabitat.listener.checks import Budgets
from oncohabitat.listener.errors import InvalidInstanceError, StorageWriteError
from oncohabitat.listener.index import AddOutcome, StudyIndex, StudyState
from oncohabitat.listener.journal import HEADER, IntakeJournal, JournalError, JournalReader
from oncohabitat.listener.journal_meta import (
    IntakeMeta,
    RefusalMeta,
    decode_journal_meta,
    encode_intake_meta,
    encode_refusal_meta,
)
from oncohabitat.listener.storage import (
    INDEX_FILE,
    JOURNAL_DIR,
    QUARANTINE_DIR,
    DuplicatePolicy,
    InstanceStore,
    StorePolicy,
    StoreResult,
)
from tests.unit.test_listener_storage import Event, encode_body, file_body, make_event, metric, receive

MIB = 1024 * 1024
SEGMENT = 1 * MIB


def payload(n: int, size: int = 50_000) -> bytes:
    return bytes([n % 251]) * size


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def append(journal: IntakeJournal, n: int, size: int = 50_000) -> int:
    data = payload(n, size)
    return journal.append(f"meta-{n}".encode(), data, sha(data)).sequence


# ---- journal ---------------------------------------------------------------------------------


def test_appended_entries_are_recovered_after_a_crash_and_checkpointed_ones_are_not(tmp_path: Path) -> None:
    journal = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=4)
    sequences = [append(journal, n) for n in range(10)]
    assert sequences == list(range(1, 11))
    journal.checkpoint(4)
    journal.close()  # no clean shutdown protocol: the journal is as a crash leaves it
    reopened = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=4)
    assert [e.sequence for e in reopened.recovered] == list(range(5, 11))
    assert [e.meta for e in reopened.recovered] == [f"meta-{n}".encode() for n in range(4, 10)]
    assert all(
        e.payload == payload(n) and e.sha256 == sha(payload(n))
        for n, e in zip(range(4, 10), reopened.recovered, strict=True)
    )
    reopened.checkpoint(reopened.last_sequence)  # what the store does once it re-materialised them
    ring_entries = 4 * SEGMENT // journal_module.BLOCK
    assert append(reopened, 99) == 11 + ring_entries  # after what is on disk, past anything left behind


def test_entries_left_behind_a_torn_one_never_continue_a_later_runs_chain(tmp_path: Path) -> None:
    """Run 1 leaves entries 2 and 3 valid behind a torn entry 1 (never acknowledged: a reply waits
    for every earlier entry). Run 2 starts again at the segment's start; if its first entry ends
    exactly where the old entry 2 begins, a later scan must not read on into run 1's entries (one
    could be a refusal record naming a sequence that run 2 acknowledged)."""
    journal = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2)
    old = [journal.append(b"m", payload(n), sha(payload(n))) for n in range(3)]
    journal.close()
    with (tmp_path / "segment-000.log").open("r+b") as handle:  # run 1's crash tore entry 1
        handle.seek(old[0].offset + old[0].size - 10)
        handle.write(b"\xff" * 10)
    second_run = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2)
    assert second_run.recovered == []
    second_run.checkpoint(second_run.last_sequence)
    new = second_run.append(b"m", payload(7), sha(payload(7)))  # same size: ends where old entry 2 begins
    assert (new.segment, new.offset, new.size) == (old[0].segment, old[0].offset, old[0].size)
    second_run.close()
    recovered = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2).recovered
    assert [(e.sequence, e.payload) for e in recovered] == [(new.sequence, payload(7))]


def test_a_torn_entry_ends_recovery_of_its_segment(tmp_path: Path) -> None:
    journal = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2)
    locations = [journal.append(b"m", payload(n), sha(payload(n))) for n in range(3)]
    journal.close()
    third = locations[2]
    with (tmp_path / "segment-000.log").open("r+b") as handle:  # a write the crash cut short
        handle.seek(third.offset + third.size - 10)
        handle.write(b"\xff" * 10)
    recovered = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2).recovered
    assert [e.sequence for e in recovered] == [1, 2]


def test_a_damaged_header_is_not_trusted(tmp_path: Path) -> None:
    journal = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2)
    locations = [journal.append(b"meta", payload(n), sha(payload(n))) for n in range(2)]
    journal.close()
    with (tmp_path / "segment-000.log").open("r+b") as handle:  # metadata byte flipped: header CRC fails
        handle.seek(locations[1].offset + HEADER.size)
        handle.write(b"X")
    assert [e.sequence for e in IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2).recovered] == [1]


def test_segments_are_reused_only_after_a_checkpoint(tmp_path: Path) -> None:
    journal = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2, space_timeout_s=0.3)
    per_segment = SEGMENT // (HEADER.size + 6 + 200_000)
    for n in range(2 * per_segment):
        append(journal, n, 200_000)
    with pytest.raises(JournalError, match="full"):
        append(journal, 999, 200_000)  # both segments hold entries above the checkpoint
    started = time.monotonic()
    with pytest.raises(JournalError, match="full"):  # refused at once now: the store writes directly
        append(journal, 998, 200_000)
    assert time.monotonic() - started < 0.2
    journal.checkpoint(journal.last_sequence - 1)
    last = append(journal, 1000, 200_000)  # segment 0 is reused
    journal.close()
    recovered = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2).recovered
    assert [e.sequence for e in recovered] == [last - 1, last]  # the old entries of segment 0 are gone or old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "segment-000.log", "segment-001.log"]
    assert all(p.stat().st_size == SEGMENT for p in tmp_path.glob("segment-*.log"))


def test_a_writer_that_may_not_wait_for_space_fails_at_once_and_leaves_no_bypass(tmp_path: Path) -> None:
    journal = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2, space_timeout_s=10)
    per_segment = SEGMENT // (HEADER.size + 6 + 200_000)
    for n in range(2 * per_segment):
        append(journal, n, 200_000)
    started = time.monotonic()
    with pytest.raises(JournalError, match="journal full"):
        journal.write(b"no wait", payload(9, 200_000), wait_for_space=False)  # needs the next segment
    assert time.monotonic() - started < 1.0
    journal.checkpoint(journal.last_sequence)
    append(journal, 8, 200_000)  # no bypass was switched on: the next entry is journaled
    journal.close()


def test_a_writer_waiting_for_space_continues_after_the_checkpoint(tmp_path: Path) -> None:
    journal = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2, space_timeout_s=10)
    per_segment = SEGMENT // (HEADER.size + 6 + 200_000)
    for n in range(2 * per_segment):
        append(journal, n, 200_000)
    done: list[int] = []
    writer = threading.Thread(target=lambda: done.append(append(journal, 7, 200_000)))
    writer.start()
    deadline = time.monotonic() + 5
    while not journal.space_wanted and time.monotonic() < deadline:
        time.sleep(0.01)
    assert journal.space_wanted and not done
    journal.checkpoint(journal.last_sequence - 1)
    writer.join(5)
    assert done and not journal.space_wanted


def test_two_writers_waiting_for_space_both_continue_after_the_checkpoint(tmp_path: Path) -> None:
    """The first to rotate fills part of the reused segment: the second must use it, not time out."""
    journal = IntakeJournal(tmp_path / "journal", segment_bytes=1 << 20, segments=2, space_timeout_s=5.0)
    entry_size = 100_000
    while True:  # fill both segments
        location = journal.write(b"{}", payload(0, entry_size))
        journal.wait_durable(location)
        segment = journal._segments[1]
        if location.segment == 1 and segment.write_offset + entry_size + 4096 > journal.segment_bytes:
            break
    outcomes: dict[int, str] = {}

    def writer(number: int) -> None:
        started = time.monotonic()
        try:
            journal.wait_durable(journal.write(b"{}", payload(number, entry_size)))
            outcomes[number] = f"ok after {time.monotonic() - started:.1f} s"
        except JournalError as exc:
            outcomes[number] = f"refused: {exc}"

    writers = [threading.Thread(target=writer, args=(n,)) for n in (1, 2)]
    for thread in writers:
        thread.start()
    deadline = time.monotonic() + 5.0
    while len(journal._cond._waiters) < 2 and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.01)
    assert journal.space_wanted and len(journal._cond._waiters) == 2  # type: ignore[attr-defined]
    journal.checkpoint(journal.last_sequence)  # every entry so far materialised: segment 0 is reusable
    for thread in writers:
        thread.join(10)
    assert all(outcome.startswith("ok") for outcome in outcomes.values()) and len(outcomes) == 2, outcomes
    journal.wait_durable(journal.write(b"{}", payload(3, 10)))  # no bypass afterwards
    journal.close()


def test_concurrent_appends_are_all_durable_and_numbered_once(tmp_path: Path) -> None:
    journal = IntakeJournal(tmp_path, segment_bytes=4 * MIB, segments=2)
    results: list[int] = []
    lock = threading.Lock()

    def push(k: int) -> None:
        for n in range(25):
            sequence = append(journal, k * 100 + n, 20_000)
            with lock:
                results.append(sequence)

    threads = [threading.Thread(target=push, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    journal.close()
    assert sorted(results) == list(range(1, 101))
    recovered = IntakeJournal(tmp_path, segment_bytes=4 * MIB, segments=2).recovered
    assert [e.sequence for e in recovered] == list(range(1, 101))
    assert all(e.sha256 == sha(e.payload) for e in recovered)


def test_an_entry_is_written_through_to_the_end_of_its_last_block(tmp_path: Path) -> None:
    """The padding after an entry is written with it (zeros): a write ending inside an uncached page
    would make the kernel read that page from the device first, on the reply path."""
    journal = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2)
    with (tmp_path / "segment-000.log").open("r+b") as handle:  # old bytes, as in a reused segment
        handle.write(b"\xff" * 3 * 4096)
    location = journal.append(b"m", payload(0, 5000))
    journal.close()
    assert location.size < 8192
    data = (tmp_path / "segment-000.log").read_bytes()[: 3 * 4096]
    assert data[location.size : 8192] == bytes(8192 - location.size)  # padding written
    assert data[8192:] == b"\xff" * 4096  # nothing beyond the entry's blocks


@pytest.mark.parametrize("crc_flag", [journal_module.FLAG_PAYLOAD_CRC32C, journal_module.FLAG_PAYLOAD_CRC32])
def test_entries_with_a_crc_check_get_their_sha256_on_reading_and_torn_payloads_are_found(
    tmp_path: Path, crc_flag: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CRC-32C is written where its C code is installed (here), zlib's CRC-32 elsewhere: both read back."""
    assert journal_module.WRITE_CRC_FLAG == journal_module.FLAG_PAYLOAD_CRC32C  # google-crc32c's C code
    monkeypatch.setattr(journal_module, "WRITE_CRC_FLAG", crc_flag)
    journal = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2)
    locations = [journal.append(b"m", payload(n)) for n in range(3)]  # no digest: a CRC check
    with (tmp_path / "segment-000.log").open("rb") as handle:
        assert HEADER.unpack(handle.read(HEADER.size))[2] & crc_flag  # that CRC's flag
    journal.append(b"m", payload(3), sha(payload(3)))  # an entry with a SHA-256 check still reads back
    reader = JournalReader(tmp_path)
    assert [reader.read(loc).sha256 for loc in locations] == [sha(payload(n)) for n in range(3)]
    journal.close()
    recovered = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2).recovered
    assert [(e.sequence, e.sha256) for e in recovered] == [(n + 1, sha(payload(n))) for n in range(4)]
    second = locations[1]
    with (tmp_path / "segment-000.log").open("r+b") as handle:  # one payload byte lost
        handle.seek(second.offset + second.size - 1)
        handle.write(b"\xff")
    with pytest.raises(JournalError, match="check"):
        JournalReader(tmp_path).read(second)
    reader.close()
    assert [e.sequence for e in IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2).recovered] == [1]


def test_a_failed_sync_is_latched_for_every_later_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Linux reports a write-back error to one fdatasync only: entries after it must never count as durable."""
    journal = IntakeJournal(tmp_path / "journal", segment_bytes=1 << 20, segments=2)
    first = journal.write(b"{}", payload(1, 1000))
    second = journal.write(b"{}", payload(2, 1000))
    real_fdatasync = os.fdatasync
    calls: list[int] = []

    def fails_once(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, "Input/output error")
        real_fdatasync(fd)  # what Linux does next: the failed pages are clean, so this returns 0

    monkeypatch.setattr(os, "fdatasync", fails_once)
    with pytest.raises(JournalError, match="sync failed"):
        journal.wait_durable(first)
    with pytest.raises(JournalError, match="earlier journal write or sync failed"):
        journal.wait_durable(second)  # was in the failed write-back too: never acknowledged
    with pytest.raises(JournalError, match="unusable"):
        journal.write(b"{}", payload(3, 1000))  # new instances take the direct path
    journal.close()


def test_oversized_entries_and_damaged_checkpoints_are_refused(tmp_path: Path) -> None:
    journal = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2)
    big = bytes(SEGMENT)
    with pytest.raises(JournalError, match="larger"):
        journal.append(b"", big, sha(big))
    append(journal, 1)
    journal.checkpoint(1)
    journal.close()
    (tmp_path / "checkpoint").write_bytes(b"OHJC" + b"\x00" * 12)
    with pytest.raises(JournalError, match="checkpoint"):
        IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2)


def test_metadata_round_trips_and_entries_of_the_first_layout_still_decode() -> None:
    from oncohabitat.listener.index import InstanceRecord

    meta = IntakeMeta("1.2.840.10008.5.1.4.1.1.4", "1.2.3", "1.2.840.10008.1.2.1", 1.5, Budgets(1000, 2000))
    assert decode_journal_meta(encode_intake_meta(meta)) == meta
    record = InstanceRecord(
        "1.2.3", "s", "r", "1.2.4", "1.2.840.10008.5.1.4.1.1.4", "MR", "p", "ab", 5, 1.5, None, "x", ""
    )
    first_layout = json.dumps(["1.2", *dataclasses.astuple(record)]).encode()  # journaled by earlier releases
    assert decode_journal_meta(first_layout) == (record, "1.2")
    refusal = RefusalMeta(7, "sop_mismatch")
    assert decode_journal_meta(encode_refusal_meta(refusal)) == refusal
    unknown_layouts = (
        b'["1.2"]',
        b"[3, 1, 2, 3, 4]",
        b'[3, "7", "sop_mismatch"]',
        b'[3, true, "sop_mismatch"]',
        b"[3, 7, 0]",
        b'[2, "a", "b", "c", "now", 1, 2]',
        b'[2, "a", "b", "c", 1.5]',
        b"{}",
    )
    for unknown in unknown_layouts:
        with pytest.raises(ValueError):
            decode_journal_meta(unknown)


# ---- the store's journal path -----------------------------------------------------------------


def journal_policy(**values: object) -> StorePolicy:
    return StorePolicy(journal_segments=2, journal_segment_bytes=4 * MIB, **values)  # type: ignore[arg-type]


@pytest.fixture
def ct_series(sts_ct_dir: Path) -> list[Path]:
    return sorted((sts_ct_dir / "image").glob("*.dcm"))[:12]


def open_store(root: Path, **policy: object) -> tuple[InstanceStore, StudyIndex]:
    root.mkdir(parents=True, exist_ok=True)
    index = StudyIndex(root / INDEX_FILE, synchronous="NORMAL")
    return InstanceStore(root, index, policy=journal_policy(**policy)), index


@pytest.fixture
def journaled(tmp_path: Path) -> Iterator[tuple[InstanceStore, StudyIndex]]:
    store, index = open_store(tmp_path / "root")
    yield store, index
    store.close()
    index.close()


def end_worker_as_in_a_crash(materialiser: materialiser_module.Materialiser) -> None:
    """Kill the worker and let the receiver thread end (it is not restarted): from then on nothing
    is materialised or checkpointed, as after a crash of the listener."""
    assert materialiser._process is not None and materialiser._receiver is not None
    materialiser._stopping = True
    materialiser._process.kill()
    materialiser._receiver.join(10)
    assert not materialiser._receiver.is_alive()
    materialiser._end_worker(5)


def abandon_as_in_a_crash(store: InstanceStore, index: StudyIndex) -> None:
    """Release the root's lock and the index without any clean shutdown, as a crash does."""
    assert store._lock_handle is not None
    store._lock_handle.close()
    store._lock_handle = None
    index.close()


@contextlib.contextmanager
def reopened(root: Path, **policy: object) -> Iterator[tuple[InstanceStore, StudyIndex]]:
    """The store at ``root`` opened again (its recovery runs), closed afterwards."""
    store, index = open_store(root, **policy)
    try:
        yield store, index
    finally:
        store.close()
        index.close()


def restarting_materialiser(store: InstanceStore) -> materialiser_module.Materialiser:
    """The store's materialiser, its worker running, set to restart a dead worker after 50 ms."""
    materialiser = store._materialiser
    assert materialiser is not None and materialiser._process is not None
    materialiser._restart_backoff_s = 0.05
    return materialiser


def event_of(path: Path) -> object:
    ds = pydicom.dcmread(path)
    return make_event(file_body(path), ds.SOPClassUID, ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID)


def test_journaled_instances_become_files_and_rows_and_complete_only_when_indexed(
    journaled: tuple[InstanceStore, StudyIndex], ct_series: list[Path]
) -> None:
    store, index = journaled
    results = [receive(store, event_of(p)) for p in ct_series]  # type: ignore[arg-type]
    assert {r.status for r in results} == {status.SUCCESS}
    assert {r.outcome for r in results} == {AddOutcome.STORED}
    study_key = results[0].study_key
    assert study_key is not None
    assert store.flush(10)
    assert not store.has_pending(study_key)
    rows = index.instances(study_key)
    assert len(rows) == len(ct_series)
    for row in rows:
        assert sha((store.root / row.path).read_bytes()) == row.sha256
    study = index.get_study(study_key)
    assert study is not None and study.instance_count == len(ct_series) and study.state is StudyState.RECEIVING


def test_duplicates_of_pending_instances_are_identical_or_conflicts(
    journaled: tuple[InstanceStore, StudyIndex], ct_series: list[Path]
) -> None:
    store, index = journaled
    first = event_of(ct_series[0])
    before = metric("oncohabitat_listener_duplicate_instances_total", {"kind": "conflict"})
    assert receive(store, first).outcome is AddOutcome.STORED  # type: ignore[arg-type]
    assert receive(store, first).outcome is AddOutcome.IDENTICAL  # type: ignore[arg-type]
    ds = pydicom.dcmread(ct_series[0])
    ds.SeriesDescription = "changed"
    changed = make_event(encode_body(ds), ds.SOPClassUID, ds.SOPInstanceUID)
    result = receive(store, changed)
    assert (result.status, result.outcome) == (status.SUCCESS, AddOutcome.CONFLICT)
    assert metric("oncohabitat_listener_duplicate_instances_total", {"kind": "conflict"}) == before + 1
    assert store.flush(10)
    record = index.get_instance(str(ds.SOPInstanceUID))
    assert record is not None and record.sha256 == sha(first.encoded_dataset())  # type: ignore[attr-defined]
    study = index.get_study(uid_key(str(ds.StudyInstanceUID)))
    assert study is not None and study.instance_count == 1 and study.conflicts == 1


def test_a_crash_before_materialising_is_repaired_from_the_journal_at_start(
    tmp_path: Path, ct_series: list[Path]
) -> None:
    root = tmp_path / "root"
    store, index = open_store(root)
    assert store._materialiser is not None
    end_worker_as_in_a_crash(store._materialiser)  # nothing gets materialised
    results = [receive(store, event_of(p)) for p in ct_series[:5]]  # type: ignore[arg-type]
    assert {r.status for r in results} == {status.SUCCESS}
    assert list((root / "instances").rglob("*.dcm")) == []  # acknowledged, only in the journal
    abandon_as_in_a_crash(store, index)
    with reopened(root) as (store2, index2):
        assert store2.rematerialised == 5
        for path in ct_series[:5]:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            record = index2.get_instance(str(ds.SOPInstanceUID))
            assert record is not None
            assert sha((root / record.path).read_bytes()) == record.sha256
        assert store2.journal is not None and store2.journal.checkpointed_through == store2.journal.last_sequence > 5
    with reopened(root) as (store3, index3):  # nothing left to replay, nothing duplicated
        assert store3.rematerialised == 0
        study = index3.get_study(results[0].study_key or "")
        assert study is not None and study.instance_count == 5


def refused_events(path: Path) -> list[object]:
    """Two C-STOREs the checks refuse: a data set of another SOP Instance UID, and garbage."""
    ds = pydicom.dcmread(path)
    mismatch = make_event(encode_body(ds), ds.SOPClassUID, "1.2.826.0.1.3680043.10.999.1")
    garbage = make_event(b"\xff" * 300, ds.SOPClassUID, "1.2.826.0.1.3680043.10.999.2")
    return [mismatch, garbage]


def test_instances_refused_by_their_checks_are_journaled_first_but_never_stored_after_a_crash(
    tmp_path: Path, ct_series: list[Path]
) -> None:
    """Entries are written before the checks (their device write overlaps them): an entry whose
    instance was refused must not become a file or row when recovery replays the journal."""
    root = tmp_path / "root"
    store, index = open_store(root)
    assert store._materialiser is not None and store.journal is not None
    end_worker_as_in_a_crash(store._materialiser)  # nothing gets materialised before the crash
    events = [event_of(ct_series[0]), *refused_events(ct_series[1]), event_of(ct_series[2])]
    results = [receive(store, e) for e in events]  # type: ignore[arg-type]
    assert [r.status for r in results] == [
        status.SUCCESS,
        status.DATASET_MISMATCH,
        status.MISSING_UID,  # garbage: no identity to read
        status.SUCCESS,
    ]
    assert store.journal.last_sequence == 6  # the refused ones were journaled too, then their refusals
    metas = {entry.sequence: decode_journal_meta(entry.meta) for entry in journal_entries(root, store.journal)}
    assert (metas[3], metas[5]) == (RefusalMeta(2, "sop_mismatch"), RefusalMeta(4, "missing_uid"))
    abandon_as_in_a_crash(store, index)
    quarantined_before = metric("oncohabitat_listener_journal_quarantined_total", {"reason": "sop_mismatch"})
    with reopened(root) as (store2, index2):
        assert store2.rematerialised == 2
        stored = {record.sop_uid for record in index2.instances(results[0].study_key or "")}
        expected = {
            str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in (ct_series[0], ct_series[2])
        }
        assert stored == expected
        assert index2.get_instance("1.2.826.0.1.3680043.10.999.1") is None
        assert index2.get_instance("1.2.826.0.1.3680043.10.999.2") is None
        assert len(list((root / "instances").rglob("*.dcm"))) == 2
        assert not (root / QUARANTINE_DIR).exists()  # their refusal records say they were never acknowledged
        assert (
            metric("oncohabitat_listener_journal_quarantined_total", {"reason": "sop_mismatch"}) == quarantined_before
        )
        assert store2.journal is not None and store2.journal.checkpointed_through == store2.journal.last_sequence > 6


def journal_entries(root: Path, journal: IntakeJournal) -> list[journal_module.JournalEntry]:
    """Every entry of the journal at ``root`` above its checkpoint, as recovery would read them."""
    return IntakeJournal(root / JOURNAL_DIR, segment_bytes=journal.segment_bytes, segments=2).recovered


def test_an_entry_refused_at_recovery_that_no_refusal_record_names_is_quarantined_not_dropped(
    tmp_path: Path, ct_series: list[Path]
) -> None:
    """A crash right after journaling, before the checks (or before their refusal record reached
    the disk): recovery cannot tell whether the entry was acknowledged, so it keeps it aside."""
    root = tmp_path / "root"
    payload = ct_series[1].read_bytes()
    ds = pydicom.dcmread(ct_series[1], stop_before_pixels=True)
    other_uid = "1.2.826.0.1.3680043.10.999.7"  # the C-STORE said another instance: sop_mismatch
    meta = IntakeMeta(str(ds.SOPClassUID), other_uid, str(ds.file_meta.TransferSyntaxUID), 1.5e9, Budgets())
    journal = IntakeJournal(root / JOURNAL_DIR, segment_bytes=4 * MIB, segments=2)
    journal.append(encode_intake_meta(meta), payload)
    journal.close()
    before = metric("oncohabitat_listener_journal_quarantined_total", {"reason": "sop_mismatch"})
    with reopened(root) as (store, index):
        assert store.rematerialised == 0
        assert index.get_instance(other_uid) is None and index.get_instance(str(ds.SOPInstanceUID)) is None
        sha = hashlib.sha256(payload).hexdigest()
        kept = root / QUARANTINE_DIR / f"journal-000000000001-{sha[:16]}.dcm"
        assert kept.read_bytes() == payload
        note = json.loads(kept.with_suffix(".json").read_text())
        assert note == {
            "reason": "sop_mismatch",
            "journal_sequence": 1,
            "sop_key": uid_key(other_uid),
            "sop_class_uid": str(ds.SOPClassUID),
            "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
            "received_at": 1.5e9,
            "sha256": sha,
            "size_bytes": len(payload),
        }
        assert str(ds.PatientID) not in kept.with_suffix(".json").read_text()
        assert metric("oncohabitat_listener_journal_quarantined_total", {"reason": "sop_mismatch"}) == before + 1
        assert store.journal is not None and store.journal.checkpointed_through == store.journal.last_sequence > 1
    with reopened(root):  # once checkpointed it is not quarantined again
        assert len(list((root / QUARANTINE_DIR).iterdir())) == 2


def test_an_acknowledged_entry_that_stricter_checks_refuse_after_an_upgrade_is_quarantined(
    tmp_path: Path, ct_series: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acknowledged before an unclean stop, refused by the checks of the release that recovers it:
    the data set the peer was told is stored is kept, not dropped."""
    root = tmp_path / "root"
    store, index = open_store(root)
    assert store._materialiser is not None
    end_worker_as_in_a_crash(store._materialiser)
    assert receive(store, event_of(ct_series[0])).status == status.SUCCESS  # type: ignore[arg-type]
    abandon_as_in_a_crash(store, index)

    def stricter_checks(*_args: object) -> object:
        raise InvalidInstanceError("modality_not_supported", status.CANNOT_PARSE, "a new rule")

    monkeypatch.setattr(recovery_module, "inspect_body", stricter_checks)
    with reopened(root) as (store2, index2):
        assert store2.rematerialised == 0
        uid = str(pydicom.dcmread(ct_series[0], stop_before_pixels=True).SOPInstanceUID)
        assert index2.get_instance(uid) is None
        (kept,) = (root / QUARANTINE_DIR).glob("*.dcm")
        assert kept.read_bytes().endswith(file_body(ct_series[0]))  # the data set as received, with its meta
        assert pydicom.dcmread(kept).SOPInstanceUID == uid
        assert json.loads(kept.with_suffix(".json").read_text())["reason"] == "modality_not_supported"


def test_recovery_fails_the_start_when_an_entry_cannot_be_quarantined(
    tmp_path: Path, ct_series: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    meta = IntakeMeta(
        "1.2.840.10008.5.1.4.1.1.2", "1.2.826.0.1.3680043.10.999.8", "1.2.840.10008.1.2.1", 1.0, Budgets()
    )
    journal = IntakeJournal(root / JOURNAL_DIR, segment_bytes=4 * MIB, segments=2)
    journal.append(encode_intake_meta(meta), ct_series[0].read_bytes())
    journal.close()
    (root / QUARANTINE_DIR).write_text("a file where the directory should be")
    with pytest.raises(StorageWriteError, match=r"entry 1 .* cannot be quarantined"):
        open_store(root)
    (root / QUARANTINE_DIR).unlink()
    with reopened(root):  # the entry stayed in the journal
        assert len(list((root / QUARANTINE_DIR).glob("*.dcm"))) == 1


def test_a_refused_instance_does_not_hold_back_the_journal_checkpoint(
    journaled: tuple[InstanceStore, StudyIndex], ct_series: list[Path]
) -> None:
    store, _index = journaled
    assert store.journal is not None and store._materialiser is not None
    events = [event_of(ct_series[0]), *refused_events(ct_series[1]), event_of(ct_series[2])]
    assert [receive(store, e).status == status.SUCCESS for e in events] == [True, False, False, True]  # type: ignore[arg-type]
    assert store.flush(10)
    store._materialiser.checkpoint()
    assert store.journal.checkpointed_through == store.journal.last_sequence == 6  # with the 2 refusal records


def test_recovery_repeats_the_intake_decision_with_the_budgets_journaled_then(
    tmp_path: Path, ct_series: list[Path]
) -> None:
    """Budgets changed between a crash and the restart: an instance acknowledged under the old
    budget is still stored, one refused under it is still not."""
    root = tmp_path / "root"
    declared = 202 * 198 * 2  # the CT slices' declared pixel bytes (202 x 198, 16 bit)
    store, index = open_store(root, budgets=Budgets(max_pixel_bytes=declared))
    assert store._materialiser is not None
    end_worker_as_in_a_crash(store._materialiser)  # nothing gets materialised before the crash
    accepted = receive(store, event_of(ct_series[0]))  # type: ignore[arg-type]
    store.policy = dataclasses.replace(store.policy, budgets=Budgets(max_pixel_bytes=declared - 1))
    refused = receive(store, event_of(ct_series[1]))  # type: ignore[arg-type]
    assert (accepted.status, refused.status) == (status.SUCCESS, status.PIXEL_BUDGET_EXCEEDED)
    abandon_as_in_a_crash(store, index)
    with reopened(root, budgets=Budgets(max_pixel_bytes=1)) as (store2, index2):  # now refuses both, then
        assert store2.rematerialised == 1
        for path, kept in ((ct_series[0], True), (ct_series[1], False)):
            uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            assert (index2.get_instance(uid) is not None) is kept


def test_an_entry_of_an_unknown_metadata_layout_stops_the_start_and_stays_in_the_journal(
    tmp_path: Path, ct_series: list[Path]
) -> None:
    """A journal written by a newer release, then a downgrade: no entry is dropped unread."""
    root = tmp_path / "root"
    journal = IntakeJournal(root / "journal", segment_bytes=4 * MIB, segments=2)
    journal.append(b"[9]", ct_series[0].read_bytes())
    journal.close()
    with pytest.raises(StorageWriteError, match="unknown layout"):
        open_store(root)
    assert [e.meta for e in IntakeJournal(root / "journal", segment_bytes=4 * MIB, segments=2).recovered] == [b"[9]"]


def test_a_journal_entry_whose_checks_fail_unexpectedly_at_recovery_stops_the_start(
    tmp_path: Path, ct_series: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An acknowledged entry is never dropped unexplained: the start fails and the entry stays."""
    root = tmp_path / "root"
    store, index = open_store(root)
    assert store._materialiser is not None and store._lock_handle is not None
    end_worker_as_in_a_crash(store._materialiser)
    assert receive(store, event_of(ct_series[0])).status == status.SUCCESS  # type: ignore[arg-type]
    abandon_as_in_a_crash(store, index)

    def broken_checks(*_args: object) -> object:
        raise RuntimeError("a bug in the checks")

    monkeypatch.setattr(recovery_module, "inspect_body", broken_checks)
    with pytest.raises(StorageWriteError, match=r"entry 1 .* cannot be checked \(RuntimeError\)"):
        open_store(root)
    monkeypatch.undo()
    with reopened(root) as (store2, _index2):  # the lock was released; the entry is still there
        assert store2.rematerialised == 1


def test_entries_journaled_by_an_earlier_release_are_recovered_after_an_upgrade(
    tmp_path: Path, ct_series: list[Path]
) -> None:
    """The first metadata layout (the whole index record) is still replayed at start."""
    from oncohabitat.listener.index import InstanceRecord

    root = tmp_path / "root"
    data = ct_series[0].read_bytes()
    ds = pydicom.dcmread(ct_series[0], stop_before_pixels=True)
    study_key, series_key = uid_key(str(ds.StudyInstanceUID)), uid_key(str(ds.SeriesInstanceUID))
    record = InstanceRecord(
        str(ds.SOPInstanceUID), study_key, series_key, str(ds.SeriesInstanceUID), str(ds.SOPClassUID), "CT",
        f"instances/{study_key}/{series_key}/{uid_key(str(ds.SOPInstanceUID))}.dcm", "", len(data), 1.5,
        None, "", str(ds.file_meta.TransferSyntaxUID),
    )  # fmt: skip
    journal = IntakeJournal(root / "journal", segment_bytes=4 * MIB, segments=2)
    journal.append(json.dumps([str(ds.StudyInstanceUID), *dataclasses.astuple(record)]).encode(), data)
    journal.close()
    with reopened(root) as (store, index):
        assert store.rematerialised == 1
        indexed = index.get_instance(str(ds.SOPInstanceUID))
        assert indexed is not None and indexed.path == record.path and indexed.sha256 == sha(data)
        assert (root / record.path).read_bytes() == data


@pytest.mark.parametrize("direct", [False, True])
def test_the_device_write_starts_at_journaling_only_for_an_entry_synced_on_its_own(
    tmp_path: Path, ct_series: list[Path], monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    """One association syncs each entry alone (the write overlaps its checks): through the page
    cache with ``sync_file_range``, or as a direct write that syncs itself; the reactor's round sync
    covers many entries with one write, so it starts none early."""
    store, index = open_store(tmp_path / "root", journal_direct=direct)
    started: list[tuple[int, int]] = []
    monkeypatch.setattr(journal_module, "start_device_write", lambda _fd, offset, size: started.append((offset, size)))
    direct_starts: list[int] = []
    real_start = journal_module.DirectWrites.start

    def spied_start(self: object, fd: int, parts: list[bytes], padded: int, offset: int) -> object:
        direct_starts.append(offset)
        return real_start(self, fd, parts, padded, offset)  # type: ignore[arg-type]

    monkeypatch.setattr(journal_module.DirectWrites, "start", spied_start)
    receive(store, event_of(ct_series[0]))  # type: ignore[arg-type]
    if direct:
        assert started == [] and direct_starts == [0]
    else:
        assert len(started) == 1 and started[0][0] == 0 and started[0][1] > len(file_body(ct_series[0]))
        assert direct_starts == []
    event = event_of(ct_series[1])
    spool = store.open_spool(event.sop_class, event.sop_uid, event.ts)  # type: ignore[attr-defined]
    spool.append(memoryview(event.body))  # type: ignore[attr-defined]
    result = store.store_spool(
        spool,
        sop_class_uid=event.sop_class,  # type: ignore[attr-defined]
        sop_uid=event.sop_uid,  # type: ignore[attr-defined]
        transfer_syntax=event.ts,  # type: ignore[attr-defined]
        defer_sync=True,
    )
    assert result.settle is not None and len(started) == (0 if direct else 1) and len(direct_starts) == int(direct)
    result = result.settle()
    assert result.follow_up is not None
    result.follow_up()
    store.close()
    index.close()


def test_starting_a_device_write_works_on_a_real_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"x" * 8192)
        assert blobstore.start_device_write(fd, 0, 8192)
        os.fdatasync(fd)
        assert not blobstore.start_device_write(-1, 0, 8192)  # refused: reported, never raised
    finally:
        os.close(fd)


def test_a_dead_worker_is_restarted_and_gets_the_pending_instances_again(
    journaled: tuple[InstanceStore, StudyIndex], ct_series: list[Path]
) -> None:
    store, index = journaled
    materialiser = restarting_materialiser(store)
    receive(store, event_of(ct_series[0]))  # type: ignore[arg-type]
    assert store.flush(10)
    old_pid = materialiser._process.pid
    materialiser._process.kill()
    results = [receive(store, event_of(p)) for p in ct_series[1:6]]  # type: ignore[arg-type]
    assert store.flush(20)
    assert materialiser._process is not None and materialiser._process.pid != old_pid
    assert len(index.instances(results[0].study_key or "")) == 6


def test_a_worker_that_cannot_be_started_is_retried_without_leaking_descriptors(
    journaled: tuple[InstanceStore, StudyIndex], ct_series: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fork failing (EAGAIN) twice: the receiver keeps retrying, closes every pipe end, then materialises."""
    store, index = journaled
    materialiser = restarting_materialiser(store)
    real_popen = materialiser_module.subprocess.Popen
    attempts: list[int] = []

    def fork_fails_twice(*args: Any, **kwargs: Any) -> Any:
        attempts.append(len(os.listdir("/proc/self/fd")))  # descriptors open at each attempt
        if len(attempts) <= 2:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(materialiser_module.subprocess, "Popen", fork_fails_twice)
    materialiser._process.kill()
    result = receive(store, event_of(ct_series[0]))  # type: ignore[arg-type]
    assert store.flush(20)  # the receiver survived the failed starts
    assert len(attempts) == 3 and attempts[0] == attempts[1] == attempts[2]  # no pipe end left open
    assert materialiser._receiver is not None and materialiser._receiver.is_alive()
    assert len(index.instances(result.study_key or "")) == 1


def test_a_worker_that_exits_before_reporting_ready_fails_the_start_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's start waits for the worker's ("ready",): one that dies first (here: exit status
    3) is a start-up error, the root's lock and descriptors are released, and a later start works."""
    real_popen = materialiser_module.subprocess.Popen

    def dying_worker(args: list[str], **kwargs: Any) -> Any:
        return real_popen([sys.executable, "-c", "raise SystemExit(3)"], **kwargs)

    monkeypatch.setattr(materialiser_module.subprocess, "Popen", dying_worker)
    descriptors = len(os.listdir("/proc/self/fd"))
    with pytest.raises(StorageWriteError, match=r"worker cannot be started.*exit status 3"):
        open_store(tmp_path / "root")
    gc.collect()  # the failed store's index connection
    monkeypatch.setattr(materialiser_module.subprocess, "Popen", real_popen)
    with reopened(tmp_path / "root") as (store, _index):  # the lock was released
        assert store._materialiser is not None and store._materialiser._process is not None
        assert store._materialiser._process.poll() is None  # started and ready
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) <= descriptors + 1


def test_the_worker_drains_its_inbox_while_it_works() -> None:
    """Work larger than the pipe (here ~18 MB against 1 MiB) is received as it is sent, whatever the
    worker is doing: a parent blocked sending it could not read the worker's reports (deadlock)."""
    read_fd, write_fd = os.pipe()
    inbox, sender = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    messages: SimpleQueue[Any] = SimpleQueue()
    drain = threading.Thread(target=materialiser_worker._drain, args=(inbox, messages), daemon=True)
    drain.start()
    work = ("work", [("x" * 300, n) for n in range(20_000)])
    for _ in range(3):
        sender.send(work)  # would block for good once the pipe is full and nobody reads
    sender.send(("stop",))
    drain.join(30)
    assert not drain.is_alive()
    assert [messages.get()[0] for _ in range(4)] == ["work", "work", "work", "stop"]
    sender.close()
    inbox.close()


def test_stop_during_a_worker_restart_ends_the_starting_worker_at_once(
    journaled: tuple[InstanceStore, StudyIndex], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker died and its replacement has not reported ready: stop() does not wait for the
    start timeout, and no worker outlives it."""
    store, _index = journaled
    materialiser = restarting_materialiser(store)
    real_popen = materialiser_module.subprocess.Popen
    started: list[Any] = []

    def silent_worker(args: list[str], **kwargs: Any) -> Any:
        started.append(real_popen([sys.executable, "-c", "import time; time.sleep(60)"], **kwargs))
        return started[-1]

    monkeypatch.setattr(materialiser_module.subprocess, "Popen", silent_worker)
    materialiser._process.kill()
    deadline = time.monotonic() + 10
    while not started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    began = time.monotonic()
    materialiser.stop(timeout_s=30)
    assert time.monotonic() - began < 5
    assert started[0].poll() is not None  # the silent replacement was ended
    assert materialiser._process is None and materialiser._receiver is None


def test_stop_materialises_and_checkpoints_everything(tmp_path: Path, ct_series: list[Path]) -> None:
    root = tmp_path / "root"
    store, index = open_store(root)
    for path in ct_series:
        receive(store, event_of(path))  # type: ignore[arg-type]
    journal = store.journal
    assert journal is not None
    store.close()
    assert journal.checkpointed_through == len(ct_series)
    assert len(list((root / "instances").rglob("*.dcm"))) == len(ct_series)
    index.close()
    assert sorted(p.name for p in (root / JOURNAL_DIR).iterdir()) == [
        "checkpoint",
        "segment-000.log",
        "segment-001.log",
    ]


def test_a_data_set_too_large_for_the_journal_is_stored_directly(tmp_path: Path, ct_series: list[Path]) -> None:
    root = tmp_path / "root"
    root.mkdir()
    index = StudyIndex(root / INDEX_FILE)
    store = InstanceStore(root, index, policy=StorePolicy(journal_segments=2, journal_segment_bytes=MIB))
    try:
        ds = pydicom.dcmread(ct_series[0])
        big = Dataset()
        big.update(ds)
        big.PixelData = bytes(2 * MIB)
        big.Rows, big.Columns = 1024, 1024
        result = receive(store, make_event(encode_body(big), ds.SOPClassUID, ds.SOPInstanceUID))
        assert result.status == status.SUCCESS
        record = index.get_instance(str(ds.SOPInstanceUID))  # indexed at once: not journaled
        assert record is not None and (root / record.path).stat().st_size > 2 * MIB
    finally:
        store.close()
        index.close()


def test_a_failing_journal_falls_back_to_the_direct_durable_path(
    journaled: tuple[InstanceStore, StudyIndex], ct_series: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, index = journaled
    assert store.journal is not None

    def broken(*_args: object, **_kwargs: object) -> object:
        raise JournalError("journal write failed: [Errno 5] Input/output error")

    monkeypatch.setattr(store.journal, "write", broken)
    before = metric("oncohabitat_listener_journal_errors_total", {"stage": "append"})
    ds = pydicom.dcmread(ct_series[0], stop_before_pixels=True)
    result = receive(store, event_of(ct_series[0]))  # type: ignore[arg-type]
    assert (result.status, result.outcome) == (status.SUCCESS, AddOutcome.STORED)
    record = index.get_instance(str(ds.SOPInstanceUID))  # indexed at once: the file was fsynced directly
    assert record is not None and sha((store.root / record.path).read_bytes()) == record.sha256
    assert metric("oncohabitat_listener_journal_errors_total", {"stage": "append"}) == before + 1


def test_a_direct_store_of_a_uid_still_pending_waits_for_its_journaled_version(
    journaled: tuple[InstanceStore, StudyIndex], ct_series: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version A journaled (held back, not indexed yet), version B of the same UID takes the direct
    path: A is indexed first, so B is a conflict (keep first) and the row matches the file."""
    store, index = journaled
    first = event_of(ct_series[0])
    ds = pydicom.dcmread(ct_series[0])
    ds.SeriesDescription = "other bytes"
    second = make_event(encode_body(ds), ds.SOPClassUID, ds.SOPInstanceUID)
    assert store.journal is not None and store._materialiser is not None
    real_write = store.journal.write
    calls: list[int] = []

    def full_after_the_first(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) > 1:
            raise JournalError("journal full: the background writer is behind")
        return real_write(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store.journal, "write", full_after_the_first)
    monkeypatch.setattr(store._materialiser, "_defer_idle_s", 60.0)  # held back until a flush
    assert receive(store, first).outcome is AddOutcome.STORED  # type: ignore[arg-type]
    assert store._materialiser.pending(str(ds.SOPInstanceUID)) is not None  # held back, not indexed
    assert receive(store, second).outcome is AddOutcome.CONFLICT  # type: ignore[arg-type]
    assert store.flush(10)
    record = index.get_instance(str(ds.SOPInstanceUID))
    assert record is not None and record.sha256 == sha(first.encoded_dataset())  # type: ignore[attr-defined]
    assert sha((store.root / record.path).read_bytes()) == record.sha256


def test_held_back_instances_are_materialised_once_intake_pauses(
    journaled: tuple[InstanceStore, StudyIndex], ct_series: list[Path]
) -> None:
    store, index = journaled
    results = [receive(store, event_of(p)) for p in ct_series[:4]]  # type: ignore[arg-type]
    study_key = results[0].study_key or ""
    assert store.has_pending(study_key)  # acknowledged, held back while intake is busy
    deadline = time.monotonic() + 10  # no flush(): the receiver sends them after the pause
    while store.has_pending(study_key) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not store.has_pending(study_key)
    assert len(index.instances(study_key)) == 4


def test_entries_of_duplicates_do_not_hold_back_the_checkpoint(
    journaled: tuple[InstanceStore, StudyIndex], ct_series: list[Path]
) -> None:
    store, _index = journaled
    first = event_of(ct_series[0])
    receive(store, first)  # type: ignore[arg-type]
    assert receive(store, first).outcome is AddOutcome.IDENTICAL  # type: ignore[arg-type]  # pending twin
    assert store.flush(10)
    assert receive(store, first).outcome is AddOutcome.IDENTICAL  # type: ignore[arg-type]  # indexed twin
    materialiser, journal = store._materialiser, store.journal
    assert materialiser is not None and journal is not None
    assert journal.last_sequence == 3  # every copy was written to the journal before the checks
    materialiser.checkpoint()
    assert journal.checkpointed_through == 3


def store_without_follow_up(store: InstanceStore, event: object) -> StoreResult:
    """What the association has done when its reply is sent: the store's follow-up has not run yet."""
    spool = store.open_spool(event.sop_class, event.sop_uid, event.ts)  # type: ignore[attr-defined]
    spool.append(event.body)  # type: ignore[attr-defined]
    return store.store_spool(
        spool,
        sop_class_uid=event.sop_class,  # type: ignore[attr-defined]
        sop_uid=event.sop_uid,  # type: ignore[attr-defined]
        transfer_syntax=event.ts,  # type: ignore[attr-defined]
    )


def test_the_reply_does_not_wait_for_the_duplicate_checks_and_the_checkpoint_waits_for_them(
    journaled: tuple[InstanceStore, StudyIndex], ct_series: list[Path]
) -> None:
    store, index = journaled
    first = event_of(ct_series[0])
    assert receive(store, first).outcome is AddOutcome.STORED  # type: ignore[arg-type]
    assert store.flush(10)
    again = store_without_follow_up(store, first)
    assert again.status == status.SUCCESS and again.follow_up is not None  # answered before any check
    new = store_without_follow_up(store, event_of(ct_series[1]))
    assert new.status == status.SUCCESS and new.follow_up is not None
    assert store.has_pending(new.study_key or "")  # acknowledged, not handed on yet: completion waits for it
    materialiser, journal = store._materialiser, store.journal
    assert materialiser is not None and journal is not None
    materialiser.checkpoint()
    assert journal.checkpointed_through == 1  # entries 2 and 3 are unresolved: their space is kept
    assert again.follow_up().outcome is AddOutcome.IDENTICAL
    assert new.follow_up().outcome is AddOutcome.STORED
    assert store.flush(10)
    assert not store.has_pending(new.study_key or "")
    materialiser.checkpoint()
    assert journal.checkpointed_through == 3
    assert len(index.instances(new.study_key or "")) == 2


def test_a_replacement_acknowledged_before_a_crash_replaces_the_indexed_version_at_start(
    tmp_path: Path, ct_series: list[Path]
) -> None:
    root = tmp_path / "root"
    store, index = open_store(root, duplicates=DuplicatePolicy.REPLACE)
    first = event_of(ct_series[0])
    assert receive(store, first).outcome is AddOutcome.STORED  # type: ignore[arg-type]
    assert store.flush(10)
    ds = pydicom.dcmread(ct_series[0])
    ds.SeriesDescription = "corrected"
    changed = make_event(encode_body(ds), ds.SOPClassUID, ds.SOPInstanceUID)
    assert store_without_follow_up(store, changed).status == status.SUCCESS  # acknowledged, then the crash
    assert store._materialiser is not None and store._lock_handle is not None
    end_worker_as_in_a_crash(store._materialiser)
    abandon_as_in_a_crash(store, index)
    with reopened(root, duplicates=DuplicatePolicy.REPLACE) as (store2, index2):
        assert store2.rematerialised == 1
        record = index2.get_instance(str(ds.SOPInstanceUID))
        assert record is not None and record.sha256 == sha(changed.encoded_dataset())
        assert (root / record.path).read_bytes() == changed.encoded_dataset()
        assert len(list((root / "instances").rglob("*.dcm"))) == 1  # the first version's file is gone


def acknowledged_replacement(store: InstanceStore, path: Path) -> tuple[StoreResult, Event]:
    """Re-send ``path``'s instance with other bytes (its series description): the result as answered,
    before its follow-up ran, and the re-sent event."""
    ds = pydicom.dcmread(path)
    ds.SeriesDescription = "corrected"
    changed = make_event(encode_body(ds), ds.SOPClassUID, ds.SOPInstanceUID)
    acknowledged = store_without_follow_up(store, changed)
    assert acknowledged.status == status.SUCCESS and acknowledged.follow_up is not None
    return acknowledged, changed


def test_a_replacement_that_cannot_be_written_keeps_its_journal_entry_for_the_restart(
    tmp_path: Path, ct_series: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replace policy: an acknowledged re-sent version whose direct write fails is not checkpointed away."""
    root = tmp_path / "root"
    store, index = open_store(root, duplicates=DuplicatePolicy.REPLACE)
    assert receive(store, event_of(ct_series[0])).outcome is AddOutcome.STORED  # type: ignore[arg-type]
    assert store.flush(10)
    acknowledged, changed = acknowledged_replacement(store, ct_series[0])
    assert acknowledged.follow_up is not None
    sop_uid = changed.sop_uid

    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "_write_durably", disk_full)
    assert acknowledged.follow_up().outcome is None  # nothing written now
    store._closing.set()  # the crash below: no retry runs (see the next test for the retry)
    monkeypatch.undo()
    materialiser, journal = store._materialiser, store.journal
    assert materialiser is not None and journal is not None and store._lock_handle is not None
    materialiser.checkpoint()
    assert journal.checkpointed_through == 1  # the replacement's entry (2) is kept
    end_worker_as_in_a_crash(materialiser)
    abandon_as_in_a_crash(store, index)
    with reopened(root, duplicates=DuplicatePolicy.REPLACE) as (_store2, index2):
        record = index2.get_instance(str(sop_uid))
        assert record is not None and record.sha256 == sha(changed.encoded_dataset())
        assert (root / record.path).read_bytes() == changed.encoded_dataset()


def test_a_replacement_that_could_not_be_written_is_retried_and_its_study_waits(
    tmp_path: Path, ct_series: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kept entry is retried (1 s, then doubling): meanwhile its study is pending; then it is
    stored and the checkpoint moves past it."""
    with reopened(tmp_path / "root", duplicates=DuplicatePolicy.REPLACE) as (store, index):
        assert receive(store, event_of(ct_series[0])).outcome is AddOutcome.STORED  # type: ignore[arg-type]
        assert store.flush(10)
        acknowledged, changed = acknowledged_replacement(store, ct_series[0])
        assert acknowledged.follow_up is not None
        sop_uid = changed.sop_uid
        real_write = store._write_durably
        failures: list[int] = []

        def full_once(*args: Any, **kwargs: Any) -> Any:
            if not failures:
                failures.append(1)
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(*args, **kwargs)

        monkeypatch.setattr(store, "_write_durably", full_once)
        assert acknowledged.follow_up().outcome is None
        study_key = acknowledged.study_key or ""
        assert store.has_pending(study_key)  # the acknowledged replacement is not stored yet
        deadline = time.monotonic() + 10.0
        while store.has_pending(study_key) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not store.has_pending(study_key)
        record = index.get_instance(str(sop_uid))
        assert record is not None and record.sha256 == sha(changed.encoded_dataset())
        assert store._materialiser is not None and store.journal is not None
        store._materialiser.checkpoint()
        assert store.journal.checkpointed_through == store.journal.last_sequence


def test_a_replacement_resolved_late_never_overwrites_a_newer_acknowledged_version(
    tmp_path: Path, ct_series: list[Path]
) -> None:
    """Replace policy: versions B then C of one UID are acknowledged; C's after-reply work runs first
    (B's waited, e.g. for the materialiser or a retry). B must not replace C: the newest arrival wins."""
    with reopened(tmp_path / "root", duplicates=DuplicatePolicy.REPLACE) as (store, index):
        assert receive(store, event_of(ct_series[0])).outcome is AddOutcome.STORED  # type: ignore[arg-type]
        assert store.flush(10)
        ds = pydicom.dcmread(ct_series[0])
        versions = []
        for description in ("B", "C"):
            ds.SeriesDescription = description
            event = make_event(encode_body(ds), ds.SOPClassUID, ds.SOPInstanceUID)
            versions.append((event, store_without_follow_up(store, event)))
            time.sleep(0.01)  # distinct arrival times
        (_b_event, b_result), (c_event, c_result) = versions
        assert c_result.follow_up is not None and c_result.follow_up().outcome is AddOutcome.REPLACED
        assert b_result.follow_up is not None and b_result.follow_up().outcome is AddOutcome.CONFLICT
        record = index.get_instance(str(ds.SOPInstanceUID))
        assert record is not None and record.sha256 == sha(c_event.encoded_dataset())
        assert store.path_of(record).read_bytes() == c_event.encoded_dataset()


def test_a_duplicate_check_says_it_would_wait_while_an_earlier_version_is_not_indexed(
    journaled: tuple[InstanceStore, StudyIndex], ct_series: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two versions of a new UID, the first acknowledged but its after-reply work not run yet (in
    the same reactor round, or on another association's own thread): the second's check would wait
    for the materialiser, and says so (the reactor runs it elsewhere), then while the first is
    pending, and no longer once it is indexed."""
    store, _index = journaled
    assert store._materialiser is not None
    monkeypatch.setattr(store._materialiser, "_defer_idle_s", 60.0)  # the first stays held back
    ds = pydicom.dcmread(ct_series[0])
    first = store_without_follow_up(store, event_of(ct_series[0]))
    ds.SeriesDescription = "other bytes"
    second = store_without_follow_up(store, make_event(encode_body(ds), ds.SOPClassUID, ds.SOPInstanceUID))
    assert first.follow_up_waits is not None and second.follow_up_waits is not None
    assert second.follow_up_waits()  # the first is acknowledged, not handed on yet
    assert first.follow_up is not None and first.follow_up().outcome is AddOutcome.STORED  # handed on
    assert second.follow_up_waits()  # the first is pending
    assert store.flush(10)
    assert not second.follow_up_waits()  # the first is indexed: the check reads the index at once
    assert second.follow_up is not None and second.follow_up().outcome is AddOutcome.CONFLICT
    assert second.follow_up is not None and second.follow_up().outcome is AddOutcome.CONFLICT


def test_materialiser_worker_write_error_removes_the_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Journal path: a file the worker cannot finish (disk full) is deleted; the retry writes it whole."""
    target = tmp_path / "instances" / "study" / "series" / "instance.dcm"
    data = payload(1, 300_000)
    real_write = os.write
    calls = {"n": 0}

    def half_then_full(fd: int, view: bytes | memoryview) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(view)[: len(view) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(materialiser_worker.os, "write", half_then_full)
    with pytest.raises(OSError):
        materialiser_worker._write_file(target, data)
    assert calls["n"] == 2 and not target.exists()  # a partial file was written, then deleted
    monkeypatch.setattr(materialiser_worker.os, "write", real_write)
    materialiser_worker._write_file(target, data)
    assert target.read_bytes() == data
