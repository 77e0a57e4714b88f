"""The study state machine (listener/studies.py): what new content does to a study, where a quiet
study goes, and that the transitions the index makes are the documented ones."""

from __future__ import annotations

import pytest

from oncohabitat.listener.studies import (
    TRANSITIONS,
    LateAction,
    LatePolicy,
    StudyState,
    end_of_receiving,
    late_action,
)

DONE = (StudyState.COMPLETE, StudyState.HANDED_OFF, StudyState.REJECTED)


@pytest.mark.parametrize("policy", list(LatePolicy))
def test_a_receiving_study_just_counts_new_content(policy: LatePolicy) -> None:
    assert late_action(StudyState.RECEIVING, policy) is LateAction.NONE


@pytest.mark.parametrize("state", DONE)
def test_a_finished_study_reopens_or_holds_by_the_late_policy(state: StudyState) -> None:
    assert late_action(state, LatePolicy.RERUN) is LateAction.REOPEN
    assert late_action(state, LatePolicy.HOLD) is LateAction.HOLD
    assert (state, StudyState.RECEIVING) in TRANSITIONS  # the reopen is a documented transition


def test_a_quiet_study_completes_when_eligible_and_is_rejected_otherwise() -> None:
    assert end_of_receiving(eligible=True) is StudyState.COMPLETE
    assert end_of_receiving(eligible=False) is StudyState.REJECTED
    for target in (StudyState.COMPLETE, StudyState.REJECTED):
        assert (StudyState.RECEIVING, target) in TRANSITIONS


def test_nothing_leaves_for_handed_off_but_a_complete_study() -> None:
    sources = {source for source, target in TRANSITIONS if target is StudyState.HANDED_OFF}
    assert sources == {StudyState.COMPLETE}
