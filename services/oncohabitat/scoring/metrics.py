"""Prometheus metrics of the scoring service: the distribution of returned scores per model (drift watch).

The only label is the model id, whose values are the deployed bundles' ids (bounded by the deployment), never
request data, study or patient identifiers.
"""

from __future__ import annotations

import math

from prometheus_client import Histogram

from oncohabitat.scoring.model import ScoreResult

SCORES = Histogram(
    "oncohabitat_scoring_score",
    "Scores returned (linear predictor, log-odds, regression estimate or ONNX output), by model id.",
    ["model_id"],
    buckets=(-4, -3, -2, -1.5, -1, -0.5, -0.25, 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.5, 2, 3, 4),
)


def observe_score(result: ScoreResult) -> None:
    """Record one returned score (non-finite values are not observed)."""
    if math.isfinite(result.score):
        SCORES.labels(result.model_id).observe(result.score)
