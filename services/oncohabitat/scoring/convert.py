"""Domain <-> proto conversions of the scoring service (results, descriptions, covariate values)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from oncohabitat.bundles.hashing import canonical_json
from oncohabitat.bundles.scoring_parts import LinearModel, RiskGroups
from oncohabitat.common.provenance import component_versions
from oncohabitat.scoring.covariates import CovariateValue
from oncohabitat.scoring.live import Snapshot
from oncohabitat.scoring.model import CompiledBundle, ScoreResult
from oncohabitat.v1 import common_pb2, scoring_pb2


def covariates_from_proto(values: Mapping[str, common_pb2.CovariateValue]) -> dict[str, CovariateValue]:
    """Proto covariate values -> Python (float, bool or str); entries with no value set are left out."""
    converted: dict[str, CovariateValue] = {}
    for name, value in values.items():
        which = value.WhichOneof("value")
        if which == "number":
            converted[name] = value.number
        elif which == "flag":
            converted[name] = value.flag
        elif which == "category":
            converted[name] = value.category
    return converted


def rule_to_proto(rule: RiskGroups | None) -> scoring_pb2.RiskGroupRule | None:
    """Risk-group rule message, or None without groups."""
    if rule is None:
        return None
    return scoring_pb2.RiskGroupRule(
        applies_to=rule.applies_to,
        cutoffs=rule.cutoffs,
        labels=rule.labels,
        tie=rule.tie,
        direction=rule.direction,
    )


@lru_cache(maxsize=1)
def _components() -> tuple[common_pb2.ComponentVersion, ...]:
    """Component versions of this process (fixed for its lifetime)."""
    return tuple(component_versions())


def score_response(result: ScoreResult, plan_sha256: str) -> scoring_pb2.ScoreResponse:
    """Domain result -> ScoreResponse (with provenance of the exact bundle and plan)."""
    response = scoring_pb2.ScoreResponse(
        score=result.score,
        risk_group=result.risk_group or "",
        cutoff=result.cutoff if result.cutoff is not None else 0.0,
        model_id=result.model_id,
        model_version=result.model_version,
        contributions=[
            scoring_pb2.FeatureContribution(
                name=c.name,
                value=c.value,
                scaled_value=c.scaled_value,
                coefficient=c.coefficient,
                contribution=c.contribution,
            )
            for c in result.contributions
        ],
        survival=[scoring_pb2.SurvivalPoint(time=t, probability=p) for t, p in result.survival],
        provenance=common_pb2.Provenance(
            components=_components(),
            parameter_hashes={"manifest": result.manifest_sha256, "plan": plan_sha256},
            model_id=result.model_id,
            model_version=result.model_version,
        ),
        out_of_distribution=[
            scoring_pb2.OutOfDistribution(
                name=w.name, value=w.value, training_min=w.training_min, training_max=w.training_max
            )
            for w in result.out_of_distribution
        ],
        manifest_sha256=result.manifest_sha256,
        intended_use=result.intended_use,
        model_type=result.model_type,
        time_unit=result.time_unit or "",
        fallback_used=result.fallback_used,
        missing_covariates=result.missing_covariates,
        ignored=result.ignored,
    )
    if result.probability is not None:
        response.probability = result.probability
    if result.predicted_value is not None:
        response.predicted_value = result.predicted_value
    rule = rule_to_proto(result.risk_rule)
    if rule is not None:
        response.risk_rule.CopyFrom(rule)
    return response


def summary(compiled: CompiledBundle) -> scoring_pb2.ModelSummary:
    """ListModels row of one bundle."""
    bundle, manifest = compiled.bundle, compiled.manifest
    return scoring_pb2.ModelSummary(
        model_id=bundle.id,
        model_version=bundle.version,
        title=manifest.title,
        modality=manifest.required_inputs.modality,
        feature_names=manifest.feature_keys,
        manifest_sha256=bundle.manifest_sha256,
        intended_use=manifest.intended_use,
        model_type=manifest.model_type,
        covariate_names=[c.name for c in manifest.covariates],
    )


def rejected_to_proto(snapshot: Snapshot) -> list[scoring_pb2.RejectedBundle]:
    """The snapshot's rejected bundles."""
    return [
        scoring_pb2.RejectedBundle(bundle=key, reason=exc.reason, message=exc.message)
        for key, exc in sorted(snapshot.rejected.items())
    ]


def describe(compiled: CompiledBundle) -> scoring_pb2.ModelDescription:
    """DescribeModel answer: inputs with units and ranges, covariates, outputs, intended use, source, figures, and
    what the orchestrator plans with: the extraction plan (canonical JSON, hashed by ``plan_sha256``) and the
    required inputs."""
    bundle, manifest = compiled.bundle, compiled.manifest
    model = manifest.model
    outputs = ["score"]
    if model.has_probability:
        outputs.append("probability")
    if model.has_predicted_value:
        outputs.append("predicted_value")
    survival = model.survival if isinstance(model, LinearModel) else None
    if survival is not None:
        outputs.append("survival")
    if manifest.risk_groups is not None:
        outputs.append("risk_group")
    description = scoring_pb2.ModelDescription(
        summary=summary(compiled),
        contraindications=manifest.contraindications,
        source=manifest.source_text(),
        outputs=outputs,
        horizons=[p.time for p in survival.baseline] if survival is not None else [],
        time_unit=survival.time_unit if survival is not None else "",
        has_fallback=manifest.fallback is not None,
        evaluation=[
            scoring_pb2.EvaluationFigure(metric=f.metric, value=f.value, dataset=f.dataset, note=f.note or "")
            for f in manifest.evaluation
        ],
        readings=manifest.readings,
        plan_sha256=manifest.plan.sha256(),
        signed=bundle.signed,
        plan_json=canonical_json(manifest.plan.model_dump(mode="json", by_alias=True)),
        required_inputs=scoring_pb2.RequiredInputs(
            modality=manifest.required_inputs.modality, phases=manifest.required_inputs.phases
        ),
    )
    for spec in manifest.inputs:
        item = description.inputs.add(name=spec.name, unit=spec.unit or "")
        if spec.training_range is not None:
            item.training_min, item.training_max = spec.training_range
        if spec.valid_range is not None:
            low, high = spec.valid_range
            if low is not None:
                item.valid_min = low
            if high is not None:
                item.valid_max = high
    for covariate in manifest.covariates:
        entry = description.covariates.add(
            name=covariate.name,
            type=covariate.type,
            encoding=covariate.encoding,
            unit=covariate.unit or "",
            categories=covariate.categories,
            description=covariate.description or "",
        )
        if covariate.valid_range is not None:
            low, high = covariate.valid_range
            if low is not None:
                entry.valid_min = low
            if high is not None:
                entry.valid_max = high
    rule = rule_to_proto(manifest.risk_groups)
    if rule is not None:
        description.risk_rule.CopyFrom(rule)
    return description
