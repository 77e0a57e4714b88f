"""scikit-learn estimators -> ONNX scoring bundles, with test vectors computed by scikit-learn itself.

The training environment fits the estimator (random forest, gradient boosting, ...); this module exports it to
ONNX with float64 inputs (skl2onnx, ``ai.onnx.ml`` opset 3 tree ensembles; class probabilities come back as
float32, within 1e-6 of scikit-learn), and writes the bundle through the generic
:func:`oncohabitat.bundles.authoring.write_scoring_bundle` with scikit-learn's own outputs on the given inputs as
the test vectors the scoring service replays at load. Deterministic: same estimator and inputs, same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from skl2onnx import to_onnx

from oncohabitat.bundles.authoring import write_scoring_bundle
from oncohabitat.bundles.loader import Bundle

#: ONNX opsets of the export (default domain, ai.onnx.ml).
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
INPUT_NAME = "X"
PROBABILITY_OUTPUT = "probabilities"
VALUE_OUTPUT = "variable"


def estimator_to_onnx(estimator: Any, n_columns: int) -> bytes:
    """Serialised ONNX model of a fitted estimator: input ``X`` (N, n_columns) float64, no ZipMap."""
    example = np.zeros((1, n_columns), dtype=np.float64)
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
    model = to_onnx(estimator, example, target_opset=TARGET_OPSET, options=options)
    model.doc_string = f"OncoHabitat scoring model: {type(estimator).__name__}"
    return bytes(model.SerializeToString())


def group_of(value: float, groups: Mapping[str, Any]) -> str:
    """The label the declared rule gives ``value`` (re-implemented here, independent of the serving code)."""
    passed = sum(1 for cutoff in groups["cutoffs"] if value > cutoff or (value == cutoff and groups["tie"] == "upper"))
    return str(groups["labels"][passed])


def onnx_model_section(
    estimator_name: str, columns: Sequence[str], *, probability: bool, class_index: int = 1
) -> dict[str, Any]:
    """The manifest's ``model`` entry for an exported estimator."""
    return {
        "type": "onnx",
        "file": "model.onnx",
        "estimator": estimator_name,
        "columns": list(columns),
        "input_name": INPUT_NAME,
        "output_name": PROBABILITY_OUTPUT if probability else VALUE_OUTPUT,
        "output": "probability" if probability else "value",
        "class_index": class_index,
    }


def sklearn_vectors(
    estimator: Any,
    inputs: np.ndarray,
    columns: Sequence[str],
    risk_groups: Mapping[str, Any] | None,
    class_index: int = 1,
) -> list[dict[str, Any]]:
    """Test vectors: scikit-learn's probability of ``class_index`` (classifiers) or prediction (regressors)."""
    if hasattr(estimator, "predict_proba"):
        outputs = estimator.predict_proba(inputs)[:, class_index]
        key = "probability"
    else:
        outputs = estimator.predict(inputs)
        key = "predicted_value"
    cases = []
    for row, output in zip(inputs, outputs, strict=True):
        expected: dict[str, Any] = {key: float(output), "score": float(output)}
        if risk_groups is not None:
            expected["risk_group"] = group_of(float(output), risk_groups)
        cases.append({"features": dict(zip(columns, (float(v) for v in row), strict=True)), "expected": expected})
    return cases


def write_sklearn_bundle(
    root: Path,
    manifest: Mapping[str, Any],
    estimator: Any,
    vector_inputs: np.ndarray,
    *,
    class_index: int = 1,
) -> Bundle[Any]:
    """Export ``estimator`` and write a scoring bundle around it.

    Args:
        root: bundle root (writes ``<root>/scoring/<id>/<version>/``).
        manifest: scoring manifest without ``model``, ``test_vectors`` and ``files`` (plan, inputs, risk groups,
            intended use, ... as for any scoring bundle); the estimator reads the plan's features in order.
        estimator: a fitted scikit-learn classifier (probability of ``class_index``) or regressor.
        vector_inputs: (n, n_features) inputs whose scikit-learn outputs become the test vectors.
    """
    columns = list(manifest["plan"]["features"])
    probability = hasattr(estimator, "predict_proba")
    model = onnx_model_section(type(estimator).__name__, columns, probability=probability, class_index=class_index)
    vectors = sklearn_vectors(estimator, vector_inputs, columns, manifest.get("risk_groups"), class_index)
    onnx_bytes = estimator_to_onnx(estimator, len(columns))
    return write_scoring_bundle(root, {**manifest, "model": model}, vectors, {"model.onnx": onnx_bytes})
