"""Orchestrator side of scoring: covariates from SubmitStudy to the job request to Score, and every output of
ScoreResponse stored and returned by GetResult."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.orchestrator.jobs import Job, JobState
from oncohabitat.orchestrator.results import SCORE_STAGE, job_result_from_stages
from oncohabitat.orchestrator.score_stage import score_stage
from oncohabitat.orchestrator.submission import validate_submission
from oncohabitat.v1 import common_pb2, pipeline_pb2, scoring_pb2

FEATURE = "tumour/S0/original_glcm_Correlation"


def _submission(**covariates: common_pb2.CovariateValue) -> pipeline_pb2.SubmitStudyRequest:
    return pipeline_pb2.SubmitStudyRequest(
        study_key="ab" * 8, content_digest="cd" * 32, instance_paths=["x/1.dcm"], covariates=covariates
    )


def test_submission_stores_the_covariates_as_json_values() -> None:
    request = _submission(
        ki67=common_pb2.CovariateValue(number=30.0),
        aln=common_pb2.CovariateValue(category="positive"),
        lvi=common_pb2.CovariateValue(flag=False),
    )
    assert validate_submission(request)["covariates"] == {"aln": "positive", "ki67": 30.0, "lvi": False}


@pytest.mark.parametrize(
    "covariates",
    [{"Ki67": common_pb2.CovariateValue(number=1.0)}, {"ki67": common_pb2.CovariateValue()}],
    ids=["bad name", "no value"],
)
def test_submission_refuses_malformed_covariates(covariates: dict[str, common_pb2.CovariateValue]) -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_submission(_submission(**covariates))
    assert (info.value.reason, info.value.field) == ("COVARIATE_INVALID", "covariates")


def test_submission_refuses_a_non_finite_covariate() -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_submission(_submission(ki67=common_pb2.CovariateValue(number=math.nan)))
    assert "ki67" in info.value.public_message


@dataclass
class _Scoring:
    """A scoring stub that records its requests and answers a logistic result with a survival-less model."""

    requests: list[scoring_pb2.ScoreRequest] = field(default_factory=list)

    def Score(self, request: scoring_pb2.ScoreRequest, timeout: float) -> scoring_pb2.ScoreResponse:
        self.requests.append(request)
        response = scoring_pb2.ScoreResponse(
            score=-0.2,
            probability=0.45,
            risk_group="non-pCR",
            cutoff=0.31,
            model_id=request.model_id,
            model_version="1.0.0",
            risk_rule=scoring_pb2.RiskGroupRule(
                applies_to="probability", cutoffs=[0.31], labels=["non-pCR", "pCR"], tie="upper", direction="x"
            ),
            survival=[scoring_pb2.SurvivalPoint(time=3.0, probability=0.9)],
            time_unit="years",
            out_of_distribution=[
                scoring_pb2.OutOfDistribution(name=FEATURE, value=2.0, training_min=0.0, training_max=1.0)
            ],
            manifest_sha256="e" * 64,
            intended_use="research",
            model_type="logistic",
            fallback_used=True,
            missing_covariates=["lvi"],
        )
        response.contributions.add(name=FEATURE, contribution=0.1)
        return response


@dataclass
class _Context:
    scoring: Any
    rpc_timeout_s: float = 5.0


def _job(request: dict[str, Any]) -> Job:
    return Job("j1", "k", "d", JobState.RUNNING, "features", "", 1, "", None, None, "", "", json.dumps(request))


def test_score_stage_passes_covariates_and_stores_every_output() -> None:
    scoring = _Scoring()
    features_stage = {
        "models": {"m@1.0.0": {"model_id": "m", "model_version": "1.0.0", "features": {FEATURE: 2.0}, "provenance": {}}}
    }
    outcome = score_stage(
        _Context(scoring),
        _job({"covariates": {"ki67": 30.0, "aln": "positive", "lvi": True}}),
        {"features": features_stage},
    )
    (request,) = scoring.requests
    assert request.covariates["ki67"].number == 30.0 and request.covariates["aln"].category == "positive"
    assert request.covariates["lvi"].WhichOneof("value") == "flag" and request.covariates["lvi"].flag
    stored = json.loads(json.dumps(outcome.result))  # what the job store persists
    (model,) = stored["models"]
    assert (model["probability"], model["predicted_value"], model["fallback_used"]) == (0.45, None, True)
    result = job_result_from_stages({SCORE_STAGE: stored})
    (message,) = result.models
    assert message.HasField("probability") and message.probability == 0.45
    assert not message.HasField("predicted_value")
    assert [(p.time, p.probability) for p in message.survival] == [(3.0, 0.9)] and message.time_unit == "years"
    assert list(message.risk_rule.cutoffs) == [0.31] and message.risk_rule.tie == "upper"
    assert message.out_of_distribution[0].name == FEATURE and message.manifest_sha256 == "e" * 64
    assert list(message.missing_covariates) == ["lvi"] and message.model_type == "logistic"
    assert message.contributions[FEATURE] == 0.1 and message.features[FEATURE] == 2.0


def test_results_stored_before_v2_still_read() -> None:
    old = {"model_id": "m", "model_version": "1.0.0", "score": 0.3, "risk_group": "high", "cutoff": 0.185}
    (message,) = job_result_from_stages({SCORE_STAGE: {"models": [old]}}).models
    assert message.score == 0.3 and not message.HasField("probability") and not message.HasField("risk_rule")
