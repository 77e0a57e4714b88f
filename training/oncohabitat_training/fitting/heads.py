"""Fitted model heads as the training package computes them, and what a fit hands to export.

:class:`LinearFit` is ``lp = intercept + sum_j coef_j * (x_j - mean_j) / std_j + sum_k coef_k * c_k`` over the
z-scored imaging features then the raw covariate design columns — the same arithmetic a scoring bundle declares
(``scaler: zscore``) — with the model type's derived outputs (Cox ``S0(t) ** exp(lp)``, logistic probability,
regression value). :class:`ForestFit` wraps a scikit-learn forest on raw features (probability of class 1).
The predictions here are the training package's own, the reference the round trip is checked against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

FloatArray = npt.NDArray[np.float64]
Output = Literal["score", "probability", "predicted_value"]


@dataclass(frozen=True)
class Predictions:
    """Per-row outputs of a head (NaN-free); ``survival`` has one column per horizon (Cox only)."""

    score: FloatArray
    probability: FloatArray | None = None
    predicted_value: FloatArray | None = None
    survival: FloatArray | None = None

    def output(self, name: Output) -> FloatArray:
        """The output a risk-group rule applies to."""
        value = {"score": self.score, "probability": self.probability, "predicted_value": self.predicted_value}[name]
        if value is None:
            raise ValueError(f"this head has no {name}")
        return value


@dataclass(frozen=True)
class LinearFit:
    """A linear head (see the module docstring). Times of ``baseline`` in the outcome's time unit."""

    model_type: Literal["cox", "logistic", "elastic_net"]
    features: tuple[str, ...]
    mean: FloatArray
    std: FloatArray
    feature_coef: FloatArray
    covariate_columns: tuple[str, ...] = ()
    covariate_coef: FloatArray = field(default_factory=lambda: np.zeros(0))
    intercept: float = 0.0
    baseline: tuple[tuple[float, float], ...] = ()

    def linear_predictor(self, frame: pd.DataFrame, covariates: pd.DataFrame | None = None) -> FloatArray:
        """lp per row of ``frame`` (raw feature columns) and ``covariates`` (encoded design columns)."""
        x = frame.loc[:, list(self.features)].to_numpy(dtype=np.float64)
        lp = self.intercept + ((x - self.mean) / self.std) @ self.feature_coef
        if self.covariate_columns:
            if covariates is None:
                raise ValueError("this head needs covariates")
            c = covariates.loc[:, list(self.covariate_columns)].to_numpy(dtype=np.float64)
            lp = lp + c @ self.covariate_coef
        return np.asarray(lp, dtype=np.float64)

    def predict(self, frame: pd.DataFrame, covariates: pd.DataFrame | None = None) -> Predictions:
        """Every output of the head."""
        lp = self.linear_predictor(frame, covariates)
        if self.model_type == "logistic":
            return Predictions(score=lp, probability=1.0 / (1.0 + np.exp(-lp)))
        if self.model_type == "elastic_net":
            return Predictions(score=lp, predicted_value=lp)
        survival = None
        if self.baseline:
            s0 = np.array([s for _, s in self.baseline])
            survival = s0[None, :] ** np.exp(lp)[:, None]
        return Predictions(score=lp, survival=survival)

    def coefficients(self) -> pd.Series:
        """Coefficient per design column (features on the z scale, then covariates)."""
        return pd.Series(
            np.concatenate([self.feature_coef, self.covariate_coef]),
            index=[*self.features, *self.covariate_columns],
            name="coefficient",
        )

    def manifest_model(self, time_unit: str | None) -> dict[str, Any]:
        """The bundle's ``model`` entry (linear family, z-score scaler on the features)."""
        model: dict[str, Any] = {
            "type": self.model_type,
            "scaler": {
                "type": "zscore",
                "mean": {n: float(m) for n, m in zip(self.features, self.mean, strict=True)},
                "std": {n: float(s) for n, s in zip(self.features, self.std, strict=True)},
            },
            "coefficients": {k: float(v) for k, v in self.coefficients().items()},
            "intercept": float(self.intercept),
        }
        if self.model_type == "cox" and self.baseline:
            model["survival"] = {
                "time_unit": time_unit,
                "baseline": [{"time": float(t), "survival": float(s)} for t, s in self.baseline],
            }
        return model


@dataclass(frozen=True)
class ForestFit:
    """A random forest on raw feature values; the score and probability are P(class 1)."""

    features: tuple[str, ...]
    estimator: RandomForestClassifier
    model_type: Literal["random_forest"] = "random_forest"

    def predict(self, frame: pd.DataFrame, covariates: pd.DataFrame | None = None) -> Predictions:
        """Probability of class 1 per row."""
        x = frame.loc[:, list(self.features)].to_numpy(dtype=np.float64)
        p = np.asarray(self.estimator.predict_proba(x)[:, 1], dtype=np.float64)
        return Predictions(score=p, probability=p)

    def coefficients(self) -> pd.Series:
        """Mean decrease in impurity per feature (the report's bar chart)."""
        return pd.Series(self.estimator.feature_importances_, index=list(self.features), name="importance")


Head = LinearFit | ForestFit


@dataclass(frozen=True)
class RiskRule:
    """Two groups split at ``cutoff`` on ``applies_to``: above it the second label; a value on the cutoff joins the
    lower group (``tie: lower``), as :func:`~oncohabitat_training.modelling.cutoffs.apply_cutoff` does."""

    applies_to: Output
    cutoff: float
    labels: tuple[str, str]
    direction: Literal["higher_is_worse", "higher_is_better"]

    def manifest(self) -> dict[str, Any]:
        """The bundle's ``risk_groups`` entry."""
        return {
            "applies_to": self.applies_to,
            "cutoffs": [float(self.cutoff)],
            "labels": list(self.labels),
            "tie": "lower",
            "direction": self.direction,
        }

    def group(self, value: float) -> str:
        """The label of one value."""
        return self.labels[1] if value > self.cutoff else self.labels[0]


@dataclass(frozen=True)
class FitResult:
    """What a recipe fit hands to export: heads, risk rules, evaluations and the selection log."""

    primary: Head
    rule: RiskRule
    fallback: LinearFit | None = None
    fallback_rule: RiskRule | None = None
    #: Evaluation objects of :mod:`oncohabitat_training.modelling.evaluation`, training then validation sets.
    evaluations: Sequence[Any] = ()
    #: ``{"metric", "value", "dataset"}`` figures for the manifest.
    figures: Sequence[Mapping[str, Any]] = ()
    #: Step -> what it kept / dropped (JSON-able), recorded in the manifest's ``training``.
    selection: Mapping[str, Any] = field(default_factory=dict)
