"""Survival evaluation metrics: concordance, time-dependent AUC, Kaplan-Meier, log-rank, hazard ratio, calibration.

Thin, typed wrappers over scikit-survival (``concordance_index_censored``, ``concordance_index_ipcw``,
``cumulative_dynamic_auc``, ``kaplan_meier_estimator``, ``compare_survival``) so that every recipe reports the same
quantities the same way. Times are in the unit of the outcome column (e.g. months); horizons use the same unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sksurv.compare import compare_survival
from sksurv.metrics import concordance_index_censored, concordance_index_ipcw, cumulative_dynamic_auc
from sksurv.nonparametric import kaplan_meier_estimator

from oncohabitat_training.modelling.cox import fit_cox
from oncohabitat_training.modelling.data import FloatArray, event_and_time


def harrell_c(y: npt.NDArray[np.void], risk: npt.ArrayLike) -> float:
    """Harrell's C-index (higher ``risk`` = earlier event; tied risks count 1/2)."""
    event, time = event_and_time(y)
    return float(concordance_index_censored(event, time, np.asarray(risk, dtype=np.float64))[0])


def uno_c(
    y_train: npt.NDArray[np.void], y_test: npt.NDArray[np.void], risk: npt.ArrayLike, tau: float | None = None
) -> float:
    """Uno's IPCW C-index up to ``tau`` (censoring distribution estimated on ``y_train``; Uno et al. 2011)."""
    return float(concordance_index_ipcw(y_train, y_test, np.asarray(risk, dtype=np.float64), tau=tau)[0])


def time_dependent_auc(
    y_train: npt.NDArray[np.void], y_test: npt.NDArray[np.void], risk: npt.ArrayLike, horizons: Sequence[float]
) -> FloatArray:
    """Cumulative/dynamic AUC at each horizon (IPCW, Uno et al. 2007; censoring estimated on ``y_train``)."""
    auc, _ = cumulative_dynamic_auc(y_train, y_test, np.asarray(risk, dtype=np.float64), np.asarray(horizons))
    return np.asarray(auc, dtype=np.float64)


@dataclass(frozen=True)
class KaplanMeier:
    """A Kaplan-Meier curve: survival at each distinct time, with a pointwise log-log 95 % band."""

    time: FloatArray
    survival: FloatArray
    lower: FloatArray
    upper: FloatArray
    n: int
    events: int

    def at(self, t: float) -> float:
        """Survival probability at time ``t`` (1 before the first time; last value after the last)."""
        i = int(np.searchsorted(self.time, t, side="right")) - 1
        return 1.0 if i < 0 else float(self.survival[i])


def kaplan_meier(y: npt.NDArray[np.void]) -> KaplanMeier:
    """Kaplan-Meier estimate of ``y`` (product-limit; Greenwood variance, log-log interval)."""
    event, time = event_and_time(y)
    t, s, ci = kaplan_meier_estimator(event, time, conf_type="log-log")
    return KaplanMeier(
        time=np.asarray(t, dtype=np.float64),
        survival=np.asarray(s, dtype=np.float64),
        lower=np.asarray(ci[0], dtype=np.float64),
        upper=np.asarray(ci[1], dtype=np.float64),
        n=len(event),
        events=int(event.sum()),
    )


@dataclass(frozen=True)
class LogRank:
    """Log-rank test result: chi-square statistic, degrees of freedom and p-value."""

    chisq: float
    df: int
    p: float


def logrank(y: npt.NDArray[np.void], groups: npt.ArrayLike) -> LogRank:
    """Log-rank (Mantel-Haenszel) test of equal survival across ``groups`` (any hashable labels)."""
    g = np.asarray(groups)
    labels = np.unique(g)
    if labels.size < 2:
        raise ValueError("log-rank needs at least two groups")
    chisq, p = compare_survival(y, g)
    return LogRank(chisq=float(chisq), df=int(labels.size - 1), p=float(p))


def km_by_group(y: npt.NDArray[np.void], groups: npt.ArrayLike) -> dict[str, KaplanMeier]:
    """One Kaplan-Meier curve per group label (keys are ``str(label)``, in sorted label order)."""
    g = np.asarray(groups)
    return {str(label): kaplan_meier(y[g == label]) for label in np.unique(g)}


@dataclass(frozen=True)
class HazardRatio:
    """Hazard ratio of one covariate (e.g. high vs low risk group) with its Wald confidence interval."""

    hr: float
    lower: float
    upper: float
    p: float
    level: float


def hazard_ratio(y: npt.NDArray[np.void], covariate: npt.ArrayLike, level: float = 0.95) -> HazardRatio:
    """Univariable Cox hazard ratio per unit of ``covariate`` (a 0/1 group indicator gives high-vs-low)."""
    table = pd.DataFrame({"covariate": np.asarray(covariate, dtype=np.float64)})
    row = fit_cox(table, ["covariate"], y).hazard_ratios(level).iloc[0]
    return HazardRatio(
        hr=float(row["hr"]), lower=float(row["lower"]), upper=float(row["upper"]), p=float(row["p"]), level=level
    )


@dataclass(frozen=True)
class Calibration:
    """Calibration at a horizon by risk group: mean predicted vs Kaplan-Meier observed event probability."""

    horizon: float
    predicted: FloatArray
    observed: FloatArray
    observed_lower: FloatArray
    observed_upper: FloatArray
    n: npt.NDArray[np.int64]


def calibration_at(
    y: npt.NDArray[np.void], predicted_event_prob: npt.ArrayLike, horizon: float, n_groups: int = 10
) -> Calibration:
    """Group patients by quantile of predicted event probability at ``horizon`` (deciles by default).

    Parameters
    ----------
    y : structured array
        Observed outcome.
    predicted_event_prob : array-like
        Predicted probability of the event by ``horizon`` (1 - S(horizon | x)).
    horizon : float
        Time at which calibration is assessed (outcome time unit).
    n_groups : int
        Number of quantile groups; ties in prediction keep equal values in one group.

    Returns
    -------
    Calibration
        Per group: mean predicted probability, observed 1 - KM(horizon) with its 95 % band, group size.
    """
    p = np.asarray(predicted_event_prob, dtype=np.float64)
    ranks = pd.Series(p).rank(method="first").to_numpy()
    group = np.minimum((ranks - 1) * n_groups // len(p), n_groups - 1).astype(int)
    pred, obs, lo, hi, sizes = [], [], [], [], []
    for k in range(n_groups):
        sel = group == k
        if not sel.any():
            continue
        km = kaplan_meier(y[sel])
        i = int(np.searchsorted(km.time, horizon, side="right")) - 1
        s, s_lo, s_hi = (1.0, 1.0, 1.0) if i < 0 else (km.survival[i], km.lower[i], km.upper[i])
        pred.append(float(p[sel].mean()))
        obs.append(1.0 - float(s))
        lo.append(1.0 - float(s_hi))
        hi.append(1.0 - float(s_lo))
        sizes.append(int(sel.sum()))
    return Calibration(
        horizon=horizon,
        predicted=np.array(pred),
        observed=np.array(obs),
        observed_lower=np.array(lo),
        observed_upper=np.array(hi),
        n=np.array(sizes, dtype=np.int64),
    )
