"""A random forest exported to ONNX: scikit-learn's probabilities within 1e-6 on 1,000 random inputs (shipped as
test vectors and replayed at load), p = 0.5 ties following the declared rule, failing vectors refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("skl2onnx")  # training environment only (training/pyproject.toml)

from sklearn.ensemble import RandomForestClassifier

from oncohabitat.bundles import BundleError, load_bundle, seal_bundle
from oncohabitat.scoring import compile_bundle, score
from oncohabitat.scoring.vectors import replay_vectors
from oncohabitat_training.scoring_export import sklearn_vectors, write_sklearn_bundle
from tests.unit.test_bundle_loader import seed_document

LOWS = np.array([1.5, -1.0, 0.0, 1.0])
HIGHS = np.array([12.0, 1.0, 1.0, 5000.0])


def random_inputs(rng: np.random.Generator, n: int) -> np.ndarray:
    return LOWS + (HIGHS - LOWS) * rng.random((n, 4))


def fitted_forest(seed: int = 4) -> RandomForestClassifier:
    """10 fully grown trees: each votes 0 or 1, so p = k/10 and p = 0.5 happens."""
    rng = np.random.default_rng(seed)
    x = random_inputs(rng, 300)
    y = ((x[:, 1] - x[:, 2] + 0.3 * rng.normal(size=300)) > 0.0).astype(int)
    return RandomForestClassifier(n_estimators=10, random_state=seed).fit(x, y)


def forest_manifest(tie: str, version: str = "1.0.0") -> dict[str, Any]:
    """Seed 004's reading: a random-forest probability of poor survival, threshold 0.5."""
    document = copy.deepcopy(seed_document())
    for key in ("model", "test_vectors", "files"):
        document.pop(key)
    document.update(
        id="rf-demo",
        version=version,
        title="Random forest on the four seed-003 CT features (test model)",
        citation=None,
        evaluation=[],
        risk_groups={
            "applies_to": "probability",
            "cutoffs": [0.5],
            "labels": ["good", "poor"],
            "tie": tie,
            "direction": "higher_is_worse",
        },
    )
    return document


@pytest.fixture(scope="module")
def forest() -> RandomForestClassifier:
    return fitted_forest()


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return random_inputs(np.random.default_rng(1000), 1000)


@pytest.mark.parametrize(("tie", "label"), [("upper", "poor"), ("lower", "good")])
def test_forest_bundle_gives_sklearn_probabilities_and_ties_follow_the_rule(
    tmp_path: Path, forest: RandomForestClassifier, inputs: np.ndarray, tie: str, label: str
) -> None:
    bundle = write_sklearn_bundle(tmp_path, forest_manifest(tie), forest, inputs)
    compiled = compile_bundle(bundle)
    assert replay_vectors(compiled) == 1000  # the shipped vectors agree within 1e-6
    columns = bundle.manifest.plan.features
    expected = forest.predict_proba(inputs)[:, 1]
    got = np.array([score(compiled, dict(zip(columns, row, strict=True))).probability for row in inputs])
    assert np.max(np.abs(got - expected)) <= 1e-6
    ties = np.flatnonzero(expected == 0.5)
    assert ties.size > 0, "the forest gives p = 0.5 on some inputs"
    for index in ties:
        result = score(compiled, dict(zip(columns, inputs[index], strict=True)))
        assert result.probability == 0.5 and result.risk_group == label and result.cutoff == 0.5
    assert result.model_type == "onnx" and result.contributions == ()


def test_a_bundle_whose_vectors_disagree_by_more_than_1e6_is_refused(
    tmp_path: Path, forest: RandomForestClassifier, inputs: np.ndarray
) -> None:
    bundle = write_sklearn_bundle(tmp_path, forest_manifest("upper"), forest, inputs[:20])
    vectors_path = bundle.path / "test_vectors.json"
    document = json.loads(vectors_path.read_text())
    case = document["cases"][7]["expected"]
    case["probability"] = case["probability"] + 2e-6
    vectors_path.write_text(json.dumps(document))
    seal_bundle(bundle.path)  # a correctly sealed bundle whose model disagrees with its own vectors
    with pytest.raises(BundleError) as info:
        replay_vectors(compile_bundle(load_bundle(bundle.path)))
    assert info.value.reason == "TEST_VECTOR_FAILED"
    assert "test vector 7" in info.value.message and "probability" in info.value.message


def test_vectors_are_scikit_learns_own_outputs(forest: RandomForestClassifier, inputs: np.ndarray) -> None:
    columns = seed_document()["plan"]["features"]
    groups = {"cutoffs": [0.5], "labels": ["good", "poor"], "tie": "upper"}
    cases = sklearn_vectors(forest, inputs[:5], columns, groups)
    for case, p in zip(cases, forest.predict_proba(inputs[:5])[:, 1], strict=True):
        assert case["expected"]["probability"] == float(p)
        assert case["expected"]["risk_group"] == ("poor" if p >= 0.5 else "good")
