"""Decision-curve analysis: net benefit of acting on a model's predicted risk (Vickers & Elkin 2006).

Net benefit at threshold probability p_t: NB = TP/n - FP/n * p_t / (1 - p_t), treating patients whose predicted
risk is at least p_t. For a survival outcome at a horizon (Vickers et al. 2008, BMC Med Inform Decis Mak 8:53)
the true- and false-positive fractions come from the Kaplan-Meier estimate in the treated group:
TP/n = (1 - S_treated(h)) P(treated), FP/n = S_treated(h) P(treated).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from oncohabitat_training.modelling.data import FloatArray
from oncohabitat_training.modelling.survival_metrics import kaplan_meier


@dataclass(frozen=True)
class DecisionCurve:
    """Net benefit of the model, of treating all and of treating none (zero) at each threshold probability."""

    thresholds: FloatArray
    model: FloatArray
    treat_all: FloatArray

    @property
    def treat_none(self) -> FloatArray:
        """Net benefit of treating nobody: 0 at every threshold."""
        return np.zeros_like(self.thresholds)


def _check_thresholds(thresholds: npt.ArrayLike) -> FloatArray:
    pt = np.asarray(thresholds, dtype=np.float64)
    if np.any((pt <= 0) | (pt >= 1)):
        raise ValueError("threshold probabilities must lie in (0, 1)")
    return pt


def net_benefit(outcome: npt.ArrayLike, risk: npt.ArrayLike, thresholds: npt.ArrayLike) -> DecisionCurve:
    """Net benefit for a binary outcome; ``risk`` is the predicted probability of the outcome (0..1)."""
    y = np.asarray(outcome).astype(bool)
    p = np.asarray(risk, dtype=np.float64)
    pt = _check_thresholds(thresholds)
    n = y.size
    odds = pt / (1.0 - pt)
    treated = p[:, None] >= pt[None, :]
    tp = (treated & y[:, None]).sum(axis=0) / n
    fp = (treated & ~y[:, None]).sum(axis=0) / n
    prevalence = y.mean()
    return DecisionCurve(pt, tp - fp * odds, prevalence - (1.0 - prevalence) * odds)


def net_benefit_survival(
    y: npt.NDArray[np.void], risk_at_horizon: npt.ArrayLike, horizon: float, thresholds: npt.ArrayLike
) -> DecisionCurve:
    """Net benefit for a time-to-event outcome at ``horizon``.

    Parameters
    ----------
    y : structured array
        Observed survival outcome.
    risk_at_horizon : array-like
        Predicted probability of the event by ``horizon`` (1 - S(horizon | x)).
    horizon : float
        Time in the outcome unit.
    thresholds : array-like
        Threshold probabilities in (0, 1).
    """
    p = np.asarray(risk_at_horizon, dtype=np.float64)
    pt = _check_thresholds(thresholds)
    odds = pt / (1.0 - pt)
    n = p.size
    model = np.empty_like(pt)
    for i, t in enumerate(pt):
        treated = p >= t
        if not treated.any():
            model[i] = 0.0
            continue
        s = kaplan_meier(y[treated]).at(horizon)
        frac = treated.sum() / n
        model[i] = (1.0 - s) * frac - s * frac * odds[i]
    s_all = kaplan_meier(y).at(horizon)
    return DecisionCurve(pt, model, (1.0 - s_all) - s_all * odds)
