"""Prometheus metrics of the orchestrator's job queue, read from the job database (SQLite or PostgreSQL) at scrape
time.

Labels are bounded: the job state only (six values), never job, study or patient identifiers. The numbers come
from the database itself, so they are right after a restart and agree across orchestrator replicas.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from oncohabitat.orchestrator.jobs import JobState, parse_rfc3339, utc_now

logger = logging.getLogger(__name__)

TERMINAL_STATES = tuple(state for state in JobState if state.is_terminal)


@dataclass(frozen=True)
class QueueStats:
    """One reading of the job database."""

    jobs_by_state: dict[str, int] = field(default_factory=dict)
    finished_by_state: dict[str, int] = field(default_factory=dict)
    oldest_queued_created_at: datetime | None = None


_JOBS_BY_STATE = "SELECT state, COUNT(*) FROM jobs GROUP BY state"
_FINISHED_BY_STATE = "SELECT state, COUNT(*) FROM job_events WHERE state IN ({marks}) GROUP BY state"
_OLDEST_QUEUED = "SELECT MIN(created_at) FROM jobs WHERE state = {mark}"


def _stats(execute: Callable[[str, Sequence[Any]], Iterable[Sequence[Any]]], mark: str) -> QueueStats:
    """The three queries through ``execute`` (``mark``: the driver's placeholder)."""
    jobs = {str(s): int(n) for s, n in execute(_JOBS_BY_STATE, ())}
    marks = ",".join(mark for _ in TERMINAL_STATES)
    finished = {
        str(s): int(n) for s, n in execute(_FINISHED_BY_STATE.format(marks=marks), [s.value for s in TERMINAL_STATES])
    }
    rows = list(execute(_OLDEST_QUEUED.format(mark=mark), (JobState.QUEUED.value,)))
    oldest = parse_rfc3339(rows[0][0]) if rows and rows[0][0] else None
    return QueueStats(jobs, finished, oldest)


def read_sqlite_stats(path: Path) -> QueueStats:
    """Counts from a SQLite job database (read-only connection; the store's own connections are untouched)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        return _stats(lambda sql, params: conn.execute(sql, params).fetchall(), "?")
    finally:
        conn.close()


def read_postgres_stats(url: str) -> QueueStats:
    """Counts from the PostgreSQL job database (a short-lived connection per scrape; one database for every
    replica, so each replica reports the same figures). Connection failures are raised as ConnectionError."""
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5, application_name="oncohabitat-metrics") as conn:
            return _stats(lambda sql, params: conn.execute(sql.replace("?", "%s"), params).fetchall(), "?")
    except psycopg.Error as exc:
        raise ConnectionError(type(exc).__name__) from exc


class JobQueueCollector(Collector):
    """Jobs per state, jobs finished per terminal state (a counter: terminal events are never removed) and the
    age of the oldest queued job."""

    def __init__(self, read: Callable[[], QueueStats], clock: Callable[[], datetime] = utc_now) -> None:
        self._read = read
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        try:
            stats = self._read()
        except (sqlite3.Error, OSError) as exc:  # database missing or locked: report nothing, say why
            logger.warning("job metrics unavailable: %s", type(exc).__name__)
            return
        jobs = GaugeMetricFamily("oncohabitat_orchestrator_jobs", "Jobs in the database, by state.", labels=["state"])
        for state in JobState:
            jobs.add_metric([state.value], stats.jobs_by_state.get(state.value, 0))
        yield jobs
        finished = CounterMetricFamily(
            "oncohabitat_orchestrator_jobs_finished",
            "Jobs that reached a terminal state (DONE, NEEDS_REVIEW, FAILED, CANCELLED), reruns included.",
            labels=["state"],
        )
        for state in TERMINAL_STATES:
            finished.add_metric([state.value], stats.finished_by_state.get(state.value, 0))
        yield finished
        age = 0.0
        if stats.oldest_queued_created_at is not None:
            age = max(0.0, (self._clock() - stats.oldest_queued_created_at).total_seconds())
        yield GaugeMetricFamily(
            "oncohabitat_orchestrator_queue_oldest_age_seconds",
            "Age of the oldest QUEUED job (0 when the queue is empty), in seconds.",
            value=age,
        )


_registered: dict[int, JobQueueCollector] = {}


def register_sqlite_job_metrics(path: Path, registry: CollectorRegistry = REGISTRY) -> JobQueueCollector:
    """Register (once per registry; a later call replaces the earlier collector) the collector for ``path``."""
    return register_job_metrics(lambda: read_sqlite_stats(path), registry)


def register_postgres_job_metrics(url: str, registry: CollectorRegistry = REGISTRY) -> JobQueueCollector:
    """Register (once per registry, replacing an earlier one) the collector for the PostgreSQL database ``url``."""
    return register_job_metrics(lambda: read_postgres_stats(url), registry)


def register_job_metrics(read: Callable[[], QueueStats], registry: CollectorRegistry = REGISTRY) -> JobQueueCollector:
    """Register (once per registry; a later call replaces the earlier collector) a collector reading ``read``."""
    previous = _registered.pop(id(registry), None)
    if previous is not None:
        registry.unregister(previous)
    collector = JobQueueCollector(read)
    registry.register(collector)
    _registered[id(registry)] = collector
    return collector
