"""Durable job store: the :class:`JobStore` protocol and its SQLite implementation.

Three tables: ``jobs`` (one row per (study_key, content_digest, run): ``run`` 0 is the study content's job,
an operator's re-run adds the next; see :meth:`SqliteJobStore.submit`), ``stage_results`` (one row per finished
stage, primary key (job_id, stage), so each stage result is persisted exactly once; ``seq`` keeps their
order) and ``job_events`` (numbered state/stage changes for ``WatchJob``). A worker *claims* a job with a
time-limited lease; a job whose lease expired (its worker died, e.g. ``kill -9``) is claimable again, which
is how work resumes after a crash. Fenced calls (``worker_id=...``) refuse to touch a job the caller no
longer owns.

Portability: the SQL is plain (TEXT/INTEGER columns, ``ON CONFLICT ... DO NOTHING``, timestamps as
fixed-width RFC 3339 text compared lexicographically). The SQLite specifics are confined to
:meth:`SqliteJobStore._connect` (PRAGMAs), :meth:`SqliteJobStore._write` (``BEGIN IMMEDIATE`` takes the
write lock up front, serialising writers across threads and processes) and ``?`` placeholders. A PostgreSQL
implementation keeps the statements, uses ``%s`` placeholders, a READ COMMITTED transaction and
``SELECT ... FOR UPDATE [SKIP LOCKED]`` in :meth:`SqliteJobStore._lock_job` / the claim query.
"""

from __future__ import annotations

import builtins
import json
import logging
import math
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from oncohabitat.orchestrator.jobs import (
    ACTIVE_STATES,
    FINISH_STATES,
    InvalidJobError,
    Job,
    JobEvent,
    JobNotFoundError,
    JobState,
    JobStoreUnavailableError,
    LeaseLostError,
    check_no_patient_identifiers,
    format_rfc3339,
    utc_now,
)

__all__ = ["Job", "JobEvent", "JobState", "JobStore", "SqliteJobStore"]

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

MAX_REASON_CHARS = 500
MAX_KEY_CHARS = 256
MAX_LIST_LIMIT = 1000
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")

_JOB_COLUMNS = (
    "job_id, study_key, content_digest, state, stage, reason, attempts, next_attempt_at, lease_owner, "
    "lease_expires_at, created_at, updated_at, request_json"
)

# Ordered migrations: (version, statements). Each runs once, in one transaction, recorded in schema_version.
_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """
            CREATE TABLE IF NOT EXISTS jobs (
                job_id TEXT NOT NULL PRIMARY KEY,
                study_key TEXT NOT NULL,
                content_digest TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN
                    ('QUEUED', 'RUNNING', 'DONE', 'NEEDS_REVIEW', 'FAILED', 'CANCELLED')),
                stage TEXT NOT NULL DEFAULT '',
                reason TEXT NOT NULL DEFAULT '',
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TEXT NOT NULL,
                lease_owner TEXT,
                lease_expires_at TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                request_json TEXT NOT NULL,
                UNIQUE (study_key, content_digest)
            )
            """,
            "CREATE INDEX IF NOT EXISTS jobs_state_due_idx ON jobs (state, next_attempt_at)",
            "CREATE INDEX IF NOT EXISTS jobs_created_idx ON jobs (created_at)",
            """
            CREATE TABLE IF NOT EXISTS stage_results (
                job_id TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
                stage TEXT NOT NULL,
                seq INTEGER NOT NULL,
                result_json TEXT NOT NULL,
                finished_at TEXT NOT NULL,
                PRIMARY KEY (job_id, stage)
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS job_events (
                job_id TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
                seq INTEGER NOT NULL,
                state TEXT NOT NULL,
                stage TEXT NOT NULL,
                reason TEXT NOT NULL,
                at TEXT NOT NULL,
                PRIMARY KEY (job_id, seq)
            )
            """,
        ),
    ),
)
# Version 2 adds ``run`` to the jobs' unique key (re-runs of the same content). SQLite cannot change a table
# constraint in place, so the table is rebuilt (SQLite's documented procedure, foreign keys off meanwhile).
_REBUILD_MIGRATIONS = frozenset({2})
_MIGRATIONS = (
    *_MIGRATIONS,
    (
        2,
        (
            """
            CREATE TABLE jobs_v2 (
                job_id TEXT NOT NULL PRIMARY KEY,
                study_key TEXT NOT NULL,
                content_digest TEXT NOT NULL,
                run INTEGER NOT NULL DEFAULT 0 CHECK (run >= 0),
                state TEXT NOT NULL CHECK (state IN
                    ('QUEUED', 'RUNNING', 'DONE', 'NEEDS_REVIEW', 'FAILED', 'CANCELLED')),
                stage TEXT NOT NULL DEFAULT '',
                reason TEXT NOT NULL DEFAULT '',
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TEXT NOT NULL,
                lease_owner TEXT,
                lease_expires_at TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                request_json TEXT NOT NULL,
                UNIQUE (study_key, content_digest, run)
            )
            """,
            f"INSERT INTO jobs_v2 ({_JOB_COLUMNS}, run) SELECT {_JOB_COLUMNS}, 0 FROM jobs",
            "DROP TABLE jobs",
            "ALTER TABLE jobs_v2 RENAME TO jobs",
            "CREATE INDEX IF NOT EXISTS jobs_state_due_idx ON jobs (state, next_attempt_at)",
            "CREATE INDEX IF NOT EXISTS jobs_created_idx ON jobs (created_at)",
        ),
    ),
)
SCHEMA_VERSION = _MIGRATIONS[-1][0]

# A job is due when QUEUED and its retry time has come, or RUNNING with an expired lease (dead worker).
_DUE_CONDITION = "next_attempt_at <= ? AND (state = ? OR (state = ? AND lease_expires_at <= ?))"


class JobStore(Protocol):
    """Durable, multi-worker job storage (see the module docstring for semantics)."""

    def submit(
        self, study_key: str, content_digest: str, request: Mapping[str, Any], *, rerun: bool = False
    ) -> tuple[str, bool]:
        """Queue a job; idempotent per (study_key, content_digest) unless ``rerun``. Returns (job_id, created)."""
        ...

    def get(self, job_id: str) -> Job | None:
        """The job, or None when unknown."""
        ...

    def list(self, state: JobState | None = None, limit: int = 100) -> builtins.list[Job]:
        """Newest jobs first, optionally only those in ``state``."""
        ...

    def claim_next(self, worker_id: str, lease_s: float) -> Job | None:
        """Atomically lease the next due job to ``worker_id`` for ``lease_s`` seconds (RUNNING)."""
        ...

    def renew_lease(self, job_id: str, worker_id: str, lease_s: float) -> bool:
        """Extend the lease to now + ``lease_s`` s; False when the worker no longer owns the job."""
        ...

    def begin_stage(self, job_id: str, worker_id: str, stage: str, lease_s: float) -> None:
        """Record that ``stage`` starts and renew the lease; raises LeaseLostError when not owned."""
        ...

    def save_stage_result(
        self, job_id: str, stage: str, result: Mapping[str, Any], *, worker_id: str | None = None
    ) -> bool:
        """Persist a stage result once; False when one was already stored (the first one is kept)."""
        ...

    def load_stage_results(self, job_id: str) -> dict[str, dict[str, Any]]:
        """Persisted stage results by stage name, in the order they finished."""
        ...

    def finish(self, job_id: str, state: JobState, reason: str = "", *, worker_id: str | None = None) -> bool:
        """Move an active job to DONE / NEEDS_REVIEW / FAILED; False when it had already finished."""
        ...

    def schedule_retry(self, job_id: str, delay_s: float, reason: str, *, worker_id: str | None = None) -> bool:
        """Put a RUNNING job back to QUEUED, claimable after ``delay_s`` seconds."""
        ...

    def release(self, job_id: str, worker_id: str) -> None:
        """Give a RUNNING job back (QUEUED, due now) without counting the attempt."""
        ...

    def cancel(self, job_id: str) -> Job:
        """QUEUED/RUNNING -> CANCELLED; finished jobs are returned unchanged."""
        ...

    def events_since(self, job_id: str, seq: int = 0) -> builtins.list[JobEvent]:
        """Events of a job with a sequence number above ``seq``, oldest first."""
        ...

    def close(self) -> None:
        """Release the database connection(s)."""
        ...


class SqliteJobStore:
    """:class:`JobStore` on one SQLite file (WAL, ``synchronous=FULL``, foreign keys on).

    One connection per store instance, serialised by a lock, so the store may be shared by threads; open
    one store per process. Several processes (or store instances) on the same file are safe: every write
    runs under ``BEGIN IMMEDIATE`` and waits up to ``busy_timeout_s`` seconds for the write lock.

    Args:
        path: Database file (created with its parent directory if missing), or ``":memory:"`` for tests.
        clock: Returns the current aware datetime; injectable so tests can move time (lease expiry).
        busy_timeout_s: How long a call waits for another writer's lock, in seconds.
    """

    def __init__(self, path: str | Path, *, clock: Clock = utc_now, busy_timeout_s: float = 30.0) -> None:
        if busy_timeout_s <= 0 or not math.isfinite(busy_timeout_s):
            raise InvalidJobError("busy_timeout_s must be a positive number of seconds", "busy_timeout_s")
        self._path = str(path)
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = self._connect()
        self._migrate()

    # ------------------------------------------------------------------ sqlite specifics

    def _connect(self) -> sqlite3.Connection:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: no implicit transactions; _write() issues BEGIN IMMEDIATE / COMMIT.
            conn = sqlite3.connect(
                self._path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise JobStoreUnavailableError(type(exc).__name__) from exc
        if self._path != ":memory:" and str(mode).lower() != "wal":
            conn.close()
            raise JobStoreUnavailableError("WAL journal mode could not be enabled")
        return conn

    def pragmas(self) -> dict[str, Any]:
        """Effective connection settings (journal_mode, synchronous, foreign_keys, busy_timeout ms)."""
        with self._read() as conn:
            return {
                name: conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the database write lock from its first statement."""
        with self._lock:
            conn = self._open_conn()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise JobStoreUnavailableError(type(exc).__name__) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise JobStoreUnavailableError(type(exc).__name__) from exc
            except BaseException:
                self._rollback(conn)
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """Autocommit reads (each statement sees a consistent snapshot)."""
        with self._lock:
            conn = self._open_conn()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise JobStoreUnavailableError(type(exc).__name__) from exc

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                logger.warning("rollback of a failed job store transaction failed", exc_info=True)

    def _open_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JobStoreUnavailableError("store is closed")
        return self._conn

    def _lock_job(self, conn: sqlite3.Connection, job_id: str) -> sqlite3.Row:
        """The job's row inside a write transaction (PostgreSQL: ``SELECT ... FOR UPDATE``)."""
        row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError()
        return row

    # ------------------------------------------------------------------ schema

    def _migrate(self) -> None:
        """Apply the pending migrations, each in its own transaction (a table rebuild with foreign keys off)."""
        with self._write() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL PRIMARY KEY, "
                "applied_at TEXT NOT NULL)"
            )
            applied = {int(row[0]) for row in conn.execute("SELECT version FROM schema_version")}
        if max(applied, default=0) > SCHEMA_VERSION:
            raise JobStoreUnavailableError(
                f"job database schema version {max(applied)} is newer than this build supports ({SCHEMA_VERSION})"
            )
        for version, statements in _MIGRATIONS:
            if version in applied:
                continue
            rebuild = version in _REBUILD_MIGRATIONS
            if rebuild:  # outside a transaction, or it is ignored; else DROP TABLE would cascade to the children
                self._open_conn().execute("PRAGMA foreign_keys = OFF")
            try:
                with self._write() as conn:
                    if conn.execute("SELECT 1 FROM schema_version WHERE version = ?", (version,)).fetchone():
                        continue  # another process applied it since we looked (we now hold the write lock)
                    for statement in statements:
                        conn.execute(statement)
                    if rebuild and conn.execute("PRAGMA foreign_key_check").fetchall():
                        raise JobStoreUnavailableError(f"schema migration {version} broke a foreign key")
                    conn.execute(
                        "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (version, self._now_text())
                    )
            finally:
                if rebuild:
                    self._open_conn().execute("PRAGMA foreign_keys = ON")
            logger.info("job store schema migrated to version %d", version)

    def schema_version(self) -> int:
        """Highest applied schema migration."""
        with self._read() as conn:
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    # ------------------------------------------------------------------ helpers

    def _now(self) -> datetime:
        return self._clock()

    def _now_text(self) -> str:
        return format_rfc3339(self._now())

    @staticmethod
    def _append_event(conn: sqlite3.Connection, job_id: str, state: JobState, stage: str, reason: str, at: str) -> None:
        conn.execute(
            "INSERT INTO job_events (job_id, seq, state, stage, reason, at) "
            "SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ? FROM job_events WHERE job_id = ?",
            (job_id, state.value, stage, reason, at, job_id),
        )

    @staticmethod
    def _fence(row: sqlite3.Row, worker_id: str | None) -> None:
        """Raise LeaseLostError unless ``worker_id`` is None or holds the RUNNING job's lease."""
        if worker_id is not None and (row["state"] != JobState.RUNNING or row["lease_owner"] != worker_id):
            raise LeaseLostError()

    # ------------------------------------------------------------------ API

    def submit(
        self, study_key: str, content_digest: str, request: Mapping[str, Any], *, rerun: bool = False
    ) -> tuple[str, bool]:
        """Queue a job for a study's content; the same (study_key, content_digest) returns the existing job.

        Args:
            study_key: Opaque study key (non-empty, at most 256 characters; never a patient identifier).
            content_digest: Hex SHA-256 of the study content (64 hex digits; stored lower case).
            request: JSON-serialisable submission parameters (no patient-identifier keys).
            rerun: an operator's re-run: when this content's newest job has finished, queue a new job
                (next ``run``, new job id) with ``request``; while it is QUEUED or RUNNING it is returned.

        Returns:
            (job_id, created): ``created`` is False when an identical submission already existed, whatever
            its state (its request is kept), and for a re-run of an active job. Without ``rerun`` the
            newest job of the content is returned.
        """
        key = _check_text(study_key, "study_key")
        digest = content_digest.lower() if isinstance(content_digest, str) else ""
        if not _DIGEST_RE.fullmatch(digest):
            raise InvalidJobError("content_digest must be a hex SHA-256 (64 hex digits)", "content_digest")
        request_json = _encode_json(request, "request")
        now = self._now_text()
        job_id = uuid.uuid4().hex
        with self._write() as conn:
            newest = conn.execute(
                "SELECT job_id, run, state FROM jobs WHERE study_key = ? AND content_digest = ? "
                "ORDER BY run DESC LIMIT 1",
                (key, digest),
            ).fetchone()
            if newest is not None and (not rerun or JobState(newest["state"]) in ACTIVE_STATES):
                return str(newest["job_id"]), False
            run = 0 if newest is None else int(newest["run"]) + 1
            conn.execute(
                f"INSERT INTO jobs ({_JOB_COLUMNS}, run) VALUES (?, ?, ?, ?, '', '', 0, ?, NULL, NULL, ?, ?, ?, ?)",
                (job_id, key, digest, JobState.QUEUED.value, now, now, now, request_json, run),
            )
            self._append_event(conn, job_id, JobState.QUEUED, "", "re-run requested" if run else "", now)
            return job_id, True

    def get(self, job_id: str) -> Job | None:
        """The job, or None when unknown."""
        with self._read() as conn:
            row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else _job_from_row(row)

    def list(self, state: JobState | None = None, limit: int = 100) -> builtins.list[Job]:
        """Up to ``limit`` (1..1000) jobs, newest first, optionally only those in ``state``."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidJobError(f"limit must be between 1 and {MAX_LIST_LIMIT}", "limit")
        query = f"SELECT {_JOB_COLUMNS} FROM jobs"
        params: tuple[Any, ...] = ()
        if state is not None:
            query += " WHERE state = ?"
            params = (JobState(state).value,)
        query += " ORDER BY created_at DESC, job_id DESC LIMIT ?"
        with self._read() as conn:
            rows = conn.execute(query, (*params, limit)).fetchall()
        return [_job_from_row(row) for row in rows]

    def claim_next(self, worker_id: str, lease_s: float) -> Job | None:
        """Lease the oldest due job to ``worker_id`` for ``lease_s`` seconds.

        Due: QUEUED with ``next_attempt_at`` reached, or RUNNING with an expired lease (its worker died).
        The job becomes RUNNING, ``attempts`` grows by one and ``reason`` is cleared. Atomic across
        threads and processes. Returns None when nothing is due.
        """
        owner = _check_text(worker_id, "worker_id")
        lease = _check_seconds(lease_s, "lease_s", allow_zero=False)
        now = self._now()
        now_text = format_rfc3339(now)
        expires = format_rfc3339(now + timedelta(seconds=lease))
        due_params = (now_text, JobState.QUEUED.value, JobState.RUNNING.value, now_text)
        with self._write() as conn:
            row = conn.execute(
                f"SELECT job_id, state, stage FROM jobs WHERE {_DUE_CONDITION} "
                "ORDER BY next_attempt_at, created_at, job_id LIMIT 1",
                due_params,
            ).fetchone()
            if row is None:
                return None
            job_id = str(row["job_id"])
            cursor = conn.execute(
                "UPDATE jobs SET state = ?, lease_owner = ?, lease_expires_at = ?, attempts = attempts + 1, "
                f"reason = '', updated_at = ? WHERE job_id = ? AND {_DUE_CONDITION}",
                (JobState.RUNNING.value, owner, expires, now_text, job_id, *due_params),
            )
            if cursor.rowcount != 1:  # another transaction got it first (not possible under BEGIN IMMEDIATE)
                return None
            note = "previous worker's lease expired; resuming" if row["state"] == JobState.RUNNING else ""
            self._append_event(conn, job_id, JobState.RUNNING, str(row["stage"]), note, now_text)
            if note:
                logger.warning("job %s: %s", job_id, note)
            return _job_from_row(self._lock_job(conn, job_id))

    def renew_lease(self, job_id: str, worker_id: str, lease_s: float) -> bool:
        """Extend ``worker_id``'s lease to now + ``lease_s`` s; False when it no longer owns the RUNNING job."""
        lease = _check_seconds(lease_s, "lease_s", allow_zero=False)
        now = self._now()
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET lease_expires_at = ?, updated_at = ? "
                "WHERE job_id = ? AND state = ? AND lease_owner = ?",
                (
                    format_rfc3339(now + timedelta(seconds=lease)),
                    format_rfc3339(now),
                    job_id,
                    JobState.RUNNING.value,
                    worker_id,
                ),
            )
            return cursor.rowcount == 1

    def begin_stage(self, job_id: str, worker_id: str, stage: str, lease_s: float) -> None:
        """Mark ``stage`` as the job's current stage (with an event) and renew the lease.

        Raises:
            LeaseLostError: the job was cancelled, finished or taken over.
            JobNotFoundError: unknown job.
        """
        name = _check_text(stage, "stage")
        lease = _check_seconds(lease_s, "lease_s", allow_zero=False)
        now = self._now()
        now_text = format_rfc3339(now)
        with self._write() as conn:
            self._fence(self._lock_job(conn, job_id), worker_id)
            conn.execute(
                "UPDATE jobs SET stage = ?, lease_expires_at = ?, updated_at = ? WHERE job_id = ?",
                (name, format_rfc3339(now + timedelta(seconds=lease)), now_text, job_id),
            )
            self._append_event(conn, job_id, JobState.RUNNING, name, "", now_text)

    def save_stage_result(
        self, job_id: str, stage: str, result: Mapping[str, Any], *, worker_id: str | None = None
    ) -> bool:
        """Persist ``stage``'s result in its own transaction; the first stored result wins.

        Args:
            result: JSON-serialisable mapping without patient-identifier keys.
            worker_id: When given, only the worker holding the RUNNING job's lease may save.

        Returns:
            True when stored, False when a result for this stage already existed (left unchanged).

        Raises:
            LeaseLostError: ``worker_id`` given and the job is not RUNNING under its lease.
        """
        name = _check_text(stage, "stage")
        result_json = _encode_json(result, f"result of stage {name!r}")
        now = self._now_text()
        with self._write() as conn:
            row = self._lock_job(conn, job_id)
            self._fence(row, worker_id)
            seq = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM stage_results WHERE job_id = ?", (job_id,)
            ).fetchone()[0]
            cursor = conn.execute(
                "INSERT INTO stage_results (job_id, stage, seq, result_json, finished_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (job_id, stage) DO NOTHING",
                (job_id, name, seq, result_json, now),
            )
            if cursor.rowcount != 1:
                return False
            conn.execute("UPDATE jobs SET stage = ?, updated_at = ? WHERE job_id = ?", (name, now, job_id))
            self._append_event(conn, job_id, JobState(row["state"]), name, "", now)
            return True

    def load_stage_results(self, job_id: str) -> dict[str, dict[str, Any]]:
        """Persisted stage results by stage name, in the order they finished (empty for unknown jobs)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT stage, result_json FROM stage_results WHERE job_id = ? ORDER BY seq",
                (job_id,),
            ).fetchall()
        return {str(row["stage"]): json.loads(row["result_json"]) for row in rows}

    def finish(self, job_id: str, state: JobState, reason: str = "", *, worker_id: str | None = None) -> bool:
        """Move an active job to ``state`` (DONE, NEEDS_REVIEW or FAILED) and drop its lease.

        Args:
            reason: Curated, patient-data-free text (clipped to 500 characters).
            worker_id: When given, only the worker holding the RUNNING job's lease may finish it.

        Returns:
            True when the job changed, False when it had already finished (it is left unchanged).
        """
        target = JobState(state)
        if target not in FINISH_STATES:
            raise InvalidJobError("finish() takes DONE, NEEDS_REVIEW or FAILED; use cancel()", "state")
        note = _clip(reason)
        now = self._now_text()
        with self._write() as conn:
            row = self._lock_job(conn, job_id)
            self._fence(row, worker_id)
            if JobState(row["state"]).is_terminal:
                return False
            conn.execute(
                "UPDATE jobs SET state = ?, reason = ?, lease_owner = NULL, lease_expires_at = NULL, "
                "updated_at = ? WHERE job_id = ?",
                (target.value, note, now, job_id),
            )
            self._append_event(conn, job_id, target, str(row["stage"]), note, now)
            return True

    def schedule_retry(self, job_id: str, delay_s: float, reason: str, *, worker_id: str | None = None) -> bool:
        """Put a RUNNING job back to QUEUED, claimable ``delay_s`` seconds from now; drops the lease.

        Returns:
            True when rescheduled, False when the job was not RUNNING (only without ``worker_id``).

        Raises:
            LeaseLostError: ``worker_id`` given and the job is not RUNNING under its lease.
        """
        delay = _check_seconds(delay_s, "delay_s", allow_zero=True)
        note = _clip(reason)
        now = self._now()
        now_text = format_rfc3339(now)
        with self._write() as conn:
            row = self._lock_job(conn, job_id)
            self._fence(row, worker_id)
            if row["state"] != JobState.RUNNING:
                return False
            conn.execute(
                "UPDATE jobs SET state = ?, next_attempt_at = ?, reason = ?, lease_owner = NULL, "
                "lease_expires_at = NULL, updated_at = ? WHERE job_id = ?",
                (JobState.QUEUED.value, format_rfc3339(now + timedelta(seconds=delay)), note, now_text, job_id),
            )
            self._append_event(conn, job_id, JobState.QUEUED, str(row["stage"]), note, now_text)
            return True

    def release(self, job_id: str, worker_id: str) -> None:
        """Give a RUNNING job back (QUEUED, due now, lease dropped); the abandoned attempt is not counted.

        Raises:
            LeaseLostError: the job is not RUNNING under ``worker_id``'s lease.
        """
        now = self._now_text()
        with self._write() as conn:
            row = self._lock_job(conn, job_id)
            self._fence(row, _check_text(worker_id, "worker_id"))
            conn.execute(
                "UPDATE jobs SET state = ?, next_attempt_at = ?, lease_owner = NULL, lease_expires_at = NULL, "
                "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = ? "
                "WHERE job_id = ?",
                (JobState.QUEUED.value, now, now, job_id),
            )
            self._append_event(conn, job_id, JobState.QUEUED, str(row["stage"]), "released by a stopping worker", now)

    def cancel(self, job_id: str) -> Job:
        """Cancel a QUEUED or RUNNING job (its worker stops before the next stage); finished jobs are unchanged.

        Returns:
            The job after the call.

        Raises:
            JobNotFoundError: unknown job.
        """
        now = self._now_text()
        with self._write() as conn:
            row = self._lock_job(conn, job_id)
            if JobState(row["state"]) in ACTIVE_STATES:
                reason = "cancelled on request"
                conn.execute(
                    "UPDATE jobs SET state = ?, reason = ?, lease_owner = NULL, lease_expires_at = NULL, "
                    "updated_at = ? WHERE job_id = ?",
                    (JobState.CANCELLED.value, reason, now, job_id),
                )
                self._append_event(conn, job_id, JobState.CANCELLED, str(row["stage"]), reason, now)
                row = self._lock_job(conn, job_id)
            return _job_from_row(row)

    def events_since(self, job_id: str, seq: int = 0) -> builtins.list[JobEvent]:
        """Events of ``job_id`` with a sequence number above ``seq``, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT job_id, seq, state, stage, reason, at FROM job_events WHERE job_id = ? AND seq > ? "
                "ORDER BY seq",
                (job_id, seq),
            ).fetchall()
        return [
            JobEvent(
                job_id=str(row["job_id"]),
                seq=int(row["seq"]),
                state=JobState(row["state"]),
                stage=str(row["stage"]),
                reason=str(row["reason"]),
                at=str(row["at"]),
            )
            for row in rows
        ]

    def close(self) -> None:
        """Close the connection; later calls raise JobStoreUnavailableError. Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteJobStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _job_from_row(row: sqlite3.Row) -> Job:
    return Job(
        job_id=str(row["job_id"]),
        study_key=str(row["study_key"]),
        content_digest=str(row["content_digest"]),
        state=JobState(row["state"]),
        stage=str(row["stage"]),
        reason=str(row["reason"]),
        attempts=int(row["attempts"]),
        next_attempt_at=str(row["next_attempt_at"]),
        lease_owner=None if row["lease_owner"] is None else str(row["lease_owner"]),
        lease_expires_at=None if row["lease_expires_at"] is None else str(row["lease_expires_at"]),
        created_at=str(row["created_at"]),
        updated_at=str(row["updated_at"]),
        request_json=str(row["request_json"]),
    )


def _check_text(value: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_KEY_CHARS:
        raise InvalidJobError(f"{field} must be a non-empty string of at most {MAX_KEY_CHARS} characters", field)
    if any(ord(char) < 32 for char in value):
        raise InvalidJobError(f"{field} must not contain control characters", field)
    return value


def _check_seconds(value: float, field: str, *, allow_zero: bool) -> float:
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise InvalidJobError(f"{field} must be a finite {'non-negative' if allow_zero else 'positive'} number", field)
    return seconds


def _clip(reason: str) -> str:
    text = str(reason)
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def _encode_json(value: Mapping[str, Any], what: str) -> str:
    """Canonical JSON of a mapping with string keys; rejects patient-identifier keys and non-JSON values."""
    if not isinstance(value, Mapping):
        raise InvalidJobError(f"{what} must be a mapping")
    check_no_patient_identifiers(value, what)
    try:
        return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidJobError(f"{what} is not JSON-serialisable (finite numbers, strings, lists, dicts)") from None
