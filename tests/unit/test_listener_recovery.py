"""Start-up recovery after an unclean stop: replacements whose index commit was lost, durable files re-indexed,
cut writes dropped."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom
import pytest

from oncohabitat.listener import status
from oncohabitat.listener.index import AddOutcome, StudyIndex
from oncohabitat.listener.storage import INDEX_FILE, DuplicatePolicy, InstanceStore, StorePolicy
from tests.unit.test_listener_storage import stored_files


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.mark.parametrize("lost", ["replacement_commit", "both_commits"])
def test_a_replacement_whose_index_commit_was_lost_takes_over_its_row_at_start(
    root: Path, sts_ct_dir: Path, lost: str
) -> None:
    """Replace policy, synchronous=NORMAL: a power loss drops the replacement's commit (or the first
    version's too) after the old file was unlinked; the unclean start indexes the replacement file."""
    import sqlite3

    root.mkdir()
    source = sorted((sts_ct_dir / "image").glob("*.dcm"))[0]
    policy = StorePolicy(duplicates=DuplicatePolicy.REPLACE)
    index = StudyIndex(root / INDEX_FILE, synchronous="NORMAL")
    store = InstanceStore(root, index, policy=policy)
    assert store.store_part10(source.read_bytes()).status == status.SUCCESS
    ds = pydicom.dcmread(source)
    uid = str(ds.SOPInstanceUID)
    first = index.get_instance(uid)
    assert first is not None
    ds.SeriesDescription = "corrected"
    ds.save_as(root / "corrected.dcm", enforce_file_format=True)
    replacement = (root / "corrected.dcm").read_bytes()
    assert store.store_part10(replacement).outcome is AddOutcome.REPLACED
    assert not (root / first.path).exists()  # the old file is gone at once
    store.close()
    index.close()
    with sqlite3.connect(root / INDEX_FILE) as conn:  # the power loss: the last commit(s) are lost
        if lost == "replacement_commit":
            conn.execute(
                "UPDATE instances SET path = ?, sha256 = ?, size = ?, received_at = ? WHERE sop_uid = ?",
                (first.path, first.sha256, first.size, first.received_at, uid),
            )
        else:
            conn.execute("DELETE FROM instances WHERE sop_uid = ?", (uid,))
    (root / f"{INDEX_FILE}.clean").unlink()
    reopened = StudyIndex(root / INDEX_FILE, synchronous="NORMAL")
    store = InstanceStore(root, reopened, policy=policy)
    try:
        record = reopened.get_instance(uid)
        assert record is not None and record.sha256 == hashlib.sha256(replacement).hexdigest()
        assert store.path_of(record).read_bytes() == replacement
    finally:
        store.close()
        reopened.close()


def test_unclean_stop_reindexes_durable_files_and_drops_cut_writes(root: Path, sts_ct_dir: Path) -> None:
    root.mkdir()
    files = sorted((sts_ct_dir / "image").glob("*.dcm"))[:4]
    index = StudyIndex(root / INDEX_FILE, synchronous="NORMAL")
    store = InstanceStore(root, index)
    for path in files:
        assert store.store_part10(path.read_bytes()).status == status.SUCCESS
    store.close()
    index.close()
    assert (root / f"{INDEX_FILE}.clean").exists()
    # a power loss that kept the fsynced files but lost the last two index commits ...
    import sqlite3

    lost = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files[2:]]
    with sqlite3.connect(root / INDEX_FILE) as conn:
        conn.executemany("DELETE FROM instances WHERE sop_uid = ?", [(uid,) for uid in lost])
    (root / f"{INDEX_FILE}.clean").unlink()
    # ... and a write that was cut short before it was acknowledged
    (path,) = {p.parent for p in stored_files(root)}
    cut = path / f"{'f' * 32}.dcm"
    cut.write_bytes(files[0].read_bytes()[:700])
    reopened = StudyIndex(root / INDEX_FILE, synchronous="NORMAL")
    assert reopened.unclean_start
    store = InstanceStore(root, reopened)
    try:
        assert store.reindexed == 2 and not cut.exists()
        for uid in lost:
            record = reopened.get_instance(uid)
            assert record is not None
            assert record.sha256 == hashlib.sha256(store.path_of(record).read_bytes()).hexdigest()
    finally:
        store.close()
        reopened.close()
    again = StudyIndex(root / INDEX_FILE)
    try:
        assert not again.unclean_start  # the reconciled index was closed cleanly
    finally:
        again.close()
