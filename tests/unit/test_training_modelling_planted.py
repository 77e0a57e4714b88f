"""LASSO-Cox signature steps on a synthetic cohort whose hazard depends on two known features among 50 noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from oncohabitat_training.modelling.data import survival_from_table
from oncohabitat_training.modelling.signature import CoxSignature, fit_cox_signature, fit_nomogram
from oncohabitat_training.modelling.survival_metrics import calibration_at, harrell_c, logrank
from oncohabitat_training.modelling.synthetic import (
    EVENT_COLUMN,
    SIGNAL_FEATURES,
    TIME_COLUMN,
    planted_cohort,
)

SEED = 0


@pytest.fixture(scope="module")
def cohort() -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    table = planted_cohort(700, seed=SEED)
    features = [c for c in table.columns if "/" in c]
    return table.iloc[:400], table.iloc[400:], features


@pytest.fixture(scope="module")
def signature(cohort) -> CoxSignature:
    train, _, features = cohort
    return fit_cox_signature(train, features, survival_from_table(train, TIME_COLUMN, EVENT_COLUMN), seed=SEED)


def test_training_modelling_planted_signal_is_recovered(cohort, signature) -> None:
    train, validation, _ = cohort
    coef = signature.coefficients
    assert set(SIGNAL_FEATURES) <= set(coef.index)
    weight = coef.abs()
    assert weight[list(SIGNAL_FEATURES)].sum() / weight.sum() > 0.9  # dominated by the two
    assert coef[SIGNAL_FEATURES[0]] > 0 > coef[SIGNAL_FEATURES[1]]  # planted signs: +1.0, -0.8
    y_val = survival_from_table(validation, TIME_COLUMN, EVENT_COLUMN)
    score = signature.score(validation)
    assert harrell_c(y_val, score) >= 0.70
    high = score > np.median(signature.score(train))  # cutoff fixed on training rows
    assert logrank(y_val, high.astype(int)).p < 0.01
    # the score's Cox calibration predicts lower 5-year survival in the high group
    s60 = signature.survival_at(validation, 60.0)
    assert s60[high].mean() < s60[~high].mean()


def test_training_modelling_shuffled_outcome_gives_chance_concordance(cohort) -> None:
    train, validation, features = cohort
    y_train = survival_from_table(train, TIME_COLUMN, EVENT_COLUMN)
    shuffled = y_train[np.random.default_rng(SEED).permutation(len(y_train))]
    control = fit_cox_signature(train, features, shuffled, seed=SEED)
    c = harrell_c(survival_from_table(validation, TIME_COLUMN, EVENT_COLUMN), control.score(validation))
    assert 0.45 <= c <= 0.55
    assert not set(SIGNAL_FEATURES) & set(control.coefficients.index)


def test_training_modelling_nomogram_and_calibration(cohort, signature) -> None:
    train, validation, _ = cohort
    y_train = survival_from_table(train, TIME_COLUMN, EVENT_COLUMN)
    age = pd.Series(np.random.default_rng(1).normal(55, 10, len(train)), index=train.index, name="age")
    nomogram = fit_nomogram(train.assign(age=age), signature.score(train), ["age"], y_train)
    assert nomogram.features == ("radscore", "age")
    hr = nomogram.hazard_ratios()
    assert hr.loc["radscore", "lower"] > 1.0  # the score stays significant next to a noise covariate
    assert hr.loc["age", "lower"] < 1.0 < hr.loc["age", "upper"]
    y_val = survival_from_table(validation, TIME_COLUMN, EVENT_COLUMN)
    calib = calibration_at(y_val, 1.0 - signature.survival_at(validation, 36.0), 36.0)
    assert calib.n.sum() == len(validation) and len(calib.n) == 10
    assert np.all(np.diff(calib.predicted) >= 0)
    assert np.abs(calib.predicted - calib.observed).mean() < 0.1  # well calibrated on the planted cohort


def test_training_modelling_calibration_without_censoring_is_event_fraction() -> None:
    from oncohabitat_training.modelling.data import survival_array

    t = np.array([1.0, 2, 3, 4, 5, 6, 7, 8])
    y = survival_array(t, np.ones(8))
    calib = calibration_at(y, np.linspace(0.1, 0.8, 8), 4.5, n_groups=2)
    np.testing.assert_allclose(calib.observed, [1.0, 0.0])  # first half all died by 4.5, second half none
    np.testing.assert_allclose(calib.predicted, [0.25, 0.65])
