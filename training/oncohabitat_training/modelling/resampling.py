"""SMOTE oversampling of the minority class, applied to training rows (or a training fold) only."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from imblearn.over_sampling import SMOTE

from oncohabitat_training.modelling.data import FloatArray


def smote(
    x: FloatArray, y: npt.ArrayLike, *, seed: int, k_neighbors: int = 5
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Synthetic minority oversampling (Chawla et al. 2002, imbalanced-learn) to a 1:1 class balance.

    Never call this on validation or test rows: synthetic points are interpolations of real training patients.
    ``k_neighbors`` is reduced to (minority count - 1) for very small minorities.

    Returns
    -------
    x_res, y_res
        The original rows first, then the synthetic minority rows.
    """
    labels = np.asarray(y).astype(np.int64)
    counts = np.bincount(labels)
    minority = int(counts[counts > 0].min())
    if minority < 2 or counts.size < 2:
        return np.asarray(x, dtype=np.float64), labels
    sampler = SMOTE(random_state=seed, k_neighbors=min(k_neighbors, minority - 1))
    x_res, y_res = sampler.fit_resample(np.asarray(x, dtype=np.float64), labels)
    return np.asarray(x_res, dtype=np.float64), np.asarray(y_res, dtype=np.int64)
