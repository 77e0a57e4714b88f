"""The scoring engine: one bundle + one set of feature values -> score, risk group, explanation.

Every v1 model type except ``random_forest`` is a linear predictor on scaled features::

    scaled_i = raw_i                       (scaler "none")
    scaled_i = (raw_i - mean_i) / std_i    (scaler "zscore")
    score    = intercept + sum_i coefficient_i * scaled_i     (summed left to right in model order)

and the types differ only in what is derived from the score:

* ``linear_score`` / ``elastic_net``: the score itself (a risk score, a regression estimate);
* ``cox``: the score is the linear predictor ``lp``; with a baseline survival ``S0(t)`` the survival
  curve ``S(t|x) = S0(t) ** exp(lp)`` at the baseline's times;
* ``logistic``: the score is the log-odds; ``probability = 1 / (1 + exp(-score))``.

Cutoffs split the score (or, for logistic models, optionally the probability) into named groups.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from oncohabitat.bundles.loader import Bundle
from oncohabitat.bundles.manifest import BaselineSurvival, Cutoff, Manifest, ModelType, ZScoreScaler
from oncohabitat.scoring import errors
from oncohabitat.scoring.errors import FeatureValidationError, UnsupportedModelError
from oncohabitat.scoring.validation import ignored_features, validate_features

#: Model types this engine executes.
SUPPORTED_MODEL_TYPES: frozenset[ModelType] = frozenset({"linear_score", "cox", "logistic", "elastic_net"})


@dataclass(frozen=True)
class FeatureContribution:
    """One feature's part in the score.

    Attributes:
        key: the feature's request key.
        name: its fully-qualified pyradiomics name.
        value: raw value as received.
        scaled_value: value after the bundle's scaler.
        coefficient: model coefficient.
        contribution: ``coefficient * scaled_value``.
    """

    key: str
    name: str
    value: float
    scaled_value: float
    coefficient: float
    contribution: float


@dataclass(frozen=True)
class SurvivalPoint:
    """Predicted survival probability at ``time`` (in the bundle's ``time_unit``)."""

    time: float
    probability: float


@dataclass(frozen=True)
class ScoreResult:
    """The outcome of :func:`score`.

    Attributes:
        model_id, model_version, manifest_sha256, model_type: which exact bundle produced it.
        score: linear predictor (risk score, Cox ``lp``, logistic log-odds, regression estimate).
        risk_group: label of the group the cutoffs assign, or None when the bundle declares no cutoff.
        cutoff: the cutoff value that decided the group (the first cutoff, in increasing order, that the
            compared value does not pass, else the last one), or None without cutoffs.
        compared_to_cutoff: ``"score"`` or ``"probability"``: the quantity compared with the cutoffs.
        probability: logistic models only: ``1 / (1 + exp(-score))``.
        contributions: per feature, in model order.
        survival: Cox models with a baseline survival: ``S(t|x)`` at the baseline times; else empty.
        time_unit: unit of the survival times.
        ignored_features: request keys the model does not use (sorted).
    """

    model_id: str
    model_version: str
    manifest_sha256: str
    model_type: ModelType
    score: float
    risk_group: str | None
    cutoff: float | None
    compared_to_cutoff: str | None
    probability: float | None
    contributions: tuple[FeatureContribution, ...]
    survival: tuple[SurvivalPoint, ...]
    time_unit: str | None
    ignored_features: tuple[str, ...]


def _scaled(manifest: Manifest, key: str, value: float) -> float:
    scaler = manifest.scaler
    if isinstance(scaler, ZScoreScaler):
        return (value - scaler.mean[key]) / scaler.std[key]
    return value


def _sigmoid(x: float) -> float:
    """Logistic function, without overflow for large ``|x|``."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def _survival(baseline: BaselineSurvival, lp: float) -> tuple[SurvivalPoint, ...]:
    """``S0(t) ** exp(lp)`` at every baseline time (0 when the relative hazard overflows)."""
    try:
        relative_hazard = math.exp(lp)
    except OverflowError:
        relative_hazard = math.inf
    points = []
    for time, s0 in zip(baseline.times, baseline.survival, strict=True):
        if s0 >= 1.0:
            probability = 1.0
        elif math.isinf(relative_hazard):
            probability = 0.0
        else:
            probability = s0**relative_hazard
        points.append(SurvivalPoint(time=time, probability=probability))
    return tuple(points)


def _group(cutoffs: list[Cutoff], value: float) -> tuple[str, float]:
    """Group label and deciding cutoff value; ``cutoffs`` is non-empty and increasing."""
    for cutoff in cutoffs:
        if not cutoff.is_high(value):
            return cutoff.low_label, cutoff.value
    last = cutoffs[-1]
    return last.high_label, last.value


def score(bundle: Bundle, features: Mapping[str, float]) -> ScoreResult:
    """Score one case with ``bundle``.

    Args:
        bundle: a verified bundle (:func:`~oncohabitat.bundles.load_bundle`).
        features: feature values keyed by the bundle's request keys (``FeatureSpec.request_key``, by
            default the pyradiomics name). Keys the model does not use are ignored and reported in
            ``ScoreResult.ignored_features``.

    Raises:
        UnsupportedModelError: the bundle's model type is not in :data:`SUPPORTED_MODEL_TYPES`.
        FeatureValidationError: a feature is missing, not a number, NaN/inf or out of its valid range
            (see :func:`~oncohabitat.scoring.validation.validate_features`), or the score overflows
            (``SCORE_NOT_FINITE``).
    """
    manifest = bundle.manifest
    if manifest.model.type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(manifest.model.type)
    values = validate_features(manifest, features)

    contributions = []
    linear_predictor = manifest.intercept
    for spec, coefficient in zip(manifest.features, manifest.coefficients, strict=True):
        key = spec.request_key
        scaled = _scaled(manifest, key, values[key])
        contribution = coefficient * scaled
        linear_predictor += contribution
        contributions.append(
            FeatureContribution(
                key=key,
                name=spec.name,
                value=values[key],
                scaled_value=scaled,
                coefficient=coefficient,
                contribution=contribution,
            )
        )
    if not math.isfinite(linear_predictor):
        raise FeatureValidationError(
            errors.SCORE_NOT_FINITE, None, "the feature values drive the score to infinity or NaN"
        )

    probability = _sigmoid(linear_predictor) if manifest.model.type == "logistic" else None
    survival: tuple[SurvivalPoint, ...] = ()
    if manifest.model.type == "cox" and manifest.baseline_survival is not None:
        survival = _survival(manifest.baseline_survival, linear_predictor)

    risk_group: str | None = None
    cutoff_value: float | None = None
    compared: str | None = None
    if manifest.cutoffs:
        compared = manifest.cutoffs[0].applies_to
        subject = probability if compared == "probability" else linear_predictor
        assert subject is not None  # the schema allows probability cutoffs only where a probability exists
        risk_group, cutoff_value = _group(manifest.cutoffs, subject)

    return ScoreResult(
        model_id=manifest.id,
        model_version=manifest.version,
        manifest_sha256=bundle.manifest_sha256,
        model_type=manifest.model.type,
        score=linear_predictor,
        risk_group=risk_group,
        cutoff=cutoff_value,
        compared_to_cutoff=compared,
        probability=probability,
        contributions=tuple(contributions),
        survival=survival,
        time_unit=manifest.time_unit,
        ignored_features=ignored_features(manifest, features),
    )
