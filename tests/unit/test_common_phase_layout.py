"""One phase-layout check for every service: the segmentation and regions services refuse the same malformed
``Study.phases`` with the same reason (``PHASES_INVALID``)."""

from __future__ import annotations

import pytest

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.common.phases import PHASES_INVALID, check_layout, phase_role
from oncohabitat.segmentation.servicer import decode_phases
from oncohabitat.v1 import common_pb2

PRE, POST, SINGLE = (
    common_pb2.PHASE_ROLE_PRE_CONTRAST,
    common_pb2.PHASE_ROLE_POST_CONTRAST,
    common_pb2.PHASE_ROLE_SINGLE,
)

MALFORMED = {
    "no phase": [],
    "pre-contrast not at 0": [(PRE, 1), (POST, 2)],
    "post-contrast at 0": [(POST, 0)],
    "duplicated index": [(PRE, 0), (POST, 1), (POST, 1)],
    "single mixed with others": [(SINGLE, 0), (POST, 1)],
    "no role": [(common_pb2.PHASE_ROLE_UNSPECIFIED, 0)],
}


def _study(layout: list[tuple[int, int]]) -> common_pb2.Study:
    return common_pb2.Study(phases=[common_pb2.Phase(role=role, index=index) for role, index in layout])


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_both_services_refuse_a_malformed_layout_with_the_same_reason(case: str) -> None:
    study = _study(MALFORMED[case])
    with pytest.raises(InvalidInputError) as by_check:
        check_layout([(phase_role(p), int(p.index)) for p in study.phases])
    with pytest.raises(InvalidInputError) as by_segmentation:
        decode_phases(study, codec=None, requested_reference=None)  # type: ignore[arg-type]
    assert by_check.value.reason == by_segmentation.value.reason == PHASES_INVALID
    assert by_segmentation.value.field == "study.phases"


def test_a_well_formed_layout_passes_and_subtractions_are_not_phases() -> None:
    check_layout([("pre", 0), ("post", 1), ("post", 2)])
    check_layout([("single", 0)])
    study = _study([(PRE, 0), (POST, 1), (common_pb2.PHASE_ROLE_SUBTRACTION, 1)])
    phases = decode_phases(study, codec=None, requested_reference=None)  # type: ignore[arg-type]
    assert sorted(phases.images) == [0, 1]
