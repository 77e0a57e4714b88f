"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from oncohabitat.listener.index import StudyIndex
from oncohabitat.listener.scp import ListenerSCP
from oncohabitat.listener.storage import INDEX_FILE, InstanceStore


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[tuple[ListenerSCP, InstanceStore]]:
    """A started ListenerSCP (AE ONCOTEST, a free port) on a fresh store; stopped afterwards."""
    index = StudyIndex(tmp_path / INDEX_FILE)
    store = InstanceStore(tmp_path, index)
    listener = ListenerSCP(store, ae_title="ONCOTEST", host="127.0.0.1", port=0)
    listener.start()
    yield listener, store
    listener.stop()
    store.close()
    index.close()
