"""The score stage: each model's features (and the study's covariates) -> the scoring service -> stored result.

Stored per model (JSON, read back by :mod:`oncohabitat.orchestrator.results`): ``model_id``,
``model_version``, ``model_type``, ``manifest_sha256``, ``intended_use``, ``score``, ``probability`` and
``predicted_value`` (null when the model has none), ``risk_group``, ``cutoff``, ``risk_rule`` (cutoffs, labels,
tie, direction, applies_to; null without groups), ``survival`` (``[[time, S(t)], ...]``) with ``time_unit``,
``features``, ``contributions``, ``out_of_distribution``, ``fallback_used``, ``missing_covariates`` and
``provenance``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import grpc

from oncohabitat.common.errors import error_detail_from
from oncohabitat.orchestrator.jobs import Job
from oncohabitat.orchestrator.results import provenance_to_json
from oncohabitat.orchestrator.runner import StageOutcome, StageResults
from oncohabitat.v1 import common_pb2, scoring_pb2, scoring_pb2_grpc

FEATURES_STAGE = "features"
#: Scoring answers that refuse one model for this study (the other models still run).
_REFUSALS = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION})


class ScoringContext(Protocol):
    """What the stage needs of the pipeline context."""

    scoring: scoring_pb2_grpc.ScoringStub
    rpc_timeout_s: float


def covariates_to_proto(values: Mapping[str, Any]) -> dict[str, common_pb2.CovariateValue]:
    """The job request's JSON covariates -> proto values (bool before number: JSON true is not 1.0)."""
    converted = {}
    for name, value in values.items():
        if isinstance(value, bool):
            converted[name] = common_pb2.CovariateValue(flag=value)
        elif isinstance(value, int | float):
            converted[name] = common_pb2.CovariateValue(number=float(value))
        else:
            converted[name] = common_pb2.CovariateValue(category=str(value))
    return converted


def model_result_json(response: scoring_pb2.ScoreResponse, entry: Mapping[str, Any]) -> dict[str, Any]:
    """One ScoreResponse (and its features-stage entry) as the stored JSON result."""
    provenance = provenance_to_json(response.provenance)
    provenance["input_hashes"] = entry["provenance"].get("input_hashes", {})
    provenance["components"] = {**entry["provenance"].get("components", {}), **provenance["components"]}
    rule = response.risk_rule if response.HasField("risk_rule") else None
    return {
        "model_id": response.model_id,
        "model_version": response.model_version,
        "model_type": response.model_type,
        "manifest_sha256": response.manifest_sha256,
        "intended_use": response.intended_use,
        "score": response.score,
        "probability": response.probability if response.HasField("probability") else None,
        "predicted_value": response.predicted_value if response.HasField("predicted_value") else None,
        "risk_group": response.risk_group,
        "cutoff": response.cutoff,
        "risk_rule": None
        if rule is None
        else {
            "applies_to": rule.applies_to,
            "cutoffs": list(rule.cutoffs),
            "labels": list(rule.labels),
            "tie": rule.tie,
            "direction": rule.direction,
        },
        "survival": [[p.time, p.probability] for p in response.survival],
        "time_unit": response.time_unit,
        "features": dict(entry["features"]),
        "contributions": {c.name: c.contribution for c in response.contributions},
        "out_of_distribution": [
            {"name": w.name, "value": w.value, "training_min": w.training_min, "training_max": w.training_max}
            for w in response.out_of_distribution
        ],
        "fallback_used": response.fallback_used,
        "missing_covariates": list(response.missing_covariates),
        "provenance": provenance,
    }


def score_stage(context: ScoringContext, job: Job, previous: StageResults) -> StageOutcome:
    """Score each model's features, with the study's covariates, through the scoring service.

    A model the scoring service refuses for this study (INVALID_ARGUMENT / FAILED_PRECONDITION: e.g. a feature
    that cannot be computed on it, such as an empty peritumoral ring) is listed under ``not_scored`` with the
    reason code while the other models' results are kept; when every model is refused the error propagates
    (the job ends NEEDS_REVIEW with it, as before).
    """
    covariates = covariates_to_proto(job.request.get("covariates", {}))
    models: list[dict[str, Any]] = []
    not_scored: list[dict[str, str]] = []
    last_refusal: grpc.RpcError | None = None
    for entry in previous[FEATURES_STAGE]["models"].values():
        try:
            response = context.scoring.Score(
                scoring_pb2.ScoreRequest(
                    model_id=entry["model_id"],
                    model_version=entry["model_version"],
                    features=entry["features"],
                    covariates=covariates,
                ),
                timeout=context.rpc_timeout_s,
            )
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code not in _REFUSALS:
                raise
            detail = error_detail_from(exc)
            reason = detail.reason if detail is not None and detail.reason else code.name  # type: ignore[union-attr]
            field = f" ({detail.field})" if detail is not None and detail.field else ""
            not_scored.append(
                {"model_id": entry["model_id"], "model_version": entry["model_version"], "reason": f"{reason}{field}"}
            )
            last_refusal = exc
            continue
        models.append(model_result_json(response, entry))
    if not models and last_refusal is not None:
        raise last_refusal
    return StageOutcome.ok({"models": models, "not_scored": not_scored})
