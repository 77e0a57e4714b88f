"""Stage runner: claims jobs from a :class:`~oncohabitat.orchestrator.jobstore.JobStore` and runs their stages.

Guarantees:

* **Exactly-once persisted results.** Each stage result is stored in its own transaction under the primary key
  (job_id, stage) and only by the worker holding the job's lease; a stage whose result is stored is never
  run again for that job, and later stages always see the stored (first) result.
* **At-least-once stage execution.** A worker can die after a stage's work but before its result is stored
  (``kill -9``, power loss); the next worker that claims the job once the lease expires runs that stage again.
  A stage with external effects (sending objects to PACS, calling a service that writes) must therefore be
  idempotent by design, e.g. deterministic SOP Instance UIDs derived from the job so a resend overwrites.
* **Resumption.** A claimed job skips every stage whose result is persisted, so it resumes at the first
  unfinished stage; ``job.attempts`` tells a stage how many times the job has been claimed.

Errors raised by a stage are classified with :mod:`oncohabitat.orchestrator.retry`: transient ones reschedule
the job with backoff (until ``max_attempts``, then FAILED), anything else fails the job. Recorded reasons are
curated (stage name + error class / gRPC status), never ``str(exc)``, which may carry patient data.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol

from oncohabitat.orchestrator.jobs import (
    InvalidJobError,
    Job,
    JobState,
    JobStoreUnavailableError,
    LeaseLostError,
)
from oncohabitat.orchestrator.jobstore import MAX_KEY_CHARS, JobStore
from oncohabitat.orchestrator.lease import LeaseKeeper
from oncohabitat.orchestrator.retry import RetryPolicy, describe_error, is_transient

logger = logging.getLogger(__name__)

StageResults = Mapping[str, Mapping[str, Any]]


class OutcomeKind(StrEnum):
    """How a stage ended."""

    OK = "ok"
    NEEDS_REVIEW = "needs_review"
    FAILED = "failed"


@dataclass(frozen=True)
class StageOutcome:
    """Result of one stage run; build it with :meth:`ok`, :meth:`needs_review` or :meth:`failed`."""

    kind: OutcomeKind
    result: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""

    @classmethod
    def ok(cls, result: Mapping[str, Any] | None = None) -> StageOutcome:
        """The stage finished; ``result`` (JSON-serialisable, no patient identifiers) is persisted."""
        return cls(OutcomeKind.OK, dict(result or {}))

    @classmethod
    def needs_review(cls, reason: str) -> StageOutcome:
        """The job stops in NEEDS_REVIEW; ``reason`` is curated text for the operator (no patient data)."""
        return cls(OutcomeKind.NEEDS_REVIEW, {}, _require_reason(reason))

    @classmethod
    def failed(cls, reason: str) -> StageOutcome:
        """The job stops in FAILED without retry; ``reason`` is curated text (no patient data)."""
        return cls(OutcomeKind.FAILED, {}, _require_reason(reason))


class Stage(Protocol):
    """One step of the pipeline.

    ``run`` receives the claimed job and the persisted results of earlier stages (read-only, by stage name).
    It may be executed more than once for the same job (see the module docstring), so external effects must
    be idempotent. Raise :class:`~oncohabitat.orchestrator.retry.TransientStageError` (or let a transient
    ``grpc.RpcError`` through) to have the job retried.
    """

    @property
    def name(self) -> str:
        """Unique stage name (the key of its persisted result)."""
        ...

    def run(self, job: Job, previous_results: StageResults) -> StageOutcome:
        """Do the stage's work."""
        ...


@dataclass(frozen=True)
class FunctionStage:
    """A :class:`Stage` made of a name and a function."""

    name: str
    fn: Callable[[Job, StageResults], StageOutcome]

    def run(self, job: Job, previous_results: StageResults) -> StageOutcome:
        """Call ``fn``."""
        return self.fn(job, previous_results)


class JobRunner:
    """Runs claimed jobs through ``stages`` in order, in the caller's thread (:meth:`run_once`) or a
    background thread (:meth:`start` / :meth:`stop`).

    Args:
        store: The job store (shared with the servicer).
        stages: The pipeline, in order; names must be unique.
        worker_id: Identity of this worker in leases (unique per process, e.g. ``host:pid``).
        lease_s: Lease length in seconds: how soon a crashed worker's job is taken over.
        poll_interval_s: Idle wait between claims when nothing is due, in seconds.
        retry_policy: Backoff and attempt cap for transient errors.
        heartbeat: Renew the lease every ``lease_s / 3`` s while a stage runs (so stages may outlast it).
        rng: Random source for backoff jitter (seed it in tests).
    """

    def __init__(
        self,
        store: JobStore,
        stages: Sequence[Stage],
        worker_id: str,
        lease_s: float = 60.0,
        poll_interval_s: float = 1.0,
        retry_policy: RetryPolicy | None = None,
        *,
        heartbeat: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        names = [stage.name for stage in stages]
        if not names:
            raise InvalidJobError("a runner needs at least one stage", "stages")
        if not all(isinstance(name, str) and name.strip() and len(name) <= MAX_KEY_CHARS for name in names):
            raise InvalidJobError(f"stage names must be non-empty strings of at most {MAX_KEY_CHARS} characters")
        if len(set(names)) != len(names):
            raise InvalidJobError("stage names must be unique", "stages")
        if not worker_id:
            raise InvalidJobError("worker_id must not be empty", "worker_id")
        if lease_s <= 0 or poll_interval_s <= 0:
            raise InvalidJobError("lease_s and poll_interval_s must be positive seconds")
        self._store = store
        self._stages = tuple(stages)
        self._worker_id = worker_id
        self._lease_s = float(lease_s)
        self._poll_interval_s = float(poll_interval_s)
        self._policy = retry_policy or RetryPolicy()
        self._heartbeat = heartbeat
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def worker_id(self) -> str:
        """This worker's lease identity."""
        return self._worker_id

    # ------------------------------------------------------------------ thread control

    def start(self) -> None:
        """Run :meth:`run_once` in a loop on a daemon thread until :meth:`stop`."""
        if self.is_alive():
            raise RuntimeError("runner already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"job-runner-{self._worker_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the loop to stop after the current stage (its job is released) and wait up to ``timeout`` s.

        Returns:
            True when the background thread has ended (or never ran).
        """
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        """True while the background thread runs (for health checks)."""
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.run_once()
            except JobStoreUnavailableError as exc:
                logger.error("job runner %s: %s", self._worker_id, exc.public_message)
                job = None
            if job is None:
                self._stop.wait(self._poll_interval_s)

    # ------------------------------------------------------------------ processing

    def run_once(self) -> Job | None:
        """Claim one due job and run its remaining stages.

        Returns:
            The job as stored afterwards, or None when nothing was due.
        """
        job = self._store.claim_next(self._worker_id, self._lease_s)
        if job is None:
            return None
        logger.info("job %s: claimed by %s (attempt %d)", job.job_id, self._worker_id, job.attempts)
        try:
            self._process(job)
        except LeaseLostError:
            current = self._store.get(job.job_id)
            state = current.state.value if current is not None else "missing"
            logger.warning("job %s: no longer leased to %s (now %s); dropped", job.job_id, self._worker_id, state)
        return self._store.get(job.job_id)

    def run_until_idle(self, max_jobs: int = 10_000) -> int:
        """Call :meth:`run_once` until nothing is due (or ``max_jobs`` claims); returns the number of claims."""
        count = 0
        while count < max_jobs and self.run_once() is not None:
            count += 1
        return count

    def _process(self, job: Job) -> None:
        store, worker = self._store, self._worker_id
        if not self._policy.can_retry(job.attempts - 1):
            reason = f"gave up after {job.attempts - 1} attempts (worker crashes or expired leases)"
            store.finish(job.job_id, JobState.FAILED, reason, worker_id=worker)
            logger.error("job %s: %s", job.job_id, reason)
            return
        results: dict[str, Mapping[str, Any]] = dict(store.load_stage_results(job.job_id))
        for stage in self._stages:
            if stage.name in results:
                logger.debug("job %s: stage %s already finished; skipped", job.job_id, stage.name)
                continue
            if self._stop.is_set():
                store.release(job.job_id, worker)
                logger.info("job %s: released before stage %s (runner stopping)", job.job_id, stage.name)
                return
            store.begin_stage(job.job_id, worker, stage.name, self._lease_s)  # LeaseLostError if cancelled
            outcome = self._run_stage(stage, job, results)
            if outcome is None:
                return
            if outcome.kind is OutcomeKind.OK:
                if not self._persist(job, stage.name, outcome, results):
                    return
                continue
            state = JobState.NEEDS_REVIEW if outcome.kind is OutcomeKind.NEEDS_REVIEW else JobState.FAILED
            store.finish(job.job_id, state, f"stage {stage.name!r}: {outcome.reason}", worker_id=worker)
            logger.info("job %s: %s at stage %s", job.job_id, state.value, stage.name)
            return
        store.finish(job.job_id, JobState.DONE, "", worker_id=worker)
        logger.info("job %s: done", job.job_id)

    def _persist(self, job: Job, stage_name: str, outcome: StageOutcome, results: dict[str, Mapping[str, Any]]) -> bool:
        """Store an OK stage's result and add it to ``results``; False when the job failed instead."""
        try:
            stored = self._store.save_stage_result(job.job_id, stage_name, outcome.result, worker_id=self._worker_id)
        except InvalidJobError as exc:
            reason = f"stage {stage_name!r}: {exc.public_message}"
            self._store.finish(job.job_id, JobState.FAILED, reason, worker_id=self._worker_id)
            return False
        if stored:
            results[stage_name] = dict(outcome.result)
        else:  # another execution persisted first (cannot happen under fencing): its result is the one kept
            logger.warning("job %s: stage %s result was already stored; keeping it", job.job_id, stage_name)
            results.update(self._store.load_stage_results(job.job_id))
        return True

    def _run_stage(self, stage: Stage, job: Job, results: Mapping[str, Mapping[str, Any]]) -> StageOutcome | None:
        """Run one stage; returns its outcome, or None when the job was already moved on (retry / failure)."""
        try:
            if self._heartbeat:
                with LeaseKeeper(self._store, job.job_id, self._worker_id, self._lease_s):
                    outcome = stage.run(job, MappingProxyType(results))
            else:
                outcome = stage.run(job, MappingProxyType(results))
        except Exception as exc:  # noqa: BLE001 - every stage error is classified and recorded (class name only)
            self._handle_error(job, stage.name, exc)
            return None
        if not isinstance(outcome, StageOutcome):
            reason = f"stage {stage.name!r} returned {type(outcome).__name__} instead of a StageOutcome"
            self._store.finish(job.job_id, JobState.FAILED, reason, worker_id=self._worker_id)
            return None
        return outcome

    def _handle_error(self, job: Job, stage_name: str, exc: Exception) -> None:
        what = describe_error(exc)
        if not is_transient(exc):
            reason = f"stage {stage_name!r}: {what}"
            self._store.finish(job.job_id, JobState.FAILED, reason, worker_id=self._worker_id)
            logger.error("job %s: failed at stage %s (%s)", job.job_id, stage_name, what)
            return
        if not self._policy.can_retry(job.attempts):
            reason = f"stage {stage_name!r}: transient {what} persisted after {job.attempts} attempts"
            self._store.finish(job.job_id, JobState.FAILED, reason, worker_id=self._worker_id)
            logger.error("job %s: %s", job.job_id, reason)
            return
        delay_s = self._policy.delay_s(job.attempts, self._rng)
        reason = (
            f"stage {stage_name!r}: transient {what} on attempt {job.attempts} of {self._policy.max_attempts}; "
            f"retrying in {delay_s:.1f} s"
        )
        self._store.schedule_retry(job.job_id, delay_s, reason, worker_id=self._worker_id)
        logger.warning("job %s: %s", job.job_id, reason)


def _require_reason(reason: str) -> str:
    text = str(reason).strip()
    if not text:
        raise InvalidJobError("a needs_review / failed outcome needs a reason", "reason")
    return text
