"""Modelling statistics core against independent implementations on real data (GBSG2, 686 patients).

scikit-survival's bundled German Breast Cancer Study Group 2 cohort; lifelines is the independent reference
(Cox: CoxPHFitter; Kaplan-Meier: KaplanMeierFitter; log-rank: logrank_test). lifelines is used only here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import logrank_test
from sksurv.datasets import load_gbsg2
from sksurv.preprocessing import OneHotEncoder

from oncohabitat_training.modelling.cox import fit_cox
from oncohabitat_training.modelling.data import survival_array
from oncohabitat_training.modelling.lasso_cox import fit_lasso_cox_cv
from oncohabitat_training.modelling.selection import Standardiser
from oncohabitat_training.modelling.survival_metrics import harrell_c, hazard_ratio, kaplan_meier, logrank


@pytest.fixture(scope="module")
def gbsg2() -> tuple[pd.DataFrame, np.ndarray]:
    x, y = load_gbsg2()
    table = OneHotEncoder().fit_transform(x).astype(np.float64)
    return table, survival_array(y["time"], y["cens"])


@pytest.fixture(scope="module")
def lifelines_cox(gbsg2: tuple[pd.DataFrame, np.ndarray]) -> CoxPHFitter:
    table, y = gbsg2
    df = table.assign(T=y["time"], E=y["event"].astype(int))
    return CoxPHFitter().fit(df, duration_col="T", event_col="E")


def test_training_modelling_cox_matches_lifelines(gbsg2, lifelines_cox) -> None:
    table, y = gbsg2
    assert len(table) == 686
    fit = fit_cox(table, list(table.columns), y)
    ref = lifelines_cox
    coef_diff = np.abs(fit.coef - ref.params_[list(table.columns)].to_numpy()).max()
    se_diff = np.abs(fit.se - ref.standard_errors_[list(table.columns)].to_numpy()).max()
    assert coef_diff < 1e-4
    assert se_diff < 1e-4
    np.testing.assert_allclose(fit.p_values, ref.summary["p"].to_numpy(), rtol=1e-3, atol=1e-8)
    hr = fit.hazard_ratios()
    np.testing.assert_allclose(hr["lower"], ref.summary["exp(coef) lower 95%"], rtol=1e-4)
    np.testing.assert_allclose(hr["upper"], ref.summary["exp(coef) upper 95%"], rtol=1e-4)
    c = harrell_c(y, fit.linear_predictor(table))
    assert round(c, 3) == round(ref.concordance_index_, 3)
    # absolute survival at 5 years (Breslow baseline) agrees with lifelines' prediction per patient
    ours = fit.survival_at(table, 1825.0)
    theirs = ref.predict_survival_function(table, times=[1825.0]).to_numpy().ravel()
    assert np.abs(ours - theirs).max() < 1e-3


def test_training_modelling_kaplan_meier_and_logrank_match_lifelines(gbsg2) -> None:
    table, y = gbsg2
    km = kaplan_meier(y)
    ref = KaplanMeierFitter().fit(y["time"], y["event"])
    ref_surv = ref.survival_function_at_times(km.time).to_numpy()
    np.testing.assert_allclose(km.survival, ref_surv, atol=1e-12)
    ci = ref.confidence_interval_survival_function_
    ref_lower = np.interp(km.time, ci.index.to_numpy(), ci.iloc[:, 0].to_numpy())
    np.testing.assert_allclose(km.lower, ref_lower, atol=1e-6)
    for t in (365.0, 1000.0, 1825.0):
        assert km.at(t) == pytest.approx(float(ref.predict(t)), abs=1e-12)

    treated = table["horTh=yes"].to_numpy() > 0
    ours = logrank(y, treated.astype(int))
    theirs = logrank_test(y["time"][treated], y["time"][~treated], y["event"][treated], y["event"][~treated])
    assert ours.chisq == pytest.approx(theirs.test_statistic, rel=1e-9)
    assert ours.p == pytest.approx(theirs.p_value, rel=1e-9)
    assert ours.p < 0.01  # hormone therapy is a known prognostic factor in GBSG2

    hr = hazard_ratio(y, treated.astype(float))
    ref_cox = CoxPHFitter().fit(
        pd.DataFrame({"g": treated.astype(float), "T": y["time"], "E": y["event"].astype(int)}), "T", "E"
    )
    assert hr.hr == pytest.approx(float(np.exp(ref_cox.params_["g"])), rel=1e-5)
    assert hr.lower == pytest.approx(float(ref_cox.summary["exp(coef) lower 95%"].iloc[0]), rel=1e-4)


def test_training_modelling_lasso_cox_cv_is_deterministic(gbsg2) -> None:
    table, y = gbsg2
    features = list(table.columns)
    z = Standardiser.fit(table, features).transform(table)
    first = fit_lasso_cox_cv(z, features, y, seed=17)
    second = fit_lasso_cox_cv(z, features, y, seed=17)
    np.testing.assert_array_equal(first.alphas, second.alphas)
    np.testing.assert_array_equal(first.coef_path, second.coef_path)
    np.testing.assert_array_equal(first.cv_mean, second.cv_mean)
    np.testing.assert_array_equal(first.folds, second.folds)
    assert (first.index_min, first.index_1se) == (second.index_min, second.index_1se)
    assert first.alpha_1se >= first.alpha_min
    # folds are stratified on the event: each fold's event fraction is within one patient of the overall one
    overall = y["event"].mean()
    for k in range(10):
        fold = first.folds == k
        assert abs(y["event"][fold].mean() - overall) <= 1.0 / fold.sum() + 1e-12
    # the strongest known prognostic factors (positive nodes, progesterone receptor) are kept at lambda_1se
    chosen = first.coefficients("1se")
    assert {"pnodes", "progrec"} <= set(chosen.index)
    assert chosen["pnodes"] > 0 > chosen["progrec"]
