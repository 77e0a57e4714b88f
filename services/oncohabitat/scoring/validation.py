"""Checks of a Score request's feature values against a bundle's declared inputs; out-of-distribution flags."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

from oncohabitat.bundles.scoring_manifest import ScoringManifest
from oncohabitat.scoring import errors
from oncohabitat.scoring.errors import FeatureValidationError


@dataclass(frozen=True)
class OutOfDistribution:
    """A value outside the range the training cohort covered (scored, but flagged)."""

    name: str
    value: float
    training_min: float
    training_max: float


def _range_text(low: float | None, high: float | None) -> str:
    return f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"


def validate_features(manifest: ScoringManifest, features: Mapping[str, object]) -> dict[str, float]:
    """The bundle's feature values from ``features`` as floats, keyed by canonical name, in model order.

    Keys the bundle does not declare are ignored (a request may carry more features than one model needs);
    :func:`ignored_features` lists them.

    Raises:
        FeatureValidationError: for the first declared feature (in model order) that is missing
            (``FEATURE_MISSING``), not a real number (``FEATURE_NOT_NUMERIC``; booleans included), NaN or
            infinite (``FEATURE_NOT_FINITE``), or outside its inclusive ``valid_range`` (``FEATURE_OUT_OF_RANGE``).
    """
    values: dict[str, float] = {}
    for spec in manifest.inputs:
        key = spec.name
        if key not in features:
            raise FeatureValidationError(errors.FEATURE_MISSING, key, f"feature {key!r} is required by the model")
        raw = features[key]
        if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
            raise FeatureValidationError(errors.FEATURE_NOT_NUMERIC, key, f"feature {key!r} is not a real number")
        value = float(raw)
        if not math.isfinite(value):
            raise FeatureValidationError(errors.FEATURE_NOT_FINITE, key, f"feature {key!r} is NaN or infinite")
        if spec.valid_range is not None:
            low, high = spec.valid_range
            if (low is not None and value < low) or (high is not None and value > high):
                raise FeatureValidationError(
                    errors.FEATURE_OUT_OF_RANGE,
                    key,
                    f"feature {key!r} = {value!r} is outside its valid range {_range_text(low, high)}",
                )
        values[key] = value
    return values


def feature_warnings(manifest: ScoringManifest, values: Mapping[str, float]) -> list[OutOfDistribution]:
    """Features outside their recorded training range, in model order."""
    found = []
    for spec in manifest.inputs:
        if spec.training_range is None:
            continue
        low, high = spec.training_range
        value = values[spec.name]
        if value < low or value > high:
            found.append(OutOfDistribution(spec.name, value, low, high))
    return found


def ignored_features(manifest: ScoringManifest, features: Mapping[str, object]) -> tuple[str, ...]:
    """Keys of ``features`` that the bundle does not use, sorted."""
    return tuple(sorted(set(features) - set(manifest.feature_keys)))
