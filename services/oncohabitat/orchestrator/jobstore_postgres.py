"""The PostgreSQL job store: several orchestrator replicas share one queue.

Same tables and semantics as :mod:`~oncohabitat.orchestrator.jobstore_sqlite` (TEXT timestamps in fixed-width
RFC 3339, compared lexicographically). Differences:

* every write runs in its own READ COMMITTED transaction; the job row it changes is read with
  ``SELECT ... FOR UPDATE`` and a claim with ``FOR UPDATE SKIP LOCKED``, so replicas claim different jobs
  without waiting on each other;
* submissions of one content are serialised with a transaction-scoped advisory lock on (study key, digest);
* migrations run in one transaction under an advisory lock, so replicas starting together migrate once.

One connection per store instance (guarded by a lock, shared by the process's threads); a broken connection
is dropped and re-opened by the next call. Times come from each replica's clock: keep them in sync (NTP) and
the lease well above the expected skew.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import psycopg
from psycopg.rows import dict_row

from oncohabitat.orchestrator.jobs import JobStoreUnavailableError, utc_now
from oncohabitat.orchestrator.jobstore_sql import Clock, SqlJobStore

logger = logging.getLogger(__name__)

_MIGRATION_LOCK_KEY = 0x0C0AB17A  # pg_advisory_xact_lock key held while migrating

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
                CONSTRAINT jobs_content_key UNIQUE (study_key, content_digest)
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
    (
        2,  # ``run`` joins the content key (re-runs); PostgreSQL changes the constraint in place
        (
            "ALTER TABLE jobs ADD COLUMN run INTEGER NOT NULL DEFAULT 0 CHECK (run >= 0)",
            "ALTER TABLE jobs DROP CONSTRAINT jobs_content_key",
            "ALTER TABLE jobs ADD CONSTRAINT jobs_content_run_key UNIQUE (study_key, content_digest, run)",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

_MODEL_CONDITION = (
    "((jobs.request_json::jsonb -> 'model_ids') @> jsonb_build_array(?::text)"
    " OR EXISTS (SELECT 1 FROM stage_results AS s, jsonb_each(s.result_json::jsonb -> 'models') AS m"
    " WHERE s.job_id = jobs.job_id AND s.stage = 'features' AND m.value ->> 'model_id' = ?::text))"
)


class _Connection:
    """A psycopg connection taking the ``?`` placeholders of the portable SQL."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[dict[str, Any]]:
        return self.raw.execute(sql.replace("?", "%s"), tuple(params))


class PostgresJobStore(SqlJobStore):
    """:class:`~oncohabitat.orchestrator.jobstore.JobStore` on a PostgreSQL database shared by replicas.

    Args:
        url: libpq connection URI (``postgresql://user:pass@host:5432/db?sslmode=verify-full``).
        clock: Returns the current aware datetime; injectable so tests can move time (lease expiry).
        connect_timeout_s: Bound of each connection attempt, in seconds.
    """

    _LOCK_ROW = " FOR UPDATE"
    _CLAIM_LOCK = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, clock: Clock = utc_now, connect_timeout_s: float = 10.0) -> None:
        self._url = url
        self._clock = clock
        self._connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._closed = False
        self._conn: _Connection | None = None
        self._migrate()

    # ------------------------------------------------------------------ connection and transactions

    def _open_conn(self) -> _Connection:
        if self._closed:
            raise JobStoreUnavailableError("store is closed")
        if self._conn is None or self._conn.raw.closed:
            try:
                raw = psycopg.connect(
                    self._url,
                    autocommit=True,
                    row_factory=dict_row,
                    connect_timeout=max(1, int(self._connect_timeout_s)),
                    application_name="oncohabitat-orchestrator",
                )
            except psycopg.Error as exc:
                raise JobStoreUnavailableError(f"cannot connect to the job database ({type(exc).__name__})") from exc
            self._conn = _Connection(raw)
        return self._conn

    def _drop_broken(self, exc: psycopg.Error) -> JobStoreUnavailableError:
        if self._conn is not None and (isinstance(exc, psycopg.OperationalError) or self._conn.raw.broken):
            try:
                self._conn.raw.close()
            finally:
                self._conn = None
        return JobStoreUnavailableError(type(exc).__name__)

    @contextmanager
    def _write(self) -> Iterator[_Connection]:
        """One READ COMMITTED transaction; rows are locked by the statements that read them."""
        with self._lock:
            conn = self._open_conn()
            try:
                with conn.raw.transaction():
                    yield conn
            except psycopg.Error as exc:
                raise self._drop_broken(exc) from exc

    @contextmanager
    def _read(self) -> Iterator[_Connection]:
        """Autocommit reads."""
        with self._lock:
            conn = self._open_conn()
            try:
                yield conn
            except psycopg.Error as exc:
                raise self._drop_broken(exc) from exc

    def _serialise_content(self, conn: Any, study_key: str, content_digest: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (f"{study_key}|{content_digest}",))

    def _model_condition(self) -> str:
        return _MODEL_CONDITION

    # ------------------------------------------------------------------ schema

    def _migrate(self) -> None:
        """Apply the pending migrations in one transaction under an advisory lock (replicas start together)."""
        with self._write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL PRIMARY KEY, "
                "applied_at TEXT NOT NULL)"
            )
            applied = {int(row["version"]) for row in conn.execute("SELECT version FROM schema_version").fetchall()}
            if max(applied, default=0) > SCHEMA_VERSION:
                raise JobStoreUnavailableError(
                    f"job database schema version {max(applied)} is newer than this build supports ({SCHEMA_VERSION})"
                )
            for version, statements in MIGRATIONS:
                if version in applied:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (version, self._now_text())
                )
                logger.info("job store schema migrated to version %d", version)

    def schema_version(self) -> int:
        """Highest applied schema migration."""
        with self._read() as conn:
            row = conn.execute("SELECT MAX(version) AS version FROM schema_version").fetchone()
        return int(row["version"] or 0) if row else 0

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the connection; later calls raise JobStoreUnavailableError. Idempotent."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.raw.close()
                self._conn = None

    def __enter__(self) -> PostgresJobStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
