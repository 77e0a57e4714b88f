"""Submission inputs and what they select: bundle eligibility (modality, phases, covariates), the seed point,
the listener's DCE classification, and the region summaries GetResult returns."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.orchestrator.eligibility import StudyInputs, eligible_models, ineligibility
from oncohabitat.orchestrator.results import job_result_from_stages
from oncohabitat.orchestrator.submission import validate_submission
from oncohabitat.v1 import pipeline_pb2, segmentation_pb2
from tests.conftest import PROJECT_ROOT
from tests.support.served_models import served_model_set

MODELS = PROJECT_ROOT / "models"
KEY, DIGEST = "ab" * 16, "cd" * 32


@pytest.fixture(scope="module")
def registry() -> Any:
    """The shipped bundles as the scoring service describes them to the orchestrator."""
    return served_model_set(MODELS)


def _dce(*indices: int, covariates: tuple[str, ...] = ()) -> StudyInputs:
    return StudyInputs("MR", frozenset(indices), frozenset(covariates))


def test_every_demonstration_bundle_is_eligible_for_a_four_phase_dce_study(registry: Any) -> None:
    eligible, reasons = eligible_models(registry, _dce(0, 1, 2, 3))
    ids = sorted(bundle.id for bundle in eligible)
    assert [i for i in ids if i.startswith("demo-")] == sorted(b.id for b in registry if b.id.startswith("demo-"))
    assert "seed003-ct-dfs" not in ids and reasons == []  # other modalities are not listed as reasons


def test_a_ct_study_gets_the_ct_bundle_only(registry: Any) -> None:
    eligible, _ = eligible_models(registry, StudyInputs("CT", frozenset(), frozenset()))
    assert [bundle.id for bundle in eligible] == ["seed003-ct-dfs"]


def test_a_missing_phase_is_named(registry: Any) -> None:
    forest = registry.get("demo-seed004-risk-forest")  # its plan reads S1
    reason = ineligibility(forest, _dce(0, 2, 3))
    assert reason is not None and "needs phase S1" in reason and "S0, S2, S3" in reason
    assert ineligibility(forest, _dce(0, 1)) is None


def test_a_required_covariate_without_fallback_is_named(registry: Any) -> None:
    forest = registry.get("demo-seed004-risk-forest")
    assert registry.get("demo-seed001-dfs-cox").covariates[0] == "age"
    stub = dataclasses.replace(forest, covariates=("age",), has_fallback=False)
    assert "needs covariate age" in (ineligibility(stub, _dce(0, 1, 2)) or "")
    assert ineligibility(stub, _dce(0, 1, 2, covariates=("age",))) is None
    cox = registry.get("demo-seed001-dfs-cox")  # has an imaging-only fallback: eligible without age
    assert ineligibility(cox, _dce(0, 1, 2)) is None


def _request(**fields: Any) -> pipeline_pb2.SubmitStudyRequest:
    return pipeline_pb2.SubmitStudyRequest(study_key=KEY, content_digest=DIGEST, instance_paths=["a/b.dcm"], **fields)


def test_a_seed_point_is_stored_in_mm() -> None:
    payload = validate_submission(_request(seed_point=segmentation_pb2.PointMm(x=-12.5, y=30.0, z=4.25)))
    assert payload["seed_point_mm"] == [-12.5, 30.0, 4.25]
    assert "seed_point_mm" not in validate_submission(_request())


@pytest.mark.parametrize("bad", [math.nan, math.inf, 1e6])
def test_a_bad_seed_point_is_invalid_argument_naming_the_field(bad: float) -> None:
    with pytest.raises(InvalidInputError) as caught:
        validate_submission(_request(seed_point=segmentation_pb2.PointMm(x=bad, y=0.0, z=0.0)))
    assert caught.value.field == "seed_point" and caught.value.reason == "SEED_POINT_INVALID"


def test_the_listener_classification_must_name_submitted_files() -> None:
    good = '{"eligible": true, "phases": [{"index": 0, "instance_paths": ["a/b.dcm"]}]}'
    assert validate_submission(_request(dce_classification_json=good))["dce_classification"]["eligible"]
    for bad in ("not json", '{"phases": [{"instance_paths": ["other.dcm"]}]}', '{"phases": 3}'):
        with pytest.raises(InvalidInputError) as caught:
            validate_submission(_request(dce_classification_json=bad))
        assert caught.value.field == "dce_classification_json"


def test_get_result_has_region_volumes_habitat_fractions_kinetic_means_and_msi() -> None:
    statistics = {
        "tumour": {"voxel_count": 100, "volume_ml": 2.0, "SER": 1.5, "PE": 120.0},
        "habitat_1": {"voxel_count": 25, "volume_ml": 0.5, "SER": 0.9},
        "peritumoral_ring_5mm": {"voxel_count": 80, "volume_ml": 1.6},
    }
    stages: dict[str, Any] = {
        "segment": {"method": "seeded-fcm", "volume_ml": 2.0},
        "regions": {
            "profiles": {
                "b": {
                    "statistics": {"tumour": {"voxel_count": 1, "volume_ml": 9.0}},
                    "msi_features": {"msi_energy": 9.0},
                },
                "a": {"statistics": statistics, "msi_features": {"msi_energy": 0.25}},
            }
        },
    }
    result = job_result_from_stages(stages)
    regions = {r.region: r for r in result.regions}
    assert result.tumour_volume_ml == 2.0 and result.segmentation_method == "seeded-fcm"
    assert regions["tumour"].volume_ml == 2.0 and dict(regions["tumour"].mean_values) == {"SER": 1.5, "PE": 120.0}
    assert regions["habitat_1"].fraction_of_tumour == pytest.approx(0.25)
    assert not regions["peritumoral_ring_5mm"].HasField("fraction_of_tumour")
    assert dict(result.msi_features) == {"msi_energy": 0.25}  # first profile by key wins


def test_the_features_stage_sends_only_the_phases_a_plan_reads(registry: Any) -> None:
    from oncohabitat.bundles.plan import ExtractionPlan
    from oncohabitat.orchestrator.feature_stages import plan_phase_images

    forest = registry.get("demo-seed004-risk-forest").plan
    assert forest is not None and plan_phase_images(forest) == {"S1"}
    kinetic = ExtractionPlan.model_validate({"features": ["tumour/kinetic-mean/original_firstorder_Mean"]})
    assert plan_phase_images(kinetic) is None  # every phase
    stats = ExtractionPlan.model_validate({"features": ["tumour/stats/mean_S2", "tumour/stats/volume_ml"]})
    assert plan_phase_images(stats) == {"S2"}


def test_a_study_eligible_for_no_bundle_ends_needs_review_naming_why(registry: Any) -> None:
    from types import SimpleNamespace
    from typing import cast

    from oncohabitat.orchestrator.feature_stages import features_stage
    from oncohabitat.orchestrator.jobs import Job
    from oncohabitat.orchestrator.served_models import ModelSet

    forest = registry.get("demo-seed004-risk-forest")
    context = SimpleNamespace(served_models=ModelSet([forest]))
    loaded = {"modality": "MR", "phases": [{"index": 0}, {"index": 2}, {"index": 3}]}  # no S1
    job = cast(Job, SimpleNamespace(request={}))
    outcome = features_stage(cast(Any, context), job, {"load_study": loaded, "segment": {}})
    assert outcome.kind.value == "needs_review"
    assert outcome.reason.startswith("NO_ELIGIBLE_MODEL: demo-seed004-risk-forest@1.0.0: needs phase S1")
