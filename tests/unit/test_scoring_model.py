"""Scoring engine: seed-003 formula and groups, refusals, logistic / Cox / z-score bundles built here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oncohabitat.bundles import Bundle, load_bundle, write_bundle
from oncohabitat.scoring import FeatureValidationError, UnsupportedModelError, score
from tests.unit.test_bundle_loader import SEED003, seed_document

KURTOSIS = "original_firstorder_Kurtosis"
CORRELATION = "original_glcm_Correlation"
MAX_PROBABILITY = "original_glcm_MaximumProbability"
LARGE_AREA = "original_glszm_LargeAreaEmphasis"

# Plausible raw pyradiomics values for a CT tumour (not from any patient).
CASE = {KURTOSIS: 4.21, CORRELATION: 0.437, MAX_PROBABILITY: 0.118, LARGE_AREA: 2315.7}


@pytest.fixture(scope="module")
def seed003() -> Bundle:
    return load_bundle(SEED003)


def seed003_formula(kurtosis: float, correlation: float, max_probability: float, large_area: float) -> float:
    """The published signature, typed in from the paper (no intercept)."""
    return (
        kurtosis * (-5.570173e-03)
        + correlation * (1.004042e00)
        + max_probability * (-9.648413e-01)
        + large_area * (1.643472e-08)
    )


def single_feature_bundle(tmp_path: Path, **changes: Any) -> Bundle:
    """A linear_score bundle on Correlation alone (coefficient 1, no intercept) with the given changes."""
    document = seed_document()
    document.update(
        id="one-feature",
        model={"type": "linear_score"},
        features=[document["features"][1]],
        coefficients=[1.0],
    )
    document.update(changes)
    return write_bundle(tmp_path, document)


# --- seed 003 -----------------------------------------------------------------------------------------


def test_seed003_score_equals_the_published_formula(seed003: Bundle) -> None:
    result = score(seed003, CASE)
    expected = seed003_formula(4.21, 0.437, 0.118, 2315.7)
    assert result.score == expected
    assert result.risk_group == ("high" if expected > 0.185 else "low")
    assert result.cutoff == 0.185
    assert (result.model_id, result.model_version) == ("seed003-ct-dfs", "1.0.0")
    assert result.manifest_sha256 == seed003.manifest_sha256
    assert result.probability is None
    assert result.survival == ()
    assert [c.key for c in result.contributions] == [KURTOSIS, CORRELATION, MAX_PROBABILITY, LARGE_AREA]
    for contribution, coefficient in zip(
        result.contributions, [-5.570173e-03, 1.004042, -9.648413e-01, 1.643472e-08], strict=True
    ):
        assert contribution.value == CASE[contribution.key]
        assert contribution.scaled_value == CASE[contribution.key]  # raw features
        assert contribution.coefficient == coefficient
        assert contribution.contribution == coefficient * CASE[contribution.key]


@pytest.mark.parametrize("offset", [-1e-9, 1e-9, -0.05, 0.05])
def test_seed003_groups_around_the_cutoff(seed003: Bundle, offset: float) -> None:
    rest = seed003_formula(4.21, 0.0, 0.118, 2315.7)
    correlation = (0.185 + offset - rest) / 1.004042
    features = {**CASE, CORRELATION: correlation}
    result = score(seed003, features)
    assert result.score == seed003_formula(4.21, correlation, 0.118, 2315.7)
    assert math.isclose(result.score, 0.185 + offset, abs_tol=1e-12)
    assert result.risk_group == ("high" if offset > 0 else "low")


def test_exactly_at_the_cutoff(tmp_path: Path) -> None:
    greater = single_feature_bundle(tmp_path / "a")
    greater_equal = single_feature_bundle(
        tmp_path / "b",
        cutoffs=[{"value": 0.185, "direction": "greater_equal", "low_label": "low", "high_label": "high"}],
    )
    above, below = np.nextafter(0.185, 1.0), np.nextafter(0.185, 0.0)
    for value, expected_greater, expected_greater_equal in (
        (0.185, "low", "high"),
        (above, "high", "high"),
        (below, "low", "low"),
    ):
        assert score(greater, {CORRELATION: float(value)}).risk_group == expected_greater
        assert score(greater_equal, {CORRELATION: float(value)}).risk_group == expected_greater_equal


def test_three_groups_from_two_cutoffs(tmp_path: Path) -> None:
    bundle = single_feature_bundle(
        tmp_path,
        cutoffs=[
            {"value": -0.2, "direction": "greater", "low_label": "low", "high_label": "intermediate"},
            {"value": 0.4, "direction": "greater", "low_label": "intermediate", "high_label": "high"},
        ],
    )
    groups = {v: score(bundle, {CORRELATION: v}) for v in (-0.5, -0.2, 0.0, 0.4, 0.9)}
    assert {v: (r.risk_group, r.cutoff) for v, r in groups.items()} == {
        -0.5: ("low", -0.2),
        -0.2: ("low", -0.2),
        0.0: ("intermediate", 0.4),
        0.4: ("intermediate", 0.4),
        0.9: ("high", 0.4),
    }


def test_no_cutoff_no_group(tmp_path: Path) -> None:
    result = score(single_feature_bundle(tmp_path, cutoffs=[]), {CORRELATION: 0.3})
    assert (result.score, result.risk_group, result.cutoff) == (0.3, None, None)


# --- refusals -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason", "feature"),
    [
        ({CORRELATION: None}, "FEATURE_MISSING", CORRELATION),
        ({LARGE_AREA: math.nan}, "FEATURE_NOT_FINITE", LARGE_AREA),
        ({KURTOSIS: math.inf}, "FEATURE_NOT_FINITE", KURTOSIS),
        ({MAX_PROBABILITY: -math.inf}, "FEATURE_NOT_FINITE", MAX_PROBABILITY),
        ({CORRELATION: 1.5}, "FEATURE_OUT_OF_RANGE", CORRELATION),
        ({MAX_PROBABILITY: -0.01}, "FEATURE_OUT_OF_RANGE", MAX_PROBABILITY),
        ({LARGE_AREA: 0.5}, "FEATURE_OUT_OF_RANGE", LARGE_AREA),
        ({KURTOSIS: "4.2"}, "FEATURE_NOT_NUMERIC", KURTOSIS),
        ({KURTOSIS: True}, "FEATURE_NOT_NUMERIC", KURTOSIS),
    ],
)
def test_refusals(seed003: Bundle, change: dict[str, Any], reason: str, feature: str) -> None:
    features: dict[str, Any] = {**CASE, **change}
    features = {k: v for k, v in features.items() if v is not None}
    with pytest.raises(FeatureValidationError) as info:
        score(seed003, features)
    assert (info.value.reason, info.value.feature) == (reason, feature)
    assert feature in info.value.message


def test_range_bounds_are_inclusive(seed003: Bundle) -> None:
    result = score(seed003, {**CASE, CORRELATION: 1.0, MAX_PROBABILITY: 0.0, LARGE_AREA: 1.0, KURTOSIS: 0.0})
    assert result.score == seed003_formula(0.0, 1.0, 0.0, 1.0)


def test_unknown_extra_features_are_ignored(seed003: Bundle) -> None:
    plain = score(seed003, CASE)
    extra = score(seed003, {**CASE, "original_glcm_Contrast": 12.0, "something_else": math.nan})
    assert extra.score == plain.score
    assert extra.ignored_features == ("original_glcm_Contrast", "something_else")
    assert plain.ignored_features == ()


def test_numpy_and_int_values_are_accepted(seed003: Bundle) -> None:
    features: dict[str, Any] = {
        KURTOSIS: np.float32(4.0),
        CORRELATION: np.float64(0.5),
        MAX_PROBABILITY: 0.1,
        LARGE_AREA: 2000,
    }
    assert score(seed003, features).score == seed003_formula(4.0, 0.5, 0.1, 2000.0)


def test_overflowing_score_is_refused(tmp_path: Path) -> None:
    document = seed_document()
    document["features"][3]["valid_range"] = None
    document["coefficients"][3] = 1e300
    bundle = write_bundle(tmp_path, {**document, "id": "overflow"})
    with pytest.raises(FeatureValidationError) as info:
        score(bundle, {**CASE, LARGE_AREA: 1e300})
    assert info.value.reason == "SCORE_NOT_FINITE"


def test_random_forest_is_declared_but_not_executed(tmp_path: Path) -> None:
    document = seed_document()
    document.update(id="rf", model={"type": "random_forest", "file": "forest.json"}, coefficients=[])
    bundle = write_bundle(tmp_path, document, {"forest.json": b"{}"})
    with pytest.raises(UnsupportedModelError) as info:
        score(bundle, CASE)
    assert info.value.reason == "UNSUPPORTED_MODEL_TYPE"


# --- other model types --------------------------------------------------------------------------------


ZSCORE: dict[str, Any] = {
    "type": "zscore",
    "mean": {KURTOSIS: 3.5, CORRELATION: 0.4, MAX_PROBABILITY: 0.15, LARGE_AREA: 1800.0},
    "std": {KURTOSIS: 1.2, CORRELATION: 0.15, MAX_PROBABILITY: 0.05, LARGE_AREA: 900.0},
}


def test_logistic_bundle_gives_the_probability(tmp_path: Path) -> None:
    document = seed_document()
    document.update(
        id="logistic-demo",
        model={"type": "logistic"},
        scaler=ZSCORE,
        coefficients=[0.8, -1.1, 0.45, 0.3],
        intercept=-0.7,
        cutoffs=[
            {
                "value": 0.31,
                "direction": "greater_equal",
                "low_label": "non-pCR",
                "high_label": "pCR",
                "applies_to": "probability",
            }
        ],
    )
    bundle = write_bundle(tmp_path, document)
    result = score(bundle, CASE)
    z = {k: (CASE[k] - ZSCORE["mean"][k]) / ZSCORE["std"][k] for k in CASE}
    log_odds = -0.7 + 0.8 * z[KURTOSIS] + (-1.1) * z[CORRELATION] + 0.45 * z[MAX_PROBABILITY] + 0.3 * z[LARGE_AREA]
    probability = 1.0 / (1.0 + math.exp(-log_odds))
    assert result.score == pytest.approx(log_odds, rel=1e-12)
    assert result.probability == pytest.approx(probability, rel=1e-12)
    assert [c.scaled_value for c in result.contributions] == pytest.approx([z[k] for k in CASE], rel=1e-12)
    assert result.compared_to_cutoff == "probability"
    assert result.risk_group == ("pCR" if probability >= 0.31 else "non-pCR")
    assert result.cutoff == 0.31


def test_logistic_probability_is_stable_at_extremes(tmp_path: Path) -> None:
    bundle = single_feature_bundle(tmp_path, model={"type": "logistic"}, coefficients=[900.0], cutoffs=[])
    assert score(bundle, {CORRELATION: -1.0}).probability == 0.0
    assert score(bundle, {CORRELATION: 1.0}).probability == 1.0
    assert score(bundle, {CORRELATION: 0.0}).probability == 0.5


def test_cox_bundle_gives_the_survival_curve(tmp_path: Path) -> None:
    times = [12.0, 24.0, 36.0, 60.0]
    s0 = [0.97, 0.91, 0.86, 0.78]
    document = seed_document()
    document.update(
        id="cox-demo",
        scaler=ZSCORE,
        coefficients=[0.25, 0.6, -0.4, 0.1],
        baseline_survival={"times": times, "survival": s0},
        time_unit="months",
    )
    bundle = write_bundle(tmp_path, document)
    result = score(bundle, CASE)
    z = {k: (CASE[k] - ZSCORE["mean"][k]) / ZSCORE["std"][k] for k in CASE}
    lp = 0.25 * z[KURTOSIS] + 0.6 * z[CORRELATION] + (-0.4) * z[MAX_PROBABILITY] + 0.1 * z[LARGE_AREA]
    assert result.score == pytest.approx(lp, rel=1e-12)
    assert [p.time for p in result.survival] == times
    assert [p.probability for p in result.survival] == pytest.approx([s ** math.exp(lp) for s in s0], rel=1e-12)
    assert result.time_unit == "months"
    # Higher risk, lower survival at every time.
    riskier = score(bundle, {**CASE, CORRELATION: CASE[CORRELATION] + 0.3})
    assert all(a.probability < b.probability for a, b in zip(riskier.survival, result.survival, strict=True))


def test_elastic_net_regression_estimate(tmp_path: Path) -> None:
    document = seed_document()
    document.update(
        id="enet-demo",
        model={"type": "elastic_net"},
        intercept=25.0,
        cutoffs=[{"value": 29.9, "direction": "greater", "low_label": "low pRS", "high_label": "high pRS"}],
    )
    result = score(write_bundle(tmp_path, document), CASE)
    assert result.score == pytest.approx(25.0 + seed003_formula(4.21, 0.437, 0.118, 2315.7), rel=1e-15)
    assert result.risk_group == "low pRS"
