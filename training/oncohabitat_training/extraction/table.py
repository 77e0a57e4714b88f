"""The feature table: one Parquet file, one row per extracted patient, in cohort order.

Columns: ``patient_id`` (text), ``split`` (text), ``outcome.<name>`` (float64; null = no value),
``clinical.<name>`` (float64 for numeric covariates, text for categorical ones; null = no value), then the
plan's canonical feature names in plan order (float64; NaN = missing, the reason is in the run's parts). The
Parquet schema metadata holds the plan (JSON), its SHA-256, the cohort file's SHA-256 and the code version, so a
recipe can check what it is fitting. Written to a temporary file and renamed (a table is complete or absent).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import oncohabitat
from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat_training.cohorts import Cohort, CohortPatient

METADATA_PLAN = b"oncohabitat.plan"
METADATA_PLAN_SHA256 = b"oncohabitat.plan_sha256"
METADATA_COHORT_SHA256 = b"oncohabitat.cohort_sha256"
METADATA_VERSION = b"oncohabitat.version"


def _clinical_column(cohort: Cohort, name: str, patients: Sequence[CohortPatient]) -> pa.Array:
    values = [patient.clinical.get(name) for patient in patients]
    spec = (cohort.header.covariates or {}).get(name)
    numeric = (
        spec.type == "numeric" if spec is not None else all(isinstance(v, int | float) or v is None for v in values)
    )
    if numeric:
        return pa.array([None if v is None else float(v) for v in values], type=pa.float64())
    return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def feature_table(
    cohort: Cohort,
    plan: ExtractionPlan,
    rows: Sequence[tuple[CohortPatient, Mapping[str, float]]],
) -> pa.Table:
    """The table of ``rows`` (patient, feature row), in the given order (see the module docstring)."""
    patients = [patient for patient, _ in rows]
    columns: dict[str, pa.Array] = {
        "patient_id": pa.array([p.patient_id for p in patients], type=pa.string()),
        "split": pa.array([p.split for p in patients], type=pa.string()),
    }
    for name in cohort.outcome_names():
        values = [patient.outcomes.get(name) for patient in patients]
        columns[f"outcome.{name}"] = pa.array([None if v is None else float(v) for v in values], type=pa.float64())
    for name in cohort.clinical_names():
        columns[f"clinical.{name}"] = _clinical_column(cohort, name, patients)
    for name in plan.features:
        columns[name] = pa.array([float(row[name]) for _, row in rows], type=pa.float64())
    metadata = {
        METADATA_PLAN: plan.model_dump_json(by_alias=True).encode(),
        METADATA_PLAN_SHA256: plan.sha256().encode(),
        METADATA_COHORT_SHA256: cohort.sha256.encode(),
        METADATA_VERSION: oncohabitat.__version__.encode(),
    }
    return pa.table(columns).replace_schema_metadata(metadata)


def write_table(table: pa.Table, out: Path) -> Path:
    """Write the table as Parquet (temporary file, then rename)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".table-", suffix=".parquet", dir=out.parent)
    os.close(handle)
    try:
        pq.write_table(table, temporary)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return out


def read_plan(table_path: Path) -> ExtractionPlan:
    """The extraction plan a feature table was made with (from its Parquet metadata)."""
    metadata = pq.read_schema(table_path).metadata or {}
    return ExtractionPlan.model_validate(json.loads(metadata[METADATA_PLAN]))
