"""Selection steps shared by the recipes, on training rows only: ICC -> z-score -> screen -> |r| filter -> top k.

Every step logs what it kept and dropped (``log``, JSON-able, stored in the bundle's ``training`` provenance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from oncohabitat_training.fitting.schema import Selection
from oncohabitat_training.modelling.selection import (
    Standardiser,
    binary_screen,
    correlation_filter,
    cox_screen,
    icc_filter,
)


@dataclass(frozen=True)
class Preselection:
    """The surviving candidates (input order), the z-score fitted on training rows, and the step log."""

    features: list[str]
    standardiser: Standardiser
    log: dict[str, Any] = field(default_factory=dict)


def _round(values: pd.Series) -> dict[str, float]:
    return {str(k): float(np.round(v, 12)) for k, v in values.items()}


def preselect(
    train: pd.DataFrame,
    candidates: Sequence[str],
    selection: Selection,
    *,
    survival: npt.NDArray[np.void] | None = None,
    binary: npt.ArrayLike | None = None,
    second_reader: pd.DataFrame | None = None,
) -> Preselection:
    """Run the configured steps.

    Args:
        train: training rows (raw feature values), indexed by patient id.
        candidates: candidate features.
        selection: the recipe's steps.
        survival: outcome for the univariable Cox screen (survival recipes).
        binary: 0/1 outcome for the Mann-Whitney screen (classifier recipes).
        second_reader: the same patients' features from a second reader's masks (enables ICC).

    Raises:
        ValueError: when a step leaves no feature (naming the step).
    """
    log: dict[str, Any] = {"candidates": len(candidates)}
    kept = list(candidates)
    if second_reader is not None and selection.icc_threshold is not None:
        common = train.index.intersection(second_reader.index)
        kept, icc = icc_filter([train.loc[common], second_reader.loc[common]], kept, selection.icc_threshold)
        log["icc"] = {"threshold": selection.icc_threshold, "kept": len(kept), "values": _round(icc)}
    standardiser = Standardiser.fit(train, kept)
    z = standardiser.transform(train)
    p_values: pd.Series | None = None
    if selection.screen_p is not None:
        if survival is not None:
            kept, screen = cox_screen(z, kept, survival, selection.screen_p)
            p_values = screen["p"]
        elif binary is not None:
            kept, p_values = binary_screen(z, kept, binary, selection.screen_p)
        log["screen"] = {"p_threshold": selection.screen_p, "kept": len(kept)}
        if not kept:
            raise ValueError(f"no feature passed the univariable screen at p < {selection.screen_p}")
    if selection.correlation_threshold is not None and len(kept) > 1:
        priority = p_values.loc[kept] if p_values is not None else None
        kept, dropped = correlation_filter(z, kept, selection.correlation_threshold, priority=priority)
        log["correlation"] = {"threshold": selection.correlation_threshold, "kept": len(kept), "dropped": dropped}
    if selection.max_features is not None and len(kept) > selection.max_features:
        if p_values is None:
            kept = kept[: selection.max_features]
        else:
            order = sorted(kept, key=lambda name: (float(p_values[name]), kept.index(name)))
            best = set(order[: selection.max_features])
            kept = [name for name in kept if name in best]
        log["max_features"] = selection.max_features
    if p_values is not None:
        log["screen_p"] = _round(p_values.loc[kept])
    log["kept"] = list(kept)
    return Preselection(kept, Standardiser.fit(train, kept), log)
