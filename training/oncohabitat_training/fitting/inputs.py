"""What every model fitter receives: the recipe, its candidates and the checked table split by split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from oncohabitat_training.fitting.schema import Recipe, SurvivalOutcome
from oncohabitat_training.fitting.table import (
    SPLITS,
    FeatureTable,
    check_features,
    encode_covariates,
    outcome_column,
)
from oncohabitat_training.modelling.data import survival_array


@dataclass(frozen=True)
class FitInputs:
    """Rows per split (indexed by patient id, table order) with their encoded covariate design columns."""

    recipe: Recipe
    candidates: list[str]
    splits: dict[str, pd.DataFrame]
    covariates: dict[str, pd.DataFrame]
    second_reader: pd.DataFrame | None = None
    #: Patients left out for a missing candidate feature (``missing_values: drop_patient``), sorted.
    excluded: tuple[str, ...] = ()

    @property
    def train(self) -> pd.DataFrame:
        """Training rows."""
        return self.splits["train"]

    @property
    def covariate_columns(self) -> list[str]:
        """Encoded covariate design columns, in declaration order."""
        return list(self.covariates["train"].columns)

    def survival(self, split: str, outcome: SurvivalOutcome) -> npt.NDArray[np.void]:
        """Structured survival array of one split."""
        rows = self.splits[split]
        return survival_array(outcome_column(rows, outcome.time), outcome_column(rows, outcome.event))


def prepare_inputs(
    recipe: Recipe, candidates: list[str], table: FeatureTable, second_reader: pd.DataFrame | None = None
) -> FitInputs:
    """Check the candidates and covariates against the table, then split it.

    Raises:
        TableError: an unknown feature (named), a missing value (feature, patient, row), a covariate value
            outside its declared categories or range (covariate, patient, row).
    """
    frame = table.frame
    excluded: tuple[str, ...] = ()
    if recipe.missing_values == "drop_patient":
        present = [name for name in candidates if name in frame.columns]
        values = frame[present].apply(pd.to_numeric, errors="coerce").astype(np.float64)
        missing = ~np.isfinite(values.to_numpy()).all(axis=1)
        excluded = tuple(sorted(frame.loc[missing, "patient_id"].astype(str)))
        frame = frame.loc[~missing]
    check_features(frame, candidates)
    encoded = encode_covariates(frame, recipe.covariates)
    splits: dict[str, pd.DataFrame] = {}
    covariates: dict[str, pd.DataFrame] = {}
    for name in SPLITS:
        mask = (frame["split"] == name).to_numpy()
        if mask.any():
            ids = frame.loc[mask, "patient_id"].astype(str).to_numpy()
            splits[name] = frame.loc[mask].set_index(pd.Index(ids, name="patient"))
            covariates[name] = encoded.loc[mask].set_index(pd.Index(ids, name="patient"))
    if second_reader is not None:
        second_reader = second_reader.set_index(second_reader["patient_id"].astype(str))
    return FitInputs(recipe, candidates, splits, covariates, second_reader, excluded)
