"""DeLong AUC CI, sensitivity/specificity, net benefit, bootstrap and selection steps on hand-computable cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from oncohabitat_training.modelling.bootstrap import bootstrap_ci
from oncohabitat_training.modelling.classifier_metrics import confusion_at, delong_auc, delong_test
from oncohabitat_training.modelling.data import survival_array
from oncohabitat_training.modelling.decision_curve import net_benefit, net_benefit_survival
from oncohabitat_training.modelling.resampling import smote
from oncohabitat_training.modelling.selection import (
    Standardiser,
    binary_screen,
    correlation_filter,
    icc_2_1,
    icc_filter,
    variance_inflation,
)


def test_training_modelling_delong_small_case_by_hand() -> None:
    # positives 0.8, 0.6, 0.4; negatives 0.5, 0.3
    # V10 = (1, 1, 1/2) -> AUC = 5/6; V01 = (2/3, 1)
    # S10 = var(1, 1, 1/2) = 1/12, S01 = var(2/3, 1) = 1/18 -> Var = (1/12)/3 + (1/18)/2 = 1/18
    result = delong_auc([1, 1, 1, 0, 0], [0.8, 0.6, 0.4, 0.5, 0.3])
    assert result.auc == pytest.approx(5 / 6)
    assert result.se == pytest.approx(np.sqrt(1 / 18))
    assert result.lower == pytest.approx(5 / 6 - 1.959963984540054 * np.sqrt(1 / 18))
    assert result.upper == 1.0  # clipped


def test_training_modelling_delong_matches_sklearn_auc_and_tie_rule() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(y + rng.normal(0, 1.2, 200), 1)  # rounding creates ties
    assert delong_auc(y, s).auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    diff, p = delong_test(y, s, s)
    assert diff == 0.0 and p == 1.0
    diff, p = delong_test(y, s, rng.normal(size=200))
    assert diff > 0.1 and p < 0.01


def test_training_modelling_confusion_at_cutoff() -> None:
    m = confusion_at([1, 1, 0, 0, 1], [0.9, 0.31, 0.31, 0.1, 0.2], 0.31)  # positive = probability > 0.31
    assert (m.tp, m.fp, m.tn, m.fn) == (1, 0, 2, 2)
    assert m.sensitivity == pytest.approx(1 / 3)
    assert m.specificity == 1.0


def test_training_modelling_net_benefit_by_hand() -> None:
    y = np.array([1, 1, 0, 0, 0, 1, 0, 0, 0, 0])
    p = np.array([0.9, 0.6, 0.7, 0.2, 0.1, 0.3, 0.05, 0.4, 0.15, 0.25])
    dc = net_benefit(y, p, [0.2, 0.5])
    # p_t = 0.2: treated = p >= 0.2 -> 0.9, 0.6, 0.7, 0.2, 0.3, 0.4, 0.25 -> TP 3, FP 4; odds 1/4
    assert dc.model[0] == pytest.approx(3 / 10 - 4 / 10 * 0.25)
    # p_t = 0.5: treated 0.9, 0.6, 0.7 -> TP 2, FP 1; odds 1
    assert dc.model[1] == pytest.approx(2 / 10 - 1 / 10)
    assert dc.treat_all[0] == pytest.approx(0.3 - 0.7 * 0.25)
    assert dc.treat_all[1] == pytest.approx(0.3 - 0.7)
    np.testing.assert_array_equal(dc.treat_none, [0.0, 0.0])


def test_training_modelling_net_benefit_survival_without_censoring_equals_binary() -> None:
    rng = np.random.default_rng(1)
    t = rng.exponential(10, 50) + 0.01
    y = survival_array(t, np.ones(50))
    risk = rng.uniform(size=50)
    surv = net_benefit_survival(y, risk, 8.0, [0.1, 0.3, 0.6])
    binary = net_benefit((t <= 8.0).astype(int), risk, [0.1, 0.3, 0.6])
    np.testing.assert_allclose(surv.model, binary.model, atol=1e-12)
    np.testing.assert_allclose(surv.treat_all, binary.treat_all, atol=1e-12)


def test_training_modelling_bootstrap_is_seeded() -> None:
    x = np.random.default_rng(2).normal(5.0, 1.0, 300)

    def mean(idx: np.ndarray) -> float:
        return float(x[idx].mean())

    a = bootstrap_ci(mean, x.size, seed=7, n_boot=300)
    b = bootstrap_ci(mean, x.size, seed=7, n_boot=300)
    assert a == b
    assert a.lower < 5.0 < a.upper or abs(a.estimate - 5.0) > 0.1
    se = x.std(ddof=1) / np.sqrt(x.size)
    assert a.upper - a.lower == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_training_modelling_icc_shrout_fleiss_example() -> None:
    # Shrout & Fleiss (1979) Table 2: 6 targets x 4 judges; ICC(2,1) = 0.29
    ratings = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)
    readers = [pd.DataFrame({"f": ratings[:, j], "g": ratings[:, j] * 2 + 1}) for j in range(4)]
    icc = icc_2_1(readers, ["f", "g"])
    assert icc["f"] == pytest.approx(0.2898, abs=5e-4)
    perfect = [pd.DataFrame({"f": ratings[:, 0]})] * 2
    assert icc_2_1(perfect, ["f"])["f"] == pytest.approx(1.0)
    kept, _ = icc_filter([perfect[0], perfect[0].assign(f=ratings[:, 1])], ["f"], 0.75)
    assert kept == []


def test_training_modelling_selection_steps() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=200)
    table = pd.DataFrame(
        {"r/S0/a": a, "r/S0/b": a + rng.normal(0, 0.1, 200), "r/S0/c": rng.normal(size=200), "r/S0/d": 3 + 0 * a}
    )
    z = Standardiser.fit(table.iloc[:100], list(table.columns)).transform(table)
    assert z["r/S0/a"].iloc[:100].mean() == pytest.approx(0.0, abs=1e-12)
    assert z["r/S0/a"].iloc[:100].std(ddof=0) == pytest.approx(1.0)
    assert z["r/S0/d"].eq(0.0).all()  # constant -> scale 1
    counts = pd.DataFrame({"r/S0/n": [1, 2, 3, 4], "event": [0, 1, 0, 1]})  # integer feature column
    z_counts = Standardiser.fit(counts, ["r/S0/n"]).transform(counts)
    np.testing.assert_allclose(z_counts["r/S0/n"], (counts["r/S0/n"] - 2.5) / np.sqrt(1.25))
    assert z_counts["event"].dtype == np.int64
    names = ["r/S0/a", "r/S0/b", "r/S0/c"]
    kept, dropped = correlation_filter(table, names, 0.9)
    assert kept == ["r/S0/a", "r/S0/c"] and dropped == {"r/S0/b": "r/S0/a"}
    kept, _ = correlation_filter(table, names, 0.9, priority=pd.Series({"r/S0/a": 0.2, "r/S0/b": 0.01, "r/S0/c": 0.5}))
    assert kept == ["r/S0/b", "r/S0/c"]
    vif = variance_inflation(table, names)
    assert vif["r/S0/a"] > 10 and vif["r/S0/c"] < 1.2
    outcome = (a + rng.normal(0, 0.5, 200) > 0).astype(int)
    kept, p = binary_screen(table, names, outcome)
    assert "r/S0/a" in kept and p["r/S0/a"] < 1e-10


def test_training_modelling_smote_balances_training_rows_only() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(60, 3))
    y = np.r_[np.ones(12, int), np.zeros(48, int)]
    x_res, y_res = smote(x, y, seed=1)
    assert (y_res == 1).sum() == (y_res == 0).sum() == 48
    np.testing.assert_array_equal(x_res[:60], x)  # originals first, synthetic minority rows appended
    x_again, _ = smote(x, y, seed=1)
    np.testing.assert_array_equal(x_res, x_again)
