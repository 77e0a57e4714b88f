"""Durable job store: the :class:`JobStore` protocol, and :func:`open_job_store` choosing its back end.

Three tables: ``jobs`` (one row per (study_key, content_digest, run): ``run`` 0 is the study content's job,
an operator's re-run adds the next; see :meth:`JobStore.submit`), ``stage_results`` (one row per finished
stage, primary key (job_id, stage), so each stage result is persisted exactly once; ``seq`` keeps their
order) and ``job_events`` (numbered state/stage changes for ``WatchJob``). A worker *claims* a job with a
time-limited lease; a job whose lease expired (its worker died, e.g. ``kill -9``) is claimable again, which
is how work resumes after a crash. Fenced calls (``worker_id=...``) refuse to touch a job the caller no
longer owns.

Back ends (same schema, each with its own migrations):

* :class:`~oncohabitat.orchestrator.jobstore_sqlite.SqliteJobStore` — one file, one orchestrator (default);
* :class:`~oncohabitat.orchestrator.jobstore_postgres.PostgresJobStore` — several replicas sharing the queue
  (``SELECT ... FOR UPDATE SKIP LOCKED`` claims), chosen by a ``postgresql://`` URL.

The portable SQL lives in :mod:`~oncohabitat.orchestrator.jobstore_sql`.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from oncohabitat.orchestrator.jobs import InvalidJobError, Job, JobEvent, JobState, utc_now
from oncohabitat.orchestrator.jobstore_common import MAX_KEY_CHARS, MAX_LIST_LIMIT, JobFilter
from oncohabitat.orchestrator.jobstore_sqlite import SCHEMA_VERSION, SqliteJobStore

__all__ = [
    "MAX_KEY_CHARS",
    "MAX_LIST_LIMIT",
    "SCHEMA_VERSION",
    "Job",
    "JobEvent",
    "JobFilter",
    "JobState",
    "JobStore",
    "SqliteJobStore",
    "is_postgres_url",
    "open_job_store",
]


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

    def list(
        self,
        state: JobState | None = None,
        limit: int = 100,
        *,
        where: JobFilter | None = None,
        page_token: str = "",
    ) -> builtins.list[Job]:
        """Newest jobs first, optionally filtered; ``page_token`` continues after an earlier page's last job."""
        ...

    def claim_next(self, worker_id: str, lease_s: float) -> Job | None:
        """Atomically lease the next due job to ``worker_id`` for ``lease_s`` seconds (RUNNING)."""
        ...

    def expire_leases_of(self, owner_prefix: str) -> int:
        """Make RUNNING jobs of owners starting with ``owner_prefix`` claimable now (a restarted replica's own)."""
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
        """QUEUED/RUNNING -> CANCELLED (a running job stops at its next stage boundary); finished jobs unchanged."""
        ...

    def events_since(self, job_id: str, seq: int = 0) -> builtins.list[JobEvent]:
        """Events of a job with a sequence number above ``seq``, oldest first."""
        ...

    def schema_version(self) -> int:
        """Highest applied schema migration."""
        ...

    def close(self) -> None:
        """Release the database connection(s)."""
        ...


def is_postgres_url(url: str) -> bool:
    """True for ``postgresql://`` / ``postgres://`` connection URIs."""
    return url.startswith(("postgresql://", "postgres://"))


def open_job_store(
    database_url: str, sqlite_path: Path, *, clock: Callable[[], datetime] = utc_now
) -> SqliteJobStore | JobStore:
    """The store a deployment configured: PostgreSQL for a ``postgresql://`` URL, else SQLite.

    Args:
        database_url: ``postgresql://...``, ``sqlite:///ABSOLUTE/PATH``, or empty for ``sqlite_path``.
        sqlite_path: The SQLite file used when ``database_url`` is empty.
    """
    if not database_url:
        return SqliteJobStore(sqlite_path, clock=clock)
    if database_url.startswith("sqlite:///"):
        return SqliteJobStore(Path(database_url.removeprefix("sqlite://")), clock=clock)
    if is_postgres_url(database_url):
        from oncohabitat.orchestrator.jobstore_postgres import PostgresJobStore  # psycopg only where needed

        return PostgresJobStore(database_url, clock=clock)
    raise InvalidJobError("database_url must be postgresql://..., sqlite:///PATH or empty", "database_url")
