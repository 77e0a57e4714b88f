"""The cohort file of a phantom cohort folder: supplied masks, seed = lesion centre, age, the planted outcomes
(DFS time/event, linear predictor and the labels derived from it), split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oncohabitat.phantom.cohort import COLUMNS
from oncohabitat_training.cohorts import CohortFileError, load_cohort
from oncohabitat_training.cohorts.phantom import validation_cases, write_phantom_cohort_file

#: Planted linear predictors of the fake cases (median of the first four: 0.15).
ETA = (0.7, -0.4, 0.1, 0.2, -1.0, 0.3)


def _fake_phantom_cohort(root: Path, n: int) -> None:
    """The files the converter reads (clinical.csv, phantom.json) and the paths the cohort file names."""
    lines = [",".join(COLUMNS)]
    for i in range(n):
        case = root / f"case_{i:04d}"
        (case / "dicom").mkdir(parents=True)
        (case / "ground_truth").mkdir()
        (case / "ground_truth" / "tumour_mask.nrrd").write_bytes(b"nrrd")
        (case / "phantom.json").write_text(json.dumps({"lesion": {"centre_lps_mm": [1.0 + i, -2.5, 30.125]}}))
        values = {name: "0" for name in COLUMNS} | {
            "case_id": case.name,
            "age": str(40 + i),
            "time_months": f"{12.5 + i}",
            "event": str(i % 2),
            "true_linear_predictor": f"{ETA[i]:.6f}",
        }
        lines.append(",".join(values[name] for name in COLUMNS))
    (root / "clinical.csv").write_text("\n".join(lines) + "\n")


def test_validation_split_is_deterministic_and_spread() -> None:
    assert validation_cases(10, 0.3) == {3, 6, 9}
    assert len(validation_cases(200, 0.3)) == 60
    assert validation_cases(5, 0.0) == set()


def test_a_third_is_every_third_case() -> None:
    """The demonstration bundles' split (fraction 1/3): index mod 3 == 2, for any cohort size."""
    for n in (3, 10, 300, 3001):
        assert validation_cases(n, 1 / 3) == {i for i in range(n) if i % 3 == 2}


def test_phantom_cohort_file_is_a_valid_cohort(tmp_path: Path) -> None:
    root = tmp_path / "phantom"
    _fake_phantom_cohort(root, 4)
    path = write_phantom_cohort_file(root, validation_fraction=0.25)
    cohort = load_cohort(path)
    assert [p.patient_id for p in cohort.patients] == ["case_0000", "case_0001", "case_0002", "case_0003"]
    assert [p.split for p in cohort.patients] == ["train", "train", "train", "validation"]
    first = cohort.patients[0]
    assert first.dicom == (root / "case_0000" / "dicom").resolve()
    assert first.mask == (root / "case_0000" / "ground_truth" / "tumour_mask.nrrd").resolve()
    assert first.seed_mm == (1.0, -2.5, 30.125)
    assert first.clinical == {"age": 40.0} and first.outcomes["time"] == 12.5 and first.outcomes["event"] == 0
    assert cohort.header.outcome_specs()["time"].unit == "months"


def test_planted_outcomes_are_declared_and_derived_from_eta(tmp_path: Path) -> None:
    root = tmp_path / "phantom"
    _fake_phantom_cohort(root, 4)
    cohort = load_cohort(write_phantom_cohort_file(root))
    specs = cohort.header.outcome_specs()
    assert {name: specs[name].type for name in ("lp", "target", "pcr", "high_risk")} == {
        "lp": "continuous",
        "target": "continuous",
        "pcr": "binary",
        "high_risk": "binary",
    }
    assert cohort.outcome_names() == ["time", "event", "pcr", "target", "lp", "high_risk"]
    outcomes = [p.outcomes for p in cohort.patients]
    assert [o["lp"] for o in outcomes] == list(ETA[:4])
    assert [o["target"] for o in outcomes] == [50.0 + 15.0 * eta for eta in ETA[:4]]
    assert [o["pcr"] for o in outcomes] == [0, 1, 1, 0]  # eta below the median 0.15
    assert [o["high_risk"] for o in outcomes] == [1, 0, 0, 1]  # eta at or above it


def test_cohort_file_elsewhere_has_paths_relative_to_itself(tmp_path: Path) -> None:
    root = tmp_path / "phantom"
    _fake_phantom_cohort(root, 2)
    write_phantom_cohort_file(root, tmp_path / "cohorts" / "p.yaml")
    cohort = load_cohort(tmp_path / "cohorts" / "p.yaml")
    assert cohort.patients[1].dicom == (root / "case_0001" / "dicom").resolve()


def test_not_a_phantom_folder(tmp_path: Path) -> None:
    with pytest.raises(CohortFileError, match=r"clinical\.csv not found"):
        write_phantom_cohort_file(tmp_path)
