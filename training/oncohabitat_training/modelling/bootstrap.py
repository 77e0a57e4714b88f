"""Seeded nonparametric bootstrap percentile confidence intervals (Efron & Tibshirani 1993, ch. 13)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class BootstrapInterval:
    """Point estimate on the original sample and percentile interval over ``n_valid`` resamples."""

    estimate: float
    lower: float
    upper: float
    level: float
    n_valid: int


def bootstrap_ci(
    statistic: Callable[[npt.NDArray[np.int64]], float],
    n: int,
    *,
    seed: int,
    n_boot: int = 1000,
    level: float = 0.95,
    strata: npt.ArrayLike | None = None,
) -> BootstrapInterval:
    """Percentile bootstrap interval of ``statistic``.

    Parameters
    ----------
    statistic : callable
        Takes row indices (with repeats) into the data and returns the statistic; a resample on which it raises
        ``ValueError`` or returns NaN (e.g. no events drawn) is skipped and not counted in ``n_valid``.
    n : int
        Number of rows.
    seed : int
        Seed of numpy's default generator; the same seed gives the same resamples.
    n_boot : int
        Number of resamples.
    level : float
        Confidence level.
    strata : array-like, optional
        Resample within each stratum (e.g. the event indicator) so every resample keeps its counts.
    """
    rng = np.random.default_rng(seed)
    estimate = float(statistic(np.arange(n, dtype=np.int64)))
    groups = (
        [np.arange(n, dtype=np.int64)]
        if strata is None
        else [np.flatnonzero(np.asarray(strata) == s).astype(np.int64) for s in np.unique(np.asarray(strata))]
    )
    values = []
    for _ in range(n_boot):
        idx = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
        try:
            v = float(statistic(idx))
        except ValueError:
            continue
        if np.isfinite(v):
            values.append(v)
    if not values:
        return BootstrapInterval(estimate, float("nan"), float("nan"), level, 0)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(np.asarray(values), [alpha, 1.0 - alpha])
    return BootstrapInterval(estimate, float(lo), float(hi), level, len(values))
