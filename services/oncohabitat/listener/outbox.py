"""Durable outbox: hands COMPLETE studies to the orchestrator, retrying with backoff.

The queue is the index itself (COMPLETE studies with ``next_handoff_at <= now``), so pending
hand-offs survive a restart. When a hand-off call (:class:`HandoffFn`)

* returns a non-empty job id: the study becomes HANDED_OFF with that ``job_id``;
* raises :class:`HandoffRejectedError`: the study becomes REJECTED (no retry);
* raises anything else (orchestrator down, timeout) or returns an empty id: the attempt is
  counted and retried after ``min(max_backoff_s, base_backoff_s * 2 ** (attempts - 1))`` s.

Hand-offs run one at a time. Because the receiver deduplicates by content digest, an attempt
whose reply was lost (crash after the call) is harmlessly repeated after a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from oncohabitat.listener import metrics
from oncohabitat.listener._worker import PollingWorker
from oncohabitat.listener.errors import HandoffRejectedError
from oncohabitat.listener.index import StudyIndex, StudyState

_LOG = logging.getLogger(__name__)


class HandoffFn(Protocol):
    """``handoff(study_key, content_digest, instance_paths, rerun=False) -> job_id``; paths are absolute files.

    ``rerun`` (:meth:`Outbox.resubmit`): content whose job finished runs again, as a new job; else same job.
    """

    def __call__(
        self, study_key: str, content_digest: str, instance_paths: Sequence[Path], rerun: bool = False
    ) -> str: ...


class Outbox:
    """Hands COMPLETE studies off through ``handoff`` (see module doc); times in s.

    ``root``: the store root (index paths are relative to it); ``base_backoff_s`` (> 0): the first retry's
    delay, ``max_backoff_s`` its cap; ``clock``: wall clock, epoch s.
    """

    def __init__(
        self,
        index: StudyIndex,
        root: Path,
        handoff: HandoffFn,
        *,
        base_backoff_s: float = 1.0,
        max_backoff_s: float = 300.0,
        poll_interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if base_backoff_s <= 0 or max_backoff_s < base_backoff_s:
            raise ValueError("backoff must satisfy 0 < base_backoff_s <= max_backoff_s")
        self._index = index
        self._root = root
        self._handoff = handoff
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self._clock = clock
        self._handoff_lock = threading.Lock()
        self._worker = PollingWorker("listener-outbox", self.run_once, poll_interval_s)

    def backoff_s(self, attempts: int) -> float:
        """Delay in s after ``attempts`` (>= 1) failed attempts."""
        return float(min(self.max_backoff_s, self.base_backoff_s * 2.0 ** max(attempts - 1, 0)))

    def run_once(self) -> int:
        """Attempt every due hand-off once; returns the number that succeeded."""
        succeeded = 0
        for study in self._index.studies_due_for_handoff(self._clock()):
            with self._handoff_lock:
                succeeded += self._handoff_locked(study.study_key) is not None
        metrics.OUTBOX_PENDING.set(self._index.count_in_state(StudyState.COMPLETE))
        return succeeded

    def resubmit(self, study_key: str) -> str | None:
        """Queue a COMPLETE/HANDED_OFF/REJECTED study again and hand it off now as a re-run.

        The receiver runs it as a new job even with unchanged content (e.g. after a model bundle was
        added), unless that content's job is still queued or running. Returns the job id, or None when
        the study is unknown, still RECEIVING, or the attempt failed (it then stays queued, retried with
        backoff as an ordinary hand-off, which finds the content's newest job: a re-run needs a success).
        """
        with self._handoff_lock:  # the poller must not hand the requeued study off first (without the re-run)
            if self._index.requeue(study_key, self._clock()) is None:
                return None
            return self._handoff_locked(study_key, rerun=True)

    def wake(self) -> None:
        """Check for due hand-offs now (e.g. right after a study completed)."""
        self._worker.wake()

    def start(self) -> None:
        """Start the background thread."""
        self._worker.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the background thread (waits for an in-flight hand-off up to ``timeout_s``)."""
        self._worker.stop(timeout_s)

    def _handoff_locked(self, study_key: str, *, rerun: bool = False) -> str | None:
        """Hand a COMPLETE study off (``_handoff_lock`` held): its job id, None when that failed; a study
        HANDED_OFF meanwhile gives its job id, any other no longer COMPLETE gives None."""
        study = self._index.get_study(study_key)
        if study is None or study.state is not StudyState.COMPLETE or study.content_digest is None:
            return study.job_id if study is not None and study.state is StudyState.HANDED_OFF else None
        digest = study.content_digest
        paths = [self._root / record.path for record in self._index.instances(study_key)]
        try:
            job_id = self._handoff(study_key, digest, paths, rerun=rerun)
            if not job_id:
                raise ValueError("hand-off returned an empty job id")
        except HandoffRejectedError as exc:
            metrics.HANDOFF_FAILURES.labels(kind="rejected").inc()
            self._index.mark_rejected(study_key, f"hand-off rejected: {exc}", digest)
            _LOG.warning("study %s rejected by the hand-off receiver", study_key)
            return None
        except Exception as exc:  # noqa: BLE001 - any transport error is transient: counted and retried
            metrics.HANDOFF_FAILURES.labels(kind="transient").inc()
            attempts = study.handoff_attempts + 1
            delay = self.backoff_s(attempts)
            error = type(exc).__name__
            self._index.record_handoff_failure(study_key, digest, f"hand-off failed ({error})", self._clock() + delay)
            _LOG.warning(
                "hand-off of study %s failed (%s, attempt %d); retry in %.1f s", study_key, error, attempts, delay
            )
            return None
        if self._index.mark_handed_off(study_key, digest, job_id, self._clock()):
            metrics.HANDOFFS.inc()
            _LOG.info("study %s handed off", study_key)
        else:
            _LOG.info("study %s changed during hand-off; it will be handed off again", study_key)
        return job_id
