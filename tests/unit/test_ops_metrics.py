"""Metrics added for the deployment's alerts: the orchestrator's job queue and the scoring drift histogram."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from prometheus_client import REGISTRY, CollectorRegistry

from oncohabitat.orchestrator.jobs import JobState
from oncohabitat.orchestrator.jobstore import SqliteJobStore
from oncohabitat.orchestrator.metrics import JobQueueCollector, read_sqlite_stats, register_sqlite_job_metrics
from oncohabitat.scoring.metrics import SCORES, observe_score


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_job_queue_metrics_count_states_finishes_and_queue_age(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite3"
    with SqliteJobStore(db) as store:
        for name in "abc":
            store.submit(f"study-{name}", _digest(name), {"model_ids": ["m"]})
        for state in (JobState.DONE, JobState.FAILED):
            claimed = store.claim_next("w", 60)
            assert claimed is not None
            store.finish(claimed.job_id, state, "" if state is JobState.DONE else "stage 'x': boom", worker_id="w")
        oldest = read_sqlite_stats(db).oldest_queued_created_at
        assert oldest is not None

        registry = CollectorRegistry()
        register_sqlite_job_metrics(db, registry)
        register_sqlite_job_metrics(db, registry)  # a second build replaces the first collector
        value = registry.get_sample_value
        assert value("oncohabitat_orchestrator_jobs", {"state": "QUEUED"}) == 1
        assert value("oncohabitat_orchestrator_jobs", {"state": "RUNNING"}) == 0
        assert value("oncohabitat_orchestrator_jobs_finished_total", {"state": "DONE"}) == 1
        assert value("oncohabitat_orchestrator_jobs_finished_total", {"state": "FAILED"}) == 1
        assert value("oncohabitat_orchestrator_jobs_finished_total", {"state": "NEEDS_REVIEW"}) == 0
        assert value("oncohabitat_orchestrator_queue_oldest_age_seconds") is not None

        later = JobQueueCollector(lambda: read_sqlite_stats(db), clock=lambda: oldest + timedelta(seconds=90))
        ages = [m for m in later.collect() if m.name == "oncohabitat_orchestrator_queue_oldest_age_seconds"]
        assert ages[0].samples[0].value == 90.0


def test_job_queue_metrics_report_nothing_without_a_database(tmp_path: Path) -> None:
    collector = JobQueueCollector(lambda: read_sqlite_stats(tmp_path / "missing.sqlite3"))
    assert list(collector.collect()) == []


def test_scores_are_observed_per_model_id_only() -> None:
    labels = {"model_id": "ops-test-model"}
    before = REGISTRY.get_sample_value("oncohabitat_scoring_score_count", labels) or 0.0
    observe_score(cast(Any, SimpleNamespace(model_id="ops-test-model", score=0.42)))
    observe_score(cast(Any, SimpleNamespace(model_id="ops-test-model", score=float("nan"))))
    assert REGISTRY.get_sample_value("oncohabitat_scoring_score_count", labels) == before + 1
    assert REGISTRY.get_sample_value("oncohabitat_scoring_score_bucket", {**labels, "le": "0.5"}) == before + 1
    assert SCORES._labelnames == ("model_id",)
