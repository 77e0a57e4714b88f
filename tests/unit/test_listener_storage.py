"""InstanceStore: durable storing (memory and spooled data sets), hostile input, budgets, disk watermark,
duplicates (keep first / replace) with audit events, write errors."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from prometheus_client import REGISTRY
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom.dsutils import encode, split_dataset

from oncohabitat.dicomio.identifiers import uid_key
from oncohabitat.listener import status
from oncohabitat.listener import store_files as store_files_module
from oncohabitat.listener.checks import Budgets
from oncohabitat.listener.diskguard import DiskGuard
from oncohabitat.listener.errors import StorageWriteError
from oncohabitat.listener.index import AddOutcome, StudyIndex, StudyState
from oncohabitat.listener.part10 import file_meta_prefix
from oncohabitat.listener.spool import TEMP_SUFFIX
from oncohabitat.listener.storage import INDEX_FILE, DuplicatePolicy, InstanceStore, StorePolicy, StoreResult

CT_IMAGE = "image/000000.dcm"


class Event:
    """A received C-STORE: command UIDs, transfer syntax and the encoded data set."""

    def __init__(self, body: bytes, sop_class: str, sop_uid: str, ts: str = ImplicitVRLittleEndian) -> None:
        self.body, self.sop_class, self.sop_uid, self.ts = body, str(sop_class), str(sop_uid), ts

    def encoded_dataset(self) -> bytes:
        return file_meta_prefix(self.sop_class, self.sop_uid, self.ts) + self.body


def make_event(body: bytes, sop_class: str, sop_uid: str, ts: str = ImplicitVRLittleEndian) -> Event:
    return Event(body, sop_class, sop_uid, ts)


def receive(store: InstanceStore, event: Event, chunk: int = 4096) -> StoreResult:
    """What an association does: spool the data set fragment by fragment, store it; the result to answer."""
    spool = store.open_spool(event.sop_class, event.sop_uid, event.ts)
    for start in range(0, len(event.body), chunk):
        spool.append(memoryview(event.body)[start : start + chunk])
    return store.store_spool(spool, sop_class_uid=event.sop_class, sop_uid=event.sop_uid, transfer_syntax=event.ts)


def handle(store: InstanceStore, event: Event) -> int:
    return receive(store, event).status


def file_body(path: Path) -> bytes:
    """The encoded data set of a Part-10 file (bytes after its file meta)."""
    _, offset = split_dataset(path)
    return path.read_bytes()[offset:]


def encode_body(ds: Dataset) -> bytes:
    with pydicom.config.disable_value_validation():  # hostile test values must be encodable
        body = encode(ds, is_implicit_vr=True, is_little_endian=True)
    assert body is not None
    return body


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def store(root: Path) -> Iterator[InstanceStore]:
    root.mkdir()
    index = StudyIndex(root / INDEX_FILE)
    instance_store = InstanceStore(root, index)
    yield instance_store
    instance_store.close()
    index.close()


@pytest.fixture
def ct_file(sts_ct_dir: Path) -> Path:
    return sts_ct_dir / CT_IMAGE


@pytest.fixture
def ct_dataset(ct_file: Path) -> Dataset:
    return pydicom.dcmread(ct_file)


def stored_files(root: Path) -> list[Path]:
    return [p for p in (root / "instances").rglob("*") if p.is_file()]


def test_real_ct_instance_is_stored_durably_and_indexed(store: InstanceStore, root: Path, ct_file: Path) -> None:
    ds = pydicom.dcmread(ct_file, stop_before_pixels=True)
    stored_before = metric("oncohabitat_listener_instances_stored_total")
    body = file_body(ct_file)

    code = handle(store, make_event(body, ds.SOPClassUID, ds.SOPInstanceUID))

    assert code == status.SUCCESS
    expected = root / "instances" / uid_key(ds.StudyInstanceUID) / uid_key(ds.SeriesInstanceUID)
    path = expected / f"{uid_key(ds.SOPInstanceUID)}.dcm"
    assert stored_files(root) == [path]
    data = path.read_bytes()
    assert data[128:132] == b"DICM"
    assert file_body(path) == body  # the data set is stored exactly as received
    record = store.index.get_instance(ds.SOPInstanceUID)
    assert record is not None
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert record.size == len(data)
    assert record.modality == "CT"
    assert record.study_key == uid_key(ds.StudyInstanceUID)
    assert store.path_of(record) == path
    reread = pydicom.dcmread(path)
    assert reread.SOPInstanceUID == ds.SOPInstanceUID
    assert reread.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    study = store.index.get_study(record.study_key)
    assert study is not None
    assert (study.state, study.instance_count, study.bytes_stored) == (StudyState.RECEIVING, 1, len(data))
    assert study.study_uid == ds.StudyInstanceUID
    assert metric("oncohabitat_listener_instances_stored_total") == stored_before + 1
    # no raw UID and no patient data in the path or in the index
    assert ds.SOPInstanceUID not in str(path) and ds.StudyInstanceUID not in str(path)
    with (root / INDEX_FILE).open("rb") as index_file:
        index_bytes = index_file.read()
    assert str(ds.PatientID).encode() not in index_bytes


HOSTILE = ["../x", "/etc/x", "1" * 65, "1.2\x003.4", "1.2.abc", "1.2..3", "1.2.3/../../4", "1.2\\1.3"]


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_uids_are_refused_and_nothing_is_written(
    store: InstanceStore, root: Path, tmp_path: Path, ct_dataset: Dataset, keyword: str, value: str
) -> None:
    with pydicom.config.disable_value_validation():
        setattr(ct_dataset, keyword, value)
    before = metric("oncohabitat_listener_instances_rejected_total", {"reason": "invalid_uid"})
    code = handle(store, make_event(encode_body(ct_dataset), ct_dataset.SOPClassUID, str(ct_dataset.SOPInstanceUID)))
    assert code == status.INVALID_UID
    assert metric("oncohabitat_listener_instances_rejected_total", {"reason": "invalid_uid"}) == before + 1
    assert stored_files(root) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]
    assert not Path("/etc/x").exists()
    assert store.index.list_studies() == []


def test_missing_uid_is_refused(store: InstanceStore, root: Path, ct_dataset: Dataset) -> None:
    del ct_dataset.SeriesInstanceUID
    code = handle(store, make_event(encode_body(ct_dataset), ct_dataset.SOPClassUID, ct_dataset.SOPInstanceUID))
    assert code == status.MISSING_UID
    assert stored_files(root) == []


def test_data_set_disagreeing_with_request_is_refused(store: InstanceStore, root: Path, ct_file: Path) -> None:
    ds = pydicom.dcmread(ct_file, stop_before_pixels=True)
    code = handle(store, make_event(file_body(ct_file), ds.SOPClassUID, "1.2.3.4"))
    assert code == status.DATASET_MISMATCH
    assert stored_files(root) == []


def test_unparseable_data_set_is_refused(store: InstanceStore, root: Path) -> None:
    garbage = b"\x08\x00\x16\x00\xff\xff\xff\x7f" + b"\x00" * 16
    code = handle(store, make_event(garbage, "1.2.840.10008.5.1.4.1.1.2", "1.2.3"))
    assert code in (status.CANNOT_PARSE, status.MISSING_UID)
    assert stored_files(root) == []
    assert store.store_part10(b"not dicom at all").status == status.CANNOT_PARSE


def test_identical_duplicate_is_acknowledged_without_new_row(store: InstanceStore, root: Path, ct_file: Path) -> None:
    ds = pydicom.dcmread(ct_file, stop_before_pixels=True)
    body = file_body(ct_file)
    before = metric("oncohabitat_listener_duplicate_instances_total", {"kind": "identical"})
    assert handle(store, make_event(body, ds.SOPClassUID, ds.SOPInstanceUID)) == status.SUCCESS
    assert handle(store, make_event(body, ds.SOPClassUID, ds.SOPInstanceUID)) == status.SUCCESS
    assert len(stored_files(root)) == 1
    study = store.index.get_study(uid_key(ds.StudyInstanceUID))
    assert study is not None and study.instance_count == 1 and study.conflicts == 0
    assert metric("oncohabitat_listener_duplicate_instances_total", {"kind": "identical"}) == before + 1


def test_conflicting_duplicate_keeps_first_version(store: InstanceStore, root: Path, ct_dataset: Dataset) -> None:
    first = encode_body(ct_dataset)
    ct_dataset.ImageComments = "changed on resend"
    second = encode_body(ct_dataset)
    sop_class, sop_uid = ct_dataset.SOPClassUID, ct_dataset.SOPInstanceUID
    assert handle(store, make_event(first, sop_class, sop_uid)) == status.SUCCESS
    (path,) = stored_files(root)
    kept = path.read_bytes()
    result = receive(store, make_event(second, sop_class, sop_uid))
    assert (result.status, result.outcome) == (status.SUCCESS, AddOutcome.CONFLICT)
    assert path.read_bytes() == kept
    study = store.index.get_study(uid_key(ct_dataset.StudyInstanceUID))
    assert study is not None and (study.instance_count, study.conflicts) == (1, 1)
    record = store.index.get_instance(sop_uid)
    assert record is not None and record.sha256 == hashlib.sha256(kept).hexdigest()


def test_write_error_answers_out_of_resources_and_removes_partial_file(
    store: InstanceStore, root: Path, ct_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(store_files_module.os, "fsync", failing_fsync)
    ds = pydicom.dcmread(ct_file, stop_before_pixels=True)
    event = make_event(file_body(ct_file), ds.SOPClassUID, ds.SOPInstanceUID)
    assert handle(store, event) == status.OUT_OF_RESOURCES
    assert stored_files(root) == []  # the temporary file was deleted
    assert store.index.get_instance(ds.SOPInstanceUID) is None

    monkeypatch.setattr(store_files_module.os, "fsync", real_fsync)
    retry = make_event(file_body(ct_file), ds.SOPClassUID, ds.SOPInstanceUID)
    assert handle(store, retry) == status.SUCCESS
    assert len(stored_files(root)) == 1


def test_startup_removes_orphan_temp_files_only(root: Path, ct_file: Path) -> None:
    series_dir = root / "instances" / ("a" * 32) / ("b" * 32)
    series_dir.mkdir(parents=True)
    orphan = series_dir / f"{'c' * 64}.dcm.0123abcd.tmp"
    orphan.write_bytes(b"partial")
    kept = series_dir / f"{'d' * 64}.dcm"
    kept.write_bytes(ct_file.read_bytes())
    index = StudyIndex(root / INDEX_FILE)
    store = InstanceStore(root, index)
    try:
        assert store.orphans_removed == 1
        assert not orphan.exists()
        assert kept.exists()
    finally:
        store.close()
        index.close()


def test_root_is_locked_to_one_store(store: InstanceStore, root: Path) -> None:
    other_index = StudyIndex(root / INDEX_FILE)
    try:
        with pytest.raises(StorageWriteError, match="in use"):
            InstanceStore(root, other_index)
    finally:
        other_index.close()


def test_conflict_is_audited_without_patient_data(store: InstanceStore, ct_dataset: Dataset) -> None:
    first = encode_body(ct_dataset)
    ct_dataset.ImageComments = "changed"
    assert handle(store, make_event(first, ct_dataset.SOPClassUID, ct_dataset.SOPInstanceUID)) == status.SUCCESS
    assert handle(store, make_event(encode_body(ct_dataset), ct_dataset.SOPClassUID, ct_dataset.SOPInstanceUID)) == 0
    (event,) = store.index.audit_events(uid_key(ct_dataset.StudyInstanceUID))
    assert event.event == "instance_conflict"
    assert event.detail == {"instance_key": uid_key(ct_dataset.SOPInstanceUID), "policy": "keep_first"}
    assert str(ct_dataset.PatientID) not in str(event.detail)


def test_replace_policy_switches_to_the_new_bytes(root: Path, ct_dataset: Dataset) -> None:
    root.mkdir()
    index = StudyIndex(root / INDEX_FILE)
    store = InstanceStore(root, index, policy=StorePolicy(duplicates=DuplicatePolicy.REPLACE))
    try:
        first = encode_body(ct_dataset)
        ct_dataset.ImageComments = "corrected"
        second = encode_body(ct_dataset)
        sop_class, sop_uid = ct_dataset.SOPClassUID, ct_dataset.SOPInstanceUID
        assert receive(store, make_event(first, sop_class, sop_uid)).outcome is AddOutcome.STORED
        result = receive(store, make_event(second, sop_class, sop_uid))
        assert (result.status, result.outcome) == (status.SUCCESS, AddOutcome.REPLACED)
        (path,) = stored_files(root)
        assert file_body(path) == second  # the old file was deleted, the new one indexed
        record = index.get_instance(sop_uid)
        assert record is not None and record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        study = index.get_study(uid_key(ct_dataset.StudyInstanceUID))
        assert study is not None and (study.instance_count, study.conflicts) == (1, 1)
        assert [e.event for e in index.audit_events()] == ["instance_replaced"]
    finally:
        store.close()
        index.close()


def test_large_data_set_is_spooled_and_moved_into_place(root: Path, ct_file: Path) -> None:
    root.mkdir()
    index = StudyIndex(root / INDEX_FILE)
    store = InstanceStore(root, index, policy=StorePolicy(memory_limit_bytes=10_000))
    try:
        ds = pydicom.dcmread(ct_file, stop_before_pixels=True)
        body = file_body(ct_file)
        spool = store.open_spool(ds.SOPClassUID, ds.SOPInstanceUID, ImplicitVRLittleEndian)
        for start in range(0, len(body), 8192):
            spool.append(body[start : start + 8192])
        assert not spool.in_memory and spool.path is not None and spool.path.parent == root / "incoming"
        result = store.store_spool(
            spool, sop_class_uid=ds.SOPClassUID, sop_uid=ds.SOPInstanceUID, transfer_syntax=ImplicitVRLittleEndian
        )
        assert result.status == status.SUCCESS
        (path,) = stored_files(root)
        assert file_body(path) == body
        assert list((root / "incoming").iterdir()) == []
        record = index.get_instance(ds.SOPInstanceUID)
        assert record is not None and record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    finally:
        store.close()
        index.close()


def test_budgets_refuse_before_anything_is_written(root: Path, ct_file: Path) -> None:
    root.mkdir()
    index = StudyIndex(root / INDEX_FILE)
    ds = pydicom.dcmread(ct_file, stop_before_pixels=True)
    declared = int(ds.Rows) * int(ds.Columns) * int(ds.BitsAllocated) // 8
    store = InstanceStore(
        root, index, policy=StorePolicy(budgets=Budgets(max_pixel_bytes=declared - 1), max_dataset_bytes=1 << 30)
    )
    try:
        before = metric("oncohabitat_listener_instances_rejected_total", {"reason": "pixel_budget"})
        assert handle(store, make_event(file_body(ct_file), ds.SOPClassUID, ds.SOPInstanceUID)) == 0xA701
        assert metric("oncohabitat_listener_instances_rejected_total", {"reason": "pixel_budget"}) == before + 1
        assert stored_files(root) == [] and list((root / "incoming").iterdir()) == []
    finally:
        store.close()
        index.close()
    small = InstanceStore(root, StudyIndex(root / INDEX_FILE), policy=StorePolicy(max_dataset_bytes=1000))
    try:
        result = receive(small, make_event(file_body(ct_file), ds.SOPClassUID, ds.SOPInstanceUID))
        assert (result.status, result.reason) == (status.PIXEL_BUDGET_EXCEEDED, "dataset_too_large")
        assert stored_files(root) == []
    finally:
        small.close()
        small.index.close()


def test_disk_watermark_refuses_with_out_of_resources_and_recovers(root: Path, ct_file: Path) -> None:
    root.mkdir()
    free = {"bytes": 10}
    index = StudyIndex(root / INDEX_FILE)
    guard = DiskGuard(root, 1000, interval_s=0.0, probe=lambda _path: free["bytes"])
    store = InstanceStore(root, index, disk=guard)
    try:
        ds = pydicom.dcmread(ct_file, stop_before_pixels=True)
        event = make_event(file_body(ct_file), ds.SOPClassUID, ds.SOPInstanceUID)
        assert not store.accepting()
        result = receive(store, event)
        assert (result.status, result.reason) == (status.OUT_OF_RESOURCES, "disk_low")
        assert store.store_part10(event.encoded_dataset()).status == status.OUT_OF_RESOURCES
        assert stored_files(root) == []
        assert metric("oncohabitat_listener_disk_low") == 1
        free["bytes"] = 5000
        assert store.accepting() and handle(store, event) == status.SUCCESS
        assert metric("oncohabitat_listener_disk_low") == 0
    finally:
        store.close()
        index.close()


def test_spool_write_error_removes_the_partial_file(root: Path, ct_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root.mkdir()
    index = StudyIndex(root / INDEX_FILE)
    store = InstanceStore(root, index, policy=StorePolicy(memory_limit_bytes=1000))
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "I/O error")
        real_fsync(fd)

    monkeypatch.setattr(store_files_module.os, "fsync", failing_fsync)
    monkeypatch.setattr("oncohabitat.listener.spool.os.fsync", failing_fsync)
    try:
        ds = pydicom.dcmread(ct_file, stop_before_pixels=True)
        result = receive(store, make_event(file_body(ct_file), ds.SOPClassUID, ds.SOPInstanceUID))
        assert (result.status, result.reason) == (status.OUT_OF_RESOURCES, "write_error")
        assert stored_files(root) == [] and list((root / "incoming").iterdir()) == []
    finally:
        store.close()
        index.close()


def test_orphans_in_incoming_are_removed_at_start(root: Path) -> None:
    (root / "incoming").mkdir(parents=True)
    orphan = root / "incoming" / f"{'e' * 32}{TEMP_SUFFIX}"
    orphan.write_bytes(b"half a data set")
    index = StudyIndex(root / INDEX_FILE)
    store = InstanceStore(root, index)
    try:
        assert store.orphans_removed == 1 and not orphan.exists()
    finally:
        store.close()
        index.close()


def test_without_fsync_instances_are_still_stored(root: Path, ct_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root.mkdir()
    calls: list[int] = []
    monkeypatch.setattr(store_files_module.os, "fsync", lambda fd: calls.append(fd))
    index = StudyIndex(root / INDEX_FILE)
    store = InstanceStore(root, index, policy=StorePolicy(fsync=False))
    try:
        ds = pydicom.dcmread(ct_file, stop_before_pixels=True)
        assert handle(store, make_event(file_body(ct_file), ds.SOPClassUID, ds.SOPInstanceUID)) == status.SUCCESS
        assert len(stored_files(root)) == 1 and calls == []
    finally:
        store.close()
        index.close()
