"""Scoring engine: seed-003 formula and groups, Cox survival, logistic probability, regression, covariates,
fallback, out-of-distribution warnings and input refusals (expected values computed independently here)."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oncohabitat.bundles import Bundle, load_bundle, write_scoring_bundle
from oncohabitat.scoring import CompiledBundle, CovariateValidationError, FeatureValidationError, compile_bundle, score
from oncohabitat.scoring.vectors import replay_vectors
from tests.unit.test_bundle_loader import SEED003, seed_document

KURTOSIS = "tumour/S0/original_firstorder_Kurtosis"
CORRELATION = "tumour/S0/original_glcm_Correlation"
MAX_PROBABILITY = "tumour/S0/original_glcm_MaximumProbability"
LARGE_AREA = "tumour/S0/original_glszm_LargeAreaEmphasis"
FEATURES = [KURTOSIS, CORRELATION, MAX_PROBABILITY, LARGE_AREA]

# Plausible raw pyradiomics values for a CT tumour (not from any patient).
CASE = {KURTOSIS: 4.21, CORRELATION: 0.437, MAX_PROBABILITY: 0.118, LARGE_AREA: 2315.7}


@pytest.fixture(scope="module")
def seed003() -> CompiledBundle:
    return compile_bundle(load_bundle(SEED003))


def seed003_formula(kurtosis: float, correlation: float, max_probability: float, large_area: float) -> float:
    """The published signature, typed in from the paper (no intercept)."""
    return (
        kurtosis * (-5.570173e-03)
        + correlation * (1.004042e00)
        + max_probability * (-9.648413e-01)
        + large_area * (1.643472e-08)
    )


def linear_document(model: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The seed-003 manifest with another model (and other top-level changes), as a template."""
    document = copy.deepcopy(seed_document())
    document.update(id="test-model", model=model, risk_groups=None)
    document.update(changes)
    document.pop("test_vectors", None)
    return document


def build(tmp_path: Path, document: dict[str, Any], vectors: list[dict[str, Any]]) -> CompiledBundle:
    """Write the bundle with its vectors, compile it and replay the vectors (as the service does at load)."""
    bundle: Bundle[Any] = write_scoring_bundle(tmp_path, document, vectors)
    compiled = compile_bundle(bundle)
    assert replay_vectors(compiled) == len(vectors)
    return compiled


def case_vector(features: dict[str, float], **expected: Any) -> dict[str, Any]:
    return {"features": features, "expected": expected}


# --- seed 003 -----------------------------------------------------------------------------------------


def test_seed003_reproduces_the_published_formula_on_random_cases(seed003: CompiledBundle) -> None:
    rng = np.random.default_rng(2021)
    for _ in range(200):
        values = [rng.uniform(1.5, 15.0), rng.uniform(-1.0, 1.0), rng.uniform(0.0, 1.0), rng.uniform(1.0, 5e6)]
        expected = seed003_formula(*values)
        result = score(seed003, dict(zip(FEATURES, values, strict=True)))
        assert result.score == pytest.approx(expected, abs=1e-12)
        assert result.risk_group == ("high" if expected > 0.185 else "low")
        assert result.cutoff == 0.185
        assert sum(c.contribution for c in result.contributions) == pytest.approx(expected, abs=1e-12)
    assert result.model_type == "cox" and result.probability is None and result.survival == ()
    assert result.manifest_sha256 == load_bundle(SEED003).manifest_sha256
    assert "not for clinical use" in result.intended_use


@pytest.mark.parametrize("offset", [-1e-9, 1e-9])
def test_seed003_groups_around_the_cutoff(seed003: CompiledBundle, offset: float) -> None:
    # Correlation chosen so the score is 0.185 + offset (other features zero where their ranges allow).
    correlation = (0.185 + offset - 1.643472e-08) / 1.004042
    result = score(seed003, {KURTOSIS: 0.0, CORRELATION: correlation, MAX_PROBABILITY: 0.0, LARGE_AREA: 1.0})
    assert result.risk_group == ("high" if offset > 0 else "low")


@pytest.mark.parametrize(("tie", "group"), [("lower", "low"), ("upper", "high")])
def test_a_score_exactly_on_the_cutoff_follows_the_tie_rule(tmp_path: Path, tie: str, group: str) -> None:
    model = {"type": "linear_score", "coefficients": dict.fromkeys(FEATURES, 0.0) | {CORRELATION: 1.0}}
    groups = {"applies_to": "score", "cutoffs": [0.25], "labels": ["low", "high"], "tie": tie}
    document = linear_document(model, risk_groups=groups | {"direction": "higher_is_worse"})
    on_cutoff = CASE | {CORRELATION: 0.25}
    compiled = build(tmp_path, document, [case_vector(on_cutoff, score=0.25, risk_group=group)])
    assert score(compiled, on_cutoff).risk_group == group
    assert score(compiled, CASE | {CORRELATION: 0.2500001}).risk_group == "high"


def test_three_groups_from_two_cutoffs(tmp_path: Path) -> None:
    model = {"type": "linear_score", "coefficients": dict.fromkeys(FEATURES, 0.0) | {CORRELATION: 1.0}}
    groups = {"applies_to": "score", "cutoffs": [-0.5, 0.5], "labels": ["low", "mid", "high"], "tie": "upper"}
    document = linear_document(model, risk_groups=groups | {"direction": "higher_is_worse"})
    compiled = build(tmp_path, document, [case_vector(CASE, score=0.437, risk_group="mid")])
    labels = [score(compiled, CASE | {CORRELATION: c}).risk_group for c in (-0.9, -0.5, 0.0, 0.5, 0.9)]
    assert labels == ["low", "mid", "mid", "high", "high"]


# --- model types --------------------------------------------------------------------------------------


def test_cox_survival_is_the_baseline_to_the_power_of_the_relative_hazard(tmp_path: Path) -> None:
    coefficients = {KURTOSIS: 0.1, CORRELATION: -1.2, MAX_PROBABILITY: 2.0, LARGE_AREA: 1e-6}
    scaler = {"type": "zscore", "mean": {KURTOSIS: 4.0}, "std": {KURTOSIS: 2.0}}
    baseline = [{"time": 3.0, "survival": 0.88}, {"time": 5.0, "survival": 0.79}]
    model = {"type": "cox", "coefficients": coefficients, "intercept": 0.0, "scaler": scaler}
    model["survival"] = {"time_unit": "years", "baseline": baseline}
    lp = 0.1 * (4.21 - 4.0) / 2.0 - 1.2 * 0.437 + 2.0 * 0.118 + 1e-6 * 2315.7
    survival = [0.88 ** math.exp(lp), 0.79 ** math.exp(lp)]
    compiled = build(tmp_path, linear_document(model), [case_vector(CASE, score=lp, survival=survival)])
    result = score(compiled, CASE)
    assert result.score == pytest.approx(lp, abs=1e-12)
    assert [t for t, _ in result.survival] == [3.0, 5.0]
    assert [p for _, p in result.survival] == pytest.approx(survival, abs=1e-12)
    assert result.time_unit == "years"
    assert result.contributions[0].scaled_value == pytest.approx((4.21 - 4.0) / 2.0)


def test_logistic_probability_and_its_group_against_a_probability_cutoff(tmp_path: Path) -> None:
    coefficients = {KURTOSIS: 0.3, CORRELATION: 2.5, MAX_PROBABILITY: -4.0, LARGE_AREA: 0.0}
    model = {"type": "logistic", "coefficients": coefficients, "intercept": -1.4}
    groups = {"applies_to": "probability", "cutoffs": [0.31], "labels": ["non-pCR", "pCR"], "tie": "upper"}
    document = linear_document(model, risk_groups=groups | {"direction": "higher_is_better"})
    rng = np.random.default_rng(1)
    vectors = []
    for _ in range(50):
        features = dict(
            zip(FEATURES, [rng.uniform(1.5, 8.0), rng.uniform(-1, 1), rng.uniform(0, 1), 10.0], strict=True)
        )
        log_odds = -1.4 + 0.3 * features[KURTOSIS] + 2.5 * features[CORRELATION] - 4.0 * features[MAX_PROBABILITY]
        probability = 1.0 / (1.0 + math.exp(-log_odds))
        group = "pCR" if probability >= 0.31 else "non-pCR"
        vectors.append(case_vector(features, score=log_odds, probability=probability, risk_group=group))
    compiled = build(tmp_path, document, vectors)
    result = score(compiled, vectors[0]["features"])
    assert result.probability == pytest.approx(vectors[0]["expected"]["probability"], abs=1e-12)
    assert result.risk_rule is not None and result.risk_rule.applies_to == "probability"
    assert {v["expected"]["risk_group"] for v in vectors} == {"pCR", "non-pCR"}


def test_elastic_net_predicted_value_and_its_cutoff(tmp_path: Path) -> None:
    coefficients = {KURTOSIS: 1.9, CORRELATION: -2.1, MAX_PROBABILITY: 0.7, LARGE_AREA: 0.0}
    model = {"type": "elastic_net", "coefficients": coefficients, "intercept": 20.0}
    groups = {"applies_to": "predicted_value", "cutoffs": [29.9], "labels": ["low", "high"], "tie": "lower"}
    document = linear_document(model, risk_groups=groups | {"direction": "higher_is_worse"})
    value = 20.0 + 1.9 * 4.21 - 2.1 * 0.437 + 0.7 * 0.118
    compiled = build(tmp_path, document, [case_vector(CASE, predicted_value=value, risk_group="low")])
    result = score(compiled, CASE)
    assert result.predicted_value == pytest.approx(value, abs=1e-12)
    assert result.probability is None


# --- covariates and fallback --------------------------------------------------------------------------

COVARIATES = [
    {"name": "ki67", "type": "numeric", "encoding": "identity", "unit": "%", "valid_range": [0.0, 100.0]},
    {
        "name": "aln",
        "type": "categorical",
        "encoding": "one_hot",
        "categories": ["negative", "positive"],
        "reference": "negative",
    },
    {"name": "lvi", "type": "boolean", "encoding": "indicator"},
]


@pytest.fixture
def nomogram(tmp_path: Path) -> CompiledBundle:
    """A seed-003-like nomogram: signature features + Ki-67, ALN, LVI, with an imaging-only fallback."""
    coefficients = {KURTOSIS: 0.0, CORRELATION: 1.0, MAX_PROBABILITY: 0.0, LARGE_AREA: 0.0}
    model = {"type": "cox", "coefficients": coefficients | {"ki67": 0.018, "aln=positive": 0.86, "lvi": 0.4}}
    fallback = {"model": {"type": "cox", "coefficients": coefficients}}
    document = linear_document(model, covariates=COVARIATES, fallback=fallback)
    given = {"ki67": 30.0, "aln": "positive", "lvi": False}
    vectors = [
        {"features": CASE, "covariates": given, "expected": {"score": 0.437 + 0.54 + 0.86}},
        {"features": CASE, "expected": {"score": 0.437, "fallback_used": True}},
    ]
    return build(tmp_path, document, vectors)


def test_covariates_are_encoded_into_the_linear_predictor(nomogram: CompiledBundle) -> None:
    result = score(nomogram, CASE, {"ki67": 30.0, "aln": "negative", "lvi": True})
    assert result.score == pytest.approx(0.437 + 0.54 + 0.4, abs=1e-12)
    assert [c.name for c in result.contributions][-3:] == ["ki67", "aln=positive", "lvi"]
    assert not result.fallback_used


def test_a_missing_covariate_runs_the_fallback_and_says_so(nomogram: CompiledBundle) -> None:
    result = score(nomogram, CASE, {"ki67": 30.0})
    assert result.fallback_used and result.missing_covariates == ("aln", "lvi")
    assert result.score == pytest.approx(0.437, abs=1e-12)


def test_without_fallback_a_missing_covariate_is_refused_by_name(tmp_path: Path) -> None:
    model = {"type": "cox", "coefficients": dict.fromkeys(FEATURES, 0.0) | {"ki67": 0.02}}
    document = linear_document(model, covariates=COVARIATES[:1])
    compiled = build(tmp_path, document, [{"features": CASE, "covariates": {"ki67": 10.0}, "expected": {"score": 0.2}}])
    with pytest.raises(CovariateValidationError) as info:
        score(compiled, CASE, {})
    assert (info.value.reason, info.value.feature) == ("COVARIATE_MISSING", "ki67")
    assert "ki67" in info.value.message


@pytest.mark.parametrize(
    ("given", "reason", "name"),
    [
        ({"ki67": 130.0}, "COVARIATE_OUT_OF_RANGE", "ki67"),
        ({"ki67": math.nan}, "COVARIATE_NOT_FINITE", "ki67"),
        ({"ki67": "high"}, "COVARIATE_WRONG_TYPE", "ki67"),
        ({"ki67": True}, "COVARIATE_WRONG_TYPE", "ki67"),
        ({"ki67": 10.0, "aln": "n3"}, "COVARIATE_UNKNOWN_CATEGORY", "aln"),
        ({"ki67": 10.0, "aln": "positive", "lvi": 1.0}, "COVARIATE_WRONG_TYPE", "lvi"),
    ],
)
def test_bad_covariates_are_refused_by_name(
    nomogram: CompiledBundle, given: dict[str, Any], reason: str, name: str
) -> None:
    with pytest.raises(CovariateValidationError) as info:
        score(nomogram, CASE, given)
    assert (info.value.reason, info.value.feature) == (reason, name)
    assert name in info.value.message


# --- feature refusals and warnings --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason", "feature"),
    [
        ({CORRELATION: None}, "FEATURE_MISSING", CORRELATION),
        ({KURTOSIS: math.nan}, "FEATURE_NOT_FINITE", KURTOSIS),
        ({LARGE_AREA: math.inf}, "FEATURE_NOT_FINITE", LARGE_AREA),
        ({MAX_PROBABILITY: "0.1"}, "FEATURE_NOT_NUMERIC", MAX_PROBABILITY),
        ({CORRELATION: 1.5}, "FEATURE_OUT_OF_RANGE", CORRELATION),
        ({LARGE_AREA: 0.5}, "FEATURE_OUT_OF_RANGE", LARGE_AREA),
    ],
)
def test_bad_features_are_refused_by_name(
    seed003: CompiledBundle, change: dict[str, Any], reason: str, feature: str
) -> None:
    features: dict[str, Any] = {**CASE, **change}
    features = {k: v for k, v in features.items() if v is not None}
    with pytest.raises(FeatureValidationError) as info:
        score(seed003, features)
    assert (info.value.reason, info.value.feature) == (reason, feature)
    assert feature in info.value.message


def test_values_outside_the_training_range_are_scored_and_flagged(tmp_path: Path) -> None:
    document = linear_document({"type": "linear_score", "coefficients": dict.fromkeys(FEATURES, 1.0)})
    document["inputs"][0]["training_range"] = [2.0, 6.0]
    compiled = build(tmp_path, document, [case_vector(CASE, score=sum(CASE.values()))])
    assert score(compiled, CASE).out_of_distribution == ()
    [warning] = score(compiled, CASE | {KURTOSIS: 9.5}).out_of_distribution
    assert (warning.name, warning.value, warning.training_min, warning.training_max) == (KURTOSIS, 9.5, 2.0, 6.0)


def test_unused_features_and_covariates_are_reported(seed003: CompiledBundle) -> None:
    result = score(seed003, CASE | {"tumour/S0/original_firstorder_Mean": 1.0}, {"age": 50.0})
    assert result.ignored == ("age", "tumour/S0/original_firstorder_Mean")
