"""Binary-outcome metrics: AUC with DeLong variance and CI, DeLong test of two AUCs, sensitivity/specificity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from oncohabitat_training.modelling.data import FloatArray


def _placements(score: FloatArray, outcome: npt.NDArray[np.bool_]) -> tuple[FloatArray, FloatArray]:
    """DeLong structural components: V10 per positive, V01 per negative (psi = 1 above, 1/2 tied, 0 below)."""
    pos, neg = score[outcome], score[~outcome]
    if pos.size == 0 or neg.size == 0:
        raise ValueError("AUC needs at least one positive and one negative")
    psi = (pos[:, None] > neg[None, :]).astype(np.float64) + 0.5 * (pos[:, None] == neg[None, :])
    return psi.mean(axis=1), psi.mean(axis=0)


@dataclass(frozen=True)
class AucResult:
    """AUC (Mann-Whitney estimate) with its DeLong standard error and Wald confidence interval."""

    auc: float
    se: float
    lower: float
    upper: float
    level: float


def delong_auc(outcome: npt.ArrayLike, score: npt.ArrayLike, level: float = 0.95) -> AucResult:
    """AUC with the DeLong, DeLong & Clarke-Pearson (1988, Biometrics 44:837) variance.

    Var(AUC) = S10 / m + S01 / n, with S10, S01 the sample variances (ddof 1) of the structural components over
    the m positives and n negatives. The interval is AUC +/- z SE, clipped to [0, 1].

    Parameters
    ----------
    outcome : array-like of 0/1
        1 = positive class (e.g. pCR).
    score : array-like
        Higher = more likely positive (probability or linear predictor).
    level : float
        Confidence level.
    """
    y = np.asarray(outcome).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    v10, v01 = _placements(s, y)
    auc = float(v10.mean())
    var = (v10.var(ddof=1) if v10.size > 1 else 0.0) / v10.size + (v01.var(ddof=1) if v01.size > 1 else 0.0) / v01.size
    se = float(np.sqrt(var))
    q = float(stats.norm.ppf(0.5 + level / 2.0))
    return AucResult(auc=auc, se=se, lower=max(0.0, auc - q * se), upper=min(1.0, auc + q * se), level=level)


def delong_test(outcome: npt.ArrayLike, score_a: npt.ArrayLike, score_b: npt.ArrayLike) -> tuple[float, float]:
    """DeLong test of two correlated AUCs on the same patients: (AUC_a - AUC_b, two-sided p-value)."""
    y = np.asarray(outcome).astype(bool)
    comps = [_placements(np.asarray(s, dtype=np.float64), y) for s in (score_a, score_b)]
    v10 = np.vstack([c[0] for c in comps])
    v01 = np.vstack([c[1] for c in comps])
    cov = np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]
    diff = float(v10[0].mean() - v10[1].mean())
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    if var <= 0:
        return diff, 1.0 if diff == 0 else 0.0
    return diff, float(2.0 * stats.norm.sf(abs(diff) / np.sqrt(var)))


@dataclass(frozen=True)
class ConfusionAtCutoff:
    """Classification at a probability cutoff: positive when ``score > cutoff`` (the papers' convention)."""

    cutoff: float
    sensitivity: float
    specificity: float
    ppv: float
    npv: float
    tp: int
    fp: int
    tn: int
    fn: int


def confusion_at(outcome: npt.ArrayLike, score: npt.ArrayLike, cutoff: float) -> ConfusionAtCutoff:
    """Sensitivity, specificity, PPV and NPV at ``cutoff`` (NaN where a denominator is zero)."""
    y = np.asarray(outcome).astype(bool)
    pred = np.asarray(score, dtype=np.float64) > cutoff
    tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
    tn, fn = int((~pred & ~y).sum()), int((~pred & y).sum())

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return ConfusionAtCutoff(
        cutoff=cutoff,
        sensitivity=ratio(tp, tp + fn),
        specificity=ratio(tn, tn + fp),
        ppv=ratio(tp, tp + fp),
        npv=ratio(tn, tn + fn),
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
    )
