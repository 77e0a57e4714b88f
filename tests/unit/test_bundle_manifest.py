"""Manifest v2 schema: every structural and cross-field rule refuses a broken manifest, naming it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from oncohabitat.bundles import BundleError, parse_feature_name, parse_manifest
from tests.unit.test_bundle_loader import seed_document

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    """Mutation setting a dotted path (list indices allowed) of the manifest document."""

    def mutate(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _run(fn: Callable[[dict[str, Any]], Any]) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        fn(document)

    return mutate


K = "tumour/S0/original_firstorder_Kurtosis"
C = "tumour/S0/original_glcm_Correlation"


def d_features() -> list[str]:
    """The seed-003 plan features (the columns of an ONNX model replacing its linear model)."""
    return list(seed_document()["plan"]["features"])


def _numeric(name: str = "age", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "numeric", "encoding": "identity", "unit": "years", **extra}


def _with_covariates(document: dict[str, Any], covariates: list[dict[str, Any]], columns: list[str]) -> None:
    """Add covariates and a coefficient for each of their columns."""
    document["covariates"] = covariates
    document["model"]["coefficients"].update(dict.fromkeys(columns, 0.1))


#: mutation -> a word the refusal must contain (the field or rule it names)
INVALID: dict[str, tuple[Mutation, str]] = {
    "unknown top-level key": (_set("comment", "x"), "comment"),
    "unknown input key": (_set("inputs.0.scale", "HU"), "scale"),
    "unknown citation key": (_set("citation.pages", "1-10"), "pages"),
    "format version 1": (_set("format_version", "1"), "format_version"),
    "unknown kind": (_set("kind", "classifier"), "kind"),
    "version not semver": (_set("version", "1.0"), "version"),
    "id with slash": (_set("id", "a/b"), "id"),
    "modality PET": (_set("required_inputs.modality", "PT"), "modality"),
    "no inputs": (_set("inputs", []), "inputs"),
    "inputs out of plan order": (
        _run(lambda d: d["inputs"].reverse()),
        "plan's order",
    ),
    "plan feature not canonical": (_set("plan.features.0", "original_firstorder_Kurtosis"), "region"),
    "plan region unknown": (_set("plan.features.0", "tumor/S0/original_firstorder_Kurtosis"), "tumor"),
    "class not enabled": (
        _run(lambda d: d["plan"]["feature_settings"]["featureClass"].pop("glszm")),
        "feature_settings",
    ),
    "coefficient missing": (_run(lambda d: d["model"]["coefficients"].pop(C)), "columns"),
    "coefficient as string": (_set(f"model.coefficients.{C}", "1.0"), "coefficients"),
    "intercept boolean": (_set("model.intercept", True), "intercept"),
    "unknown model type": (_set("model.type", "random_forest"), "type"),
    "training range reversed": (_set("inputs.0.training_range", [2.0, 1.0]), "training_range"),
    "valid range reversed": (_set("inputs.0.valid_range", [2.0, 1.0]), "valid_range"),
    "scaler unknown column": (
        _set("model.scaler", {"type": "zscore", "mean": {"age": 0.0}, "std": {"age": 1.0}}),
        "unknown columns",
    ),
    "zscore zero std": (_set("model.scaler", {"type": "zscore", "mean": {K: 0.0}, "std": {K: 0.0}}), "std"),
    "cutoffs not increasing": (_set("risk_groups.cutoffs", [0.5, 0.2]), "increasing"),
    "labels count": (_set("risk_groups.labels", ["low"]), "label"),
    "tie rule unknown": (_set("risk_groups.tie", "half"), "tie"),
    "direction unknown": (_set("risk_groups.direction", "up"), "direction"),
    "probability groups on cox": (_set("risk_groups.applies_to", "probability"), "probability"),
    "survival without cox": (
        _run(
            lambda d: d["model"].update(
                type="linear_score", survival={"time_unit": "years", "baseline": [{"time": 3.0, "survival": 0.9}]}
            )
        ),
        "cox",
    ),
    "survival increasing": (
        _set(
            "model.survival",
            {"time_unit": "years", "baseline": [{"time": 3.0, "survival": 0.8}, {"time": 5.0, "survival": 0.9}]},
        ),
        "non-increasing",
    ),
    "onnx file not listed": (
        _set(
            "model",
            {
                "type": "onnx",
                "file": "forest.onnx",
                "estimator": "random_forest",
                "columns": d_features(),
                "output_name": "probabilities",
                "output": "probability",
            },
        ),
        "forest.onnx",
    ),
    "test vectors not listed": (_set("test_vectors", "other.json"), "other.json"),
    "files escape the bundle": (_set("files", {"../x": "0" * 64}), "relative"),
    "files lists the manifest": (_set("files", {"manifest.json": "0" * 64}), "manifest.json"),
    "files hash not hex": (_set("files", {"a.bin": "xyz"}), "files"),
    "citation without authors": (_set("citation.authors", []), "authors"),
    "unknown covariate type": (
        _run(lambda d: _with_covariates(d, [_numeric(type="date")], ["age"])),
        "covariates.0.type",
    ),
    "covariate encoding for its type": (
        _run(lambda d: _with_covariates(d, [_numeric(encoding="one_hot")], ["age"])),
        "encoded",
    ),
    "one-hot reference not a category": (
        _run(
            lambda d: _with_covariates(
                d,
                [
                    {
                        "name": "aln",
                        "type": "categorical",
                        "encoding": "one_hot",
                        "categories": ["neg", "pos"],
                        "reference": "unknown",
                    }
                ],
                ["aln=pos"],
            )
        ),
        "reference",
    ),
    "covariate column without coefficient": (_run(lambda d: d.update(covariates=[_numeric()])), "columns"),
    "duplicate covariate": (
        _run(lambda d: _with_covariates(d, [_numeric(), _numeric()], ["age"])),
        "duplicate covariate",
    ),
    "fallback without covariates": (
        _run(lambda d: d.update(fallback={"model": dict(d["model"])})),
        "fallback",
    ),
}


@pytest.mark.parametrize("case", list(INVALID.values()), ids=list(INVALID))
def test_invalid_manifests_are_refused_naming_the_problem(case: tuple[Mutation, str]) -> None:
    mutation, named = case
    document = seed_document()
    mutation(document)
    with pytest.raises(BundleError) as info:
        parse_manifest(json.dumps(document))
    assert info.value.reason == "SCHEMA_INVALID"
    assert named in info.value.message


def test_nan_coefficient_is_refused() -> None:
    text = json.dumps(seed_document()).replace("1.004042,", "NaN,")
    with pytest.raises(BundleError) as info:
        parse_manifest(text)
    assert info.value.reason == "SCHEMA_INVALID"


def test_valid_variants_are_accepted() -> None:
    document = seed_document()
    document["inputs"][0]["training_range"] = [1.5, 12.0]
    document["model"]["scaler"] = {"type": "zscore", "mean": {K: 3.0, "age": 55.0}, "std": {K: 1.5, "age": 10.0}}
    document["model"]["survival"] = {
        "time_unit": "years",
        "baseline": [{"time": 3.0, "survival": 0.9}, {"time": 5.0, "survival": 0.85}],
    }
    document["risk_groups"] = {
        "applies_to": "score",
        "cutoffs": [-0.5, 0.5],
        "labels": ["low", "intermediate", "high"],
        "tie": "upper",
        "direction": "higher_is_worse",
    }
    covariates = [
        _numeric(valid_range=[18.0, 100.0], training_range=[28.0, 79.0]),
        {"name": "ki67_high", "type": "boolean", "encoding": "indicator"},
        {
            "name": "aln",
            "type": "categorical",
            "encoding": "one_hot",
            "categories": ["n0", "n1", "n2"],
            "reference": "n0",
        },
        {
            "name": "grade",
            "type": "categorical",
            "encoding": "ordinal",
            "categories": ["g1", "g2", "g3"],
            "levels": {"g1": 1.0, "g2": 2.0, "g3": 3.0},
        },
    ]
    _with_covariates(document, covariates, ["age", "ki67_high", "aln=n1", "aln=n2", "grade"])
    document["fallback"] = {"model": {"type": "cox", "coefficients": dict.fromkeys(document["plan"]["features"], 1.0)}}
    manifest = parse_manifest(json.dumps(document))
    assert manifest.columns[-5:] == ["age", "ki67_high", "aln=n1", "aln=n2", "grade"]
    assert manifest.features[1].name == "original_glcm_Correlation"
    assert manifest.features[1].request_key == C


@pytest.mark.parametrize(
    ("name", "image_type", "feature_class"),
    [
        ("original_glcm_Correlation", "Original", "glcm"),
        ("wavelet-LLH_firstorder_Mean", "Wavelet", "firstorder"),
        ("wavelet2-HHH_glszm_ZoneEntropy", "Wavelet", "glszm"),
        ("log-sigma-1-0-mm-3D_firstorder_Mean", "LoG", "firstorder"),
        ("lbp-3D-m1_glrlm_RunEntropy", "LBP3D", "glrlm"),
        ("original_shape_Sphericity", "Original", "shape"),
    ],
)
def test_feature_names_parse(name: str, image_type: str, feature_class: str) -> None:
    parsed = parse_feature_name(name)
    assert (parsed.image_type, parsed.feature_class) == (image_type, feature_class)
    assert f"{parsed.image_name}_{parsed.feature_class}_{parsed.feature}" == name


@pytest.mark.parametrize(
    "name",
    ["glcm_Correlation", "original_glcm_Corr_elation", "fourier_glcm_Correlation", "square_shape_Sphericity"],
)
def test_bad_feature_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="feature name"):
        parse_feature_name(name)


def test_a_test_vector_that_expects_no_number_is_refused() -> None:
    from pydantic import ValidationError

    from oncohabitat.bundles.vectors import VectorFile

    case = {"features": {"tumour/S0/original_firstorder_Mean": 1.0}, "expected": {"risk_group": "high"}}
    with pytest.raises(ValidationError, match="at least one of score, probability, predicted_value"):
        VectorFile.model_validate({"cases": [case]})
    with pytest.raises(ValidationError):
        VectorFile.model_validate({"cases": []})
    case["expected"] = {"probability": 0.4, "risk_group": "high"}
    assert VectorFile.model_validate({"cases": [case]}).cases[0].expected.probability == 0.4
