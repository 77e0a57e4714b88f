"""Intake journal: durable appends, recovery after a crash (torn entries, checkpoints, ring reuse),
group commit, back-pressure, entry metadata (the store's journal path: test_listener_intake.py)."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
import zlib
from pathlib import Path

import pytest

from oncohabitat.listener import journal_format
from oncohabitat.listener.index import InstanceRecord
from oncohabitat.listener.journal import HEADER, IntakeJournal, JournalError, JournalReader
from oncohabitat.listener.journal_meta import decode_journal_meta, encode_record_meta

MIB = 1024 * 1024
SEGMENT = 1 * MIB


def payload(n: int, size: int = 50_000) -> bytes:
    return bytes([n % 251]) * size


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def append(journal: IntakeJournal, n: int, size: int = 50_000) -> int:
    data = payload(n, size)
    return journal.append(f"meta-{n}".encode(), data).sequence


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
    ring_entries = 4 * SEGMENT // journal_format.BLOCK
    assert append(reopened, 99) == 11 + ring_entries  # after what is on disk, past anything left behind


def test_entries_left_behind_a_torn_one_never_continue_a_later_runs_chain(tmp_path: Path) -> None:
    """Run 1 leaves entries 2 and 3 valid behind a torn entry 1 (never acknowledged: a reply waits
    for every earlier entry). Run 2 starts again at the segment's start; if its first entry ends
    exactly where the old entry 2 begins, a later scan must not read on into run 1's entries (one
    could be a refusal record naming a sequence that run 2 acknowledged)."""
    journal = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2)
    old = [journal.append(b"m", payload(n)) for n in range(3)]
    journal.close()
    with (tmp_path / "segment-000.log").open("r+b") as handle:  # run 1's crash tore entry 1
        handle.seek(old[0].offset + old[0].size - 10)
        handle.write(b"\xff" * 10)
    second_run = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2)
    assert second_run.recovered == []
    second_run.checkpoint(second_run.last_sequence)
    new = second_run.append(b"m", payload(7))  # same size: ends where old entry 2 begins
    assert (new.segment, new.offset, new.size) == (old[0].segment, old[0].offset, old[0].size)
    second_run.close()
    recovered = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2).recovered
    assert [(e.sequence, e.payload) for e in recovered] == [(new.sequence, payload(7))]


def test_a_torn_entry_ends_recovery_of_its_segment(tmp_path: Path) -> None:
    journal = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2)
    locations = [journal.append(b"m", payload(n)) for n in range(3)]
    journal.close()
    third = locations[2]
    with (tmp_path / "segment-000.log").open("r+b") as handle:  # a write the crash cut short
        handle.seek(third.offset + third.size - 10)
        handle.write(b"\xff" * 10)
    recovered = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2).recovered
    assert [e.sequence for e in recovered] == [1, 2]


def test_a_damaged_header_is_not_trusted(tmp_path: Path) -> None:
    journal = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2)
    locations = [journal.append(b"meta", payload(n)) for n in range(2)]
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


def test_entries_get_their_sha256_on_reading_and_torn_payloads_are_found(tmp_path: Path) -> None:
    journal = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2)
    locations = [journal.append(b"m", payload(n)) for n in range(3)]
    with (tmp_path / "segment-000.log").open("rb") as handle:
        assert HEADER.unpack(handle.read(HEADER.size))[2] == journal_format.FLAGS  # padded, CRC-32C check
    reader = JournalReader(tmp_path)
    assert [reader.read(loc).sha256 for loc in locations] == [sha(payload(n)) for n in range(3)]
    journal.close()
    recovered = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2).recovered
    assert [(e.sequence, e.sha256) for e in recovered] == [(n + 1, sha(payload(n))) for n in range(3)]
    second = locations[1]
    with (tmp_path / "segment-000.log").open("r+b") as handle:  # one payload byte lost
        handle.seek(second.offset + second.size - 1)
        handle.write(b"\xff")
    with pytest.raises(JournalError, match="check"):
        JournalReader(tmp_path).read(second)
    reader.close()
    assert [e.sequence for e in IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2).recovered] == [1]


def test_an_entry_of_an_earlier_release_format_stops_the_start_instead_of_being_skipped(tmp_path: Path) -> None:
    """An entry with a valid header but a SHA-256 payload check (flags 0x0001, an earlier release's)."""
    journal = IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2)
    location = journal.append(b"m", payload(1))
    journal.close()
    with (tmp_path / "segment-000.log").open("r+b") as handle:
        raw = bytearray(handle.read(location.size))
        magic, version, _flags, sequence, meta_length, payload_length, _crc, _check = HEADER.unpack_from(raw)
        digest = hashlib.sha256(bytes(raw[HEADER.size + meta_length : location.size])).digest()
        blank = HEADER.pack(magic, version, 0x0001, sequence, meta_length, payload_length, 0, digest)
        crc = zlib.crc32(bytes(raw[HEADER.size : HEADER.size + meta_length]), zlib.crc32(blank))
        handle.seek(0)
        handle.write(HEADER.pack(magic, version, 0x0001, sequence, meta_length, payload_length, crc, digest))
    with pytest.raises(JournalError, match="earlier release"):
        IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2)


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
        journal.append(b"", big)
    append(journal, 1)
    journal.checkpoint(1)
    journal.close()
    (tmp_path / "checkpoint").write_bytes(b"OHJC" + b"\x00" * 12)
    with pytest.raises(JournalError, match="checkpoint"):
        IntakeJournal(tmp_path, segment_bytes=SEGMENT, segments=2)


def test_metadata_round_trips_and_other_layouts_are_refused() -> None:
    record = InstanceRecord(
        "1.2.3", "s", "r", "1.2.4", "1.2.840.10008.5.1.4.1.1.4", "MR", "p", "", 5, 1.5, None, "x", ""
    )
    assert decode_journal_meta(encode_record_meta(record, "1.2")) == (record, "1.2")
    unknown_layouts = (
        b'["1.2"]',
        b"[3, 1, 2, 3, 4]",
        b'[3, 7, "sop_mismatch"]',  # a refusal record of a release that journaled before its checks
        b'[2, "a", "b", "c", 1.5, 1, 2]',  # an instance journaled before its checks
        b"{}",
    )
    for unknown in unknown_layouts:
        with pytest.raises(ValueError):
            decode_journal_meta(unknown)
