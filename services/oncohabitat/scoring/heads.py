"""Executable model heads compiled once per bundle: linear family and ONNX, with no model-specific code.

A head maps one design row (column name -> raw value) to its outputs. Linear heads sum
``coefficient * scaled`` left to right in column order (``scaled = (raw - mean) / std`` for z-scored columns,
else raw) and derive: the score itself (``linear_score``), Cox ``S(t) = S0(t) ** exp(lp)`` at the horizons,
the logistic probability ``1 / (1 + exp(-lp))``, or the predicted value (``linear_regression``,
``elastic_net``). ONNX heads run the exported estimator (see :mod:`oncohabitat.scoring.onnx_head`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from oncohabitat.bundles.scoring_parts import LinearModel, Scaler, SurvivalHorizons, ZScoreScaler
from oncohabitat.scoring import errors
from oncohabitat.scoring.errors import FeatureValidationError


@dataclass(frozen=True)
class Contribution:
    """One column's part in a linear score: ``contribution = coefficient * scaled_value``."""

    name: str
    value: float
    scaled_value: float
    coefficient: float
    contribution: float


@dataclass(frozen=True)
class HeadOutput:
    """What a head computes for one row.

    Attributes:
        score: linear predictor (linear heads); the probability or predicted value (ONNX heads).
        probability: logistic / ONNX classifier, else None.
        predicted_value: regression heads, else None.
        survival: ``(time, S(t))`` at each horizon (Cox with baseline survival), else empty.
        contributions: linear heads, in column order; empty for ONNX.
    """

    score: float
    probability: float | None = None
    predicted_value: float | None = None
    survival: tuple[tuple[float, float], ...] = ()
    contributions: tuple[Contribution, ...] = field(default_factory=tuple)


class Head(Protocol):
    """A compiled model: one design row -> outputs."""

    #: ``"onnx"`` or a linear type; decides the replay tolerance.
    model_type: str

    def run(self, row: Mapping[str, float]) -> HeadOutput:
        """Outputs for ``row`` (every column the head reads must be present)."""
        ...


def scaler_terms(scaler: Scaler, columns: list[str]) -> list[tuple[float, float]]:
    """Per column ``(mean, std)`` of the scaler, ``(0, 1)`` for unscaled columns."""
    if isinstance(scaler, ZScoreScaler):
        return [(scaler.mean.get(c, 0.0), scaler.std.get(c, 1.0)) for c in columns]
    return [(0.0, 1.0)] * len(columns)


def sigmoid(x: float) -> float:
    """Logistic function, without overflow for large ``|x|``."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def survival_at_horizons(horizons: SurvivalHorizons, lp: float) -> tuple[tuple[float, float], ...]:
    """``S0(t) ** exp(lp)`` at every horizon (0 where the relative hazard overflows, 1 where S0 is 1)."""
    try:
        relative_hazard = math.exp(lp)
    except OverflowError:
        relative_hazard = math.inf
    points = []
    for point in horizons.baseline:
        if point.survival >= 1.0:
            probability = 1.0
        elif math.isinf(relative_hazard):
            probability = 0.0
        else:
            probability = point.survival**relative_hazard
        points.append((point.time, probability))
    return tuple(points)


class LinearHead:
    """A compiled :class:`~oncohabitat.bundles.scoring_parts.LinearModel`."""

    def __init__(self, model: LinearModel) -> None:
        self.model_type: str = model.type
        self._model = model
        self._columns = list(model.coefficients)
        self._coefficients = [model.coefficients[c] for c in self._columns]
        self._scale = scaler_terms(model.scaler, self._columns)

    def run(self, row: Mapping[str, float]) -> HeadOutput:
        """Linear predictor, contributions and the type's derived output.

        Raises:
            FeatureValidationError: ``SCORE_NOT_FINITE`` when the values drive the predictor to inf/NaN.
        """
        lp = self._model.intercept
        contributions = []
        for name, coefficient, (mean, std) in zip(self._columns, self._coefficients, self._scale, strict=True):
            value = row[name]
            scaled = (value - mean) / std
            part = coefficient * scaled
            lp += part
            contributions.append(Contribution(name, value, scaled, coefficient, part))
        if not math.isfinite(lp):
            raise FeatureValidationError(errors.SCORE_NOT_FINITE, None, "the input values drive the score to inf/NaN")
        kind = self._model.type
        survival: tuple[tuple[float, float], ...] = ()
        if kind == "cox" and self._model.survival is not None:
            survival = survival_at_horizons(self._model.survival, lp)
        return HeadOutput(
            score=lp,
            probability=sigmoid(lp) if kind == "logistic" else None,
            predicted_value=lp if kind in ("linear_regression", "elastic_net") else None,
            survival=survival,
            contributions=tuple(contributions),
        )
