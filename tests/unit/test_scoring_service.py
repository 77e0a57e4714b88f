"""The Scoring gRPC service in process: outputs on the wire, INVALID_ARGUMENT naming the bad input,
ListModels / DescribeModel / ReloadModels."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from oncohabitat.bundles import sha256_bytes, write_lock, write_scoring_bundle
from oncohabitat.common.channels import make_channel
from oncohabitat.common.errors import error_detail_from
from oncohabitat.common.server import ServiceRuntime
from oncohabitat.scoring.__main__ import build
from oncohabitat.scoring.settings import ScoringSettings
from oncohabitat.v1 import common_pb2, scoring_pb2, scoring_pb2_grpc
from tests.unit.test_bundle_loader import SEED003
from tests.unit.test_scoring_model import CASE, CORRELATION, FEATURES, linear_document

BASELINE = [{"time": 3.0, "survival": 0.9}, {"time": 5.0, "survival": 0.8}]


def nomogram_document() -> dict[str, Any]:
    """A Cox nomogram: Correlation + Ki-67 (%), 3- and 5-year survival, an imaging-only fallback."""
    coefficients = dict.fromkeys(FEATURES, 0.0) | {CORRELATION: 1.0}
    model = {
        "type": "cox",
        "coefficients": coefficients | {"ki67": 0.02},
        "survival": {"time_unit": "years", "baseline": BASELINE},
    }
    covariates = [
        {
            "name": "ki67",
            "type": "numeric",
            "encoding": "identity",
            "unit": "%",
            "valid_range": [0.0, 100.0],
            "training_range": [5.0, 60.0],
        }
    ]
    groups = {"applies_to": "score", "cutoffs": [1.0], "labels": ["low", "high"], "tie": "upper"}
    document = linear_document(
        model,
        id="nomogram",
        covariates=covariates,
        fallback={"model": {"type": "cox", "coefficients": coefficients}},
        risk_groups=groups | {"direction": "higher_is_worse"},
    )
    document["inputs"][1]["training_range"] = [0.0, 0.9]
    document["evaluation"] = [{"metric": "c_index", "value": 0.71, "dataset": "synthetic training cohort"}]
    return document


def expected_nomogram(ki67: float) -> dict[str, Any]:
    lp = CASE[CORRELATION] + 0.02 * ki67
    return {"score": lp, "survival": [p["survival"] ** math.exp(lp) for p in BASELINE]}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    shutil.copytree(SEED003, models / "scoring" / "seed003-ct-dfs" / "1.0.0")
    vectors = [{"features": CASE, "covariates": {"ki67": 30.0}, "expected": expected_nomogram(30.0)}]
    write_scoring_bundle(models, nomogram_document(), vectors)
    write_lock(models)
    return models


@pytest.fixture
def stub(root: Path, tmp_path: Path) -> Iterator[scoring_pb2_grpc.ScoringStub]:
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


def _number(value: float) -> common_pb2.CovariateValue:
    return common_pb2.CovariateValue(number=value)


def test_score_carries_every_output(stub: scoring_pb2_grpc.ScoringStub) -> None:
    request = scoring_pb2.ScoreRequest(model_id="nomogram", features=CASE, covariates={"ki67": _number(70.0)})
    response = stub.Score(request, timeout=10)
    expected = expected_nomogram(70.0)
    assert response.score == pytest.approx(expected["score"], abs=1e-12)
    assert [p.probability for p in response.survival] == pytest.approx(expected["survival"], abs=1e-12)
    assert [p.time for p in response.survival] == [3.0, 5.0] and response.time_unit == "years"
    assert response.risk_group == "high" and response.cutoff == 1.0
    rule = response.risk_rule
    assert (list(rule.cutoffs), list(rule.labels), rule.tie, rule.direction) == (
        [1.0],
        ["low", "high"],
        "upper",
        "higher_is_worse",
    )
    assert not response.HasField("probability") and not response.HasField("predicted_value")
    assert [(w.name, w.value) for w in response.out_of_distribution] == [("ki67", 70.0)]
    assert len(response.manifest_sha256) == 64 and response.model_type == "cox"
    assert response.contributions[-1].name == "ki67"
    assert response.provenance.parameter_hashes["manifest"] == response.manifest_sha256


def test_missing_covariate_runs_the_fallback(stub: scoring_pb2_grpc.ScoringStub) -> None:
    response = stub.Score(scoring_pb2.ScoreRequest(model_id="nomogram", features=CASE), timeout=10)
    assert response.fallback_used and list(response.missing_covariates) == ["ki67"]
    assert response.score == pytest.approx(CASE[CORRELATION], abs=1e-12)


@pytest.mark.parametrize(
    ("features", "covariates", "reason", "field"),
    [
        ({k: v for k, v in CASE.items() if k != CORRELATION}, {}, "FEATURE_MISSING", CORRELATION),
        (CASE | {CORRELATION: math.nan}, {}, "FEATURE_NOT_FINITE", CORRELATION),
        (CASE | {CORRELATION: 3.0}, {}, "FEATURE_OUT_OF_RANGE", CORRELATION),
        (CASE, {"ki67": _number(140.0)}, "COVARIATE_OUT_OF_RANGE", "ki67"),
        (CASE, {"ki67": _number(math.inf)}, "COVARIATE_NOT_FINITE", "ki67"),
        (CASE, {"ki67": common_pb2.CovariateValue(category="high")}, "COVARIATE_WRONG_TYPE", "ki67"),
    ],
)
def test_bad_input_is_invalid_argument_naming_it(
    stub: scoring_pb2_grpc.ScoringStub,
    features: dict[str, float],
    covariates: dict[str, common_pb2.CovariateValue],
    reason: str,
    field: str,
) -> None:
    request = scoring_pb2.ScoreRequest(model_id="nomogram", features=features, covariates=covariates)
    with pytest.raises(grpc.RpcError) as info:
        stub.Score(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    detail = error_detail_from(info.value)
    assert detail is not None and (detail.reason, detail.field) == (reason, field)
    assert field in info.value.details()


def test_list_and_describe(stub: scoring_pb2_grpc.ScoringStub) -> None:
    listed = stub.ListModels(scoring_pb2.ListModelsRequest(), timeout=10)
    assert [(m.model_id, m.model_type) for m in listed.models] == [("nomogram", "cox"), ("seed003-ct-dfs", "cox")]
    described = stub.DescribeModel(scoring_pb2.DescribeModelRequest(model_id="seed003-ct-dfs"), timeout=10)
    assert "doi:10.3389/fonc.2020.523327" in described.source
    assert [i.name for i in described.inputs] == FEATURES
    assert described.inputs[3].unit == "voxel^2" and described.inputs[1].valid_max == 1.0
    assert list(described.outputs) == ["score", "risk_group"]
    assert {(f.metric, f.value) for f in described.evaluation} >= {("auc", 0.78), ("auc", 0.73)}
    assert described.contraindications and "not for clinical use" in described.summary.intended_use
    # what the orchestrator plans with: the plan as canonical JSON (hashed by plan_sha256), the required inputs
    assert sha256_bytes(described.plan_json.encode()) == described.plan_sha256
    assert json.loads(described.plan_json)["features"] == FEATURES
    assert (described.required_inputs.modality, list(described.required_inputs.phases)) == ("CT", ["single"])
    nomogram = stub.DescribeModel(scoring_pb2.DescribeModelRequest(model_id="nomogram"), timeout=10)
    assert list(nomogram.outputs) == ["score", "survival", "risk_group"]
    assert list(nomogram.horizons) == [3.0, 5.0] and nomogram.time_unit == "years" and nomogram.has_fallback
    assert (nomogram.covariates[0].name, nomogram.covariates[0].unit, nomogram.covariates[0].valid_max) == (
        "ki67",
        "%",
        100.0,
    )
    with pytest.raises(grpc.RpcError) as missing:
        stub.DescribeModel(scoring_pb2.DescribeModelRequest(model_id="nope"), timeout=10)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_reload_rpc_reports_a_rejected_bundle_and_keeps_serving(stub: scoring_pb2_grpc.ScoringStub, root: Path) -> None:
    manifest = root / "scoring" / "nomogram" / "1.0.0" / "manifest.json"
    document = json.loads(manifest.read_text())
    document["model"]["coefficients"][CORRELATION] = 2.0  # edited after release: no longer matches the lock
    manifest.write_text(json.dumps(document))
    reloaded = stub.ReloadModels(scoring_pb2.ReloadModelsRequest(), timeout=10)
    assert [(r.bundle, r.reason) for r in reloaded.rejected] == [("scoring/nomogram/1.0.0", "HASH_MISMATCH")]
    assert list(reloaded.loaded) == ["scoring/nomogram/1.0.0", "scoring/seed003-ct-dfs/1.0.0"]
    response = stub.Score(
        scoring_pb2.ScoreRequest(model_id="nomogram", features=CASE, covariates={"ki67": _number(30.0)}), timeout=10
    )
    assert response.score == pytest.approx(expected_nomogram(30.0)["score"], abs=1e-12)
