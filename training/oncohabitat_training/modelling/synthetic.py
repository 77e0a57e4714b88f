"""A seeded synthetic feature table with a planted survival (and binary) signal, for checks and demonstrations."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

TIME_COLUMN = "dfs_months"
EVENT_COLUMN = "dfs_event"
BINARY_COLUMN = "pcr"


def noise_name(i: int) -> str:
    """Canonical name of the i-th noise feature."""
    return f"tumour/S0/original_noise_Feature{i:03d}"


SIGNAL_FEATURES = ("tumour/S1/original_glcm_Correlation", "ring/S1/original_firstorder_Kurtosis")


def planted_cohort(
    n_patients: int,
    *,
    seed: int,
    n_noise: int = 50,
    log_hazard_ratios: Sequence[float] = (1.0, -0.8),
    baseline_rate: float = 1.0 / 60.0,
    censoring_rate: float = 1.0 / 90.0,
    follow_up: float = 120.0,
) -> pd.DataFrame:
    """Feature table whose hazard depends on the two :data:`SIGNAL_FEATURES` only.

    Features are independent standard normals (signal and noise alike, then shifted and scaled so they do not
    look z-scored already). Event times are exponential with rate ``baseline_rate * exp(sum b_j x_j)`` (per
    month) on the standardised signal values x_j; censoring is exponential (``censoring_rate`` per month) and
    administrative at ``follow_up`` months. A binary outcome (column ``pcr``) follows a logistic model on the same
    two features. Index: patient ids ``P0000``...

    Returns
    -------
    DataFrame
        Columns: signal features, ``n_noise`` noise features, ``dfs_months``, ``dfs_event`` (0/1), ``pcr`` (0/1).
    """
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal((n_patients, len(SIGNAL_FEATURES)))
    noise = rng.standard_normal((n_patients, n_noise))
    eta = signal @ np.asarray(log_hazard_ratios, dtype=np.float64)
    event_time = rng.exponential(1.0 / (baseline_rate * np.exp(eta)))
    censor_time = np.minimum(rng.exponential(1.0 / censoring_rate, n_patients), follow_up)
    time = np.minimum(event_time, censor_time)
    event = (event_time <= censor_time).astype(int)
    p_response = 1.0 / (1.0 + np.exp(-(-1.0 + 1.5 * signal[:, 0] - 1.2 * signal[:, 1])))
    pcr = (rng.uniform(size=n_patients) < p_response).astype(int)
    columns: dict[str, np.ndarray] = {}
    for j, name in enumerate(SIGNAL_FEATURES):
        columns[name] = 10.0 + 3.0 * signal[:, j]
    for i in range(n_noise):
        columns[noise_name(i)] = 5.0 + 2.0 * noise[:, i]
    columns[TIME_COLUMN] = np.round(time, 3)
    columns[EVENT_COLUMN] = event
    columns[BINARY_COLUMN] = pcr
    return pd.DataFrame(columns, index=[f"P{i:04d}" for i in range(n_patients)])
