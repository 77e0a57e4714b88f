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
COVARIATE_MISSING: Final = "COVARIATE_MISSING"
COVARIATE_WRONG_TYPE: Final = "COVARIATE_WRONG_TYPE"
COVARIATE_NOT_FINITE: Final = "COVARIATE_NOT_FINITE"
COVARIATE_OUT_OF_RANGE: Final = "COVARIATE_OUT_OF_RANGE"
COVARIATE_UNKNOWN_CATEGORY: Final = "COVARIATE_UNKNOWN_CATEGORY"


class ScoringError(FeatureInputError):
    """A score cannot be computed.

    Attributes:
        reason: stable machine-readable code (module constants, e.g. ``"FEATURE_MISSING"``).
        feature: the offending feature key, or None when the error is not about one feature.
        message: curated human-readable explanation.
    """


class FeatureValidationError(ScoringError):
    """The request's feature values are unusable (missing, not a number, NaN/inf, out of the declared range)."""


class CovariateValidationError(ScoringError):
    """The request's covariate values are unusable (missing without fallback, wrong type, NaN/inf, out of range,
    unknown category); ``feature`` names the covariate."""


class UnsupportedModelError(ScoringError):
    """The bundle declares a model type this engine version cannot execute."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, model_type: str) -> None:
        super().__init__(
            UNSUPPORTED_MODEL_TYPE,
            None,
            f"model type {model_type!r} is declared by the bundle but not executable by this scoring engine",
        )
