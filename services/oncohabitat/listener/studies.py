"""Study life cycle: the states, the transitions the index makes, and what a new instance does to a study.

Pure decisions, no SQL: :mod:`.index` applies them inside its transactions (each transition is
one committed transaction, so a study is never seen between two states). Times are Unix epoch
seconds (wall clock) so that quiet periods and hand-off backoff survive a restart. States follow
``oncohabitat.v1.StudyState``::

    RECEIVING --quiet period, eligible--> COMPLETE --hand-off ok--> HANDED_OFF
    RECEIVING --quiet period, not eligible--> REJECTED (reason says why)
                                 COMPLETE --hand-off refused--> REJECTED
    COMPLETE | HANDED_OFF | REJECTED --new instance, late policy RERUN--> RECEIVING
    COMPLETE | HANDED_OFF | REJECTED --ResubmitStudy--> COMPLETE

"Study updated" path: a new instance (not a byte-identical re-send) for a COMPLETE, HANDED_OFF or
REJECTED study is always stored, counted (``updates``) and audited, then handled by the
:class:`LatePolicy`:

* ``RERUN`` (default): the study reopens to RECEIVING, completes again after a new quiet period and
  is handed off with its new content digest (a new job);
* ``HOLD``: the study keeps its state; ``late_instances`` counts what was held and ``reason`` says
  so; ``ResubmitStudy`` re-runs it with everything stored.

A byte-identical re-send changes nothing (no reopen, no new job).

Contract about "acknowledged": an acknowledged instance is never lost to a transition: a study
only leaves RECEIVING once no acknowledged instance of it is pending (the completion monitor asks
the store, :meth:`~.storage.InstanceStore.has_pending`), and one that arrives later reopens or is
held by the late policy, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "TRANSITIONS",
    "AddOutcome",
    "AddResult",
    "LateAction",
    "LatePolicy",
    "StudyState",
    "end_of_receiving",
    "late_action",
]


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
    """Result of :meth:`~.index.StudyIndex.add_instance`.

    ``reopened_from``: the state the study left (RERUN policy); ``held_in``: the state it kept
    while holding a late instance (HOLD policy).
    """

    outcome: AddOutcome
    reopened_from: StudyState | None = None
    held_in: StudyState | None = None


class LateAction(StrEnum):
    """What new content does to a study, by its state and the :class:`LatePolicy`."""

    NONE = "none"  # the study is RECEIVING: it just counts the instance
    HOLD = "hold"  # it keeps its state and counts a held late instance
    REOPEN = "reopen"  # it goes back to RECEIVING (a new quiet period, a new hand-off)


_R, _C, _H, _X = StudyState.RECEIVING, StudyState.COMPLETE, StudyState.HANDED_OFF, StudyState.REJECTED
#: Every state change the index makes: ``(from, to) -> what causes it`` (see the module doc).
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
