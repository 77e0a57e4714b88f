"""The recipe's cutoff rule applied to training scores (high group = score > cutoff)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_curve

from oncohabitat_training.fitting.schema import Cutoff
from oncohabitat_training.modelling.cutoffs import max_selected_logrank, time_dependent_roc


def youden_cutoff(outcome: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Score maximising sensitivity + specificity - 1 (ROC of a binary outcome); positive = score > cutoff.

    scikit-learn's thresholds classify ``score >= t`` as positive; the returned cutoff is the largest score
    below the chosen threshold, so ``score > cutoff`` selects the same patients.
    """
    y = np.asarray(outcome).astype(int)
    s = np.asarray(score, dtype=np.float64)
    fpr, tpr, thresholds = roc_curve(y, s)
    best = int(np.argmax(tpr - fpr))
    below = s[s < thresholds[best]]
    return float(below.max()) if below.size else float(s.min())


def choose_cutoff(
    rule: Cutoff,
    score: npt.ArrayLike,
    *,
    survival: npt.NDArray[np.void] | None = None,
    binary: npt.ArrayLike | None = None,
) -> float:
    """The cutoff on training ``score`` (``td_roc_youden``, ``max_logrank``: survival; ``youden``: binary).

    Raises:
        ValueError: a method without the outcome it needs, or a time-dependent ROC without a horizon.
    """
    s = np.asarray(score, dtype=np.float64)
    if rule.method == "fixed":
        return float(rule.value)  # type: ignore[arg-type]
    if rule.method == "median":
        return float(np.median(s))
    if rule.method == "youden":
        if binary is None:
            raise ValueError("cutoff 'youden' needs a binary outcome")
        return youden_cutoff(binary, s)
    if survival is None:
        raise ValueError(f"cutoff {rule.method!r} needs a survival outcome")
    if rule.method == "max_logrank":
        return float(max_selected_logrank(survival, s, min_fraction=rule.min_fraction).cutoff)
    if rule.horizon is None:
        raise ValueError("cutoff 'td_roc_youden' needs a horizon")
    return float(time_dependent_roc(survival, survival, s, rule.horizon).youden_cutoff)
