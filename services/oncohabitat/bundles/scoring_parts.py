"""Parts of a scoring manifest: model inputs, clinical covariates, models, risk groups, survival horizons.

Design matrix: a scoring model sees one row of *columns*: first the plan's features (canonical names, in plan
order), then each covariate's encoded columns in declaration order — a numeric covariate is one column named
after it, a boolean one column (1 = true), an ordinal categorical one column (its declared level value), a
one-hot categorical one column ``<name>=<category>`` per category except the reference.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Literal

from pydantic import Field, model_validator

from oncohabitat.bundles.manifest import FiniteFloat, Identifier, NonEmptyStr, RelativePath, Strict, check_unique

#: Linear model types: a linear predictor on scaled columns, differing only in what is derived from it.
LinearType = Literal["linear_score", "cox", "logistic", "linear_regression", "elastic_net"]
#: Every model type a scoring bundle may declare.
ModelType = Literal["linear_score", "cox", "logistic", "linear_regression", "elastic_net", "onnx"]
Unit = Annotated[str, Field(min_length=1, max_length=40)]
PositiveFloat = Annotated[float, Field(strict=True, gt=0.0, allow_inf_nan=False)]


def _check_range(low: float | None, high: float | None, what: str) -> None:
    if low is not None and high is not None and low > high:
        raise ValueError(f"{what}: min {low} > max {high}")


class InputSpec(Strict):
    """One imaging input: a canonical feature name of the plan, its unit and the ranges known for it.

    ``training_range`` ``[min, max]`` is what the training cohort covered (a value outside it is scored but
    flagged as out of distribution); ``valid_range`` (inclusive, null for an open end) is what is plausible at
    all (a value outside it is refused).
    """

    name: NonEmptyStr
    unit: Unit | None = None
    training_range: tuple[FiniteFloat, FiniteFloat] | None = None
    valid_range: tuple[FiniteFloat | None, FiniteFloat | None] | None = None

    @model_validator(mode="after")
    def _ranges(self) -> InputSpec:
        if self.training_range is not None:
            _check_range(*self.training_range, f"input {self.name!r} training_range")
        if self.valid_range is not None:
            _check_range(*self.valid_range, f"input {self.name!r} valid_range")
        return self


class CovariateSpec(Strict):
    """A clinical covariate given with the study or per Score call.

    Types and encodings: ``numeric`` (encoding ``identity``; ``valid_range`` inclusive, ``training_range`` for
    out-of-distribution warnings), ``boolean`` (``indicator``: 1.0 / 0.0), ``categorical`` (``one_hot`` with a
    ``reference`` category that gets no column, or ``ordinal`` with a value per category in ``levels``).
    """

    name: Identifier
    type: Literal["numeric", "boolean", "categorical"]
    encoding: Literal["identity", "indicator", "one_hot", "ordinal"]
    description: NonEmptyStr | None = None
    unit: Unit | None = None
    valid_range: tuple[FiniteFloat | None, FiniteFloat | None] | None = None
    training_range: tuple[FiniteFloat, FiniteFloat] | None = None
    categories: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list)
    reference: str | None = None
    levels: dict[str, FiniteFloat] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> CovariateSpec:
        allowed = {"numeric": ("identity",), "boolean": ("indicator",), "categorical": ("one_hot", "ordinal")}
        if self.encoding not in allowed[self.type]:
            raise ValueError(f"covariate {self.name!r}: a {self.type} covariate is encoded {allowed[self.type]}")
        if self.type != "numeric" and (self.valid_range or self.training_range or self.unit):
            raise ValueError(f"covariate {self.name!r}: unit and ranges are for numeric covariates only")
        if self.valid_range is not None:
            _check_range(*self.valid_range, f"covariate {self.name!r} valid_range")
        if self.training_range is not None:
            _check_range(*self.training_range, f"covariate {self.name!r} training_range")
        if self.type == "categorical":
            if len(self.categories) < 2:
                raise ValueError(f"covariate {self.name!r}: a categorical covariate needs at least two categories")
            check_unique(self.categories, f"category of covariate {self.name!r}")
        elif self.categories:
            raise ValueError(f"covariate {self.name!r}: categories are for categorical covariates only")
        if self.encoding == "one_hot" and self.reference not in self.categories:
            raise ValueError(f"covariate {self.name!r}: one_hot needs a reference that is one of the categories")
        if self.encoding != "one_hot" and self.reference is not None:
            raise ValueError(f"covariate {self.name!r}: reference is for one_hot encoding only")
        if self.encoding == "ordinal" and set(self.levels) != set(self.categories):
            raise ValueError(f"covariate {self.name!r}: ordinal levels must give a value for every category")
        if self.encoding != "ordinal" and self.levels:
            raise ValueError(f"covariate {self.name!r}: levels are for ordinal encoding only")
        return self

    def columns(self) -> list[str]:
        """The design-matrix columns of this covariate (see the module docstring)."""
        if self.encoding == "one_hot":
            return [f"{self.name}={category}" for category in self.categories if category != self.reference]
        return [self.name]


class NoScaler(Strict):
    """Columns are used raw."""

    type: Literal["none"] = "none"


class ZScoreScaler(Strict):
    """``scaled = (raw - mean) / std`` for the listed columns (others raw), training statistics."""

    type: Literal["zscore"]
    mean: dict[str, FiniteFloat]
    std: dict[str, PositiveFloat]

    @model_validator(mode="after")
    def _same_keys(self) -> ZScoreScaler:
        if set(self.mean) != set(self.std):
            raise ValueError("zscore scaler: mean and std must name the same columns")
        return self


Scaler = Annotated[NoScaler | ZScoreScaler, Field(discriminator="type")]


class SurvivalPoint(Strict):
    """Baseline survival ``S0(time)`` at one horizon (time in the model's ``time_unit``)."""

    time: Annotated[float, Field(strict=True, gt=0.0, allow_inf_nan=False)]
    survival: Annotated[float, Field(strict=True, gt=0.0, le=1.0, allow_inf_nan=False)]


class SurvivalHorizons(Strict):
    """Cox baseline survival at the declared horizons: ``S(t | x) = S0(t) ** exp(lp)`` is reported at each."""

    time_unit: Literal["days", "weeks", "months", "years"]
    baseline: list[SurvivalPoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _monotone(self) -> SurvivalHorizons:
        points = self.baseline
        if any(b.time <= a.time for a, b in pairwise(points)):
            raise ValueError("survival horizons: times must be strictly increasing")
        if any(b.survival > a.survival for a, b in pairwise(points)):
            raise ValueError("survival horizons: baseline survival must be non-increasing")
        return self


class LinearModel(Strict):
    """``lp = intercept + sum_c coefficient_c * scaled_c`` over the columns, summed in column order.

    ``linear_score``: lp is the score; ``cox``: lp is the linear predictor (with ``survival``, S(t) at the
    horizons); ``logistic``: lp is the log-odds, probability ``1 / (1 + exp(-lp))``; ``linear_regression`` /
    ``elastic_net``: lp is the predicted value.
    """

    type: LinearType
    scaler: Scaler = Field(default_factory=NoScaler)
    #: One coefficient per design column, keyed by column name, in column order.
    coefficients: dict[str, FiniteFloat] = Field(min_length=1)
    intercept: FiniteFloat = 0.0
    survival: SurvivalHorizons | None = None

    @model_validator(mode="after")
    def _survival(self) -> LinearModel:
        if self.survival is not None and self.type != "cox":
            raise ValueError("survival horizons are only meaningful for a cox model")
        return self

    @property
    def has_probability(self) -> bool:
        """Whether the model yields a probability."""
        return self.type == "logistic"

    @property
    def has_predicted_value(self) -> bool:
        """Whether the model yields a predicted value (regression)."""
        return self.type in ("linear_regression", "elastic_net")

    def uses(self) -> list[str]:
        """The columns the model reads, in order."""
        return list(self.coefficients)


class OnnxModel(Strict):
    """Any estimator exported to ONNX (random forest, gradient boosting, ...), run by onnxruntime.

    The input ``input_name`` is a (1, n_columns) double tensor of the (scaled) columns in ``columns`` order.
    ``output="probability"``: ``output_name`` is (1, n_classes) and ``class_index`` picks the class whose
    probability is the score; ``output="value"``: ``output_name`` is (1, 1) or (1,), the predicted value.
    """

    type: Literal["onnx"]
    file: RelativePath
    estimator: NonEmptyStr
    columns: list[NonEmptyStr] = Field(min_length=1)
    input_name: NonEmptyStr = "X"
    output_name: NonEmptyStr
    output: Literal["probability", "value"]
    class_index: int = Field(1, ge=0)
    scaler: Scaler = Field(default_factory=NoScaler)

    @property
    def has_probability(self) -> bool:
        """Whether the model yields a probability."""
        return self.output == "probability"

    @property
    def has_predicted_value(self) -> bool:
        """Whether the model yields a predicted value (regression)."""
        return self.output == "value"

    def uses(self) -> list[str]:
        """The columns the model reads, in order."""
        return list(self.columns)


ModelSpec = Annotated[LinearModel | OnnxModel, Field(discriminator="type")]


class RiskGroups(Strict):
    """Named groups from increasing cutoffs on one output, with the direction and the tie rule explicit.

    A value below ``cutoffs[0]`` gets ``labels[0]``, between ``cutoffs[i-1]`` and ``cutoffs[i]`` ``labels[i]``,
    above the last ``labels[-1]``. A value exactly on a cutoff joins the group above it (``tie="upper"``) or
    below it (``tie="lower"``). ``direction`` says what a higher value means (for readers and the API).
    """

    applies_to: Literal["score", "probability", "predicted_value"]
    cutoffs: list[FiniteFloat] = Field(min_length=1)
    labels: list[NonEmptyStr] = Field(min_length=2)
    tie: Literal["upper", "lower"]
    direction: Literal["higher_is_worse", "higher_is_better"]

    @model_validator(mode="after")
    def _shape(self) -> RiskGroups:
        if any(b <= a for a, b in pairwise(self.cutoffs)):
            raise ValueError("risk_groups: cutoffs must be strictly increasing")
        if len(self.labels) != len(self.cutoffs) + 1:
            raise ValueError("risk_groups: one label more than cutoffs is needed")
        check_unique(self.labels, "risk group label")
        if self.applies_to == "probability" and not all(0.0 <= c <= 1.0 for c in self.cutoffs):
            raise ValueError("risk_groups: a probability cutoff must lie in [0, 1]")
        return self

    def group(self, value: float) -> tuple[str, float]:
        """The label of ``value`` and the cutoff that decided it (the nearest cutoff on the group's edge)."""
        for index, cutoff in enumerate(self.cutoffs):
            below = value < cutoff or (value == cutoff and self.tie == "lower")
            if below:
                return self.labels[index], cutoff
        return self.labels[-1], self.cutoffs[-1]


class FallbackSpec(Strict):
    """An imaging-only model run when a covariate is missing (the result says so); features only."""

    model: ModelSpec
    risk_groups: RiskGroups | None = None


class EvaluationFigure(Strict):
    """A figure recorded at training or in the source, e.g. ``{"metric": "c_index", "value": 0.81, ...}``."""

    metric: NonEmptyStr
    value: FiniteFloat
    dataset: NonEmptyStr
    note: NonEmptyStr | None = None


def check_head(model: LinearModel | OnnxModel, risk_groups: RiskGroups | None, columns: list[str], what: str) -> None:
    """Cross-field rules of a model and its groups against the available design ``columns``."""
    if model.uses() != columns:
        raise ValueError(f"{what}: the model must read exactly the columns {columns} in that order")
    if isinstance(model.scaler, ZScoreScaler):
        unknown = sorted(set(model.scaler.mean) - set(columns))
        if unknown:
            raise ValueError(f"{what}: scaler names unknown columns {unknown}")
    if risk_groups is not None:
        if risk_groups.applies_to == "probability" and not model.has_probability:
            raise ValueError(f"{what}: probability risk groups need a model with a probability")
        if risk_groups.applies_to == "predicted_value" and not model.has_predicted_value:
            raise ValueError(f"{what}: predicted_value risk groups need a regression model")
