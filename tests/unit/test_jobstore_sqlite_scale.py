"""SqliteJobStore: the scale-out additions shared with PostgreSQL (filters and paging, a restarted replica's own
leases freed at once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from oncohabitat.orchestrator.jobstore import SqliteJobStore, open_job_store
from tests.support.clock import FakeClock
from tests.unit.test_jobstore_postgres import (
    _check_filters_and_paging,
    test_a_restarted_replica_frees_its_own_jobs_at_once,
)

__all__ = ["test_a_restarted_replica_frees_its_own_jobs_at_once"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[SqliteJobStore]:
    with SqliteJobStore(tmp_path / "jobs.db", clock=clock) as opened:
        yield opened


def test_list_filters_by_time_model_and_pages_without_gaps(store: SqliteJobStore, clock: FakeClock) -> None:
    _check_filters_and_paging(store, clock)  # type: ignore[arg-type]


def test_open_job_store_defaults_to_sqlite(tmp_path: Path) -> None:
    default = open_job_store("", tmp_path / "a.db")
    by_url = open_job_store(f"sqlite:///{tmp_path / 'b.db'}", tmp_path / "unused.db")
    try:
        assert isinstance(default, SqliteJobStore) and isinstance(by_url, SqliteJobStore)
        assert (tmp_path / "a.db").exists() and (tmp_path / "b.db").exists()
    finally:
        default.close()
        by_url.close()
