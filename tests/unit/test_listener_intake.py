"""The store's journal path: checks before the append, duplicates, pending studies, the materialiser
worker (restart, held-back batches), re-materialisation at start."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from oncohabitat.dicomio.identifiers import uid_key
from oncohabitat.listener import journal as journal_module
from oncohabitat.listener import materialiser as materialiser_module
from oncohabitat.listener import status
from oncohabitat.listener.errors import StorageWriteError
from oncohabitat.listener.index import AddOutcome, StudyIndex, StudyState
from oncohabitat.listener.journal import IntakeJournal, JournalError
from oncohabitat.listener.storage import (
    INDEX_FILE,
    JOURNAL_DIR,
    DuplicatePolicy,
    InstanceStore,
    StorePolicy,
    StoreResult,
)
from tests.unit.test_listener_journal import MIB, sha
from tests.unit.test_listener_storage import encode_body, file_body, make_event, metric, receive


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
    """End the materialiser's thread without a flush: from then on nothing is materialised or
    checkpointed, as after a crash of the listener."""
    thread = materialiser._thread
    assert thread is not None
    with materialiser._cond:
        materialiser._stopping = True
        materialiser._cond.notify_all()
    thread.join(10)
    assert not thread.is_alive()


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


def test_instances_refused_by_their_checks_are_never_journaled(tmp_path: Path, ct_series: list[Path]) -> None:
    """The checks run before the journal append: a refused instance leaves no entry, so recovery
    after a crash stores exactly the acknowledged ones (nothing to decide again, no quarantine)."""
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
    assert store.journal.last_sequence == 2  # the two acknowledged instances only
    abandon_as_in_a_crash(store, index)
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
        assert store2.journal is not None and store2.journal.checkpointed_through == store2.journal.last_sequence > 2


def journal_entries(root: Path, journal: IntakeJournal) -> list[journal_module.JournalEntry]:
    """Every entry of the journal at ``root`` above its checkpoint, as recovery would read them."""
    return IntakeJournal(root / JOURNAL_DIR, segment_bytes=journal.segment_bytes, segments=2).recovered


def test_a_refused_instance_does_not_hold_back_the_journal_checkpoint(
    journaled: tuple[InstanceStore, StudyIndex], ct_series: list[Path]
) -> None:
    store, _index = journaled
    assert store.journal is not None and store._materialiser is not None
    events = [event_of(ct_series[0]), *refused_events(ct_series[1]), event_of(ct_series[2])]
    assert [receive(store, e).status == status.SUCCESS for e in events] == [True, False, False, True]  # type: ignore[arg-type]
    assert store.flush(10)
    store._materialiser.checkpoint()
    assert store.journal.checkpointed_through == store.journal.last_sequence == 2  # refused: never journaled


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


def test_a_replacement_journaled_before_a_crash_replaces_the_indexed_version_at_start(
    tmp_path: Path, ct_series: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crash falls between the durable journal append of a re-sent version and its duplicate
    handling: recovery applies the replace policy from the entry."""
    root = tmp_path / "root"
    store, index = open_store(root, duplicates=DuplicatePolicy.REPLACE)
    first = event_of(ct_series[0])
    assert receive(store, first).outcome is AddOutcome.STORED  # type: ignore[arg-type]
    assert store.flush(10)
    ds = pydicom.dcmread(ct_series[0])
    ds.SeriesDescription = "corrected"
    changed = make_event(encode_body(ds), ds.SOPClassUID, ds.SOPInstanceUID)
    monkeypatch.setattr(store, "_hand_on", lambda *_args: StoreResult(status.SUCCESS))  # the crash comes first
    assert receive(store, changed).status == status.SUCCESS
    assert store._materialiser is not None and store._lock_handle is not None
    end_worker_as_in_a_crash(store._materialiser)
    abandon_as_in_a_crash(store, index)
    with reopened(root, duplicates=DuplicatePolicy.REPLACE) as (store2, index2):
        assert store2.rematerialised == 1
        record = index2.get_instance(str(ds.SOPInstanceUID))
        assert record is not None and record.sha256 == sha(changed.encoded_dataset())
        assert (root / record.path).read_bytes() == changed.encoded_dataset()
        assert len(list((root / "instances").rglob("*.dcm"))) == 1  # the first version's file is gone


def test_a_replacement_that_cannot_be_written_is_refused_and_does_not_hold_back_the_checkpoint(
    tmp_path: Path, ct_series: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replace policy: a re-sent version journaled durably whose direct write then fails (disk full)
    is answered with a failure (never acknowledged: the peer sends it again) and its entry is
    skipped, so the checkpoint passes it and the indexed version stays."""
    store, index = open_store(tmp_path / "root", duplicates=DuplicatePolicy.REPLACE)
    try:
        first = event_of(ct_series[0])
        assert receive(store, first).outcome is AddOutcome.STORED  # type: ignore[arg-type]
        assert store.flush(10)
        ds = pydicom.dcmread(ct_series[0])
        ds.SeriesDescription = "corrected"
        changed = make_event(encode_body(ds), ds.SOPClassUID, ds.SOPInstanceUID)

        def disk_full(*_args: object, **_kwargs: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(store, "_write_durably", disk_full)
        result = receive(store, changed)
        assert result.outcome is None and result.status != status.SUCCESS
        monkeypatch.undo()
        materialiser, journal = store._materialiser, store.journal
        assert materialiser is not None and journal is not None
        materialiser.checkpoint()
        assert journal.checkpointed_through == journal.last_sequence == 2
        record = index.get_instance(str(ds.SOPInstanceUID))
        assert record is not None and record.sha256 == sha(first.encoded_dataset())  # type: ignore[attr-defined]
    finally:
        store.close()
        index.close()


def test_a_failed_batch_is_retried_and_its_instances_stay_pending_meanwhile(
    journaled: tuple[InstanceStore, StudyIndex], ct_series: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, index = journaled
    materialiser = store._materialiser
    assert materialiser is not None
    monkeypatch.setattr(materialiser, "_retry_s", 0.05)
    real_add = index.add_instances
    failures: list[int] = []

    def fails_twice(items: object) -> object:
        if len(failures) < 2:
            failures.append(1)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_add(items)  # type: ignore[arg-type]

    monkeypatch.setattr(index, "add_instances", fails_twice)
    before = metric("oncohabitat_listener_journal_errors_total", {"stage": "materialise"})
    result = receive(store, event_of(ct_series[0]))  # type: ignore[arg-type]
    assert result.status == status.SUCCESS and result.study_key is not None
    assert store.has_pending(result.study_key)
    assert store.flush(10)
    assert len(failures) == 2 and not store.has_pending(result.study_key)
    assert metric("oncohabitat_listener_journal_errors_total", {"stage": "materialise"}) == before + 2
    uid = str(pydicom.dcmread(ct_series[0], stop_before_pixels=True).SOPInstanceUID)
    record = index.get_instance(uid)
    assert record is not None and sha((store.root / record.path).read_bytes()) == record.sha256
