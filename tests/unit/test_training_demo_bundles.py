"""The demonstration bundles' feature table comes from the researcher's path: phantom cohort -> cohort file ->
the extraction run (``oncohabitat-train extract``) with the demo recipes' plan; the table has what ``fit`` reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oncohabitat.phantom.cohort import generate_cohort
from oncohabitat_training import demo_bundles
from oncohabitat_training.cohorts import load_cohort
from oncohabitat_training.demo_bundles import demo_plan, feature_table
from oncohabitat_training.extraction.profile import load_plan
from oncohabitat_training.extraction.table import read_plan
from oncohabitat_training.fitting.table import outcome_column, read_table

OUTCOMES = ["time", "event", "pcr", "target", "lp", "high_risk"]


def test_demo_recipes_share_the_candidate_plan() -> None:
    assert demo_plan() == load_plan(demo_bundles.RECIPES / "plans" / "phantom-dce.yaml")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work folder holding a 3-case phantom cohort (the 300-case one is reused the same way)."""
    work = tmp_path_factory.mktemp("demo")
    generate_cohort(work / "cohort", 3, "small", seed=7)
    return work


def test_feature_table_is_the_extraction_run_on_the_cohort_file(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = feature_table(work, workers=1)
    assert path == work / "features.parquet"
    assert "3 patients extracted, 0 reused" in capsys.readouterr().out
    plan = demo_plan()
    assert read_plan(path) == plan
    table = read_table(path)
    frame = table.frame
    fixed = ["patient_id", "split", *(f"outcome.{name}" for name in OUTCOMES), "clinical.age"]
    assert list(frame.columns) == fixed + list(plan.features)
    assert list(frame["patient_id"]) == ["case_0000", "case_0001", "case_0002"]
    assert list(frame["split"]) == ["train", "train", "validation"]  # every third case
    cohort = load_cohort(work / "cohort" / "cohort.yaml")
    for name in OUTCOMES:
        np.testing.assert_array_equal(outcome_column(frame, name), [p.outcomes[name] for p in cohort.patients])
    lp = outcome_column(frame, "lp")
    np.testing.assert_array_equal(outcome_column(frame, "target"), 50.0 + 15.0 * lp)
    np.testing.assert_array_equal(outcome_column(frame, "pcr"), lp < np.median(lp))
    np.testing.assert_array_equal(outcome_column(frame, "high_risk"), lp >= np.median(lp))


def test_rerun_reuses_the_cohort_and_the_extracted_patients(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = (work / "features.parquet").read_bytes()
    feature_table(work, workers=1)
    assert "0 patients extracted, 3 reused" in capsys.readouterr().out
    assert (work / "features.parquet").read_bytes() == first
