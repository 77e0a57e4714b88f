"""Cohort files (CSV, YAML): validated as a whole; every problem with its row, column and patient id."""

from __future__ import annotations

from pathlib import Path

import pytest

from oncohabitat_training.cohorts import CohortFileError, load_cohort, read_cohort

YAML_HEADER = """\
version: 1
covariates:
  age: {type: numeric, min: 18, max: 100, unit: years}
  er: {type: categorical, categories: [positive, negative]}
  grade: {type: categorical, categories: [1, 2, 3]}
outcomes:
  time: {type: time, unit: months}
patients:
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("P1", "P2", "P3", "P4"):
        (tmp_path / "dicom" / name).mkdir(parents=True)
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "P1.nii.gz").write_bytes(b"mask")
    for phase in ("pre", "post1", "post2"):
        (tmp_path / f"P9_{phase}.nii.gz").write_bytes(b"phase")
    return tmp_path


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_csv_resolves_paths_and_types(folder: Path) -> None:
    cohort_file = _write(
        folder / "cohort.csv",
        "patient_id,dicom,nifti,nifti_times_s,mask,seed_x_mm,seed_y_mm,seed_z_mm,clinical.age,clinical.er,"
        "time,event,pcr,split\n"
        "P1,dicom/P1,,,masks/P1.nii.gz,,,,54,positive,30.5,1,,train\n"
        "P9,,P9_pre.nii.gz;P9_post1.nii.gz;P9_post2.nii.gz,0;90;180,,12.5,-40,80,61,negative,12,0,1,external\n",
    )
    cohort = load_cohort(cohort_file)
    first, second = cohort.patients
    assert (first.row, first.patient_id, first.split) == (2, "P1", "train")
    assert first.dicom == (folder / "dicom" / "P1").resolve() and first.mask == (folder / "masks/P1.nii.gz").resolve()
    assert first.clinical == {"age": 54, "er": "positive"}
    assert first.outcomes["time"] == 30.5 and first.outcomes["event"] == 1 and first.outcomes["pcr"] is None
    assert second.nifti[0] == (folder / "P9_pre.nii.gz").resolve() and second.times_s == (0.0, 90.0, 180.0)
    assert second.seed_mm == (12.5, -40.0, 80.0) and second.split == "external"
    assert cohort.outcome_names() == ["time", "event", "pcr"] and cohort.clinical_names() == ["age", "er"]


def test_valid_yaml_with_declarations(folder: Path) -> None:
    cohort_file = _write(
        folder / "cohort.yaml",
        YAML_HEADER
        + """\
  - patient_id: P1
    image: {dicom: dicom/P1}
    mask: masks/P1.nii.gz
    seed_mm: [1.5, 2, -3]
    clinical: {age: 54, er: negative, grade: 2}
    outcomes: {time: 12.5, event: 0}
    split: validation
""",
    )
    (patient,) = load_cohort(cohort_file).patients
    assert patient.clinical == {"age": 54.0, "er": "negative", "grade": "2"}
    assert patient.seed_mm == (1.5, 2.0, -3.0) and patient.split == "validation"


def test_bad_rows_are_each_reported_with_row_column_and_patient(folder: Path) -> None:
    cohort_file = _write(
        folder / "cohort.yaml",
        YAML_HEADER
        + """\
  - patient_id: P1
    image: {dicom: dicom/P1}
    clinical: {age: 54, er: positive}
    outcomes: {time: 10, event: 1}
    split: train
  - patient_id: P2
    image: {dicom: dicom/missing}
    outcomes: {time: -3, event: 1}
    clinical: {er: HER2}
    split: train
  - patient_id: P3
    image: {dicom: dicom/P3}
    clinical: {age: 17, bmi: 22}
    split: train
    colour: red
  - patient_id: P4
    image: {nifti: [P9_pre.nii.gz, P9_post1.nii.gz], times_s: [0]}
    split: test
""",
    )
    check = read_cohort(cohort_file)
    assert not check.fatal and check.cohort is not None
    assert [p.patient_id for p in check.cohort.patients] == ["P1"]  # the valid rows stay usable
    found = {(p.row, p.column, p.patient_id): p.message for p in check.problems}
    assert "does not exist" in found[(2, "image.dicom", "P2")]
    assert "greater than or equal to 0" in found[(2, "outcomes.time", "P2")]
    assert "'positive' or 'negative'" in found[(2, "clinical.er", "P2")] and "HER2" in found[(2, "clinical.er", "P2")]
    assert "greater than or equal to 18" in found[(3, "clinical.age", "P3")]
    assert found[(3, "clinical.bmi", "P3")] == "unknown column (not declared)"
    assert found[(3, "colour", "P3")] == "unknown column"
    assert "one acquisition time" in found[(4, "image", "P4")]
    assert "'train', 'validation' or 'external'" in found[(4, "split", "P4")]
    with pytest.raises(CohortFileError) as refused:
        load_cohort(cohort_file)
    text = str(refused.value)
    assert "row 2, column outcomes.time (patient P2)" in text and "row 3, column colour (patient P3)" in text
    assert "Traceback" not in text


def test_csv_rows_are_numbered_as_lines_and_columns_named_as_written(folder: Path) -> None:
    cohort_file = _write(
        folder / "cohort.csv",
        "patient_id,dicom,time,event,clinical.age,seed_x_mm,seed_y_mm,seed_z_mm,split\n"
        "P1,dicom/P1,10,1,50,,,,train\n"
        "P2,dicom/nowhere,-1,1,50,,,,train\n"
        "P3,dicom/P3,5,,50,1,2,,validation\n"
        "P1,dicom/P4,5,0,50,,,,train\n",
    )
    check = read_cohort(cohort_file)
    found = {(p.row, p.column, p.patient_id) for p in check.problems}
    assert {(3, "dicom", "P2"), (3, "time", "P2"), (4, "time/event", "P3"), (4, "seed_z_mm", "P3")} <= found
    assert (5, "patient_id", "P1") in found  # duplicate id
    assert check.cohort is not None and [p.row for p in check.cohort.patients] == [2]


def test_unknown_csv_column_is_a_whole_file_problem(folder: Path) -> None:
    cohort_file = _write(folder / "cohort.csv", "patient_id,dicom,colour,split\nP1,dicom/P1,red,train\n")
    check = read_cohort(cohort_file)
    assert check.fatal and check.cohort is None
    assert [(p.row, p.column, p.message) for p in check.problems] == [(1, "colour", "unknown column")]


def test_bad_declarations_and_unreadable_files_are_reported_not_raised(folder: Path) -> None:
    bad_spec = _write(folder / "a.yaml", "covariates:\n  er: {type: categorical}\npatients: []\nextra: 1\n")
    check = read_cohort(bad_spec)
    assert check.fatal
    assert {(p.row, p.column) for p in check.problems} == {(0, "extra"), (0, "covariates.er")}
    assert read_cohort(_write(folder / "b.yaml", "patients: [\n")).problems[0].message.startswith("not valid YAML")
    assert read_cohort(folder / "missing.csv").fatal
    assert read_cohort(_write(folder / "c.txt", "x")).fatal


def test_yaml_may_name_a_csv_table_with_declarations(folder: Path) -> None:
    (folder / "tables").mkdir()
    (folder / "tables" / "dicom").symlink_to(folder / "dicom")
    _write(
        folder / "tables" / "patients.csv",
        "patient_id,dicom,clinical.er,split\nP1,dicom/P1,positive,train\nP2,dicom/P2,unknown,train\n",
    )
    cohort_file = _write(
        folder / "cohort.yaml",
        "covariates:\n  er: {type: categorical, categories: [positive, negative]}\ntable: tables/patients.csv\n",
    )
    check = read_cohort(cohort_file)
    assert [(p.row, p.column, p.patient_id) for p in check.problems] == [(3, "clinical.er", "P2")]
    assert check.cohort is not None and check.cohort.patients[0].clinical == {"er": "positive"}
