"""Cutoffs on a risk score: time-dependent ROC with Youden's index, maximally selected log-rank, given cutoffs.

Convention everywhere: a patient is *high risk* when ``score > cutoff`` (strictly above), as in the papers
("high = score > cutoff"); probabilities use the same rule with the given probability threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats
from sksurv.nonparametric import CensoringDistributionEstimator

from oncohabitat_training.modelling.data import BoolArray, FloatArray, event_and_time


def apply_cutoff(score: npt.ArrayLike, cutoff: float) -> BoolArray:
    """High-risk indicator ``score > cutoff``."""
    return np.asarray(np.asarray(score, dtype=np.float64) > cutoff, dtype=bool)


@dataclass(frozen=True)
class TimeDependentRoc:
    """Cumulative/dynamic ROC curve at one horizon.

    Attributes
    ----------
    horizon : float
        Time (outcome unit) defining cases (event by ``horizon``) and controls (event-free beyond it).
    thresholds : ndarray
        Candidate cutoffs (distinct scores, decreasing, with +inf first); high = score > threshold.
    sensitivity, specificity : ndarray
        IPCW cumulative sensitivity and dynamic specificity at each threshold.
    auc : float
        Area under the curve (equals scikit-survival's ``cumulative_dynamic_auc``).
    youden_cutoff : float
        Threshold maximising sensitivity + specificity - 1 (the lowest such threshold on ties).
    """

    horizon: float
    thresholds: FloatArray
    sensitivity: FloatArray
    specificity: FloatArray
    auc: float
    youden_cutoff: float

    @property
    def youden_index(self) -> float:
        """Maximum of sensitivity + specificity - 1."""
        return float(np.max(self.sensitivity + self.specificity - 1.0))


def time_dependent_roc(
    y_train: npt.NDArray[np.void], y_test: npt.NDArray[np.void], score: npt.ArrayLike, horizon: float
) -> TimeDependentRoc:
    """Cumulative/dynamic ROC at ``horizon`` with inverse-probability-of-censoring weights (Uno et al. 2007).

    Cases: event at or before ``horizon``, weighted by 1/G(T_i) with G the Kaplan-Meier censoring survival
    estimated on ``y_train``; controls: still event-free after ``horizon`` (equal weights). Tied scores between a
    case and a control count 1/2 in the AUC. The Youden cutoff of the papers (e.g. seed 000) is the threshold
    maximising sensitivity + specificity - 1.
    """
    s = np.asarray(score, dtype=np.float64)
    event, time = event_and_time(y_test)
    ipcw = CensoringDistributionEstimator().fit(y_train).predict_ipcw(y_test)
    case = event & (time <= horizon)
    control = time > horizon
    if not case.any() or not control.any():
        raise ValueError(f"no cases or no controls at horizon {horizon}")
    w_case = ipcw[case]
    s_case, s_ctrl = s[case], s[control]
    thresholds = np.concatenate([[np.inf], np.unique(s)[::-1]])
    sens = np.array([w_case[s_case > c].sum() for c in thresholds]) / w_case.sum()
    spec = np.array([(s_ctrl <= c).mean() for c in thresholds])
    greater = (s_case[:, None] > s_ctrl[None, :]).astype(np.float64)
    ties = (s_case[:, None] == s_ctrl[None, :]).astype(np.float64)
    auc = float((w_case[:, None] * (greater + 0.5 * ties)).sum() / (w_case.sum() * s_ctrl.size))
    youden = sens + spec - 1.0
    best = np.flatnonzero(youden == youden.max())
    return TimeDependentRoc(
        horizon=horizon,
        thresholds=thresholds,
        sensitivity=sens,
        specificity=spec,
        auc=auc,
        youden_cutoff=float(thresholds[best[-1]]),
    )


def logrank_statistics(y: npt.NDArray[np.void], groups: npt.ArrayLike) -> FloatArray:
    """Standardised two-group log-rank statistics Z for many splits at once.

    Z = sum_t (O_t - E_t) / sqrt(sum_t V_t) for the group marked True, with the hypergeometric variance
    V_t = d_t (n1_t / n_t)(1 - n1_t / n_t)(n_t - d_t)/(n_t - 1) (Mantel 1966); Z**2 is the log-rank chi-square.

    Parameters
    ----------
    y : structured array, n rows
    groups : bool array, shape (n,) or (n, m)
        Membership of the first group; one column per split.
    """
    g = np.asarray(groups, dtype=np.float64)
    squeeze = g.ndim == 1
    if squeeze:
        g = g[:, None]
    event, time = event_and_time(y)
    order = np.argsort(time, kind="mergesort")
    t, d, g = time[order], event[order].astype(np.float64), g[order]
    at_risk_1 = np.cumsum(g[::-1], axis=0)[::-1]
    at_risk = np.arange(len(t), 0, -1, dtype=np.float64)
    event_times = np.unique(t[d > 0])
    first = np.searchsorted(t, event_times, side="left")
    n_t = at_risk[first]
    n1_t = at_risk_1[first]
    idx = np.searchsorted(event_times, t)
    is_event = d > 0
    d_t = np.bincount(idx[is_event], minlength=event_times.size).astype(np.float64)
    o1_t = np.zeros((event_times.size, g.shape[1]))
    np.add.at(o1_t, idx[is_event], g[is_event])
    frac = n1_t / n_t[:, None]
    expected = d_t[:, None] * frac
    with np.errstate(invalid="ignore", divide="ignore"):
        ties_factor = np.where(n_t > 1, (n_t - d_t) / (n_t - 1.0), 0.0)
    var = (d_t * ties_factor)[:, None] * frac * (1.0 - frac)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (o1_t - expected).sum(axis=0) / np.sqrt(var.sum(axis=0))
    return np.asarray(z[0] if squeeze else z, dtype=np.float64)


@dataclass(frozen=True)
class MaxSelectedLogRank:
    """Result of :func:`max_selected_logrank`.

    Attributes
    ----------
    cutoff : float
        Score threshold with the largest |Z| (high = score > cutoff).
    statistic : float
        That maximal standardised log-rank statistic |Z|.
    p_value : float
        Lausen & Schumacher (1992) approximation of the p-value of the *maximally selected* statistic.
    naive_p_value : float
        Ordinary log-rank p-value at the chosen cutoff (optimistic: ignores the search).
    candidates, statistics : ndarray
        All admissible cutoffs and their |Z|.
    min_fraction : float
        Smallest allowed group fraction.
    """

    cutoff: float
    statistic: float
    p_value: float
    naive_p_value: float
    candidates: FloatArray
    statistics: FloatArray
    min_fraction: float


def lausen_schumacher_p(statistic: float, min_fraction: float) -> float:
    """p-value of a maximally selected standardised statistic (Lausen & Schumacher 1992, Biometrics 48:73-85).

    p ~= 4 phi(b)/b + phi(b) (b - 1/b) log(((1 - e)(1 - e)) / (e e)) with b the maximal |Z| and e the minimum
    group fraction (candidate proportions in [e, 1 - e]); clipped to [0, 1]. The approximation is meant for the
    tail (p < 0.5); below b = 1 it stops being monotone in b and 1.0 is returned.
    """
    b = float(statistic)
    if b < 1.0:
        return 1.0
    phi = stats.norm.pdf(b)
    e = float(min_fraction)
    p = 4.0 * phi / b + phi * (b - 1.0 / b) * np.log(((1.0 - e) * (1.0 - e)) / (e * e))
    return float(min(max(p, 0.0), 1.0))


def max_selected_logrank(
    y: npt.NDArray[np.void], score: npt.ArrayLike, *, min_fraction: float = 0.1
) -> MaxSelectedLogRank:
    """Cutoff maximising the two-group log-rank statistic (seed 002's survival split of the predicted score).

    Every distinct score value c is a candidate if both ``score > c`` and ``score <= c`` hold at least
    ``ceil(min_fraction * n)`` patients. Ties in |Z| go to the lowest candidate.

    Parameters
    ----------
    y : structured array
        Survival outcome.
    score : array-like
        Predicted score (any unit).
    min_fraction : float
        Minimum fraction of patients in each group, in (0, 0.5).
    """
    if not 0.0 < min_fraction < 0.5:
        raise ValueError("min_fraction must lie in (0, 0.5)")
    s = np.asarray(score, dtype=np.float64)
    n = s.size
    min_size = int(np.ceil(min_fraction * n - 1e-12))
    values = np.unique(s)
    n_high = np.array([(s > c).sum() for c in values])
    admissible = values[(n_high >= min_size) & (n - n_high >= min_size)]
    if admissible.size == 0:
        raise ValueError(f"no cutoff leaves {min_fraction:.0%} of patients in each group")
    z = np.abs(logrank_statistics(y, s[:, None] > admissible[None, :]))
    z = np.nan_to_num(z, nan=0.0)
    best = int(np.argmax(z))
    stat = float(z[best])
    return MaxSelectedLogRank(
        cutoff=float(admissible[best]),
        statistic=stat,
        p_value=lausen_schumacher_p(stat, min_fraction),
        naive_p_value=float(2.0 * stats.norm.sf(stat)),
        candidates=admissible,
        statistics=z,
        min_fraction=min_fraction,
    )
