"""Cutoffs: time-dependent ROC with Youden cutoff, maximally selected log-rank with a minimum group fraction."""

from __future__ import annotations

import numpy as np
import pytest
from sksurv.compare import compare_survival
from sksurv.metrics import cumulative_dynamic_auc

from oncohabitat_training.modelling.cutoffs import (
    apply_cutoff,
    lausen_schumacher_p,
    logrank_statistics,
    max_selected_logrank,
    time_dependent_roc,
)
from oncohabitat_training.modelling.data import survival_array, survival_from_table
from oncohabitat_training.modelling.synthetic import EVENT_COLUMN, SIGNAL_FEATURES, TIME_COLUMN, planted_cohort


@pytest.fixture(scope="module")
def cohort() -> tuple[np.ndarray, np.ndarray]:
    table = planted_cohort(300, seed=3)
    y = survival_from_table(table, TIME_COLUMN, EVENT_COLUMN)
    score = table[SIGNAL_FEATURES[0]].to_numpy() - table[SIGNAL_FEATURES[1]].to_numpy()
    return y, score


def test_training_modelling_time_dependent_roc_matches_sksurv_and_youden(cohort) -> None:
    y, score = cohort
    roc = time_dependent_roc(y, y, score, 36.0)
    assert roc.auc == pytest.approx(float(cumulative_dynamic_auc(y, y, score, [36.0])[0][0]), abs=1e-12)
    assert roc.auc > 0.75
    j = roc.sensitivity + roc.specificity - 1.0
    assert roc.youden_index == pytest.approx(j.max())
    # the Youden cutoff reproduces that index when applied with the "score > cutoff" rule
    high = apply_cutoff(score, roc.youden_cutoff)
    controls = y["time"] > 36.0
    spec = float((~high[controls]).mean())
    k = int(np.flatnonzero(roc.thresholds == roc.youden_cutoff)[0])
    assert spec == pytest.approx(roc.specificity[k])


def test_training_modelling_logrank_statistics_match_sksurv(cohort) -> None:
    y, score = cohort
    splits = np.column_stack([score > q for q in np.quantile(score, [0.2, 0.5, 0.8])])
    z = logrank_statistics(y, splits)
    for k in range(splits.shape[1]):
        assert z[k] ** 2 == pytest.approx(compare_survival(y, splits[:, k])[0], rel=1e-9)
    # with ties in time: one group dies earlier
    y_tied = survival_array([1, 1, 2, 2, 3, 3, 4, 4], [1, 1, 1, 0, 1, 1, 0, 1])
    g = np.array([True, True, True, True, False, False, False, False])
    assert logrank_statistics(y_tied, g) ** 2 == pytest.approx(compare_survival(y_tied, g)[0], rel=1e-9)


@pytest.mark.parametrize("min_fraction", [0.1, 0.25, 0.4])
def test_training_modelling_max_selected_logrank_respects_min_fraction(cohort, min_fraction: float) -> None:
    y, score = cohort
    result = max_selected_logrank(y, score, min_fraction=min_fraction)
    n = score.size
    for c in result.candidates:
        high = int((score > c).sum())
        assert min(high, n - high) >= np.ceil(min_fraction * n)
    high = int((score > result.cutoff).sum())
    assert min(high, n - high) >= np.ceil(min_fraction * n)
    assert result.statistic == pytest.approx(result.statistics.max())
    assert result.statistic**2 == pytest.approx(compare_survival(y, score > result.cutoff)[0], rel=1e-9)
    assert result.p_value >= result.naive_p_value  # the search is paid for
    assert result.p_value < 1e-6  # strong planted signal


def test_training_modelling_max_selected_logrank_finds_a_planted_threshold() -> None:
    rng = np.random.default_rng(5)
    score = rng.uniform(0, 100, 400)
    rate = np.where(score > 70.0, 1 / 10, 1 / 60)  # hazard jumps at 70
    t = rng.exponential(1 / rate)
    c = rng.uniform(0, 80, 400)
    y = survival_array(np.minimum(t, c), t <= c)
    result = max_selected_logrank(y, score, min_fraction=0.1)
    assert 60.0 < result.cutoff < 80.0
    with pytest.raises(ValueError):
        max_selected_logrank(y, score, min_fraction=0.5)


def test_training_modelling_lausen_schumacher_known_value() -> None:
    # maxstat's pLausen92(b = 3, minprop = 0.1): 4 phi(3)/3 + phi(3)(3 - 1/3) log(81)
    phi = np.exp(-4.5) / np.sqrt(2 * np.pi)
    expected = 4 * phi / 3 + phi * (3 - 1 / 3) * np.log(81.0)
    assert lausen_schumacher_p(3.0, 0.1) == pytest.approx(expected, rel=1e-12)
    assert lausen_schumacher_p(0.5, 0.1) == 1.0
