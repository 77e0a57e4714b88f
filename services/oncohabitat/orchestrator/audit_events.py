"""The orchestrator's audit events (:mod:`oncohabitat.common.audit`): ``job_finished`` and ``result_exported``.

``job_finished`` is recorded by wrapping the job store (every path to DONE / NEEDS_REVIEW / FAILED goes through
:meth:`JobStore.finish`); ``result_exported`` by the export stage. Fields are job ids, study keys, states,
destination names and counts: no reasons (free text), no patient data.
"""

from __future__ import annotations

from typing import Any, cast

from oncohabitat.common import audit
from oncohabitat.orchestrator.jobs import JobState
from oncohabitat.orchestrator.jobstore import JobStore

_OUTCOME = {JobState.DONE: audit.SUCCESS, JobState.NEEDS_REVIEW: audit.MINOR_FAILURE}


class _AuditedJobStore:
    """A job store whose ``finish`` records one ``job_finished`` event per job actually finished."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def finish(self, job_id: str, state: JobState, reason: str = "", *, worker_id: str | None = None) -> bool:
        finished = self._store.finish(job_id, state, reason, worker_id=worker_id)
        if finished:
            job = self._store.get(job_id)
            audit.emit(
                "job_finished",
                outcome=_OUTCOME.get(state, audit.SERIOUS_FAILURE),
                user_id=worker_id or "",
                job_id=job_id,
                study_key=job.study_key if job is not None else "",
                state=state.value,
                stage=job.stage if job is not None else "",
            )
        return finished


def audit_job_finishes(store: JobStore) -> JobStore:
    """``store`` with a ``job_finished`` audit event for every job it finishes."""
    return cast(JobStore, _AuditedJobStore(store))


def result_exported(job_id: str, study_key: str, destination: str, ae_title: str, instances: int, ok: bool) -> None:
    """Record one export of a job's result objects to a configured DICOM node."""
    audit.emit(
        "result_exported",
        outcome=audit.SUCCESS if ok else audit.SERIOUS_FAILURE,
        action="C",
        job_id=job_id,
        study_key=study_key,
        destination=destination or "default",
        destination_ae=ae_title,
        instances=instances,
    )
