"""Turn feature-table columns into the arrays the estimators take (survival outcome, feature matrix)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

SURVIVAL_DTYPE = np.dtype([("event", np.bool_), ("time", np.float64)])


class OutcomeError(ValueError):
    """An outcome column is missing, non-finite or out of range."""


def survival_array(time: npt.ArrayLike, event: npt.ArrayLike) -> npt.NDArray[np.void]:
    """Structured survival array (fields ``event`` bool, ``time`` float) as scikit-survival expects.

    Parameters
    ----------
    time : array-like, shape (n,)
        Follow-up time (any unit, e.g. months), finite and >= 0.
    event : array-like, shape (n,)
        1/True where the event was observed, 0/False where the patient was censored at ``time``.

    Raises
    ------
    OutcomeError
        On a length mismatch, a non-finite or negative time, or an event value other than 0/1.
    """
    t = np.asarray(time, dtype=np.float64)
    e_raw = np.asarray(event)
    if t.shape != e_raw.shape or t.ndim != 1:
        raise OutcomeError(f"time and event must be 1-D of equal length, got {t.shape} and {e_raw.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        bad = np.flatnonzero(~np.isfinite(t) | (t < 0))
        raise OutcomeError(f"time must be finite and >= 0 (rows {bad[:10].tolist()})")
    e_num = e_raw.astype(np.float64)
    if not np.all(np.isin(e_num, (0.0, 1.0))):
        raise OutcomeError("event must be 0/1 or boolean")
    out = np.empty(t.shape[0], dtype=SURVIVAL_DTYPE)
    out["event"] = e_num.astype(bool)
    out["time"] = t
    return out


def survival_from_table(table: pd.DataFrame, time_col: str, event_col: str) -> npt.NDArray[np.void]:
    """:func:`survival_array` from two columns of a feature table."""
    for col in (time_col, event_col):
        if col not in table.columns:
            raise OutcomeError(f"outcome column {col!r} not in the table")
    return survival_array(table[time_col].to_numpy(), table[event_col].to_numpy())


def feature_matrix(table: pd.DataFrame, features: Sequence[str]) -> FloatArray:
    """The ``features`` columns as a float64 matrix (n_patients, n_features); raises on missing or NaN values."""
    missing = [f for f in features if f not in table.columns]
    if missing:
        raise KeyError(f"features not in the table: {missing[:10]}")
    x = table.loc[:, list(features)].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(x)):
        rows, cols = np.nonzero(~np.isfinite(x))
        raise ValueError(f"non-finite feature value at row {int(rows[0])}, column {features[int(cols[0])]!r}")
    return x


def event_and_time(y: npt.NDArray[np.void]) -> tuple[BoolArray, FloatArray]:
    """The ``event`` (bool) and ``time`` (float) fields of a structured survival array, as plain arrays."""
    return np.asarray(y["event"], dtype=bool), np.asarray(y["time"], dtype=np.float64)
