"""The SQLite job store: one file in WAL mode, ``synchronous=FULL``, writers serialised by ``BEGIN IMMEDIATE``.

Good for one orchestrator process (several worker threads, or several processes on one host); several replicas
on several hosts need :mod:`~oncohabitat.orchestrator.jobstore_postgres`.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from oncohabitat.orchestrator.jobs import InvalidJobError, JobStoreUnavailableError, utc_now
from oncohabitat.orchestrator.jobstore_common import JOB_COLUMNS
from oncohabitat.orchestrator.jobstore_sql import Clock, SqlJobStore

logger = logging.getLogger(__name__)

# Ordered migrations: (version, statements). Each runs once, in one transaction, recorded in schema_version.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
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
    # Version 2 adds ``run`` to the jobs' unique key (re-runs of the same content). SQLite cannot change a table
    # constraint in place, so the table is rebuilt (SQLite's documented procedure, foreign keys off meanwhile).
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
            f"INSERT INTO jobs_v2 ({JOB_COLUMNS}, run) SELECT {JOB_COLUMNS}, 0 FROM jobs",
            "DROP TABLE jobs",
            "ALTER TABLE jobs_v2 RENAME TO jobs",
            "CREATE INDEX IF NOT EXISTS jobs_state_due_idx ON jobs (state, next_attempt_at)",
            "CREATE INDEX IF NOT EXISTS jobs_created_idx ON jobs (created_at)",
        ),
    ),
)
_REBUILD_MIGRATIONS = frozenset({2})
SCHEMA_VERSION = MIGRATIONS[-1][0]

_MODEL_CONDITION = (
    "(EXISTS (SELECT 1 FROM json_each(jobs.request_json, '$.model_ids') AS r WHERE r.value = ?)"
    " OR EXISTS (SELECT 1 FROM stage_results AS s, json_each(s.result_json, '$.models') AS m"
    " WHERE s.job_id = jobs.job_id AND s.stage = 'features' AND json_extract(m.value, '$.model_id') = ?))"
)


class SqliteJobStore(SqlJobStore):
    """:class:`~oncohabitat.orchestrator.jobstore.JobStore` on one SQLite file (WAL, ``synchronous=FULL``).

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

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

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

    def _model_condition(self) -> str:
        return _MODEL_CONDITION

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
        for version, statements in MIGRATIONS:
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

    # ------------------------------------------------------------------ lifecycle

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
