"""The shipped demonstration scoring bundles (``models/scoring/demo-*``): pinned, loadable, replayed, marked as
synthetic demonstrations, applicable to a 4-phase ispy-size DCE study, and the Cox model found the planted
signal (validation figures recorded at training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oncohabitat.bundles import load_bundle, read_lock
from oncohabitat.bundles.canonical import parse_canonical_name
from oncohabitat.regions.profile import RegionProfile
from oncohabitat.scoring.model import compile_bundle
from oncohabitat.scoring.vectors import replay_vectors

MODELS = Path(__file__).resolve().parents[2] / "models"
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


def test_cox_demo_found_the_planted_signal() -> None:
    manifest = json.loads((MODELS / "scoring" / "demo-seed001-dfs-cox" / "1.0.0" / "manifest.json").read_text())
    figures = {(f["metric"], f["dataset"]): f["value"] for f in manifest["evaluation"]}
    for dataset in ("validation (nomogram)", "validation (imaging)"):
        assert figures[("harrell_c_index", dataset)] >= 0.70
        assert figures[("logrank_p", dataset)] < 0.01
    assert set(manifest["plan"]["features"]) <= SIGNAL_CARRYING
    assert all(parse_canonical_name(name) for name in manifest["plan"]["features"])
