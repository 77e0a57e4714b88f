"""A cohort file for a phantom cohort folder (``oncohabitat phantom cohort --n N --out DIR``).

Per case ``DIR/case_NNNN``: the DICOM folder as image source, the ground-truth tumour mask as supplied mask, the
lesion centre (``phantom.json``, LPS mm) as seed point, covariate ``age`` (years), outcomes ``time`` (months,
from ``time_months``) and ``event``. The split is deterministic: in case order, a case goes to validation each
time ``index x validation_fraction`` passes a whole number, so round(N x fraction) cases, spread evenly, are
validation cases. The file (``cohort.yaml`` in the folder) has paths relative to the folder.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import yaml

from oncohabitat_training.cohorts.problems import CohortFileError, CohortProblem

COHORT_FILE_NAME = "cohort.yaml"
CLINICAL_CSV = "clinical.csv"
DEFAULT_VALIDATION_FRACTION = 0.3


def validation_cases(n: int, fraction: float) -> set[int]:
    """Indices (0-based, case order) of the validation cases: round(n x fraction), spread evenly."""
    return {i for i in range(n) if math.floor((i + 1) * fraction + 1e-9) > math.floor(i * fraction + 1e-9)}


def _entry(root: Path, row: dict[str, str], split: str) -> dict[str, Any]:
    case = row["case_id"]
    metadata = json.loads((root / case / "phantom.json").read_text(encoding="utf-8"))
    lesion = metadata.get("lesion") or {}
    entry: dict[str, Any] = {
        "patient_id": case,
        "image": {"dicom": f"{case}/dicom"},
        "mask": f"{case}/ground_truth/tumour_mask.nrrd",
    }
    if lesion.get("centre_lps_mm"):
        entry["seed_mm"] = [round(float(value), 4) for value in lesion["centre_lps_mm"]]
    entry["clinical"] = {"age": int(row["age"])}
    entry["outcomes"] = {"time": float(row["time_months"]), "event": int(row["event"])}
    entry["split"] = split
    return entry


def write_phantom_cohort_file(
    root: Path, out: Path | None = None, validation_fraction: float = DEFAULT_VALIDATION_FRACTION
) -> Path:
    """Write the cohort file of the phantom cohort in ``root``; returns its path (default ``root/cohort.yaml``).

    Raises:
        CohortFileError: ``root`` holds no ``clinical.csv`` or a case folder is missing.
    """
    root = Path(root)
    clinical = root / CLINICAL_CSV
    if not clinical.is_file():
        raise CohortFileError([CohortProblem(0, "", None, f"{CLINICAL_CSV} not found: not a phantom cohort folder")])
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError("validation_fraction must lie in [0, 1)")
    with clinical.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    missing = [
        CohortProblem(number, "case_id", row["case_id"], "case folder or phantom.json missing")
        for number, row in enumerate(rows, start=2)
        if not (root / row["case_id"] / "phantom.json").is_file()
    ]
    if missing:
        raise CohortFileError(missing)
    validation = validation_cases(len(rows), validation_fraction)
    patients = [_entry(root, row, "validation" if i in validation else "train") for i, row in enumerate(rows)]
    document: dict[str, Any] = {
        "version": 1,
        "covariates": {"age": {"type": "numeric", "min": 0, "max": 120, "unit": "years"}},
        "outcomes": {"time": {"type": "time", "unit": "months"}},
        "patients": patients,
    }
    target = out or root / COHORT_FILE_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = Path(os.path.relpath(root.resolve(), target.resolve().parent)).as_posix()
    if prefix != ".":
        for entry in patients:
            entry["image"]["dicom"] = f"{prefix}/{entry['image']['dicom']}"
            entry["mask"] = f"{prefix}/{entry['mask']}"
    target.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return target
