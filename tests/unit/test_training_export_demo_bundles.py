"""The shipped demonstration scoring bundles (``models/scoring/demo-*``): pinned, loadable, replayed, marked as
synthetic demonstrations, applicable to a 4-phase ispy-size DCE study, and the Cox model found the planted
signal: each bundle, scored by the serving code on the cohort's validation split (tests/data/demo_cohort),
reaches its target computed here with lifelines / scikit-learn, not read from the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines.statistics import logrank_test
from lifelines.utils import concordance_index
from sklearn.metrics import r2_score, roc_auc_score

from oncohabitat.bundles import load_bundle, read_lock
from oncohabitat.bundles.canonical import parse_canonical_name
from oncohabitat.regions.profile import RegionProfile
from oncohabitat.scoring.model import ScoreResult, compile_bundle, score
from oncohabitat.scoring.vectors import replay_vectors

MODELS = Path(__file__).resolve().parents[2] / "models"
#: Validation split of the demo cohort (synthetic; tests/data/README.md): features, age and outcomes per case.
VALIDATION = Path(__file__).resolve().parents[1] / "data" / "demo_cohort" / "validation.csv"
DEMOS = sorted((MODELS / "scoring").glob("demo-*/1.0.0"))
#: Phases of the platform's DCE demo study (phantom ``--size ispy``: S0 .. S3).
ISPY_PHASES = 4
#: Wash-out / volume surrogates of the phantom cohort (|r| with the planted linear predictor >= 0.6 on the
#: training table, measured when the bundles were built): wash-out slope and enhancement maps, the wash-out
#: habitat's fraction and self-adjacency, the habitat-1 border share, the MSI cells the wash-out fraction drives.
SIGNAL_CARRYING = {
    "tumour/stats/mean_WOS",
    "tumour/stats/mean_WIS",
    "tumour/stats/mean_PE",
    "tumour/WOS/original_firstorder_Mean",
    "habitat_3/stats/fraction",
    "tumour/msi/msi_norm_3_3",
    "tumour/msi/msi_norm_0_1",
    "tumour/msi/msi_norm_2_3",
    "tumour/msi/msi_norm_1_1",
    "tumour/stats/volume_ml",
}


def test_four_demonstration_bundles_are_shipped_and_pinned() -> None:
    assert [d.parent.name for d in DEMOS] == [
        "demo-seed001-dfs-cox",
        "demo-seed001-pcr-logistic",
        "demo-seed002-recurrence-elastic-net",
        "demo-seed004-risk-forest",
    ]
    lock = read_lock(MODELS)
    assert lock is not None and all(f"scoring/{d.parent.name}/1.0.0" in lock for d in DEMOS)


@pytest.mark.parametrize("directory", DEMOS, ids=lambda d: d.parent.name)
def test_demo_bundle_loads_replays_and_is_marked(directory: Path) -> None:
    lock = read_lock(MODELS)
    assert lock is not None
    bundle = load_bundle(directory, lock[f"scoring/{directory.parent.name}/1.0.0"], kind="scoring")
    assert replay_vectors(compile_bundle(bundle)) >= 10
    manifest = bundle.manifest
    assert manifest.title.startswith("[DEMONSTRATION]")
    assert "not for clinical use" in manifest.intended_use
    assert manifest.training["demonstration"] is True and manifest.training["synthetic_data"] is True
    assert "report/report.html" in manifest.files
    assert manifest.required_inputs.modality == "MR"
    RegionProfile.model_validate(manifest.plan.region_profile)
    for parsed in manifest.plan.parsed_features():
        image = parsed.image
        if image.startswith("S") and image[1:].isdigit():
            assert int(image[1:]) < ISPY_PHASES, parsed.full


def _score_validation(name: str) -> tuple[pd.DataFrame, list[ScoreResult]]:
    """Score the shipped bundle ``name`` with the serving code on the phantom cohort's validation split."""
    table = pd.read_csv(VALIDATION)
    lock = read_lock(MODELS)
    assert lock is not None
    compiled = compile_bundle(
        load_bundle(MODELS / "scoring" / name / "1.0.0", lock[f"scoring/{name}/1.0.0"], kind="scoring")
    )
    features = [column for column in table.columns if "/" in column]
    results = [
        score(compiled, {f: row[f] for f in features}, {"age": float(row["clinical.age"])})
        for _, row in table.iterrows()
    ]
    return table, results


def test_cox_demo_found_the_planted_signal_scored_independently() -> None:
    table, results = _score_validation("demo-seed001-dfs-cox")
    scores = np.array([r.score for r in results])
    assert concordance_index(table["outcome.time"], -scores, table["outcome.event"]) >= 0.70
    high = np.array([r.risk_group == "high" for r in results])
    assert 0 < high.sum() < len(high)
    split = logrank_test(
        table["outcome.time"][high],
        table["outcome.time"][~high],
        table["outcome.event"][high],
        table["outcome.event"][~high],
    )
    assert split.p_value < 0.01
    manifest = json.loads((MODELS / "scoring" / "demo-seed001-dfs-cox" / "1.0.0" / "manifest.json").read_text())
    assert set(manifest["plan"]["features"]) <= SIGNAL_CARRYING
    assert all(parse_canonical_name(name) for name in manifest["plan"]["features"])


def test_classifier_and_regression_demos_predict_their_validation_targets() -> None:
    table, results = _score_validation("demo-seed001-pcr-logistic")
    assert roc_auc_score(table["outcome.pcr"], [r.probability for r in results]) >= 0.9
    table, results = _score_validation("demo-seed004-risk-forest")
    assert roc_auc_score(table["outcome.high_risk"], [r.probability for r in results]) >= 0.9
    table, results = _score_validation("demo-seed002-recurrence-elastic-net")
    assert r2_score(table["outcome.target"], [r.predicted_value for r in results]) >= 0.85


def test_no_bundle_names_a_patient() -> None:
    patient_ids = {f"case_{i:04d}" for i in range(400)}
    for directory in DEMOS:
        text = "".join(p.read_text(errors="ignore") for p in directory.rglob("*") if p.suffix in {".json", ".html"})
        assert not [pid for pid in patient_ids if pid in text], directory
