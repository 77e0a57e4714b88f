"""Scoring: run verified, compiled model bundles on one case's features and covariates (gRPC servicer on top)."""

from oncohabitat.scoring.errors import (
    CovariateValidationError,
    FeatureValidationError,
    ScoringError,
    UnsupportedModelError,
)
from oncohabitat.scoring.model import SUPPORTED_MODEL_TYPES, CompiledBundle, ScoreResult, compile_bundle, score
from oncohabitat.scoring.validation import ignored_features, validate_features

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "CompiledBundle",
    "CovariateValidationError",
    "FeatureValidationError",
    "ScoreResult",
    "ScoringError",
    "UnsupportedModelError",
    "compile_bundle",
    "ignored_features",
    "score",
    "validate_features",
]
