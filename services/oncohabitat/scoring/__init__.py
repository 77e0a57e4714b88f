"""Scoring: run a verified model bundle on one case's feature values (domain logic; gRPC servicer on top)."""

from oncohabitat.scoring.errors import FeatureValidationError, ScoringError, UnsupportedModelError
from oncohabitat.scoring.model import (
    SUPPORTED_MODEL_TYPES,
    FeatureContribution,
    ScoreResult,
    SurvivalPoint,
    score,
)
from oncohabitat.scoring.validation import ignored_features, validate_features

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "FeatureContribution",
    "FeatureValidationError",
    "ScoreResult",
    "ScoringError",
    "SurvivalPoint",
    "UnsupportedModelError",
    "ignored_features",
    "score",
    "validate_features",
]
