"""Direct journal writes: Linux AIO with O_DIRECT + RWF_DSYNC (common/linux_aio.py, listener/journal_direct.py)."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from oncohabitat.common import linux_aio
from oncohabitat.common.linux_aio import RWF_DSYNC, DirectWriter
from oncohabitat.listener import journal as journal_module
from oncohabitat.listener.journal import BLOCK, IntakeJournal, JournalError
from oncohabitat.listener.journal_direct import DirectWrites

MIB = 1024 * 1024

pytestmark = pytest.mark.skipif(linux_aio.unavailable_reason() is not None, reason="Linux AIO unavailable")


def direct_file(tmp_path: Path, size: int = 4 * BLOCK) -> tuple[Path, int]:
    """A file of allocated, synced blocks (as journal segments are) and an O_DIRECT descriptor."""
    path = tmp_path / "f"
    with path.open("wb") as handle:
        handle.write(b"\xee" * size)
        handle.flush()
        os.fsync(handle.fileno())
    return path, os.open(path, os.O_RDWR | os.O_DIRECT)


def test_a_direct_write_lands_where_asked_and_reports_completion(tmp_path: Path) -> None:
    path, fd = direct_file(tmp_path)
    writer = DirectWriter(2 * BLOCK)
    try:
        writer.buffer[: 2 * BLOCK] = b"a" * BLOCK + b"b" * BLOCK
        writer.submit(fd, 2 * BLOCK, BLOCK, rw_flags=RWF_DSYNC)
        assert writer.in_flight
        with pytest.raises(RuntimeError):  # one at a time: its buffer is the kernel's until it completes
            writer.submit(fd, BLOCK, 0)
        writer.wait()
        assert writer.poll() and not writer.in_flight
        writer.result()
        assert path.read_bytes() == b"\xee" * BLOCK + b"a" * BLOCK + b"b" * BLOCK + b"\xee" * BLOCK
    finally:
        writer.close()
        os.close(fd)


def test_a_direct_write_the_kernel_refuses_reports_einval_and_leaves_the_writer_usable(tmp_path: Path) -> None:
    path, fd = direct_file(tmp_path)
    writer = DirectWriter(2 * BLOCK)
    try:
        writer.submit(fd, BLOCK, 100)  # not block-aligned: O_DIRECT refuses it as it runs
        writer.wait()
        with pytest.raises(OSError) as refused:
            writer.result()
        assert refused.value.errno == errno.EINVAL and not writer.in_flight
        with pytest.raises(ValueError):
            writer.submit(fd, 3 * BLOCK, 0)  # larger than the buffer
        writer.buffer[:BLOCK] = b"c" * BLOCK
        writer.submit(fd, BLOCK, 0)
        while not writer.poll():  # polling, never sleeping
            pass
        writer.result()
        assert path.read_bytes()[:BLOCK] == b"c" * BLOCK
    finally:
        writer.close()
        os.close(fd)


def test_a_failed_direct_write_is_reported_with_its_errno(tmp_path: Path) -> None:
    _path, fd = direct_file(tmp_path)
    read_only = os.open(tmp_path / "f", os.O_RDONLY | os.O_DIRECT)
    writer = DirectWriter(BLOCK)
    try:
        try:
            writer.submit(read_only, BLOCK, 0)
        except OSError as refused:  # some kernels refuse it at once
            assert refused.errno == errno.EBADF
        else:
            writer.wait()
            with pytest.raises(OSError) as failed:
                writer.result()
            assert failed.value.errno == errno.EBADF
    finally:
        writer.close()
        os.close(fd)
        os.close(read_only)


def test_a_pool_reuses_its_writer_and_polls_only_while_writes_are_quick(tmp_path: Path) -> None:
    _path, fd = direct_file(tmp_path)
    writes = DirectWrites(BLOCK, spin_s=1e-9)  # every write takes longer than this

    def write(data: bytes, offset: int) -> None:
        writer = writes.start(fd, [data], BLOCK, offset)
        writes.wait(writer)
        writer.result()
        writes.release(writer)

    try:
        write(b"x", 0)
        assert writes._polling is not None and writes._polling.polling is False  # polled, gave up, slept
        writes._polling.window_s = 60.0  # now every write is "quick"
        write(b"y", 0)
        assert writes._polling.polling is True
        write(b"z", BLOCK)
        assert len(writes._idle) == 1  # one writer, reused
    finally:
        writes.close()
        os.close(fd)


def open_journal(directory: Path, **options: object) -> IntakeJournal:
    return IntakeJournal(directory, segment_bytes=4 * MIB, segments=2, direct_writes=True, spin_s=300e-6, **options)  # type: ignore[arg-type]


def count_fdatasyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fdatasync

    def counted(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(journal_module.os, "fdatasync", counted)
    return calls


def test_a_direct_entry_is_durable_without_an_fdatasync_and_recovered_after_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = open_journal(tmp_path / "j")
    syncs = count_fdatasyncs(monkeypatch)
    payload = os.urandom(57_000)
    location = journal.write(b"[1]", payload, start_writeback=True)
    assert journal._in_flight  # written in the background
    journal.wait_durable(location)
    assert syncs == [] and not journal._in_flight
    # a crash: the journal is never closed; a new one finds the entry
    (entry,) = IntakeJournal(tmp_path / "j", segment_bytes=4 * MIB, segments=2).recovered
    assert (entry.sequence, entry.meta, entry.payload) == (1, b"[1]", payload)
    journal.close()


def test_a_direct_entry_is_acknowledged_only_once_earlier_page_cache_entries_are_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recovery stops at the first invalid entry: an acknowledged entry must never lie behind one
    that is not durable yet (a concurrent reactor association writes through the page cache)."""
    journal = open_journal(tmp_path / "j")
    syncs = count_fdatasyncs(monkeypatch)
    earlier = journal.write(b"[1]", b"page cache")  # the reactor's kind: synced by its round
    direct = journal.write(b"[2]", b"direct", start_writeback=True)
    journal.wait_durable(direct)
    assert len(syncs) == 1  # the earlier entry's segment was synced first
    journal.wait_durable(earlier)
    assert len(syncs) == 1
    journal.close()


def test_an_entry_never_waited_for_is_completed_so_that_later_entries_are_not_held_back(tmp_path: Path) -> None:
    journal = open_journal(tmp_path / "j")
    refused = journal.write(b"[1]", b"refused at intake", start_writeback=True)
    journal.complete(refused)
    journal.complete(refused)  # repeated: nothing to do
    later = journal.write(b"[2]", b"acknowledged", start_writeback=True)
    waiter = threading.Thread(target=journal.wait_durable, args=(later,))
    waiter.start()
    waiter.join(10)
    assert not waiter.is_alive()
    journal.close()


def test_a_direct_write_the_kernel_refuses_goes_through_the_page_cache_and_direct_writes_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = open_journal(tmp_path / "j")

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EINVAL, "refused")

    monkeypatch.setattr(DirectWriter, "submit", refuse)
    location = journal.write(b"[1]", b"payload", start_writeback=True)
    assert journal._direct is None and not journal._in_flight
    journal.wait_durable(location)
    monkeypatch.undo()
    journal.close()
    (entry,) = IntakeJournal(tmp_path / "j", segment_bytes=4 * MIB, segments=2).recovered
    assert entry.payload == b"payload"


@pytest.mark.parametrize("code", [errno.EINVAL, errno.EOPNOTSUPP])
def test_a_direct_write_refused_as_it_runs_is_rewritten_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    journal = open_journal(tmp_path / "j")

    def refused(_self: DirectWriter) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(DirectWriter, "result", refused)
    location = journal.write(b"[1]", b"payload", start_writeback=True)
    journal.wait_durable(location)
    assert journal._direct is None
    later = journal.write(b"[2]", b"later", start_writeback=True)  # through the page cache now
    assert not journal._in_flight
    journal.wait_durable(later)
    monkeypatch.undo()
    journal.close()
    entries = IntakeJournal(tmp_path / "j", segment_bytes=4 * MIB, segments=2).recovered
    assert [e.payload for e in entries] == [b"payload", b"later"]


def test_a_failed_direct_write_fails_its_entry_and_every_later_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = open_journal(tmp_path / "j")

    def failed(_self: DirectWriter) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(DirectWriter, "result", failed)
    location = journal.write(b"[1]", b"payload", start_writeback=True)
    with pytest.raises(JournalError, match="I/O error"):
        journal.wait_durable(location)
    monkeypatch.undo()
    with pytest.raises(JournalError):
        journal.append(b"[2]", b"later")
    journal.close()


def test_without_o_direct_the_journal_writes_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def no_direct(path: object, flags: int, *args: object) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(journal_module.os, "open", no_direct)
    journal = open_journal(tmp_path / "j")
    location = journal.write(b"[1]", b"payload", start_writeback=True)
    assert journal._direct is None and not journal._in_flight
    journal.wait_durable(location)
    journal.close()


def test_a_waiter_reaps_an_earlier_direct_write_whose_writer_is_still_busy(tmp_path: Path) -> None:
    """Entry 1's writer is still running its checks: entry 2 is acknowledged as soon as entry 1's
    write is durable, not when its writer gets round to it."""
    journal = open_journal(tmp_path / "j")
    busy = journal.write(b"[1]", b"its writer is busy", start_writeback=True)
    later = journal.write(b"[2]", b"page cache")
    waiter = threading.Thread(target=journal.wait_durable, args=(later,))
    waiter.start()
    waiter.join(10)
    assert not waiter.is_alive()
    assert journal._in_flight[busy.sequence].reaped  # the waiter recorded entry 1's outcome
    journal.wait_durable(busy)  # its writer, later: nothing left to do but release the buffer
    assert not journal._in_flight and len(journal._direct_pool._idle) == 1  # type: ignore[union-attr]
    journal.close()


def test_after_close_nothing_is_appended_and_nothing_unsynced_is_reported_durable(tmp_path: Path) -> None:
    journal = open_journal(tmp_path / "j")
    unsynced = journal.write(b"[1]", b"page cache")
    direct = journal.write(b"[2]", b"direct", start_writeback=True)
    journal.close()  # finishes the direct write, syncs nothing
    with pytest.raises(JournalError, match="closed"):
        journal.wait_durable(unsynced)
    with pytest.raises(JournalError, match="closed"):
        journal.write(b"[3]", b"too late", start_writeback=True)
    assert journal._in_flight == {} and direct.sequence == 2


def test_a_direct_write_that_cannot_start_goes_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy system (EAGAIN: no AIO context to spare) costs one entry its direct write; anything
    else turns direct writes off."""
    journal = open_journal(tmp_path / "j")
    failures = iter([OSError(errno.EAGAIN, "busy"), RuntimeError("unexpected")])

    def cannot_start(*_args: object) -> None:
        raise next(failures)

    monkeypatch.setattr(DirectWrites, "start", cannot_start)
    first = journal.write(b"[1]", b"one", start_writeback=True)
    assert journal._direct is not None and not journal._in_flight
    second = journal.write(b"[2]", b"two", start_writeback=True)
    assert journal._direct is None and not journal._in_flight
    journal.wait_durable(first)
    journal.wait_durable(second)
    journal.close()
