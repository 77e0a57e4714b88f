"""Helpers of the recipe tests: a small planted-signal table in the extraction layout, recipes written to disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from oncohabitat_training.modelling.synthetic import (
    BINARY_COLUMN,
    EVENT_COLUMN,
    SIGNAL_FEATURES,
    TIME_COLUMN,
    noise_name,
    planted_cohort,
)

FIRSTORDER = [
    "Mean", "Median", "Skewness", "Kurtosis", "Entropy", "Energy", "Variance", "Range", "Maximum", "Minimum",
    "10Percentile", "90Percentile", "InterquartileRange", "RobustMeanAbsoluteDeviation",
]  # fmt: skip
SIGNAL = ("tumour/SER/original_firstorder_Mean", "ring_5mm/PE/original_firstorder_Kurtosis")
N_NOISE = 12
NOISE = tuple(f"habitat_{1 + i // len(FIRSTORDER)}/S1/original_firstorder_{FIRSTORDER[i % 14]}" for i in range(N_NOISE))
PLAN: dict[str, Any] = {"region_profile": {}, "features": [*SIGNAL, *NOISE]}


def synthetic_table(n: int = 240, seed: int = 3) -> pd.DataFrame:
    """``planted_cohort`` renamed to canonical names, with splits (every third row validation) and covariates."""
    raw = planted_cohort(n, seed=seed, n_noise=N_NOISE)
    rng = np.random.default_rng(seed + 1)
    frame = pd.DataFrame(
        {
            "patient_id": [f"P{i:04d}" for i in range(n)],
            "split": ["validation" if i % 3 == 2 else "train" for i in range(n)],
            "outcome.time": raw[TIME_COLUMN].to_numpy(),
            "outcome.event": raw[EVENT_COLUMN].to_numpy(),
            "outcome.pcr": raw[BINARY_COLUMN].to_numpy(),
            "clinical.age": np.round(rng.normal(55, 10, n)),
            "clinical.grade": rng.choice(["G1", "G2", "G3"], n),
        }
    )
    for name, source in zip(SIGNAL, SIGNAL_FEATURES, strict=True):
        frame[name] = raw[source].to_numpy()
    for i, name in enumerate(NOISE):
        frame[name] = raw[noise_name(i)].to_numpy()
    frame["outcome.target"] = 50.0 + 5.0 * (frame[SIGNAL[0]] - frame[SIGNAL[1]]) + rng.normal(0, 2, n)
    return frame


def write_table(path: Path, frame: pd.DataFrame | None = None) -> Path:
    """The table as Parquet."""
    (synthetic_table() if frame is None else frame).to_parquet(path, index=False)
    return path


def recipe_document(model: dict[str, Any], outcome: dict[str, Any], cutoff: dict[str, Any], **extra: Any) -> dict:
    """A recipe with an inline plan."""
    document = {
        "id": f"test-{model['type'].replace('_', '-')}",
        "title": f"test {model['type']}",
        "intended_use": "Tests only.",
        "demonstration": True,
        "seed": 11,
        "extraction": {"plan": PLAN},
        "outcome": outcome,
        "model": model,
        "cutoff": cutoff,
        "n_boot": 20,
    }
    return document | extra


def write_recipe(path: Path, document: dict[str, Any]) -> Path:
    """The recipe as YAML."""
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


COX = recipe_document(
    {"type": "cox", "folds": 5},
    {"type": "survival", "horizons": [24.0, 36.0]},
    {"method": "td_roc_youden", "horizon": 24.0},
)
LOGISTIC = recipe_document(
    {"type": "logistic", "folds": 5, "smote": True},
    {"type": "binary", "column": "pcr"},
    {"method": "youden"},
)
ELASTIC_NET = recipe_document(
    {"type": "elastic_net", "folds": 5, "n_features": 3, "l1_ratios": [0.5, 1.0]},
    {"type": "continuous", "column": "target", "survival": {"type": "survival"}},
    {"method": "max_logrank", "min_fraction": 0.2},
    selection={"screen_p": None, "correlation_threshold": 0.9},
)
FOREST = recipe_document(
    {"type": "random_forest", "n_estimators": 25},
    {"type": "binary", "column": "pcr"},
    {"method": "fixed", "value": 0.5},
    selection={"screen_p": 0.05, "correlation_threshold": 0.8, "max_features": 4},
)


def test_synthetic_table_has_the_extraction_layout() -> None:
    frame = synthetic_table(30)
    assert list(frame.columns[:2]) == ["patient_id", "split"]
    assert set(frame["split"]) == {"train", "validation"}
    assert all(name in frame.columns for name in PLAN["features"])
