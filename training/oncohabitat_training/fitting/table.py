"""The feature table a recipe is fitted on: columns, splits, outcomes and encoded covariates, checked.

Layout (``oncohabitat-train extract``): ``patient_id``, ``split`` (``train`` / ``validation`` / ``external``),
``outcome.<name>``, ``clinical.<name>``, then canonical feature names. Every problem is a
:class:`TableError` naming the column and, for a bad value, the patient id and row number (0-based).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat_training.fitting.schema import Covariate

SPLITS = ("train", "validation", "external")


class TableError(ValueError):
    """A feature table that does not fit the recipe; the message names the column (and patient, row)."""


#: Parquet schema metadata key of the extraction plan (JSON) written by ``oncohabitat-train extract``.
METADATA_PLAN = b"oncohabitat.plan"


@dataclass(frozen=True)
class FeatureTable:
    """A loaded table, the SHA-256 of its file bytes (provenance) and the plan it was extracted with (if recorded)."""

    frame: pd.DataFrame
    sha256: str
    plan: ExtractionPlan | None = None

    def split(self, name: str) -> pd.DataFrame:
        """Rows of one split, in table order, indexed by patient id."""
        return self.frame[self.frame["split"] == name].set_index("patient_id", drop=False)


def read_table(path: Path) -> FeatureTable:
    """Read a Parquet (or CSV) feature table and check its fixed columns."""
    data = Path(path).read_bytes()
    if str(path).endswith(".csv"):
        return check_table(pd.read_csv(path), hashlib.sha256(data).hexdigest())
    table = pq.read_table(path)
    recorded = (table.schema.metadata or {}).get(METADATA_PLAN)
    plan = ExtractionPlan.model_validate_json(recorded) if recorded else None
    checked = check_table(table.to_pandas(), hashlib.sha256(data).hexdigest())
    return FeatureTable(checked.frame, checked.sha256, plan)


def check_extraction(table: FeatureTable, plan: ExtractionPlan) -> None:
    """The table was extracted with the recipe's region profile, normalisation and feature settings.

    Raises:
        TableError: naming the part of the plan that differs (tables without a recorded plan pass).
    """
    if table.plan is None:
        return
    for part in ("region_profile", "normalisation", "feature_settings"):
        if getattr(table.plan, part) != getattr(plan, part):
            raise TableError(f"feature table was extracted with another {part} than the recipe's plan declares")


def check_table(frame: pd.DataFrame, sha256: str) -> FeatureTable:
    """Check ``patient_id`` (unique) and ``split`` (known values, some training rows)."""
    for column in ("patient_id", "split"):
        if column not in frame.columns:
            raise TableError(f"feature table: missing column {column!r}")
    duplicated = frame["patient_id"][frame["patient_id"].duplicated()]
    if not duplicated.empty:
        raise TableError(f"feature table: duplicate patient_id {duplicated.iloc[0]!r}")
    bad = frame[~frame["split"].isin(SPLITS)]
    if not bad.empty:
        row = int(bad.index[0])
        raise TableError(
            f"feature table: column 'split', patient {bad['patient_id'].iloc[0]!r} (row {row}): "
            f"unknown split {bad['split'].iloc[0]!r} (train, validation, external)"
        )
    if not (frame["split"] == "train").any():
        raise TableError("feature table: no 'train' rows")
    return FeatureTable(frame.reset_index(drop=True), sha256)


def _first_bad(frame: pd.DataFrame, mask: pd.Series) -> tuple[str, int]:
    position = int(np.flatnonzero(mask.to_numpy())[0])
    return str(frame["patient_id"].iloc[position]), int(frame.index[position])


def check_features(frame: pd.DataFrame, features: Sequence[str]) -> None:
    """Every feature is a numeric, finite column of the table.

    Raises:
        TableError: naming the first unknown feature, or the feature, patient and row of a missing value.
    """
    for name in features:
        if name not in frame.columns:
            raise TableError(f"unknown feature {name!r}: not a column of the feature table")
        values = pd.to_numeric(frame[name], errors="coerce").astype(np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            patient, row = _first_bad(frame, bad)
            raise TableError(f"feature {name!r}, patient {patient!r} (row {row}): missing or not a finite number")


def outcome_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """``outcome.<name>`` as float64, every value finite.

    Raises:
        TableError: missing column, or the patient and row of a missing value.
    """
    column = f"outcome.{name}"
    if column not in frame.columns:
        raise TableError(f"feature table: missing outcome column {column!r}")
    values = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        patient, row = _first_bad(frame, bad)
        raise TableError(f"column {column!r}, patient {patient!r} (row {row}): missing or not a number")
    return values.to_numpy()


def binary_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """``outcome.<name>`` as 0/1 integers."""
    values = outcome_column(frame, name)
    bad = pd.Series(~np.isin(values, (0.0, 1.0)), index=frame.index)
    if bad.any():
        patient, row = _first_bad(frame, bad)
        raise TableError(f"column 'outcome.{name}', patient {patient!r} (row {row}): a binary outcome is 0 or 1")
    return values.astype(np.int64)


def covariate_columns(covariate: Covariate) -> list[str]:
    """Design columns of a covariate, as the scoring bundle names them."""
    if covariate.type == "categorical":
        return [f"{covariate.name}={c}" for c in covariate.categories if c != covariate.reference]
    return [covariate.name]


def _numeric(frame: pd.DataFrame, covariate: Covariate, column: str) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        patient, row = _first_bad(frame, bad)
        raise TableError(f"covariate {covariate.name!r}, patient {patient!r} (row {row}): not a finite number")
    low, high = covariate.valid_range or (None, None)
    outside = (values < (low if low is not None else -np.inf)) | (values > (high if high is not None else np.inf))
    if outside.any():
        patient, row = _first_bad(frame, outside)
        raise TableError(
            f"covariate {covariate.name!r}, patient {patient!r} (row {row}): value {values[outside].iloc[0]} "
            f"outside its valid range {list(covariate.valid_range or ())}"
        )
    return values


def _boolean(frame: pd.DataFrame, covariate: Covariate, column: str) -> pd.Series:
    mapping: dict[object, float] = {True: 1.0, False: 0.0, "true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0}
    values = frame[column].map(lambda v: mapping.get(v.lower() if isinstance(v, str) else v, np.nan))
    bad = values.isna()
    if bad.any():
        patient, row = _first_bad(frame, bad)
        raise TableError(
            f"covariate {covariate.name!r}, patient {patient!r} (row {row}): {frame[column][bad].iloc[0]!r} "
            "is not a boolean"
        )
    return values.astype(np.float64)


def encode_covariates(frame: pd.DataFrame, covariates: Sequence[Covariate]) -> pd.DataFrame:
    """Design columns of the covariates (numeric as is, boolean 1/0, categorical one-hot without the reference).

    Raises:
        TableError: missing column; a value that is missing, out of range, not boolean, or a category outside
            the declared ones — naming the covariate, the patient and the row.
    """
    out = pd.DataFrame(index=frame.index)
    for covariate in covariates:
        column = covariate.table_column
        if column not in frame.columns:
            raise TableError(f"covariate {covariate.name!r}: feature table has no column {column!r}")
        if covariate.type == "numeric":
            out[covariate.name] = _numeric(frame, covariate, column)
        elif covariate.type == "boolean":
            out[covariate.name] = _boolean(frame, covariate, column)
        else:
            values = frame[column].astype(str)
            unknown = ~values.isin(covariate.categories)
            if unknown.any():
                patient, row = _first_bad(frame, unknown)
                raise TableError(
                    f"covariate {covariate.name!r}, patient {patient!r} (row {row}): category "
                    f"{values[unknown].iloc[0]!r} is not one of the declared categories {covariate.categories}"
                )
            for category in covariate.categories:
                if category != covariate.reference:
                    out[f"{covariate.name}={category}"] = (values == category).astype(np.float64)
    return out
