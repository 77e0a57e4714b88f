"""Clinical covariates of a Score request: validation against the bundle's declarations and encoding.

Values arrive as Python ``float``/``int`` (numeric), ``bool`` (boolean) or ``str`` (a category). Each declared
covariate becomes its design columns (see :mod:`oncohabitat.bundles.scoring_parts`); covariates the bundle does
not declare are ignored and reported.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

from oncohabitat.bundles.scoring_manifest import ScoringManifest
from oncohabitat.bundles.scoring_parts import CovariateSpec
from oncohabitat.scoring import errors
from oncohabitat.scoring.errors import CovariateValidationError
from oncohabitat.scoring.validation import OutOfDistribution

CovariateValue = float | int | bool | str


@dataclass(frozen=True)
class EncodedCovariates:
    """Encoded design columns of the covariates given, which declared ones are missing, and warnings."""

    columns: dict[str, float]
    missing: tuple[str, ...]
    warnings: tuple[OutOfDistribution, ...]
    ignored: tuple[str, ...]


def _numeric(spec: CovariateSpec, raw: CovariateValue) -> float:
    name = spec.name
    if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
        raise CovariateValidationError(errors.COVARIATE_WRONG_TYPE, name, f"covariate {name!r} must be a number")
    value = float(raw)
    if not math.isfinite(value):
        raise CovariateValidationError(errors.COVARIATE_NOT_FINITE, name, f"covariate {name!r} is NaN or infinite")
    if spec.valid_range is not None:
        low, high = spec.valid_range
        if (low is not None and value < low) or (high is not None and value > high):
            raise CovariateValidationError(
                errors.COVARIATE_OUT_OF_RANGE,
                name,
                f"covariate {name!r} = {value!r} is outside its valid range "
                f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]",
            )
    return value


def encode_one(spec: CovariateSpec, raw: CovariateValue) -> dict[str, float]:
    """The design columns of one covariate value.

    Raises:
        CovariateValidationError: wrong type, NaN/inf, out of range or unknown category, naming the covariate.
    """
    name = spec.name
    if spec.type == "numeric":
        return {name: _numeric(spec, raw)}
    if spec.type == "boolean":
        if not isinstance(raw, bool):
            raise CovariateValidationError(errors.COVARIATE_WRONG_TYPE, name, f"covariate {name!r} must be a boolean")
        return {name: 1.0 if raw else 0.0}
    if not isinstance(raw, str):
        raise CovariateValidationError(errors.COVARIATE_WRONG_TYPE, name, f"covariate {name!r} must be a category")
    if raw not in spec.categories:
        raise CovariateValidationError(
            errors.COVARIATE_UNKNOWN_CATEGORY,
            name,
            f"covariate {name!r} has no category {raw!r} (one of: {', '.join(spec.categories)})",
        )
    if spec.encoding == "ordinal":
        return {name: spec.levels[raw]}
    return {column: 1.0 if column == f"{name}={raw}" else 0.0 for column in spec.columns()}


def encode_covariates(manifest: ScoringManifest, given: Mapping[str, CovariateValue]) -> EncodedCovariates:
    """Validate and encode the covariates ``given`` for ``manifest`` (missing ones are listed, not raised).

    Raises:
        CovariateValidationError: for the first declared covariate whose value is unusable.
    """
    columns: dict[str, float] = {}
    missing: list[str] = []
    warnings: list[OutOfDistribution] = []
    for spec in manifest.covariates:
        if spec.name not in given:
            missing.append(spec.name)
            continue
        encoded = encode_one(spec, given[spec.name])
        columns.update(encoded)
        if spec.training_range is not None:
            value = encoded[spec.name]
            low, high = spec.training_range
            if value < low or value > high:
                warnings.append(OutOfDistribution(spec.name, value, low, high))
    declared = {spec.name for spec in manifest.covariates}
    ignored = tuple(sorted(set(given) - declared))
    return EncodedCovariates(columns, tuple(missing), tuple(warnings), ignored)
