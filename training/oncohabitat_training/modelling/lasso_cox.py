"""LASSO-Cox (or elastic-net Cox) with K-fold cross-validation giving lambda_min and lambda_1se.

The path is scikit-survival's :class:`~sksurv.linear_model.CoxnetSurvivalAnalysis` (glmnet's coordinate descent,
Simon et al. 2011). The penalty sequence is the one fitted on all training rows; every fold refits on that same
sequence. The CV criterion is glmnet's default for Cox: the cross-validated partial-likelihood deviance of
Verweij & Van Houwelingen (1993), fold k contributing -2 [l(beta_-k) - l_-k(beta_-k)] divided by its number of
events, averaged with events as weights. lambda_min minimises the mean deviance; lambda_1se is the largest penalty
whose mean deviance is within one standard error of that minimum (Hastie, Tibshirani & Friedman 2009, 7.10).
Folds are stratified on the event indicator and shuffled with ``seed``; coordinate descent is deterministic, so
the same data and seed give the same path, the same CV curve and the same choice.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold
from sksurv.linear_model import CoxnetSurvivalAnalysis

from oncohabitat_training.modelling.data import FloatArray, event_and_time, feature_matrix
from oncohabitat_training.modelling.partial_likelihood import log_partial_likelihood


@dataclass(frozen=True)
class LassoCoxCV:
    """Result of :func:`fit_lasso_cox_cv`.

    Attributes
    ----------
    features : tuple of str
        Candidate features, in the row order of ``coef_path``.
    alphas : ndarray, shape (m,)
        Penalty sequence (glmnet's lambda), decreasing.
    coef_path : ndarray, shape (p, m)
        Coefficients on all training rows at each penalty.
    cv_mean, cv_se : ndarray, shape (m,)
        Cross-validated deviance per event and its standard error.
    index_min, index_1se : int
        Positions of lambda_min and lambda_1se in ``alphas``.
    folds : ndarray of int, shape (n,)
        Fold number of each training row.
    """

    features: tuple[str, ...]
    alphas: FloatArray
    coef_path: FloatArray
    cv_mean: FloatArray
    cv_se: FloatArray
    index_min: int
    index_1se: int
    folds: npt.NDArray[np.int64]

    @property
    def alpha_min(self) -> float:
        """lambda_min: the penalty with the smallest CV deviance."""
        return float(self.alphas[self.index_min])

    @property
    def alpha_1se(self) -> float:
        """lambda_1se: the largest penalty within one SE of the minimum CV deviance."""
        return float(self.alphas[self.index_1se])

    def coefficients(self, choice: str = "1se") -> pd.Series:
        """Non-zero coefficients at ``choice`` ("min" or "1se"), indexed by feature, in candidate order."""
        idx = {"min": self.index_min, "1se": self.index_1se}[choice]
        coef = pd.Series(self.coef_path[:, idx], index=list(self.features))
        return coef[coef != 0.0]


def stratified_folds(event: npt.ArrayLike, n_folds: int, seed: int) -> npt.NDArray[np.int64]:
    """Fold number (0..n_folds-1) per row, stratified on the event indicator, shuffled with ``seed``."""
    e = np.asarray(event).astype(int)
    folds = np.empty(len(e), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros((len(e), 1)), e)):
        folds[test] = k
    return folds


def _coxnet(alphas: FloatArray | None, l1_ratio: float, n_alphas: int, max_iter: int) -> CoxnetSurvivalAnalysis:
    return CoxnetSurvivalAnalysis(
        l1_ratio=l1_ratio,
        alphas=alphas,
        n_alphas=n_alphas,
        normalize=False,
        fit_baseline_model=False,
        max_iter=max_iter,
        tol=1e-9,
    )


def _fit_path(model: CoxnetSurvivalAnalysis, x: FloatArray, y: npt.NDArray[np.void]) -> tuple[FloatArray, FloatArray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return np.asarray(model.alphas_, dtype=np.float64), np.asarray(model.coef_, dtype=np.float64)


def fit_lasso_cox_cv(
    table: pd.DataFrame,
    features: Sequence[str],
    y: npt.NDArray[np.void],
    *,
    seed: int,
    n_folds: int = 10,
    l1_ratio: float = 1.0,
    n_alphas: int = 100,
    max_iter: int = 100_000,
) -> LassoCoxCV:
    """Penalised Cox path on ``features`` with K-fold CV (see module docstring for the criterion).

    Parameters
    ----------
    table : DataFrame
        Training rows only; features should already be standardised (the penalty is scale-dependent and no
        internal normalisation is applied).
    features : sequence of str
        Candidate columns.
    y : structured array
        Survival outcome aligned with ``table``.
    seed : int
        Seed of the fold assignment.
    n_folds : int
        Number of CV folds (10 as in the papers).
    l1_ratio : float
        1.0 = LASSO; between 0 and 1 = elastic net.
    n_alphas : int
        Length of the penalty sequence (glmnet may stop it earlier once the fit saturates).
    """
    names = tuple(features)
    x = feature_matrix(table, names)
    event, _ = event_and_time(y)
    alphas, coef_path = _fit_path(_coxnet(None, l1_ratio, n_alphas, max_iter), x, y)
    folds = stratified_folds(event, n_folds, seed)

    raw = np.full((n_folds, alphas.size), np.nan)
    weights = np.zeros(n_folds)
    for k in range(n_folds):
        train = folds != k
        fold_alphas, fold_coef = _fit_path(_coxnet(alphas, l1_ratio, n_alphas, max_iter), x[train], y[train])
        m = fold_alphas.size  # a fold's path can stop before the end of the sequence
        ll_all = log_partial_likelihood(y, x @ fold_coef)
        ll_train = log_partial_likelihood(y[train], x[train] @ fold_coef)
        weights[k] = float(event[~train].sum())
        raw[k, :m] = -2.0 * (ll_all - ll_train) / weights[k]

    usable = np.all(np.isfinite(raw), axis=0)
    w = weights / weights.sum()
    cv_mean = np.where(usable, np.nansum(raw * w[:, None], axis=0), np.nan)
    cv_var = np.nansum(w[:, None] * (raw - cv_mean) ** 2, axis=0) / (n_folds - 1)
    cv_se = np.where(usable, np.sqrt(cv_var), np.nan)
    index_min = int(np.nanargmin(cv_mean))
    threshold = cv_mean[index_min] + cv_se[index_min]
    # alphas decrease along the path: the first (largest) penalty within one SE of the minimum
    index_1se = int(np.flatnonzero(usable & (cv_mean <= threshold))[0])
    return LassoCoxCV(
        features=names,
        alphas=alphas,
        coef_path=coef_path,
        cv_mean=cv_mean,
        cv_se=cv_se,
        index_min=index_min,
        index_1se=index_1se,
        folds=folds,
    )
