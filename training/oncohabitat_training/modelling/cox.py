"""Unpenalised (or ridge-stabilised) Cox proportional-hazards fit with Wald statistics and Breslow baseline.

The fit is scikit-survival's :class:`~sksurv.linear_model.CoxPHSurvivalAnalysis` (Newton-Raphson on the partial
likelihood, Efron ties by default, as lifelines and R ``survival::coxph``). Standard errors come from the inverse of
the observed information at the estimate, computed by scikit-survival's own ``CoxPHOptimizer``; the baseline
survival S0(t) is scikit-survival's Breslow estimator evaluated at covariates = 0 (for z-scored features: the
training-mean patient).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.linear_model.coxph import CoxPHOptimizer

from oncohabitat_training.modelling.data import FloatArray, event_and_time, feature_matrix

Ties = Literal["efron", "breslow"]


@dataclass(frozen=True)
class CoxFit:
    """A fitted Cox model.

    Attributes
    ----------
    features : tuple of str
        Column names, in coefficient order.
    coef : ndarray, shape (p,)
        Log hazard ratios per unit of each feature.
    se : ndarray, shape (p,)
        Wald standard errors of ``coef``.
    baseline_time : ndarray
        Distinct event times of the training data (same unit as the input time), ascending.
    baseline_survival : ndarray
        Breslow baseline survival S0 at ``baseline_time`` (covariates = 0).
    """

    features: tuple[str, ...]
    coef: FloatArray
    se: FloatArray
    baseline_time: FloatArray
    baseline_survival: FloatArray

    @property
    def z(self) -> FloatArray:
        """Wald z statistics ``coef / se``."""
        return np.asarray(self.coef / self.se, dtype=np.float64)

    @property
    def p_values(self) -> FloatArray:
        """Two-sided Wald p-values."""
        return np.asarray(2.0 * stats.norm.sf(np.abs(self.z)), dtype=np.float64)

    def hazard_ratios(self, level: float = 0.95) -> pd.DataFrame:
        """Hazard ratio per unit with its Wald confidence interval (columns ``hr``, ``lower``, ``upper``, ``p``)."""
        q = stats.norm.ppf(0.5 + level / 2.0)
        return pd.DataFrame(
            {
                "hr": np.exp(self.coef),
                "lower": np.exp(self.coef - q * self.se),
                "upper": np.exp(self.coef + q * self.se),
                "p": self.p_values,
            },
            index=list(self.features),
        )

    def linear_predictor(self, table: pd.DataFrame) -> FloatArray:
        """Linear predictor (log relative hazard) ``x @ coef`` for each row of ``table``."""
        return np.asarray(feature_matrix(table, self.features) @ self.coef, dtype=np.float64)

    def baseline_at(self, horizons: Sequence[float]) -> FloatArray:
        """Breslow baseline survival S0(t) at each horizon (step function, right-continuous; 1 before 1st event).

        Raises
        ------
        ValueError
            For a horizon beyond the last training event time (no estimate there).
        """
        h = np.asarray(horizons, dtype=np.float64)
        if np.any(h > self.baseline_time[-1]):
            raise ValueError(f"horizon beyond the last training event time {self.baseline_time[-1]}")
        idx = np.searchsorted(self.baseline_time, h, side="right") - 1
        return np.where(idx >= 0, self.baseline_survival[np.maximum(idx, 0)], 1.0)

    def survival_at(self, table: pd.DataFrame, horizon: float) -> FloatArray:
        """Predicted survival probability S(horizon | x) = S0(horizon) ** exp(x @ coef) per row."""
        s0 = float(self.baseline_at([horizon])[0])
        return np.asarray(s0 ** np.exp(self.linear_predictor(table)), dtype=np.float64)


def cox_information(x: FloatArray, y: npt.NDArray[np.void], coef: FloatArray, ties: Ties = "efron") -> FloatArray:
    """Observed information matrix (negative Hessian of the log partial likelihood, summed, not averaged)."""
    event, time = event_and_time(y)
    opt = CoxPHOptimizer(x, event, time, np.zeros(x.shape[1]), ties)
    opt.update(np.asarray(coef, dtype=np.float64))
    return np.asarray(opt.hessian * x.shape[0], dtype=np.float64)


def fit_cox(
    table: pd.DataFrame,
    features: Sequence[str],
    y: npt.NDArray[np.void],
    *,
    ties: Ties = "efron",
    ridge: float = 0.0,
    n_iter: int = 100,
    tol: float = 1e-9,
) -> CoxFit:
    """Fit a Cox model on ``features`` of ``table`` against the survival outcome ``y``.

    Parameters
    ----------
    table : DataFrame
        One row per patient, rows aligned with ``y``.
    features : sequence of str
        Columns used as covariates (already encoded numerically).
    y : structured array
        From :func:`~oncohabitat_training.modelling.data.survival_array`.
    ties : {"efron", "breslow"}
        Tie handling; Efron (default) matches lifelines and R.
    ridge : float
        Optional L2 penalty (0 = unpenalised maximum partial likelihood).
    n_iter, tol : int, float
        Newton-Raphson limits passed to scikit-survival.
    """
    names = tuple(features)
    x = feature_matrix(table, names)
    model = CoxPHSurvivalAnalysis(alpha=ridge, ties=ties, n_iter=n_iter, tol=tol)
    model.fit(x, y)
    coef = np.asarray(model.coef_, dtype=np.float64)
    info = cox_information(x, y, coef, ties)
    if ridge:
        info = info + ridge * np.eye(len(names))
    se = np.sqrt(np.diag(np.linalg.inv(info)))
    step = model.baseline_survival_
    return CoxFit(
        features=names,
        coef=coef,
        se=np.asarray(se, dtype=np.float64),
        baseline_time=np.asarray(step.x, dtype=np.float64),
        baseline_survival=np.asarray(step.y, dtype=np.float64),
    )
