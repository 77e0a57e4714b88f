"""Random-forest classifier (seed 004's survival-group model): probability of the positive class, cutoff 0.5."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from oncohabitat_training.modelling.data import FloatArray, feature_matrix


@dataclass(frozen=True)
class ForestModel:
    """A fitted forest on ``features`` (column order matters for export to ONNX)."""

    features: tuple[str, ...]
    estimator: RandomForestClassifier

    def probability(self, table: pd.DataFrame) -> FloatArray:
        """Predicted probability of the positive class per row."""
        proba = self.estimator.predict_proba(feature_matrix(table, self.features))
        return np.asarray(proba[:, 1], dtype=np.float64)

    def importances(self) -> pd.Series:
        """Mean decrease in impurity per feature (sums to 1)."""
        return pd.Series(self.estimator.feature_importances_, index=list(self.features), name="importance")


def fit_random_forest(
    table: pd.DataFrame,
    features: Sequence[str],
    outcome: npt.ArrayLike,
    *,
    seed: int,
    n_estimators: int = 500,
    min_samples_leaf: int = 3,
    max_features: str | float = "sqrt",
    class_weight: str | None = None,
) -> ForestModel:
    """Fit a random forest (Breiman 2001) with a fixed ``seed`` and one thread, so it is reproducible.

    Parameters
    ----------
    table : DataFrame
        Training rows.
    features : sequence of str
        Columns used (e.g. after an r > 0.8 filter and selection).
    outcome : array-like of 0/1
        Binary outcome (1 = poor survival group, say).
    seed : int
        ``random_state`` of the forest (bootstrap samples and split candidates).
    n_estimators, min_samples_leaf, max_features, class_weight
        Passed to scikit-learn's :class:`~sklearn.ensemble.RandomForestClassifier`.
    """
    names = tuple(features)
    model = RandomForestClassifier(
        n_estimators=n_estimators,
        min_samples_leaf=min_samples_leaf,
        max_features=max_features,
        class_weight=class_weight,
        random_state=seed,
        n_jobs=1,
    )
    model.fit(feature_matrix(table, names), np.asarray(outcome).astype(np.int64))
    return ForestModel(names, model)
