"""The scoring engine: one compiled bundle + one case (features, covariates) -> every output the bundle has.

:func:`compile_bundle` turns a verified scoring bundle into executable heads (primary and optional imaging-only
fallback) once, at load; :func:`score` validates a case, builds the design row (features then encoded
covariates), runs the primary head — or the fallback when covariates are missing and the bundle has one — and
assigns the risk group with the bundle's explicit cutoffs, direction and tie rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oncohabitat.bundles.loader import Bundle
from oncohabitat.bundles.scoring_manifest import ScoringManifest
from oncohabitat.bundles.scoring_parts import LinearModel, RiskGroups
from oncohabitat.scoring import errors
from oncohabitat.scoring.covariates import CovariateValue, encode_covariates
from oncohabitat.scoring.errors import CovariateValidationError, FeatureValidationError
from oncohabitat.scoring.heads import Contribution, Head, LinearHead
from oncohabitat.scoring.validation import OutOfDistribution, feature_warnings, ignored_features, validate_features

#: Model types this engine executes.
SUPPORTED_MODEL_TYPES = frozenset({"linear_score", "cox", "logistic", "linear_regression", "elastic_net", "onnx"})


@dataclass(frozen=True)
class CompiledBundle:
    """A verified scoring bundle with its executable heads."""

    bundle: Bundle[ScoringManifest]
    primary: Head
    fallback: Head | None
    #: SHA-256 of the bundle's extraction plan (provenance of every result).
    plan_sha256: str

    @property
    def manifest(self) -> ScoringManifest:
        """The bundle's manifest."""
        return self.bundle.manifest


def _head(model: Any, bundle: Bundle[ScoringManifest]) -> Head:
    if isinstance(model, LinearModel):
        return LinearHead(model)
    from oncohabitat.scoring.onnx_head import OnnxHead  # onnxruntime only for ONNX bundles

    return OnnxHead(model, bundle.path, f"bundle {bundle.id} {bundle.version}")


def compile_bundle(bundle: Bundle[ScoringManifest]) -> CompiledBundle:
    """Executable heads of a verified scoring bundle.

    Raises:
        BundleError: ``MODEL_UNLOADABLE`` when an ONNX model cannot be opened or does not match the manifest.
    """
    manifest = bundle.manifest
    fallback = _head(manifest.fallback.model, bundle) if manifest.fallback is not None else None
    return CompiledBundle(
        bundle=bundle, primary=_head(manifest.model, bundle), fallback=fallback, plan_sha256=manifest.plan.sha256()
    )


@dataclass(frozen=True)
class ScoreResult:
    """The outcome of :func:`score`.

    Attributes:
        model_id, model_version, manifest_sha256, model_type, intended_use: which exact bundle produced it.
        score: linear predictor (risk score, Cox lp, log-odds, regression estimate) or the ONNX output.
        probability: logistic and ONNX classifiers, else None.
        predicted_value: regressions, else None.
        risk_group, cutoff: the assigned group and the cutoff that decided it (None without risk groups).
        risk_rule: the groups' cutoffs, labels, tie rule and direction.
        survival: ``(time, S(t))`` at the horizons (Cox with baseline survival); time in ``time_unit``.
        contributions: linear heads, per design column in order.
        out_of_distribution: inputs outside their training range.
        fallback_used: the imaging-only fallback ran because ``missing_covariates`` were not given.
        ignored: request features and covariates the model does not use (sorted).
    """

    model_id: str
    model_version: str
    manifest_sha256: str
    model_type: str
    intended_use: str
    score: float
    probability: float | None
    predicted_value: float | None
    risk_group: str | None
    cutoff: float | None
    risk_rule: RiskGroups | None
    survival: tuple[tuple[float, float], ...]
    time_unit: str | None
    contributions: tuple[Contribution, ...]
    out_of_distribution: tuple[OutOfDistribution, ...]
    fallback_used: bool
    missing_covariates: tuple[str, ...]
    ignored: tuple[str, ...]


def _group_subject(rule: RiskGroups, score: float, probability: float | None, predicted: float | None) -> float:
    subject = {"score": score, "probability": probability, "predicted_value": predicted}[rule.applies_to]
    if subject is None:  # the schema only allows groups on outputs the model has
        raise FeatureValidationError(errors.SCORE_NOT_FINITE, None, "the model gave no value to group")
    return subject


def score(
    compiled: CompiledBundle,
    features: Mapping[str, object],
    covariates: Mapping[str, CovariateValue] | None = None,
) -> ScoreResult:
    """Score one case.

    Args:
        compiled: a compiled bundle (:func:`compile_bundle`).
        features: values keyed by canonical feature name; unused keys are ignored and reported.
        covariates: clinical covariates by name (float/int, bool or category string); undeclared ones are
            ignored and reported.

    Raises:
        FeatureValidationError: a feature is missing, not a number, NaN/inf or out of its valid range, or the
            score is not finite.
        CovariateValidationError: a covariate is unusable, or missing (``COVARIATE_MISSING``, naming every
            missing one) when the bundle has no imaging-only fallback.
    """
    manifest = compiled.manifest
    values = validate_features(manifest, features)
    encoded = encode_covariates(manifest, covariates or {})
    fallback_used = bool(encoded.missing)
    if fallback_used and compiled.fallback is None:
        names = ", ".join(encoded.missing)
        raise CovariateValidationError(
            errors.COVARIATE_MISSING, encoded.missing[0], f"covariate(s) required by the model are missing: {names}"
        )
    head = compiled.fallback if fallback_used and compiled.fallback is not None else compiled.primary
    rule = manifest.fallback.risk_groups if fallback_used and manifest.fallback is not None else manifest.risk_groups
    row = {**values, **({} if fallback_used else encoded.columns)}
    output = head.run(row)

    risk_group: str | None = None
    cutoff: float | None = None
    if rule is not None:
        risk_group, cutoff = rule.group(_group_subject(rule, output.score, output.probability, output.predicted_value))
    model = manifest.fallback.model if fallback_used and manifest.fallback is not None else manifest.model
    time_unit = model.survival.time_unit if isinstance(model, LinearModel) and model.survival is not None else None
    warnings = (*feature_warnings(manifest, values), *([] if fallback_used else encoded.warnings))
    return ScoreResult(
        model_id=manifest.id,
        model_version=manifest.version,
        manifest_sha256=compiled.bundle.manifest_sha256,
        model_type=model.type,
        intended_use=manifest.intended_use,
        score=output.score,
        probability=output.probability,
        predicted_value=output.predicted_value,
        risk_group=risk_group,
        cutoff=cutoff,
        risk_rule=rule,
        survival=output.survival,
        time_unit=time_unit,
        contributions=output.contributions,
        out_of_distribution=tuple(warnings),
        fallback_used=fallback_used,
        missing_covariates=encoded.missing,
        ignored=tuple(sorted((*ignored_features(manifest, features), *encoded.ignored))),
    )
