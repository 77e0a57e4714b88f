"""Feature-selection steps of the recipes: reader agreement, z-score, univariable screens, correlation, VIF.

Each step takes the feature table (one row per patient) and a list of candidate feature names and returns the
kept names (in their input order) together with the per-feature statistic that decided, so that a recipe can
log why each feature was dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from oncohabitat_training.modelling.cox import fit_cox
from oncohabitat_training.modelling.data import FloatArray, feature_matrix


def icc_2_1(readers: Sequence[pd.DataFrame], features: Sequence[str]) -> pd.Series:
    """ICC(2,1): two-way random effects, absolute agreement, single rater, per feature.

    Shrout & Fleiss (1979) case 2 / McGraw & Wong (1996) ICC(A,1):
    (MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n), with n patients (rows) and k readers.

    Parameters
    ----------
    readers : sequence of DataFrame
        One feature table per reader (k >= 2), indexed by patient id; only patients present in all are used,
        aligned by index.
    features : sequence of str
        Columns to assess.

    Returns
    -------
    Series
        ICC per feature (unitless, <= 1); NaN where the feature is constant across all patients and readers.
    """
    if len(readers) < 2:
        raise ValueError("ICC needs at least two readers")
    common = readers[0].index
    for r in readers[1:]:
        common = common.intersection(r.index)
    if len(common) < 2:
        raise ValueError("ICC needs at least two patients present for every reader")
    cube = np.stack([feature_matrix(r.loc[common], features) for r in readers], axis=1)  # (n, k, p)
    n, k, _ = cube.shape
    grand = cube.mean(axis=(0, 1))
    row_means = cube.mean(axis=1)
    col_means = cube.mean(axis=0)
    ss_total = ((cube - grand) ** 2).sum(axis=(0, 1))
    ss_rows = k * ((row_means - grand) ** 2).sum(axis=0)
    ss_cols = n * ((col_means - grand) ** 2).sum(axis=0)
    ms_rows = ss_rows / (n - 1)
    ms_cols = ss_cols / (k - 1)
    ms_err = (ss_total - ss_rows - ss_cols) / ((n - 1) * (k - 1))
    denom = ms_rows + (k - 1) * ms_err + k * (ms_cols - ms_err) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        icc = np.where(denom > 0, (ms_rows - ms_err) / denom, np.nan)
    return pd.Series(icc, index=list(features), name="icc")


def icc_filter(
    readers: Sequence[pd.DataFrame], features: Sequence[str], threshold: float = 0.75
) -> tuple[list[str], pd.Series]:
    """Keep features whose ICC(2,1) is at least ``threshold`` (NaN ICC is dropped)."""
    icc = icc_2_1(readers, features)
    return [f for f in features if icc[f] >= threshold], icc


@dataclass(frozen=True)
class Standardiser:
    """z-score fitted on training rows: (x - mean) / scale, scale = population SD (ddof 0), 1 if constant."""

    features: tuple[str, ...]
    mean: FloatArray
    scale: FloatArray

    @classmethod
    def fit(cls, table: pd.DataFrame, features: Sequence[str]) -> Standardiser:
        """Estimate mean and SD of each feature on ``table`` (pass the training rows only)."""
        x = feature_matrix(table, features)
        sd = x.std(axis=0)
        return cls(tuple(features), x.mean(axis=0), np.where(sd > 0, sd, 1.0))

    def transform(self, table: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``table`` with the fitted features standardised (other columns untouched)."""
        names = list(self.features)
        z = (feature_matrix(table, names) - self.mean) / self.scale
        out = table.copy()
        out[names] = pd.DataFrame(z, index=table.index, columns=names)  # replaces columns: int dtypes become float
        return out


def cox_screen(
    table: pd.DataFrame, features: Sequence[str], y: npt.NDArray[np.void], p_threshold: float = 0.05
) -> tuple[list[str], pd.DataFrame]:
    """Univariable Cox screen: keep features whose Wald p-value is below ``p_threshold``.

    Returns the kept names and a table (index = feature) of ``coef``, ``hr``, ``p`` for every candidate.
    """
    rows = []
    for f in features:
        fit = fit_cox(table, [f], y)
        rows.append((float(fit.coef[0]), float(np.exp(fit.coef[0])), float(fit.p_values[0])))
    result = pd.DataFrame(rows, index=list(features), columns=["coef", "hr", "p"])
    return [f for f in features if result.loc[f, "p"] < p_threshold], result


def binary_screen(
    table: pd.DataFrame, features: Sequence[str], outcome: npt.ArrayLike, p_threshold: float = 0.05
) -> tuple[list[str], pd.Series]:
    """Mann-Whitney U test (two-sided) of each feature between outcome 1 and outcome 0; keep p < threshold."""
    y = np.asarray(outcome).astype(int)
    x = feature_matrix(table, features)
    _, p = stats.mannwhitneyu(x[y == 1], x[y == 0], axis=0, alternative="two-sided")
    result = pd.Series(np.asarray(p, dtype=np.float64), index=list(features), name="p")
    return [f for f in features if result[f] < p_threshold], result


def correlation_filter(
    table: pd.DataFrame,
    features: Sequence[str],
    threshold: float = 0.9,
    *,
    priority: pd.Series | None = None,
    method: str = "pearson",
) -> tuple[list[str], dict[str, str]]:
    """Drop one feature of every pair with |r| > ``threshold``.

    Deterministic rule: features are ranked by ``priority`` ascending (e.g. univariable p-values; ties and the
    no-priority case keep the input order), then visited in rank order; a feature is kept unless its absolute
    correlation with an already kept feature exceeds the threshold. So of each correlated pair the better-ranked
    feature survives.

    Returns
    -------
    kept : list of str
        Surviving features in their input order.
    dropped : dict
        Dropped feature -> the kept feature it was correlated with.
    """
    names = list(features)
    if priority is not None:
        order = sorted(range(len(names)), key=lambda i: (float(priority[names[i]]), i))
    else:
        order = list(range(len(names)))
    r = np.abs(table.loc[:, names].astype(np.float64).corr(method=method).to_numpy())
    kept_idx: list[int] = []
    dropped: dict[str, str] = {}
    for i in order:
        partner = next((j for j in kept_idx if r[i, j] > threshold), None)
        if partner is None:
            kept_idx.append(i)
        else:
            dropped[names[i]] = names[partner]
    kept_set = set(kept_idx)
    return [n for i, n in enumerate(names) if i in kept_set], dropped


def variance_inflation(table: pd.DataFrame, features: Sequence[str]) -> pd.Series:
    """Variance inflation factor 1 / (1 - R_j^2), R_j^2 from an OLS of feature j on the others with intercept."""
    x = feature_matrix(table, features)
    n, p = x.shape
    vif = np.empty(p)
    for j in range(p):
        others = np.column_stack([np.ones(n), np.delete(x, j, axis=1)])
        beta, *_ = np.linalg.lstsq(others, x[:, j], rcond=None)
        resid = x[:, j] - others @ beta
        ss_tot = float(((x[:, j] - x[:, j].mean()) ** 2).sum())
        r2 = 1.0 - float(resid @ resid) / ss_tot if ss_tot > 0 else 1.0
        vif[j] = np.inf if r2 >= 1.0 else 1.0 / (1.0 - r2)
    return pd.Series(vif, index=list(features), name="vif")


def vif_check(table: pd.DataFrame, features: Sequence[str], limit: float = 10.0) -> tuple[bool, pd.Series]:
    """True when every feature's VIF is below ``limit``; also returns the VIFs."""
    vif = variance_inflation(table, features)
    return bool((vif < limit).all()), vif
