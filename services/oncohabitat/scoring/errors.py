"""Domain errors of the scoring engine; each carries a stable reason code for ``ErrorDetail``."""

from __future__ import annotations

from typing import Final

import grpc

from oncohabitat.common.errors import FeatureInputError

FEATURE_MISSING: Final = "FEATURE_MISSING"
FEATURE_NOT_NUMERIC: Final = "FEATURE_NOT_NUMERIC"
FEATURE_NOT_FINITE: Final = "FEATURE_NOT_FINITE"
FEATURE_OUT_OF_RANGE: Final = "FEATURE_OUT_OF_RANGE"
SCORE_NOT_FINITE: Final = "SCORE_NOT_FINITE"
UNSUPPORTED_MODEL_TYPE: Final = "UNSUPPORTED_MODEL_TYPE"


class ScoringError(FeatureInputError):
    """A score cannot be computed.

    Attributes:
        reason: stable machine-readable code (module constants, e.g. ``"FEATURE_MISSING"``).
        feature: the offending feature key, or None when the error is not about one feature.
        message: curated human-readable explanation.
    """


class FeatureValidationError(ScoringError):
    """The request's feature values are unusable (missing, not a number, NaN/inf, out of the declared range)."""


class UnsupportedModelError(ScoringError):
    """The bundle declares a model type this engine version cannot execute (v1: ``random_forest``)."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, model_type: str) -> None:
        super().__init__(
            UNSUPPORTED_MODEL_TYPE,
            None,
            f"model type {model_type!r} is declared by the bundle but not executable by this scoring engine",
        )
