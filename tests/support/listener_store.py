"""Test helpers for a listener store root written by a listener process (journal + materialiser)."""

from __future__ import annotations

import time
from pathlib import Path

from oncohabitat.listener.index import StudyIndex
from oncohabitat.listener.settings import ListenerSettings
from oncohabitat.listener.storage import INDEX_FILE, InstanceStore, StorePolicy


def instance_files(instances_dir: Path) -> list[Path]:
    """Every file below ``instances_dir`` (sorted)."""
    return sorted(p for p in instances_dir.rglob("*") if p.is_file())


def wait_for_instance_files(instances_dir: Path, expected: int, timeout_s: float = 10.0) -> list[Path]:
    """The instance files once ``expected`` of them exist (or what exists after ``timeout_s``).

    An acknowledged instance is durable in the intake journal; its file is written by the
    materialiser worker a few milliseconds later.
    """
    deadline = time.monotonic() + timeout_s
    files = instance_files(instances_dir)
    while len(files) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
        files = instance_files(instances_dir)
    return files


def recover_store(root: Path) -> int:
    """Open and close the store of a killed listener the way a restart does (journal replay,
    reconciliation) with the default journal layout; returns how many instances were re-materialised."""
    segments, segment_bytes = ListenerSettings(store_dir=root, data_dir=root).journal_layout
    index = StudyIndex(root / INDEX_FILE, synchronous="NORMAL")
    try:
        store = InstanceStore(
            root, index, policy=StorePolicy(journal_segments=segments, journal_segment_bytes=segment_bytes)
        )
        recovered = store.rematerialised
        store.close()
    finally:
        index.close()
    return recovered
