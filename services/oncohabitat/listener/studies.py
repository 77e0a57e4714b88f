"""Study life cycle: the states, the transitions the index makes, and what a new instance does to a study.

Pure decisions, no SQL: :mod:`.index` applies them, each transition in one committed transaction.
Times are Unix epoch seconds (wall clock) so that quiet periods and hand-off backoff survive a
restart. States follow ``oncohabitat.v1.StudyState``; :data:`TRANSITIONS` lists every transition
with its cause.

A new instance (not a byte-identical re-send, which changes nothing) for a COMPLETE, HANDED_OFF or
REJECTED study is always stored, counted (``updates``) and audited, then handled by the
:class:`LatePolicy`: ``RERUN`` (default) reopens it to RECEIVING (a new quiet period, a new job for
the new content digest); ``HOLD`` keeps its state, counts ``late_instances`` and says so in
``reason``; ``ResubmitStudy`` then re-runs it with everything stored.

An acknowledged instance is never lost to a transition: a study leaves RECEIVING only once none of
its acknowledged instances is pending (:meth:`~.storage.InstanceStore.has_pending`), and one that
arrives later reopens it or is held, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class StudyState(StrEnum):
    """Life-cycle state of a study (names match ``oncohabitat.v1.StudyState`` without prefix)."""

    RECEIVING = "RECEIVING"
    COMPLETE = "COMPLETE"
    HANDED_OFF = "HANDED_OFF"
    REJECTED = "REJECTED"


class AddOutcome(StrEnum):
    """What :meth:`~.index.StudyIndex.add_instance` did with an instance."""

    STORED = "stored"  # new row committed
    IDENTICAL = "identical"  # same SOP Instance UID and same bytes already indexed: nothing changed
    CONFLICT = "conflict"  # same SOP Instance UID, different bytes: first kept, conflict counted
    REPLACED = "replaced"  # same SOP Instance UID, different bytes, replace policy: row now points at the new file


class LatePolicy(StrEnum):
    """What a new instance does to a study that already completed (see module doc)."""

    RERUN = "rerun"
    HOLD = "hold"


@dataclass(frozen=True)
class AddResult:
    """Result of :meth:`~.index.StudyIndex.add_instance`: ``reopened_from`` the state the study left (RERUN),
    ``held_in`` the state it kept while holding a late instance (HOLD)."""

    outcome: AddOutcome
    reopened_from: StudyState | None = None
    held_in: StudyState | None = None


class LateAction(StrEnum):
    """What new content does to a study, by its state and the :class:`LatePolicy`."""

    NONE = "none"  # the study is RECEIVING: it just counts the instance
    HOLD = "hold"  # it keeps its state and counts a held late instance
    REOPEN = "reopen"  # it goes back to RECEIVING (a new quiet period, a new hand-off)


_R, _C, _H, _X = StudyState.RECEIVING, StudyState.COMPLETE, StudyState.HANDED_OFF, StudyState.REJECTED
#: Every state change the index makes: ``(from, to) -> what causes it``.
TRANSITIONS: dict[tuple[StudyState, StudyState], str] = {
    (_R, _C): "quiet period, eligible (StudyIndex.complete_study)",
    (_R, _X): "quiet period, not eligible (StudyIndex.complete_study)",
    (_C, _H): "hand-off ok (StudyIndex.mark_handed_off)",
    (_C, _X): "hand-off refused (StudyIndex.mark_rejected)",
    **{(state, _R): "new instance, late policy RERUN (StudyIndex.add_instance)" for state in (_C, _H, _X)},
    **{(state, _C): "ResubmitStudy (StudyIndex.requeue)" for state in (_C, _H, _X)},
}


def late_action(state: StudyState, policy: LatePolicy) -> LateAction:
    """What new content (a new instance or a replaced one) does to a study in ``state``."""
    if state is StudyState.RECEIVING:
        return LateAction.NONE
    if policy is LatePolicy.HOLD:
        return LateAction.HOLD
    return LateAction.REOPEN


def end_of_receiving(eligible: bool) -> StudyState:
    """The state a quiet RECEIVING study moves to: COMPLETE when eligible, else REJECTED."""
    return StudyState.COMPLETE if eligible else StudyState.REJECTED
