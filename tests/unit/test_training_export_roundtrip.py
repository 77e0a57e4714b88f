"""Recipe fit -> bundle v2 -> the platform's loader and scoring engine: test vectors replay, the validation rows
score as the training package predicted them (<= 1e-9 linear, <= 1e-6 ONNX), over gRPC too; two fits give
byte-identical bundles; the planted signal is found."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oncohabitat.bundles import load_bundle, write_lock
from oncohabitat.common.channels import make_channel
from oncohabitat.common.server import ServiceRuntime
from oncohabitat.scoring.__main__ import build
from oncohabitat.scoring.model import compile_bundle, score
from oncohabitat.scoring.settings import ScoringSettings
from oncohabitat.scoring.vectors import replay_vectors
from oncohabitat.v1 import common_pb2, scoring_pb2, scoring_pb2_grpc
from oncohabitat_training.fitting.export import DEMONSTRATION_NOTICE
from oncohabitat_training.fitting.run import FitRun, fit_recipe
from tests.unit.test_training_recipes_support import (
    COX,
    ELASTIC_NET,
    FOREST,
    LOGISTIC,
    SIGNAL,
    write_recipe,
    write_table,
)

RECIPES = {"cox": COX, "logistic": LOGISTIC, "elastic_net": ELASTIC_NET, "random_forest": FOREST}
NOMOGRAM = COX | {
    "id": "test-nomogram",
    "covariates": [
        {"name": "age", "type": "numeric", "unit": "years", "valid_range": [18, 100]},
        {"name": "grade", "type": "categorical", "categories": ["G1", "G2", "G3"], "reference": "G1"},
    ],
}
FUSION = LOGISTIC | {"id": "test-fusion", "covariates": NOMOGRAM["covariates"]}


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_table(tmp_path_factory.mktemp("table") / "features.parquet")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, table: Path) -> dict[str, FitRun]:
    root = tmp_path_factory.mktemp("fits")
    documents = RECIPES | {"nomogram": NOMOGRAM, "fusion": FUSION}
    return {
        name: fit_recipe(write_recipe(root / f"{name}.yaml", document), table, root / "models")
        for name, document in documents.items()
    }


def _covariates(run: FitRun, patient: str) -> dict[str, Any]:
    row = run.inputs.splits["validation"].loc[patient]
    out: dict[str, Any] = {}
    for c in run.recipe.covariates:
        out[c.name] = float(row[c.table_column]) if c.type == "numeric" else str(row[c.table_column])
    return out


@pytest.mark.parametrize("name", ["cox", "logistic", "elastic_net", "random_forest", "nomogram", "fusion"])
def test_bundle_loads_replays_and_scores_validation_rows_as_trained(runs: dict[str, FitRun], name: str) -> None:
    run = runs[name]
    assert run.bundle is not None
    bundle = load_bundle(run.bundle.path)
    compiled = compile_bundle(bundle)
    assert replay_vectors(compiled) >= 1
    rows = run.inputs.splits["validation"]
    head = run.fit.primary
    expected = head.predict(rows, run.inputs.covariates["validation"])
    tolerance = 1e-6 if name == "random_forest" else 1e-9
    assert len(rows) == 80
    for i, patient in enumerate(rows.index):
        features = {f: float(rows.loc[patient, f]) for f in head.features}
        result = score(compiled, features, _covariates(run, patient))
        assert result.score == pytest.approx(expected.score[i], abs=tolerance)
        if expected.probability is not None:
            assert result.probability == pytest.approx(expected.probability[i], abs=tolerance)
        if expected.predicted_value is not None:
            assert result.predicted_value == pytest.approx(expected.predicted_value[i], abs=tolerance)
        if expected.survival is not None:
            assert [p for _, p in result.survival] == pytest.approx(list(expected.survival[i]), abs=tolerance)
        value = float(expected.output(run.fit.rule.applies_to)[i])
        assert result.risk_group == run.fit.rule.group(value)


def test_manifest_carries_plan_ranges_provenance_and_report(runs: dict[str, FitRun]) -> None:
    run = runs["nomogram"]
    assert run.bundle is not None
    manifest = json.loads((run.bundle.path / "manifest.json").read_text())
    assert manifest["plan"]["features"] == list(run.fit.primary.features)
    assert manifest["plan"]["region_profile"] == {} and manifest["plan"]["normalisation"] == {"type": "none"}
    assert all(len(i["training_range"]) == 2 for i in manifest["inputs"])
    assert [c["name"] for c in manifest["covariates"]] == ["age", "grade"]
    assert manifest["covariates"][1]["categories"] == ["G1", "G2", "G3"]
    assert manifest["model"]["scaler"]["type"] == "zscore"
    assert [p["time"] for p in manifest["model"]["survival"]["baseline"]] == [24.0, 36.0]
    assert manifest["fallback"]["model"]["type"] == "cox"
    training = manifest["training"]
    assert len(training["recipe_sha256"]) == 64 and len(training["table_sha256"]) == 64
    assert training["code"]["sources_sha256"] and training["demonstration"] is True
    assert DEMONSTRATION_NOTICE in manifest["notes"]
    assert "report/report.html" in manifest["files"]
    assert any(f.startswith("report/figures/") and f.endswith(".png") for f in manifest["files"])


def test_two_fits_give_byte_identical_bundles(tmp_path: Path, table: Path) -> None:
    for name in ("cox", "random_forest"):
        recipe = write_recipe(tmp_path / f"{name}.yaml", RECIPES[name])
        first = fit_recipe(recipe, table, tmp_path / "a").bundle
        second = fit_recipe(recipe, table, tmp_path / "b").bundle
        assert first is not None and second is not None
        files_a = sorted(p.relative_to(first.path) for p in first.path.rglob("*") if p.is_file())
        files_b = sorted(p.relative_to(second.path) for p in second.path.rglob("*") if p.is_file())
        assert files_a == files_b
        for relative in files_a:
            assert (first.path / relative).read_bytes() == (second.path / relative).read_bytes(), relative


def test_planted_signal_found(runs: dict[str, FitRun]) -> None:
    cox = runs["cox"]
    assert set(cox.fit.primary.features) == set(SIGNAL)
    figures = {(f["metric"], f["dataset"]): f["value"] for f in cox.fit.figures}
    assert figures[("harrell_c_index", "validation")] >= 0.70
    assert figures[("logrank_p", "validation")] < 0.01
    assert set(SIGNAL) <= set(runs["logistic"].fit.primary.features)
    assert {(f["metric"], f["dataset"]): f["value"] for f in runs["logistic"].fit.figures}[("auc", "validation")] > 0.7


@pytest.fixture
def stub(runs: dict[str, FitRun], tmp_path: Path) -> Iterator[scoring_pb2_grpc.ScoringStub]:
    bundle = runs["cox"].bundle
    assert bundle is not None
    root = bundle.path.parents[2]
    write_lock(root)
    settings = ScoringSettings(port=0, metrics_port=0, data_dir=tmp_path / "data", models_dir=root)
    parts = build(settings)
    runtime = ServiceRuntime(
        name="scoring", settings=settings, registrations=parts.registrations, service_names=parts.service_names
    )
    runtime.start()
    yield scoring_pb2_grpc.ScoringStub(
        make_channel(f"127.0.0.1:{runtime.port}", "oncohabitat.v1.Scoring", timeout_s=10)
    )
    runtime.stop(0)


def test_scoring_service_reproduces_training_predictions(
    runs: dict[str, FitRun], stub: scoring_pb2_grpc.ScoringStub
) -> None:
    for name in runs:
        run = runs[name]
        rows = run.inputs.splits["validation"]
        expected = run.fit.primary.predict(rows, run.inputs.covariates["validation"])
        tolerance = 1e-6 if name == "random_forest" else 1e-9
        worst = 0.0
        for i, patient in enumerate(rows.index):
            covariates = {
                k: common_pb2.CovariateValue(number=v)
                if isinstance(v, float)
                else common_pb2.CovariateValue(category=v)
                for k, v in _covariates(run, patient).items()
            }
            features = {f: float(rows.loc[patient, f]) for f in run.fit.primary.features}
            request = scoring_pb2.ScoreRequest(model_id=run.recipe.id, features=features, covariates=covariates)
            response = stub.Score(request, timeout=10)
            worst = max(worst, abs(response.score - expected.score[i]))
            if expected.probability is not None:
                worst = max(worst, abs(response.probability - expected.probability[i]))
            if expected.predicted_value is not None:
                worst = max(worst, abs(response.predicted_value - expected.predicted_value[i]))
            if expected.survival is not None:
                got = np.array([p.probability for p in response.survival])
                worst = max(worst, float(np.max(np.abs(got - expected.survival[i]))))
            assert response.risk_group == run.fit.rule.group(float(expected.output(run.fit.rule.applies_to)[i]))
        assert worst <= tolerance, (name, worst)
        assert np.isfinite(worst)
