"""Study completion: quiet period, optional expected-series rules, classification, eligibility.

A RECEIVING study completes when no new instance arrived for ``quiet_period_s``, or earlier, once
every :class:`ExpectedSeriesRule` is satisfied and it has been quiet for ``settle_period_s``. It is then
classified (:mod:`.classify`): an ineligible study ends REJECTED (with the reason code) under
:attr:`HandoffPolicy.ELIGIBLE` and is handed off under :attr:`HandoffPolicy.ALL` (default: the
orchestrator also serves CT and masked single-series studies).

State lives in the index (epoch s), so completion survives a restart. Downtime is not quiet time (no
sender reaches a stopped listener): quiet periods count from :meth:`CompletionMonitor.start` at the
earliest, so that a slow restart does not complete (and hand off, half-received) every study whose
push it interrupted.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from oncohabitat.listener import audit, metrics
from oncohabitat.listener._worker import PollingWorker
from oncohabitat.listener.classify import StudyVerdict
from oncohabitat.listener.errors import ListenerConfigError
from oncohabitat.listener.index import SeriesCount, StudyIndex

_LOG = logging.getLogger(__name__)

#: Called with ``(study_key, content_digest)`` after a study became COMPLETE.
CompletionCallback = Callable[[str, str], None]
#: Classifies a study by key at completion.
Classifier = Callable[[str], StudyVerdict]


class HandoffPolicy(StrEnum):
    """Which completed studies are handed off (see module doc)."""

    ALL = "all"
    ELIGIBLE = "eligible"


@dataclass(frozen=True)
class ExpectedSeriesRule:
    """A series the study is expected to contain: SeriesDescription matching ``pattern``
    (case-insensitive regular expression) with at least ``min_instances`` instances."""

    pattern: str
    min_instances: int = 1

    def satisfied_by(self, series: Sequence[SeriesCount]) -> bool:
        """True when one series of the study matches."""
        return any(
            s.instance_count >= self.min_instances and re.search(self.pattern, s.series_description, re.IGNORECASE)
            for s in series
        )


def parse_expected_series(text: str) -> tuple[ExpectedSeriesRule, ...]:
    """``"pattern[:min_instances];..."`` (e.g. ``"dyn|dce:100;t2"``) as rules.

    Raises:
        ListenerConfigError: a pattern is not a valid regular expression or the count is not an integer.
    """
    rules = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        pattern, _, count = item.rpartition(":") if re.fullmatch(r".*:\d+", item) else (item, "", "1")
        try:
            re.compile(pattern)
            rules.append(ExpectedSeriesRule(pattern, int(count)))
        except (re.error, ValueError) as exc:
            raise ListenerConfigError(f"expected-series rule {item!r} is invalid") from exc
    return tuple(rules)


class CompletionMonitor:
    """Completes quiet RECEIVING studies (content digest: :func:`identifiers.content_digest`); times in s.

    Args:
        quiet_period_s: without a new instance for this long a study is complete (> 0).
        poll_interval_s: between checks; default ``min(1, quiet_period_s / 4)``.
        on_complete: run after each completion (e.g. ``Outbox.wake``).
        clock: wall clock in epoch seconds.
        expected: expected-series rules allowing completion after ``settle_period_s`` of quiet.
        classifier: classifies a study at completion (None: no classification, always eligible).
        handoff_policy: whether ineligible studies are handed off or REJECTED.
        has_pending: True while a study has acknowledged instances not yet indexed (journal path);
            such a study is not completed until they are.
    """

    def __init__(
        self,
        index: StudyIndex,
        *,
        quiet_period_s: float = 10.0,
        poll_interval_s: float | None = None,
        on_complete: CompletionCallback | None = None,
        clock: Callable[[], float] = time.time,
        expected: Sequence[ExpectedSeriesRule] = (),
        settle_period_s: float = 2.0,
        classifier: Classifier | None = None,
        handoff_policy: HandoffPolicy = HandoffPolicy.ALL,
        has_pending: Callable[[str], bool] | None = None,
    ) -> None:
        if quiet_period_s <= 0 or settle_period_s < 0:
            raise ValueError("quiet period must be > 0 s and settle period >= 0 s")
        self._index = index
        self.quiet_period_s = quiet_period_s
        self._on_complete = on_complete
        self._clock = clock
        self._expected = tuple(expected)
        self._settle_s = min(settle_period_s, quiet_period_s)
        self._classifier = classifier
        self._policy = handoff_policy
        self._has_pending = has_pending
        self._failing: set[str] = set()  # studies whose last completion attempt raised
        self._up_since = float("-inf")  # when start() ran (epoch s): quiet time counts from then at the earliest
        interval = poll_interval_s if poll_interval_s is not None else min(1.0, quiet_period_s / 4)
        self._worker = PollingWorker("listener-completion", self.run_once, max(interval, 0.01))

    def _due(self, study_key: str, last_received_at: float, now: float) -> str | None:
        """The completion rule that applies now, or None when the study must keep waiting."""
        quiet = now - max(last_received_at, self._up_since)  # downtime is not quiet time (module doc)
        if quiet >= self.quiet_period_s:
            return "quiet period"
        if self._expected and quiet >= self._settle_s:
            series = self._index.series_counts(study_key)
            if all(rule.satisfied_by(series) for rule in self._expected):
                return "expected series present"
        return None

    def run_once(self) -> list[str]:
        """Complete every study that is due now; returns their keys (REJECTED ones included).

        A study whose completion fails is logged (key and error type only) and retried at the next poll.
        """
        now = self._clock()
        ended: list[str] = []
        for study_key, last_received_at in self._index.receiving_studies():
            try:
                if self._complete(study_key, last_received_at, now):
                    ended.append(study_key)
                self._failing.discard(study_key)
            except Exception as exc:  # noqa: BLE001 - one study's failure must not stall the others
                metrics.COMPLETION_ERRORS.inc()
                if study_key not in self._failing:  # logged once per failing spell; every failure is counted
                    self._failing.add(study_key)
                    _LOG.error("study %s: completion failed (%s); retried at every poll", study_key, type(exc).__name__)
        return ended

    def _complete(self, study_key: str, last_received_at: float, now: float) -> bool:
        """Complete one RECEIVING study if it is due; True when it ended (completed or REJECTED)."""
        rule = self._due(study_key, last_received_at, now)
        if rule is None or (self._has_pending is not None and self._has_pending(study_key)):
            return False
        verdict = self._classifier(study_key) if self._classifier is not None else None
        code = verdict.reason_code if verdict is not None else ""
        reject = None
        if verdict is not None and not verdict.eligible and self._policy is HandoffPolicy.ELIGIBLE:
            reject = f"not eligible: {code}: {verdict.reason}"
        digest = self._index.complete_study(
            study_key,
            last_received_at,
            now,
            classification=verdict.classification_json if verdict is not None else "",
            eligible=verdict.eligible if verdict is not None else None,
            reject_reason=reject,
        )
        if digest is None:
            return False  # a new instance arrived meanwhile
        study = self._index.get_study(study_key)
        instances = study.instance_count if study is not None else 0
        if study is not None:
            metrics.STUDY_COMPLETION_SECONDS.observe(max(now - study.first_received_at, 0.0))
        if reject is not None:
            metrics.STUDIES_REJECTED.labels(reason=code).inc()
            audit.emit("study_rejected", study_key=study_key, instances=instances, reason_code=code)
            _LOG.info("study %s not eligible (%s)", study_key, code)
            return True
        metrics.STUDIES_COMPLETED.inc()
        audit.emit("study_completed", study_key=study_key, instances=instances, rule=rule, reason_code=code)
        _LOG.info("study %s complete by %s (content digest %s)", study_key, rule, digest[:16])
        if self._on_complete is not None:
            self._on_complete(study_key, digest)
        return True

    def start(self) -> None:
        """Start the background thread (checks at once, then per poll); quiet time counts from now at the earliest."""
        if not self._worker.running:
            self._up_since = self._clock()
        self._worker.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the background thread."""
        self._worker.stop(timeout_s)
