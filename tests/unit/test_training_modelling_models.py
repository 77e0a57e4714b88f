"""LASSO-logistic (+SMOTE in training folds), logistic refit, elastic net with RFE and random forest: planted
signal recovered, same seed -> same result."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from oncohabitat_training.modelling.classifier_metrics import delong_auc
from oncohabitat_training.modelling.elastic_net import fit_elastic_net
from oncohabitat_training.modelling.forest import fit_random_forest
from oncohabitat_training.modelling.logistic import fit_lasso_logistic_cv, fit_logistic
from oncohabitat_training.modelling.selection import Standardiser
from oncohabitat_training.modelling.synthetic import BINARY_COLUMN, SIGNAL_FEATURES, planted_cohort


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    table = planted_cohort(500, seed=0, n_noise=30)
    features = [c for c in table.columns if "/" in c]
    z = Standardiser.fit(table.iloc[:300], features).transform(table)
    return z.iloc[:300], z.iloc[300:], features


def test_training_modelling_lasso_logistic_selects_the_signal(data) -> None:
    train, validation, features = data
    y = train[BINARY_COLUMN].to_numpy()
    cv = fit_lasso_logistic_cv(train, features, y, seed=0, use_smote=True)
    again = fit_lasso_logistic_cv(train, features, y, seed=0, use_smote=True)
    np.testing.assert_array_equal(cv.coef_path, again.coef_path)
    np.testing.assert_array_equal(cv.cv_mean, again.cv_mean)
    assert cv.lambdas[cv.index_1se] >= cv.lambdas[cv.index_min]
    chosen = cv.selected("1se")
    assert set(SIGNAL_FEATURES) <= set(chosen) and len(chosen) <= 4
    model = fit_logistic(train, chosen, y, seed=0)
    assert model.coef[chosen.index(SIGNAL_FEATURES[0])] > 0 > model.coef[chosen.index(SIGNAL_FEATURES[1])]
    assert delong_auc(validation[BINARY_COLUMN], model.probability(validation)).auc > 0.75
    # the refit is the plain maximum-likelihood logistic regression
    ref = LogisticRegression(C=np.inf, max_iter=10_000, tol=1e-10).fit(train[chosen].to_numpy(), y)
    np.testing.assert_allclose(model.coef, ref.coef_.ravel(), rtol=1e-6)


def test_training_modelling_elastic_net_with_rfe(data) -> None:
    train, _, features = data
    rng = np.random.default_rng(1)
    target = 30 + 6 * train[SIGNAL_FEATURES[0]] - 4 * train[SIGNAL_FEATURES[1]] + rng.normal(0, 5, len(train))
    model = fit_elastic_net(train, features, target, seed=0)
    assert set(SIGNAL_FEATURES) <= set(model.features) and len(model.features) <= 5
    coef = dict(zip(model.features, model.coef, strict=True))
    signal_weight = abs(coef[SIGNAL_FEATURES[0]]) + abs(coef[SIGNAL_FEATURES[1]])
    assert signal_weight / np.abs(model.coef).sum() > 0.9
    assert coef[SIGNAL_FEATURES[0]] == pytest.approx(6, abs=1.0)
    assert coef[SIGNAL_FEATURES[1]] == pytest.approx(-4, abs=1.0)
    fixed = fit_elastic_net(train, features, target, seed=0, n_features=5)
    assert len(fixed.features) == 5 and set(SIGNAL_FEATURES) <= set(fixed.features)
    again = fit_elastic_net(train, features, target, seed=0, n_features=5)
    np.testing.assert_array_equal(fixed.coef, again.coef)
    assert (fixed.alpha, fixed.l1_ratio) == (again.alpha, again.l1_ratio)


def test_training_modelling_random_forest_is_seeded(data) -> None:
    train, validation, features = data
    y = train[BINARY_COLUMN]
    forest = fit_random_forest(train, features, y, seed=4, n_estimators=150)
    again = fit_random_forest(train, features, y, seed=4, n_estimators=150)
    np.testing.assert_array_equal(forest.probability(validation), again.probability(validation))
    assert delong_auc(validation[BINARY_COLUMN], forest.probability(validation)).auc > 0.7
    assert set(forest.importances().nlargest(2).index) == set(SIGNAL_FEATURES)
