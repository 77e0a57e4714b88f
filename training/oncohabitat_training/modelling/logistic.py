"""LASSO-logistic with K-fold CV (SMOTE inside each training fold only), then an unpenalised logistic refit.

Seed 001's pCR recipe: LASSO with 10-fold CV selects features, a logistic regression on the selected features gives
the probability. The penalty grid follows glmnet: lambda from lambda_max = max_j |x_j' (y - mean y)| / n (the
smallest penalty that zeroes every coefficient on standardised features) down to ``lambda_ratio * lambda_max``,
log-spaced; scikit-learn's ``C`` is 1 / (n lambda). The CV criterion is the held-out binomial deviance per patient;
lambda_min minimises it and lambda_1se is the largest penalty within one standard error. The L1 fits use liblinear
(deterministic) with a large intercept scaling so that the intercept is practically unpenalised.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from oncohabitat_training.modelling.data import FloatArray, feature_matrix
from oncohabitat_training.modelling.lasso_cox import stratified_folds
from oncohabitat_training.modelling.resampling import smote

INTERCEPT_SCALING = 100.0


@dataclass(frozen=True)
class LogisticModel:
    """A logistic model: probability = 1 / (1 + exp(-(intercept + x @ coef))) on the listed features."""

    features: tuple[str, ...]
    coef: FloatArray
    intercept: float

    def linear_predictor(self, table: pd.DataFrame) -> FloatArray:
        """Log-odds of the positive class per row."""
        return np.asarray(self.intercept + feature_matrix(table, self.features) @ self.coef, dtype=np.float64)

    def probability(self, table: pd.DataFrame) -> FloatArray:
        """Predicted probability of the positive class per row."""
        return np.asarray(1.0 / (1.0 + np.exp(-self.linear_predictor(table))), dtype=np.float64)


@dataclass(frozen=True)
class LassoLogisticCV:
    """CV path of the L1-penalised logistic regression.

    Attributes
    ----------
    features : tuple of str
        Candidates, in the row order of ``coef_path``.
    lambdas : ndarray, shape (m,)
        Penalties (glmnet scale), decreasing.
    coef_path : ndarray, shape (p, m)
        Coefficients fitted on all training rows (SMOTE-balanced when enabled).
    cv_mean, cv_se : ndarray, shape (m,)
        Held-out binomial deviance per patient and its standard error over folds.
    index_min, index_1se : int
        Positions of lambda_min and lambda_1se.
    """

    features: tuple[str, ...]
    lambdas: FloatArray
    coef_path: FloatArray
    cv_mean: FloatArray
    cv_se: FloatArray
    index_min: int
    index_1se: int

    def selected(self, choice: Literal["min", "1se"] = "1se") -> list[str]:
        """Features with a non-zero coefficient at ``choice``."""
        idx = {"min": self.index_min, "1se": self.index_1se}[choice]
        return [f for f, c in zip(self.features, self.coef_path[:, idx], strict=True) if c != 0.0]


def _l1_fit(x: FloatArray, y: npt.NDArray[np.int64], lam: float, seed: int) -> LogisticRegression:
    model = LogisticRegression(
        l1_ratio=1.0,
        C=1.0 / (x.shape[0] * lam),
        solver="liblinear",
        intercept_scaling=INTERCEPT_SCALING,
        random_state=seed,
        max_iter=1000,
        tol=1e-6,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y)


def _deviance(y: npt.NDArray[np.int64], p: FloatArray) -> float:
    q = np.clip(p, 1e-15, 1.0 - 1e-15)
    return float(-2.0 * np.mean(y * np.log(q) + (1 - y) * np.log(1.0 - q)))


def _balance(x: FloatArray, y: npt.NDArray[np.int64], use_smote: bool, seed: int) -> tuple[FloatArray, npt.NDArray]:
    return smote(x, y, seed=seed) if use_smote else (x, y)


def fit_lasso_logistic_cv(
    table: pd.DataFrame,
    features: Sequence[str],
    outcome: npt.ArrayLike,
    *,
    seed: int,
    n_folds: int = 10,
    n_lambdas: int = 40,
    lambda_ratio: float = 0.01,
    use_smote: bool = False,
) -> LassoLogisticCV:
    """L1 logistic path with stratified K-fold CV (see module docstring).

    Parameters
    ----------
    table : DataFrame
        Training rows, features already standardised.
    features : sequence of str
        Candidates.
    outcome : array-like of 0/1
        Binary outcome aligned with ``table`` (1 = positive, e.g. pCR).
    seed : int
        Seed of the folds, of SMOTE and of liblinear.
    n_folds, n_lambdas, lambda_ratio : int, int, float
        CV folds; length and depth of the penalty grid.
    use_smote : bool
        Oversample the minority class in each *training* fold (and in the final fit), never in held-out rows.
    """
    names = tuple(features)
    x = feature_matrix(table, names)
    y = np.asarray(outcome).astype(np.int64)
    n = x.shape[0]
    lam_max = float(np.max(np.abs(x.T @ (y - y.mean()))) / n)
    lambdas = lam_max * np.logspace(0.0, np.log10(lambda_ratio), n_lambdas)
    folds = stratified_folds(y, n_folds, seed)
    dev = np.empty((n_folds, n_lambdas))
    for k in range(n_folds):
        tr, te = folds != k, folds == k
        x_tr, y_tr = _balance(x[tr], y[tr], use_smote, seed)
        for j, lam in enumerate(lambdas):
            dev[k, j] = _deviance(y[te], _l1_fit(x_tr, y_tr, lam, seed).predict_proba(x[te])[:, 1])
    cv_mean = dev.mean(axis=0)
    cv_se = dev.std(axis=0, ddof=1) / np.sqrt(n_folds)
    index_min = int(np.argmin(cv_mean))
    index_1se = int(np.flatnonzero(cv_mean <= cv_mean[index_min] + cv_se[index_min])[0])
    x_all, y_all = _balance(x, y, use_smote, seed)
    coef_path = np.column_stack([_l1_fit(x_all, y_all, lam, seed).coef_.ravel() for lam in lambdas])
    return LassoLogisticCV(names, lambdas, coef_path, cv_mean, cv_se, index_min, index_1se)


def fit_logistic(
    table: pd.DataFrame, features: Sequence[str], outcome: npt.ArrayLike, *, seed: int, use_smote: bool = False
) -> LogisticModel:
    """Unpenalised maximum-likelihood logistic regression (lbfgs) on ``features`` (SMOTE-balanced if asked)."""
    names = tuple(features)
    x, y = _balance(feature_matrix(table, names), np.asarray(outcome).astype(np.int64), use_smote, seed)
    model = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=10_000, tol=1e-10).fit(x, y)
    return LogisticModel(names, np.asarray(model.coef_.ravel(), dtype=np.float64), float(model.intercept_[0]))
