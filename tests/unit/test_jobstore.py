"""SqliteJobStore: idempotent submission, leases and takeover, fencing, stage results, events, durability."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from oncohabitat.orchestrator.jobs import (
    InvalidJobError,
    JobNotFoundError,
    JobState,
    JobStoreUnavailableError,
    LeaseLostError,
    PatientIdentifierError,
    format_rfc3339,
    parse_rfc3339,
)
from oncohabitat.orchestrator.jobstore import SCHEMA_VERSION, SqliteJobStore
from tests.support.clock import FakeClock


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "jobs.db"


@pytest.fixture
def store(db_path: Path, clock: FakeClock) -> Iterator[SqliteJobStore]:
    with SqliteJobStore(db_path, clock=clock) as opened:
        yield opened


def test_submit_is_idempotent_per_study_and_content(store: SqliteJobStore) -> None:
    request = {"model_ids": ["m1"], "instance_paths": ["ab/cd.dcm"]}
    job_id, created = store.submit("study-a", digest("a"), request)
    again_id, again_created = store.submit("study-a", digest("a").upper(), {"model_ids": ["other"]})
    other_id, other_created = store.submit("study-a", digest("a2"), request)

    assert created and not again_created and other_created
    assert again_id == job_id and other_id != job_id
    assert len(job_id) == 32 and int(job_id, 16) >= 0
    job = store.get(job_id)
    assert job is not None
    assert job.state is JobState.QUEUED and job.attempts == 0 and job.stage == "" and job.lease_owner is None
    assert job.request == request  # the first request is kept
    assert job.content_digest == digest("a")
    assert parse_rfc3339(job.created_at) == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert job.created_at.endswith("Z") and job.created_at == job.updated_at
    assert len(store.list()) == 2


@pytest.mark.parametrize(
    ("study_key", "content_digest", "field"),
    [("", digest("x"), "study_key"), ("s", "abc", "content_digest"), ("s", "g" * 64, "content_digest")],
)
def test_submit_rejects_malformed_keys(store: SqliteJobStore, study_key: str, content_digest: str, field: str) -> None:
    with pytest.raises(InvalidJobError) as info:
        store.submit(study_key, content_digest, {})
    assert info.value.field == field
    assert store.list() == []


def test_patient_identifiers_and_non_json_values_are_never_stored(store: SqliteJobStore) -> None:
    with pytest.raises(PatientIdentifierError, match=r"request\.series\[0\]\.PatientName"):
        store.submit("s", digest("x"), {"series": [{"PatientName": "DOE^JANE"}]})
    with pytest.raises(PatientIdentifierError):
        store.submit("s", digest("x"), {"meta": {"(0010,0020)": "12345"}})
    with pytest.raises(InvalidJobError, match="JSON"):
        store.submit("s", digest("x"), {"score": float("nan")})
    assert store.list() == []

    job_id, _ = store.submit("s", digest("x"), {})
    with pytest.raises(PatientIdentifierError):
        store.save_stage_result(job_id, "load", {"accession_number": "A1"})
    with pytest.raises(InvalidJobError, match="JSON"):
        store.save_stage_result(job_id, "load", {"when": datetime.now(UTC)})
    assert store.load_stage_results(job_id) == {}


def test_claim_leases_the_oldest_due_job(store: SqliteJobStore, clock: FakeClock) -> None:
    first, _ = store.submit("s1", digest("1"), {})
    clock.advance(1)
    second, _ = store.submit("s2", digest("2"), {})

    job = store.claim_next("w1", lease_s=30)
    assert job is not None and job.job_id == first
    assert job.state is JobState.RUNNING and job.attempts == 1 and job.lease_owner == "w1"
    assert parse_rfc3339(job.lease_expires_at or "") == clock.now + timedelta(seconds=30)
    other = store.claim_next("w2", lease_s=30)
    assert other is not None and other.job_id == second
    assert store.claim_next("w3", lease_s=30) is None


def test_expired_lease_is_taken_over_and_the_old_worker_is_fenced(store: SqliteJobStore, clock: FakeClock) -> None:
    job_id, _ = store.submit("s", digest("x"), {})
    assert store.claim_next("w1", lease_s=30) is not None
    store.begin_stage(job_id, "w1", "load", lease_s=30)
    # w1 "crashes": it never finishes. Before expiry nobody else may take the job.
    clock.advance(29)
    assert store.claim_next("w2", lease_s=30) is None
    clock.advance(2)
    taken = store.claim_next("w2", lease_s=30)

    assert taken is not None and taken.job_id == job_id
    assert taken.lease_owner == "w2" and taken.attempts == 2 and taken.stage == "load"
    assert "lease expired" in store.events_since(job_id)[-1].reason
    with pytest.raises(LeaseLostError):
        store.save_stage_result(job_id, "load", {"n": 1}, worker_id="w1")
    with pytest.raises(LeaseLostError):
        store.finish(job_id, JobState.DONE, worker_id="w1")
    assert not store.renew_lease(job_id, "w1", 30)
    assert store.save_stage_result(job_id, "load", {"n": 2}, worker_id="w2")
    assert store.finish(job_id, JobState.DONE, worker_id="w2")
    assert store.load_stage_results(job_id) == {"load": {"n": 2}}


def test_renew_lease_keeps_the_job(store: SqliteJobStore, clock: FakeClock) -> None:
    job_id, _ = store.submit("s", digest("x"), {})
    store.claim_next("w1", lease_s=30)
    clock.advance(20)
    assert store.renew_lease(job_id, "w1", 30)
    clock.advance(20)  # 40 s after the claim, 20 s after the renewal
    assert store.claim_next("w2", lease_s=30) is None
    assert not store.renew_lease(job_id, "w2", 30)
    clock.advance(11)
    assert store.claim_next("w2", lease_s=30) is not None


def test_schedule_retry_delays_the_next_claim(store: SqliteJobStore, clock: FakeClock) -> None:
    job_id, _ = store.submit("s", digest("x"), {})
    store.claim_next("w1", lease_s=30)
    assert store.schedule_retry(job_id, 10, "segment: transient", worker_id="w1")
    job = store.get(job_id)
    assert job is not None and job.state is JobState.QUEUED and job.lease_owner is None
    assert job.reason == "segment: transient"
    assert parse_rfc3339(job.next_attempt_at) == clock.now + timedelta(seconds=10)

    clock.advance(9)
    assert store.claim_next("w1", lease_s=30) is None
    clock.advance(1)
    again = store.claim_next("w2", lease_s=30)
    assert again is not None and again.attempts == 2 and again.reason == ""
    assert not store.schedule_retry(store.submit("t", digest("y"), {})[0], 1, "queued job")


def test_release_requeues_without_counting_the_attempt(store: SqliteJobStore) -> None:
    job_id, _ = store.submit("s", digest("x"), {})
    store.claim_next("w1", lease_s=30)
    store.release(job_id, "w1")
    job = store.get(job_id)
    assert job is not None and job.state is JobState.QUEUED and job.attempts == 0
    with pytest.raises(LeaseLostError):
        store.release(job_id, "w1")
    assert store.claim_next("w2", lease_s=30) is not None


def test_finish_is_final(store: SqliteJobStore) -> None:
    job_id, _ = store.submit("s", digest("x"), {})
    store.claim_next("w1", lease_s=30)
    assert store.finish(job_id, JobState.NEEDS_REVIEW, "qc: no lesion", worker_id="w1")
    assert not store.finish(job_id, JobState.DONE)
    job = store.get(job_id)
    assert job is not None and job.state is JobState.NEEDS_REVIEW and job.reason == "qc: no lesion"
    assert job.lease_owner is None and job.lease_expires_at is None
    with pytest.raises(InvalidJobError):
        store.finish(job_id, JobState.CANCELLED)
    with pytest.raises(JobNotFoundError):
        store.finish("0" * 32, JobState.DONE)
    assert store.finish(store.submit("t", digest("y"), {})[0], JobState.FAILED, "x" * 2000)
    assert len(store.list(JobState.FAILED)[0].reason) == 500


def test_cancel_applies_to_active_jobs_only(store: SqliteJobStore) -> None:
    running, _ = store.submit("r", digest("r"), {})
    claimed = store.claim_next("w1", lease_s=30)
    assert claimed is not None and claimed.job_id == running
    queued, _ = store.submit("q", digest("q"), {})
    done, _ = store.submit("d", digest("d"), {})
    store.finish(done, JobState.DONE)

    assert store.cancel(queued).state is JobState.CANCELLED
    cancelled = store.cancel(running)
    assert cancelled.state is JobState.CANCELLED and cancelled.lease_owner is None
    assert store.cancel(done).state is JobState.DONE
    with pytest.raises(LeaseLostError):
        store.begin_stage(running, "w1", "next", lease_s=30)
    with pytest.raises(JobNotFoundError):
        store.cancel("f" * 32)
    assert store.claim_next("w2", lease_s=30) is None


def test_stage_results_are_stored_once(store: SqliteJobStore, clock: FakeClock) -> None:
    job_id, _ = store.submit("s", digest("x"), {})
    store.claim_next("w1", lease_s=30)
    assert store.save_stage_result(job_id, "load", {"n": 1}, worker_id="w1")
    clock.advance(1)
    assert store.save_stage_result(job_id, "segment", {"labels": [1, 2]}, worker_id="w1")
    assert not store.save_stage_result(job_id, "load", {"n": 99}, worker_id="w1")

    assert list(store.load_stage_results(job_id).items()) == [("load", {"n": 1}), ("segment", {"labels": [1, 2]})]
    job = store.get(job_id)
    assert job is not None and job.stage == "segment"
    with pytest.raises(JobNotFoundError):
        store.save_stage_result("0" * 32, "load", {})


def test_events_record_every_transition(store: SqliteJobStore) -> None:
    job_id, _ = store.submit("s", digest("x"), {})
    store.claim_next("w1", lease_s=30)
    store.begin_stage(job_id, "w1", "load", lease_s=30)
    store.save_stage_result(job_id, "load", {}, worker_id="w1")
    store.finish(job_id, JobState.DONE, worker_id="w1")

    events = store.events_since(job_id)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [(e.state, e.stage) for e in events] == [
        (JobState.QUEUED, ""),
        (JobState.RUNNING, ""),
        (JobState.RUNNING, "load"),
        (JobState.RUNNING, "load"),
        (JobState.DONE, "load"),
    ]
    assert [e.seq for e in store.events_since(job_id, 3)] == [4, 5]
    assert store.events_since("0" * 32) == []


def test_list_filters_orders_and_limits(store: SqliteJobStore, clock: FakeClock) -> None:
    ids = []
    for index in range(5):
        ids.append(store.submit(f"s{index}", digest(str(index)), {})[0])
        clock.advance(1)
    store.finish(ids[1], JobState.FAILED, "x")

    assert [j.job_id for j in store.list()] == ids[::-1]
    assert [j.job_id for j in store.list(limit=2)] == [ids[4], ids[3]]
    assert [j.job_id for j in store.list(JobState.FAILED)] == [ids[1]]
    assert store.list(JobState.RUNNING) == []
    with pytest.raises(InvalidJobError):
        store.list(limit=0)


def test_data_and_schema_survive_reopening(db_path: Path, clock: FakeClock) -> None:
    with SqliteJobStore(db_path, clock=clock) as first:
        job_id, _ = first.submit("s", digest("x"), {"model_ids": ["m"]})
        first.claim_next("w1", lease_s=30)
        first.save_stage_result(job_id, "load", {"n": 3}, worker_id="w1")
        assert first.pragmas() == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 30000}

    with SqliteJobStore(db_path, clock=clock) as reopened:
        job = reopened.get(job_id)
        assert job is not None and job.state is JobState.RUNNING and job.request == {"model_ids": ["m"]}
        assert reopened.load_stage_results(job_id) == {"load": {"n": 3}}
        assert [e.seq for e in reopened.events_since(job_id)] == [1, 2, 3]
        assert reopened.schema_version() == SCHEMA_VERSION
        assert reopened.submit("s", digest("x"), {}) == (job_id, False)

    with sqlite3.connect(db_path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_closed_store_refuses_calls(db_path: Path) -> None:
    store = SqliteJobStore(db_path)
    store.close()
    store.close()
    with pytest.raises(JobStoreUnavailableError):
        store.get("0" * 32)


def test_concurrent_claims_from_several_connections_never_share_a_job(db_path: Path) -> None:
    with SqliteJobStore(db_path) as seed:
        submitted = {seed.submit(f"s{i}", digest(str(i)), {})[0] for i in range(40)}
    stores = [SqliteJobStore(db_path) for _ in range(4)]
    claimed: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(index: int) -> None:
        store = stores[index % len(stores)]
        barrier.wait()
        while (job := store.claim_next(f"w{index}", lease_s=60)) is not None:
            with lock:
                claimed.append(job.job_id)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for store in stores:
        store.close()

    assert sorted(claimed) == sorted(submitted)  # every job claimed exactly once


def test_timestamps_are_fixed_width_utc() -> None:
    moment = datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert format_rfc3339(moment) == "2024-01-02T03:04:05.000006Z"
    assert parse_rfc3339(format_rfc3339(moment)) == moment
    with pytest.raises(ValueError, match="naive"):
        format_rfc3339(datetime(2024, 1, 1))


def test_a_rerun_of_finished_content_is_a_new_job_and_plain_submits_find_the_newest(store: SqliteJobStore) -> None:
    first, created = store.submit("s", digest("x"), {"model_ids": []})
    assert created
    assert store.submit("s", digest("x"), {}, rerun=True) == (first, False)  # still QUEUED: no second run
    store.claim_next("w1", lease_s=30)
    assert store.submit("s", digest("x"), {}, rerun=True) == (first, False)  # RUNNING: the same
    assert store.finish(first, JobState.NEEDS_REVIEW, "NO_MODEL", worker_id="w1")
    second, created = store.submit("s", digest("x"), {"model_ids": ["new"]}, rerun=True)
    assert created and second != first
    job = store.get(second)
    assert job is not None and job.state is JobState.QUEUED and job.request == {"model_ids": ["new"]}
    assert [e.reason for e in store.events_since(second)] == ["re-run requested"]
    old = store.get(first)
    assert old is not None and old.state is JobState.NEEDS_REVIEW  # the first run and its history stay
    assert store.submit("s", digest("x"), {}) == (second, False)  # an ordinary re-send finds the newest run


def test_a_version_1_database_is_migrated_with_its_jobs_results_and_events(db_path: Path, clock: FakeClock) -> None:
    db_path.parent.mkdir(parents=True)
    now = "2024-05-01T12:00:00.000000Z"
    with sqlite3.connect(db_path) as raw:  # the schema of version 1, as an earlier release left it
        raw.executescript(
            """
            CREATE TABLE schema_version (version INTEGER NOT NULL PRIMARY KEY, applied_at TEXT NOT NULL);
            CREATE TABLE jobs (
                job_id TEXT NOT NULL PRIMARY KEY, study_key TEXT NOT NULL, content_digest TEXT NOT NULL,
                state TEXT NOT NULL, stage TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',
                attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT NOT NULL, lease_owner TEXT,
                lease_expires_at TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, request_json TEXT NOT NULL,
                UNIQUE (study_key, content_digest));
            CREATE TABLE stage_results (
                job_id TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE, stage TEXT NOT NULL,
                seq INTEGER NOT NULL, result_json TEXT NOT NULL, finished_at TEXT NOT NULL,
                PRIMARY KEY (job_id, stage));
            CREATE TABLE job_events (
                job_id TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE, seq INTEGER NOT NULL,
                state TEXT NOT NULL, stage TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL,
                PRIMARY KEY (job_id, seq));
            """
        )
        raw.execute("INSERT INTO schema_version VALUES (1, ?)", (now,))
        raw.execute(
            "INSERT INTO jobs VALUES ('a' || hex(zeroblob(15)), 's', ?, 'DONE', 'export', '', 1, ?, NULL, NULL, ?, ?, "
            "'{}')",
            (digest("x"), now, now, now),
        )
        job_id = raw.execute("SELECT job_id FROM jobs").fetchone()[0]
        raw.execute("INSERT INTO stage_results VALUES (?, 'load', 1, '{\"n\": 3}', ?)", (job_id, now))
        raw.execute("INSERT INTO job_events VALUES (?, 1, 'QUEUED', '', '', ?)", (job_id, now))
    with SqliteJobStore(db_path, clock=clock) as migrated:
        assert migrated.schema_version() == SCHEMA_VERSION == 2
        job = migrated.get(job_id)
        assert job is not None and job.state is JobState.DONE
        assert migrated.load_stage_results(job_id) == {"load": {"n": 3}}  # children kept (no cascade)
        assert [e.seq for e in migrated.events_since(job_id)] == [1]
        assert migrated.submit("s", digest("x"), {}) == (job_id, False)
        rerun, created = migrated.submit("s", digest("x"), {}, rerun=True)
        assert created and rerun != job_id
        assert migrated.pragmas()["foreign_keys"] == 1


def test_two_processes_migrating_the_same_database_at_once_both_open_it(db_path: Path, clock: FakeClock) -> None:
    """Both read the applied versions before either migrates: the second finds version 2 applied and skips it."""
    with SqliteJobStore(db_path, clock=clock) as first:
        job_id, _ = first.submit("s", digest("x"), {})
    with sqlite3.connect(db_path) as raw:  # back to "version 2 not applied" with the version-1 table layout
        raw.execute("PRAGMA foreign_keys = OFF")
        raw.execute("DELETE FROM schema_version WHERE version = 2")
        raw.execute("CREATE TABLE jobs_v1 AS SELECT * FROM jobs")
        raw.execute("DROP TABLE jobs")
        raw.execute(
            "CREATE TABLE jobs (job_id TEXT NOT NULL PRIMARY KEY, study_key TEXT NOT NULL,"
            " content_digest TEXT NOT NULL, state TEXT NOT NULL, stage TEXT NOT NULL DEFAULT '',"
            " reason TEXT NOT NULL DEFAULT '',"
            " attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT NOT NULL, lease_owner TEXT,"
            " lease_expires_at TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, request_json TEXT NOT NULL,"
            " UNIQUE (study_key, content_digest))"
        )
        columns = "job_id, study_key, content_digest, state, stage, reason, attempts, next_attempt_at, lease_owner, "
        columns += "lease_expires_at, created_at, updated_at, request_json"
        raw.execute(f"INSERT INTO jobs ({columns}) SELECT {columns} FROM jobs_v1")
        raw.execute("DROP TABLE jobs_v1")
    both_read = threading.Barrier(2, timeout=10)

    class ReadsThenWaits(SqliteJobStore):
        """Waits after its first transaction (reading the applied versions) until the other store read too."""

        @contextmanager
        def _write(self) -> Iterator[sqlite3.Connection]:
            with super()._write() as conn:
                yield conn
            if not getattr(self, "_waited", False):
                self._waited = True
                both_read.wait()

    opened: list[SqliteJobStore] = []
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            opened.append(ReadsThenWaits(db_path, clock=clock))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and len(opened) == 2
    for store in opened:
        assert store.schema_version() == SCHEMA_VERSION and store.get(job_id) is not None
        store.close()


def test_a_database_from_a_newer_build_is_refused(db_path: Path, clock: FakeClock) -> None:
    with SqliteJobStore(db_path, clock=clock):
        pass
    with sqlite3.connect(db_path) as raw:
        raw.execute("INSERT INTO schema_version VALUES (?, '2030-01-01T00:00:00.000000Z')", (SCHEMA_VERSION + 1,))
    with pytest.raises(JobStoreUnavailableError, match="newer than this build"):
        SqliteJobStore(db_path, clock=clock)
