"""The LASSO-Cox signature steps of recipes 000 / 003: z-score -> univariable Cox screen -> LASSO-Cox CV -> score.

Reader agreement (ICC) needs a second reader's table and runs before this, through
:func:`~oncohabitat_training.modelling.selection.icc_filter`; the cutoff on the score is chosen afterwards
(:mod:`~oncohabitat_training.modelling.cutoffs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from oncohabitat_training.modelling.cox import CoxFit, fit_cox
from oncohabitat_training.modelling.data import FloatArray, feature_matrix
from oncohabitat_training.modelling.lasso_cox import LassoCoxCV, fit_lasso_cox_cv
from oncohabitat_training.modelling.selection import Standardiser, cox_screen

SCORE_COLUMN = "radscore"


@dataclass(frozen=True)
class CoxSignature:
    """A fitted radiomics score: standardiser, LASSO-Cox coefficients and a Cox calibration of the score.

    Attributes
    ----------
    standardiser : Standardiser
        Fitted on the training rows over all candidate features.
    coefficients : Series
        Selected features -> coefficient on the z-scored feature (the score is their weighted sum; no intercept).
    lasso : LassoCoxCV
        The full path and CV curve (for the report and for audit).
    screen : DataFrame
        Univariable Cox statistics of every candidate (``coef``, ``hr``, ``p``).
    calibration : CoxFit
        Cox model of the outcome on the score alone (its baseline gives absolute survival at a horizon).
    """

    standardiser: Standardiser
    coefficients: pd.Series
    lasso: LassoCoxCV
    screen: pd.DataFrame
    calibration: CoxFit

    def score(self, table: pd.DataFrame) -> FloatArray:
        """Radiomics score (log relative hazard scale) for each row of an unstandardised table."""
        z = self.standardiser.transform(table)
        names = list(self.coefficients.index)
        if not names:
            return np.zeros(len(table))
        return np.asarray(feature_matrix(z, names) @ self.coefficients.to_numpy(), dtype=np.float64)

    def survival_at(self, table: pd.DataFrame, horizon: float) -> FloatArray:
        """Predicted survival probability at ``horizon`` from the score's Cox calibration."""
        return self.calibration.survival_at(pd.DataFrame({SCORE_COLUMN: self.score(table)}), horizon)


def fit_cox_signature(
    train: pd.DataFrame,
    features: Sequence[str],
    y: npt.NDArray[np.void],
    *,
    seed: int,
    p_threshold: float = 0.05,
    choice: Literal["min", "1se"] = "1se",
    n_folds: int = 10,
) -> CoxSignature:
    """Run the signature steps on the training rows.

    Parameters
    ----------
    train : DataFrame
        Training patients only (raw feature values).
    features : sequence of str
        Candidate features (e.g. those that passed the ICC filter).
    y : structured array
        Survival outcome aligned with ``train``.
    seed : int
        Seed of the CV folds.
    p_threshold : float
        Univariable Cox Wald p-value below which a feature passes the screen.
    choice : {"min", "1se"}
        Which CV penalty gives the signature; falls back to lambda_min if lambda_1se selects nothing.
    n_folds : int
        CV folds of the LASSO.
    """
    standardiser = Standardiser.fit(train, features)
    z = standardiser.transform(train)
    kept, screen = cox_screen(z, features, y, p_threshold)
    if not kept:
        raise ValueError(f"no feature passed the univariable Cox screen at p < {p_threshold}")
    lasso = fit_lasso_cox_cv(z, kept, y, seed=seed, n_folds=n_folds)
    coef = lasso.coefficients(choice)
    if coef.empty:
        coef = lasso.coefficients("min")
    score = feature_matrix(z, list(coef.index)) @ coef.to_numpy() if not coef.empty else np.zeros(len(z))
    calibration = fit_cox(pd.DataFrame({SCORE_COLUMN: score}), [SCORE_COLUMN], y)
    return CoxSignature(standardiser, coef, lasso, screen, calibration)


def fit_nomogram(
    table: pd.DataFrame,
    score: npt.ArrayLike,
    covariates: Sequence[str],
    y: npt.NDArray[np.void],
) -> CoxFit:
    """Unpenalised Cox model of the outcome on the score plus clinical covariates (the papers' nomogram).

    Parameters
    ----------
    table : DataFrame
        Training rows holding the ``covariates`` columns, already numeric (categories one-hot encoded).
    score : array-like
        The signature's score for the same rows (column ``radscore`` of the fit).
    covariates : sequence of str
        Clinical covariate columns (e.g. age, Ki-67 in %, nodal status 0/1).
    y : structured array
        Survival outcome aligned with ``table``.

    Returns
    -------
    CoxFit
        Coefficients for ``radscore`` then each covariate, Wald CIs, and the Breslow baseline for S(t | x).
    """
    data = table.loc[:, list(covariates)].copy()
    data.insert(0, SCORE_COLUMN, np.asarray(score, dtype=np.float64))
    return fit_cox(data, [SCORE_COLUMN, *covariates], y)
