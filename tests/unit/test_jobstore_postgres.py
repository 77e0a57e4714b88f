"""PostgresJobStore against a real PostgreSQL server: the SQLite store's interface tests, plus what only a shared
database shows (replicas claiming concurrently, migrations by replicas starting together, filters and paging)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from oncohabitat.orchestrator.jobs import InvalidJobError, JobState, JobStoreUnavailableError
from oncohabitat.orchestrator.jobstore import JobFilter, open_job_store
from oncohabitat.orchestrator.jobstore_common import encode_page_token
from oncohabitat.orchestrator.jobstore_postgres import SCHEMA_VERSION, PostgresJobStore
from oncohabitat.orchestrator.metrics import read_postgres_stats
from tests.support.clock import FakeClock
from tests.support.postgres import PostgresServer, start_server_or_fail
from tests.unit.test_jobstore import (  # the interface tests, run here on PostgreSQL with the fixtures below
    digest,
    test_a_rerun_of_finished_content_is_a_new_job_and_plain_submits_find_the_newest,
    test_cancel_applies_to_active_jobs_only,
    test_claim_leases_the_oldest_due_job,
    test_events_record_every_transition,
    test_expired_lease_is_taken_over_and_the_old_worker_is_fenced,
    test_finish_is_final,
    test_list_filters_orders_and_limits,
    test_patient_identifiers_and_non_json_values_are_never_stored,
    test_release_requeues_without_counting_the_attempt,
    test_renew_lease_keeps_the_job,
    test_schedule_retry_delays_the_next_claim,
    test_stage_results_are_stored_once,
    test_submit_is_idempotent_per_study_and_content,
    test_submit_rejects_malformed_keys,
)

__all__ = [
    "test_a_rerun_of_finished_content_is_a_new_job_and_plain_submits_find_the_newest",
    "test_cancel_applies_to_active_jobs_only",
    "test_claim_leases_the_oldest_due_job",
    "test_events_record_every_transition",
    "test_expired_lease_is_taken_over_and_the_old_worker_is_fenced",
    "test_finish_is_final",
    "test_list_filters_orders_and_limits",
    "test_patient_identifiers_and_non_json_values_are_never_stored",
    "test_release_requeues_without_counting_the_attempt",
    "test_renew_lease_keeps_the_job",
    "test_schedule_retry_delays_the_next_claim",
    "test_stage_results_are_stored_once",
    "test_submit_is_idempotent_per_study_and_content",
    "test_submit_rejects_malformed_keys",
]


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    started = start_server_or_fail()
    yield started
    started.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def database_url(server: PostgresServer) -> str:
    return server.create_database()


@pytest.fixture
def store(database_url: str, clock: FakeClock) -> Iterator[PostgresJobStore]:
    with PostgresJobStore(database_url, clock=clock) as opened:
        yield opened


def test_open_job_store_picks_postgresql_by_url(database_url: str) -> None:
    opened = open_job_store(database_url, sqlite_path=Path("/nonexistent/jobs.db"))
    try:
        assert isinstance(opened, PostgresJobStore) and opened.schema_version() == SCHEMA_VERSION
    finally:
        opened.close()


def test_replicas_starting_together_migrate_once(database_url: str, clock: FakeClock) -> None:
    opened: list[PostgresJobStore] = []
    errors: list[BaseException] = []
    go = threading.Barrier(4, timeout=30)

    def open_one() -> None:
        try:
            go.wait()
            opened.append(PostgresJobStore(database_url, clock=clock))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(opened) == 4
    assert {store.schema_version() for store in opened} == {SCHEMA_VERSION}
    for store in opened:
        store.close()


def test_concurrent_claims_from_several_replicas_never_share_a_job(database_url: str) -> None:
    """Four store instances (as four replicas), two threads each, claiming 60 jobs at once: each claimed once."""
    stores = [PostgresJobStore(database_url) for _ in range(4)]
    for n in range(60):
        stores[0].submit(f"s{n}", digest(str(n)), {})
    claimed: list[str] = []
    lock = threading.Lock()

    def claim_all(store: PostgresJobStore, worker: str) -> None:
        while (job := store.claim_next(worker, 60.0)) is not None:
            with lock:
                claimed.append(job.job_id)

    threads = [
        threading.Thread(target=claim_all, args=(store, f"replica{i}:{t}"))
        for i, store in enumerate(stores)
        for t in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    try:
        assert len(claimed) == 60 and len(set(claimed)) == 60
    finally:
        for store in stores:
            store.close()


def test_concurrent_submissions_of_one_content_create_one_job(database_url: str) -> None:
    stores = [PostgresJobStore(database_url) for _ in range(4)]
    results: list[tuple[str, bool]] = []
    go = threading.Barrier(4, timeout=30)

    def submit(store: PostgresJobStore) -> None:
        go.wait()
        results.append(store.submit("s", digest("same"), {}))

    threads = [threading.Thread(target=submit, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert len(results) == 4 and len({job_id for job_id, _ in results}) == 1
        assert sum(created for _, created in results) == 1
    finally:
        for store in stores:
            store.close()


def test_a_restarted_replica_frees_its_own_jobs_at_once(store: PostgresJobStore) -> None:
    store.submit("a", digest("a"), {})
    store.submit("b", digest("b"), {})
    mine = store.claim_next("replica-1:100:aaaa:0", 120.0)
    theirs = store.claim_next("replica-10:200:bbbb:0", 120.0)
    assert mine is not None and theirs is not None
    assert store.claim_next("replica-1:300:cccc:0", 120.0) is None  # both leased for 120 s

    assert store.expire_leases_of("replica-1:") == 1  # not replica-10's
    again = store.claim_next("replica-1:300:cccc:0", 120.0)
    assert again is not None and again.job_id == mine.job_id and again.attempts == 2
    other = store.get(theirs.job_id)
    assert other is not None and other.lease_owner == "replica-10:200:bbbb:0"


def test_list_filters_by_time_model_and_pages_without_gaps(store: PostgresJobStore, clock: FakeClock) -> None:
    _check_filters_and_paging(store, clock)


def _check_filters_and_paging(store: PostgresJobStore, clock: FakeClock) -> None:
    ids = []
    for n in range(7):
        request = {"model_ids": ["seed003-ct-dfs"]} if n % 2 == 0 else {}
        ids.append(store.submit(f"s{n}", digest(str(n)), request)[0])
        clock.advance(60)
    job = store.claim_next("w", 60.0)
    assert job is not None and job.job_id == ids[0]
    store.save_stage_result(ids[1], "features", {"models": {"m@1": {"model_id": "other-model"}}})

    pages: list[list[str]] = []
    token = ""
    while True:
        page = store.list(limit=3, page_token=token)
        pages.append([j.job_id for j in page])
        if len(page) < 3:
            break
        token = encode_page_token(page[-1].created_at, page[-1].job_id)
    assert [len(p) for p in pages] == [3, 3, 1] and [i for p in pages for i in p] == list(reversed(ids))

    created = [store.get(i).created_at for i in ids]  # type: ignore[union-attr]
    window = store.list(where=JobFilter(created_from=created[2], created_to=created[5]))
    assert [j.job_id for j in window] == [ids[4], ids[3], ids[2]]
    requested = store.list(where=JobFilter(model_id="seed003-ct-dfs"))
    assert [j.job_id for j in requested] == [ids[6], ids[4], ids[2], ids[0]]
    assert [j.job_id for j in store.list(where=JobFilter(model_id="other-model"))] == [ids[1]]
    assert [j.job_id for j in store.list(where=JobFilter(state=JobState.RUNNING))] == [ids[0]]
    with pytest.raises(InvalidJobError):
        store.list(page_token="not-a-token")
    with pytest.raises(InvalidJobError):
        store.list(where=JobFilter(created_from="yesterday"))


def test_queue_metrics_read_the_shared_database(store: PostgresJobStore, database_url: str) -> None:
    for n in range(3):
        store.submit(f"s{n}", digest(str(n)), {})
    job = store.claim_next("w", 60.0)
    assert job is not None
    store.finish(job.job_id, JobState.DONE, worker_id="w")
    stats = read_postgres_stats(database_url)
    assert stats.jobs_by_state == {"QUEUED": 2, "DONE": 1} and stats.finished_by_state == {"DONE": 1}
    assert stats.oldest_queued_created_at is not None
    with pytest.raises(ConnectionError):
        read_postgres_stats(database_url.rsplit("/", 1)[0] + "/no_such_database")


def test_the_store_reconnects_after_the_database_server_restarts(
    server: PostgresServer, store: PostgresJobStore
) -> None:
    job_id, _ = store.submit("s", digest("x"), {})
    server.crash()
    try:
        with pytest.raises(JobStoreUnavailableError):  # UNAVAILABLE to callers meanwhile, never a hang
            store.get(job_id)
    finally:
        server.start()
    job = store.get(job_id)  # the next call opens a new connection
    assert job is not None and job.state is JobState.QUEUED
    assert store.claim_next("w", 60.0) is not None
