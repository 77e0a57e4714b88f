"""Cox log partial likelihood (Breslow ties), vectorised over many coefficient vectors at once."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from oncohabitat_training.modelling.data import FloatArray, event_and_time


def log_partial_likelihood(y: npt.NDArray[np.void], eta: npt.ArrayLike) -> FloatArray:
    """Breslow log partial likelihood of linear predictors ``eta``.

    l(eta) = sum over events i of [eta_i - log sum_{j: t_j >= t_i} exp(eta_j)]  (Cox 1972; Breslow 1974 ties).

    Parameters
    ----------
    y : structured array
        Survival outcome, n rows.
    eta : array-like, shape (n,) or (n, m)
        Linear predictors; with two dimensions, one column per coefficient vector (e.g. per penalty).

    Returns
    -------
    ndarray, shape () or (m,)
        The log partial likelihood (summed over events, not averaged) per column.
    """
    event, time = event_and_time(y)
    e = np.asarray(eta, dtype=np.float64)
    squeeze = e.ndim == 1
    if squeeze:
        e = e[:, None]
    order = np.argsort(time, kind="mergesort")
    t, d, e = time[order], event[order], e[order]
    shift = e.max(axis=0, keepdims=True)
    w = np.exp(e - shift)
    tail = np.cumsum(w[::-1], axis=0)[::-1]  # sum over j >= i in time order
    first = np.searchsorted(t, t, side="left")  # ties: the risk set starts at the first tied time
    log_risk = np.log(tail[first]) + shift
    ll = np.sum((e - log_risk)[d], axis=0)
    return np.asarray(ll[0] if squeeze else ll, dtype=np.float64)
