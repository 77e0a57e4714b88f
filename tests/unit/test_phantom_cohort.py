"""Unit tests of the synthetic cohort: clinical table consistent with the studies, planted survival signal."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from oncohabitat.phantom import PhantomCohort, PhantomError, generate_cohort, linear_predictor
from oncohabitat.phantom.cohort import COLUMNS, survival_outcome


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> PhantomCohort:
    return generate_cohort(tmp_path_factory.mktemp("cohort") / "c", n=4, size="small", seed=3)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_clinical_table_matches_the_generated_studies(cohort: PhantomCohort) -> None:
    rows = _rows(cohort.clinical_csv)
    assert len(rows) == 4 and tuple(rows[0]) == COLUMNS
    for row, study in zip(rows, cohort.studies, strict=True):
        assert (cohort.out_dir / row["case_id"] / "phantom.json").is_file()
        meta = json.loads(study.metadata_json.read_text())
        lesion = meta["lesion"]
        assert int(row["seed"]) == meta["seed"] == 3 * 100_000 + int(row["case_id"][-4:])
        assert row["study_instance_uid"] == meta["study_instance_uid"]
        assert float(row["lesion_volume_ml"]) == pytest.approx(lesion["volume_ml"], abs=1e-4)
        assert float(row["washout_fraction"]) == pytest.approx(lesion["compartment_fractions"]["3"], abs=1e-4)
        eta = linear_predictor(lesion["compartment_fractions"]["3"], lesion["volume_ml"], int(row["age"]))
        assert float(row["true_linear_predictor"]) == pytest.approx(eta, abs=1e-5)
        assert row["event"] in {"0", "1"} and 0.0 < float(row["time_months"]) <= 120.0
    fractions = [float(r["washout_fraction"]) for r in rows]
    volumes = [float(r["lesion_volume_ml"]) for r in rows]
    assert len(set(fractions)) == 4 and len(set(volumes)) == 4  # lesion properties vary between cases


def test_cohort_is_deterministic(cohort: PhantomCohort, tmp_path: Path) -> None:
    again = generate_cohort(tmp_path / "again", n=2, size="small", seed=3)
    first = _rows(cohort.clinical_csv)[:2]
    assert _rows(again.clinical_csv) == first


def _c_index(risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    """Harrell's C: share of comparable pairs where the higher risk fails first."""
    earlier = (time[:, None] < time[None, :]) & (event[:, None] == 1)
    concordant = (risk[:, None] > risk[None, :]) & earlier
    ties = (risk[:, None] == risk[None, :]) & earlier
    return float((concordant.sum() + 0.5 * ties.sum()) / earlier.sum())


def test_survival_model_plants_a_recoverable_signal() -> None:
    rng = np.random.default_rng(0)
    n = 1500
    washout = rng.uniform(0.15, 0.65, n)
    volume = np.exp(rng.uniform(np.log(2.0), np.log(20.0), n))
    age = rng.normal(55.0, 10.0, n)
    eta = np.array([linear_predictor(w, v, a) for w, v, a in zip(washout, volume, age, strict=True)])
    outcomes = [survival_outcome(e, u, c) for e, u, c in zip(eta, rng.random(n), rng.uniform(24, 120, n), strict=True)]
    time = np.array([o[0] for o in outcomes])
    event = np.array([o[1] for o in outcomes])
    assert 0.3 < event.mean() < 0.9  # censoring present but not overwhelming
    assert _c_index(eta, time, event) > 0.7
    assert _c_index(washout, time, event) > 0.6  # wash-out fraction alone carries the signal
    assert _c_index(np.log(volume), time, event) > 0.55
    assert _c_index(rng.random(n), time, event) == pytest.approx(0.5, abs=0.05)


def test_cohort_size_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(PhantomError, match="at least 1"):
        generate_cohort(tmp_path / "x", n=0)
