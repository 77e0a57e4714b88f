"""Study completion: a study is COMPLETE once no new instance arrived for a quiet period.

The state lives in the index, so completion survives a restart: RECEIVING studies whose quiet
period elapsed while the listener was down complete on the monitor's first poll.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from oncohabitat.listener import metrics
from oncohabitat.listener._worker import PollingWorker
from oncohabitat.listener.index import StudyIndex

_LOG = logging.getLogger(__name__)

#: Called with ``(study_key, content_digest)`` after a study became COMPLETE.
CompletionCallback = Callable[[str, str], None]


class CompletionMonitor:
    """Marks quiet RECEIVING studies COMPLETE (content digest: :func:`identifiers.content_digest`).

    Args:
        index: the study index.
        quiet_period_s: seconds without a new instance after which a study is complete (> 0).
        poll_interval_s: seconds between checks; default ``min(1, quiet_period_s / 4)``.
        on_complete: optional callback (e.g. ``Outbox.wake``-style) run after each completion.
        clock: wall clock in epoch seconds.
    """

    def __init__(
        self,
        index: StudyIndex,
        *,
        quiet_period_s: float = 10.0,
        poll_interval_s: float | None = None,
        on_complete: CompletionCallback | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if quiet_period_s <= 0:
            raise ValueError("quiet period must be > 0 s")
        self._index = index
        self.quiet_period_s = quiet_period_s
        self._on_complete = on_complete
        self._clock = clock
        interval = poll_interval_s if poll_interval_s is not None else min(1.0, quiet_period_s / 4)
        self._worker = PollingWorker("listener-completion", self.run_once, max(interval, 0.01))

    def run_once(self) -> list[str]:
        """Complete every study that is due now; returns their keys."""
        now = self._clock()
        cutoff = now - self.quiet_period_s
        completed: list[str] = []
        for study_key in self._index.studies_due_for_completion(cutoff):
            digest = self._index.complete_study(study_key, cutoff, now)
            if digest is None:
                continue  # a new instance arrived meanwhile
            completed.append(study_key)
            metrics.STUDIES_COMPLETED.inc()
            _LOG.info("study %s complete (content digest %s)", study_key, digest[:16])
            if self._on_complete is not None:
                self._on_complete(study_key, digest)
        return completed

    def start(self) -> None:
        """Start the background thread (it checks at once, then every poll interval)."""
        self._worker.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the background thread."""
        self._worker.stop(timeout_s)
