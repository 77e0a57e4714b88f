"""A cohort file for a phantom cohort folder (``oncohabitat phantom cohort --n N --out DIR``).

Per case ``DIR/case_NNNN``: the DICOM folder as image source, the ground-truth tumour mask as supplied mask, the
lesion centre (``phantom.json``, LPS mm) as seed point, covariate ``age`` (years) and, from ``clinical.csv``,
the planted outcomes (all declared in the file):

* ``time`` (months, from ``time_months``) and ``event`` (0/1): the planted Weibull DFS;
* ``lp`` (continuous): the planted linear predictor eta (``true_linear_predictor``);
* ``target`` (continuous, points): a recurrence-score-like transform of eta, ``50 + 15 * eta``;
* ``pcr`` (binary): 1 when eta is below the cohort median ("responders" have the low planted risk: little
  wash-out, small volume), else 0;
* ``high_risk`` (binary): 1 when eta is at or above the cohort median, else 0.

``target``, ``pcr`` and ``high_risk`` are documented synthetic labels (the demonstration recipes'
``recipes/demo/``), not properties of real patients. The split is deterministic: in case order, a case goes to
validation each time ``index x validation_fraction`` passes a whole number, so round(N x fraction) cases, spread
evenly, are validation cases (a fraction of 1/3: every third case, index mod 3 == 2). The file (``cohort.yaml``
in the folder) has paths relative to the folder.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from pathlib import Path
from typing import Any

import yaml

from oncohabitat_training.cohorts.problems import CohortFileError, CohortProblem

COHORT_FILE_NAME = "cohort.yaml"
CLINICAL_CSV = "clinical.csv"
DEFAULT_VALIDATION_FRACTION = 0.3
#: Recurrence-score-like transform of the planted eta: ``TARGET_OFFSET + TARGET_SCALE * eta`` (points).
TARGET_OFFSET, TARGET_SCALE = 50.0, 15.0
#: The outcomes the file declares (``time`` and ``event`` keep the schema's defaults but for the unit).
OUTCOMES: dict[str, dict[str, str]] = {
    "time": {"type": "time", "unit": "months"},
    "lp": {"type": "continuous"},
    "target": {"type": "continuous", "unit": "points"},
    "pcr": {"type": "binary"},
    "high_risk": {"type": "binary"},
}


def validation_cases(n: int, fraction: float) -> set[int]:
    """Indices (0-based, case order) of the validation cases: round(n x fraction), spread evenly."""
    return {i for i in range(n) if math.floor((i + 1) * fraction + 1e-9) > math.floor(i * fraction + 1e-9)}


def _entry(root: Path, row: dict[str, str], split: str, median_lp: float) -> dict[str, Any]:
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
    lp = float(row["true_linear_predictor"])
    entry["outcomes"] = {
        "time": float(row["time_months"]),
        "event": int(row["event"]),
        "lp": lp,
        "target": TARGET_OFFSET + TARGET_SCALE * lp,
        "pcr": int(lp < median_lp),
        "high_risk": int(lp >= median_lp),
    }
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
    median_lp = statistics.median(float(row["true_linear_predictor"]) for row in rows) if rows else 0.0
    patients = [
        _entry(root, row, "validation" if i in validation else "train", median_lp) for i, row in enumerate(rows)
    ]
    document: dict[str, Any] = {
        "version": 1,
        "covariates": {"age": {"type": "numeric", "min": 0, "max": 120, "unit": "years"}},
        "outcomes": {name: dict(spec) for name, spec in OUTCOMES.items()},
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
