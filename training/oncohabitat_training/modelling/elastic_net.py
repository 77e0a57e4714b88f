"""Elastic net on a continuous target (seed 002's recurrence-score model) with CV-tuned penalties and RFE.

Steps: (1) scikit-learn's :class:`~sklearn.linear_model.ElasticNetCV` grid-searches the mixing ratio over
``l1_ratios`` and the penalty over its automatic path under K-fold CV (shuffled with ``seed``), minimising the
held-out mean squared error; (2) recursive feature elimination with that penalty removes, one at a time, the
feature with the smallest absolute coefficient, either down to ``n_features`` or, when ``n_features`` is None,
to the count with the best K-fold CV error (:class:`~sklearn.feature_selection.RFECV`); (3) the elastic net is
refitted on the kept features with the same penalties.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import RFE, RFECV
from sklearn.linear_model import ElasticNet, ElasticNetCV
from sklearn.model_selection import KFold

from oncohabitat_training.modelling.data import FloatArray, feature_matrix

DEFAULT_L1_RATIOS = (0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 1.0)


@dataclass(frozen=True)
class ElasticNetModel:
    """Fitted elastic net: prediction = intercept + x @ coef (target unit, e.g. recurrence-score points)."""

    features: tuple[str, ...]
    coef: FloatArray
    intercept: float
    alpha: float
    l1_ratio: float
    cv_mse: float
    eliminated: tuple[str, ...]

    def predict(self, table: pd.DataFrame) -> FloatArray:
        """Predicted continuous score per row."""
        return np.asarray(self.intercept + feature_matrix(table, self.features) @ self.coef, dtype=np.float64)


def fit_elastic_net(
    table: pd.DataFrame,
    features: Sequence[str],
    target: npt.ArrayLike,
    *,
    seed: int,
    n_folds: int = 10,
    l1_ratios: Sequence[float] = DEFAULT_L1_RATIOS,
    n_features: int | None = None,
) -> ElasticNetModel:
    """Tune, eliminate and refit (see module docstring).

    Parameters
    ----------
    table : DataFrame
        Training rows, features standardised.
    features : sequence of str
        Candidates (e.g. after the |r| > 0.9 filter).
    target : array-like
        Continuous outcome aligned with ``table``.
    seed : int
        Seed of the fold shuffling.
    n_folds : int
        CV folds for the penalty search and for RFECV.
    l1_ratios : sequence of float
        Mixing ratios searched (1 = LASSO).
    n_features : int, optional
        Number of features RFE keeps; None chooses it by CV.
    """
    names = tuple(features)
    x = feature_matrix(table, names)
    t = np.asarray(target, dtype=np.float64)
    cv = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = ElasticNetCV(l1_ratio=list(l1_ratios), alphas=100, cv=cv, max_iter=100_000, tol=1e-8).fit(x, t)
        alpha, ratio = float(search.alpha_), float(search.l1_ratio_)
        base = ElasticNet(alpha=alpha, l1_ratio=ratio, max_iter=100_000, tol=1e-8)
        if n_features is None:
            rfe: RFE = RFECV(base, step=1, cv=cv, scoring="neg_mean_squared_error").fit(x, t)
        else:
            rfe = RFE(base, n_features_to_select=n_features, step=1).fit(x, t)
        keep = np.flatnonzero(rfe.support_)
        final = ElasticNet(alpha=alpha, l1_ratio=ratio, max_iter=100_000, tol=1e-8).fit(x[:, keep], t)
    cv_mse = float(np.min(np.mean(search.mse_path_, axis=-1)))
    return ElasticNetModel(
        features=tuple(names[i] for i in keep),
        coef=np.asarray(final.coef_, dtype=np.float64),
        intercept=float(final.intercept_),
        alpha=alpha,
        l1_ratio=ratio,
        cv_mse=cv_mse,
        eliminated=tuple(n for i, n in enumerate(names) if i not in set(keep.tolist())),
    )
