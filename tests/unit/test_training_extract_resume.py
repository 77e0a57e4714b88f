"""``extract``: an interrupted run resumes without recomputing finished patients; failures are isolated and listed
(``--on-error continue`` finishes the others, ``stop`` stops); patient ids stay out of the logs."""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
import yaml

from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat.phantom.cohort import generate_cohort
from oncohabitat_training.cohorts import CohortFileError
from oncohabitat_training.cohorts.phantom import write_phantom_cohort_file
from oncohabitat_training.extraction import patient as patient_step
from oncohabitat_training.extraction.command import add_extract_parsers, run_extract_command
from oncohabitat_training.extraction.patient import PatientResult, PatientTask
from oncohabitat_training.extraction.profile import load_plan
from oncohabitat_training.extraction.run import ExtractConfig, run_extraction

PROFILE = {
    "feature_settings": {"featureClass": {"firstorder": ["Mean", "Energy"]}},
    "regions": ["tumour", "ring_5mm"],
    "images": ["S1"],
    "msi": False,
    "stats": ["volume_ml"],
}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A 3-study phantom cohort, its cohort file and a profile file."""
    root = tmp_path_factory.mktemp("phantom") / "cohort"
    generate_cohort(root, 3, "small", seed=3)
    profile = root.parent / "profile.yaml"
    profile.write_text(yaml.safe_dump(PROFILE))
    return root, write_phantom_cohort_file(root), profile


@pytest.fixture(scope="module")
def plan(phantom: tuple[Path, Path, Path]) -> ExtractionPlan:
    return load_plan(phantom[2])


def test_interrupted_run_resumes_without_recomputing(
    phantom: tuple[Path, Path, Path], plan: ExtractionPlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = patient_step.extract_patient
    calls: list[int] = []

    def interrupted(task: PatientTask) -> PatientResult:
        calls.append(task.position)
        if task.position == 2:
            raise KeyboardInterrupt  # the researcher presses Ctrl-C during the third patient
        return real(task)

    config = ExtractConfig(out=tmp_path / "features.parquet", workers=1, progress=False)
    monkeypatch.setattr(patient_step, "extract_patient", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_extraction(phantom[1], plan, config)
    parts = sorted(config.work_folder().rglob("*.json"))
    assert calls == [0, 1, 2] and len(parts) == 2 and not config.out.exists()
    stamps = {part: part.stat().st_mtime_ns for part in parts}

    calls.clear()
    monkeypatch.setattr(patient_step, "extract_patient", lambda task: calls.append(task.position) or real(task))
    report = run_extraction(phantom[1], plan, config)
    assert calls == [2] and (report.computed, report.reused) == (1, 2)
    assert {part: part.stat().st_mtime_ns for part in parts} == stamps  # finished parts untouched
    assert list(pd.read_parquet(config.out)["patient_id"]) == ["case_0000", "case_0001", "case_0002"]

    calls.clear()
    again = run_extraction(phantom[1], plan, config)
    assert calls == [] and (again.computed, again.reused) == (0, 3)


def _cohort_with_bad_rows(root: Path, cohort_file: Path, target: Path) -> Path:
    """The phantom cohort plus a patient whose mask is not an image and a row with a negative time."""
    document = yaml.safe_load(cohort_file.read_text())
    for entry in document["patients"]:
        entry["image"]["dicom"] = str(root / entry["image"]["dicom"])
        entry["mask"] = str(root / entry["mask"])
    (target.parent / "broken.nii.gz").write_bytes(b"not an image")
    broken = {**document["patients"][0], "patient_id": "broken-mask", "mask": "broken.nii.gz"}
    negative = {**document["patients"][1], "patient_id": "negative-time", "outcomes": {"time": -2.0, "event": 1}}
    document["patients"] = [document["patients"][0], broken, negative, *document["patients"][1:]]
    target.write_text(yaml.safe_dump(document, sort_keys=False))
    return target


def _failures(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_failures_are_isolated_and_listed(
    phantom: tuple[Path, Path, Path], plan: ExtractionPlan, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cohort_file = _cohort_with_bad_rows(phantom[0], phantom[1], tmp_path / "cohort.yaml")
    parser = argparse.ArgumentParser()
    add_extract_parsers(parser.add_subparsers(dest="command"))
    out = tmp_path / "features.parquet"
    argv = ["extract", str(cohort_file), "--plan", str(phantom[2]), "--out", str(out), "--workers", "1"]
    caplog.set_level(logging.INFO)
    assert run_extract_command(parser.parse_args([*argv, "--no-progress"])) == 1
    frame = pd.read_parquet(out)
    assert list(frame["patient_id"]) == ["case_0000", "case_0001", "case_0002"]  # the others finished
    failures = _failures(tmp_path / "features.work" / "failures.csv")
    assert [(f["row"], f["patient_id"]) for f in failures] == [("2", "broken-mask"), ("3", "negative-time")]
    assert failures[0]["reason"].startswith("IMAGE_UNREADABLE: the mask file could not be read")
    assert failures[1]["reason"].startswith("COHORT_INVALID: column outcomes.time: Input should be greater")
    logged = "\n".join(record.getMessage() + json.dumps(record.__dict__, default=str) for record in caplog.records)
    assert not any(patient in logged for patient in ("case_000", "broken-mask", "negative-time"))

    with pytest.raises(CohortFileError, match=r"row 3, column outcomes\.time \(patient negative-time\)"):
        run_extraction(cohort_file, plan, ExtractConfig(out=out, on_error="stop", progress=False))

    document = yaml.safe_load(cohort_file.read_text())
    document["patients"] = [p for p in document["patients"] if p["patient_id"] != "negative-time"]
    stop_file = tmp_path / "stop.yaml"
    stop_file.write_text(yaml.safe_dump(document, sort_keys=False))
    stopped_out = tmp_path / "stopped.parquet"
    report = run_extraction(
        stop_file,
        plan,
        ExtractConfig(out=stopped_out, work_dir=out.parent / "features.work", on_error="stop", progress=False),
    )
    assert report.table is None and not stopped_out.exists()
    assert [(f.row, f.patient_id) for f in report.failures] == [(2, "broken-mask")]
    assert report.reused == 3  # the finished patients of the earlier run were not recomputed
