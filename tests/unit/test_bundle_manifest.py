"""Manifest v1 schema: every structural and cross-field rule refuses a broken manifest."""

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


def _cutoff(value: float, low: str = "low", high: str = "high", applies_to: str = "score") -> dict[str, Any]:
    return {"value": value, "direction": "greater", "low_label": low, "high_label": high, "applies_to": applies_to}


INVALID: dict[str, Mutation] = {
    "unknown top-level key": _set("comment", "x"),
    "unknown feature key": _set("features.0.unit", "HU"),
    "unknown citation key": _set("citation.pages", "1-10"),
    "format version 2": _set("format_version", "2"),
    "version not semver": _set("version", "1.0"),
    "id with slash": _set("id", "a/b"),
    "modality PET": _set("required_inputs.modality", "PT"),
    "no features": _set("features", []),
    "coefficient count": _run(lambda d: d["coefficients"].pop()),
    "coefficient as string": _set("coefficients.0", "-0.005"),
    "intercept boolean": _set("intercept", True),
    "malformed feature name": _set("features.0.name", "original_Kurtosis"),
    "unknown feature class": _set("features.0.name", "original_foo_Kurtosis"),
    "image not the name prefix": _set("features.0.image", "wavelet-LLH"),
    "class not enabled": _run(lambda d: d["feature_settings"]["featureClass"].pop("glszm")),
    "feature not in class list": _set("feature_settings.featureClass.glcm", ["Contrast"]),
    "image type not enabled": _run(
        lambda d: d["features"][0].update(name="wavelet-LLH_firstorder_Kurtosis", image="wavelet-LLH")
    ),
    "unknown image type": _set("feature_settings.imageType", {"Original": {}, "Fourier": {}}),
    "label in settings": _set("feature_settings.setting.label", 2),
    "region not required": _set("features.0.region", "ring"),
    "duplicate feature": _run(lambda d: d["features"].__setitem__(1, dict(d["features"][0]))),
    "valid range reversed": _set("features.0.valid_range", [2.0, 1.0]),
    "scaler unknown type": _set("scaler", {"type": "minmax"}),
    "zscore missing a feature": _set(
        "scaler",
        {
            "type": "zscore",
            "mean": {"original_firstorder_Kurtosis": 0.0},
            "std": {"original_firstorder_Kurtosis": 1.0},
        },
    ),
    "zscore zero std": _run(
        lambda d: d.update(
            scaler={
                "type": "zscore",
                "mean": dict.fromkeys([f["name"] for f in d["features"]], 0.0),
                "std": dict.fromkeys([f["name"] for f in d["features"]], 0.0),
            }
        )
    ),
    "cutoffs not increasing": _set("cutoffs", [_cutoff(0.5, "low", "mid"), _cutoff(0.2, "mid", "high")]),
    "cutoff labels not chained": _set("cutoffs", [_cutoff(0.1, "low", "mid"), _cutoff(0.2, "medium", "high")]),
    "cutoff direction": _set("cutoffs.0.direction", "less"),
    "probability cutoff on cox": _set("cutoffs", [_cutoff(0.5, applies_to="probability")]),
    "baseline without cox": _run(
        lambda d: d.update(
            model={"type": "linear_score"},
            baseline_survival={"times": [12.0], "survival": [0.9]},
            time_unit="months",
        )
    ),
    "baseline without time unit": _set("baseline_survival", {"times": [12.0], "survival": [0.9]}),
    "baseline increasing survival": _run(
        lambda d: d.update(baseline_survival={"times": [12.0, 24.0], "survival": [0.8, 0.9]}, time_unit="months")
    ),
    "random forest without file": _run(lambda d: d.update(model={"type": "random_forest"}, coefficients=[])),
    "model file not listed": _run(
        lambda d: d.update(model={"type": "random_forest", "file": "forest.json"}, coefficients=[])
    ),
    "files escape the bundle": _set("files", {"../x": "0" * 64}),
    "files lists the manifest": _set("files", {"manifest.json": "0" * 64}),
    "files hash not hex": _set("files", {"a.bin": "xyz"}),
    "citation without authors": _set("citation.authors", []),
}


@pytest.mark.parametrize("mutation", list(INVALID.values()), ids=list(INVALID))
def test_invalid_manifests_are_refused(mutation: Mutation) -> None:
    document = seed_document()
    mutation(document)
    with pytest.raises(BundleError) as info:
        parse_manifest(json.dumps(document))
    assert info.value.reason == "SCHEMA_INVALID"


def test_nan_coefficient_is_refused() -> None:
    text = json.dumps(seed_document()).replace("1.004042,", "NaN,")
    with pytest.raises(BundleError) as info:
        parse_manifest(text)
    assert info.value.reason == "SCHEMA_INVALID"


def test_valid_variants_are_accepted() -> None:
    document = seed_document()
    document["features"][1]["key"] = "tumour:correlation"
    document["features"][2]["input_image"] = "single"
    document["scaler"] = {
        "type": "zscore",
        "mean": {"original_firstorder_Kurtosis": 3.0, "tumour:correlation": 0.5},
        "std": {"original_firstorder_Kurtosis": 1.5, "tumour:correlation": 0.2},
    }
    document["scaler"]["mean"].update(
        {"original_glcm_MaximumProbability": 0.2, "original_glszm_LargeAreaEmphasis": 900.0}
    )
    document["scaler"]["std"].update(
        {"original_glcm_MaximumProbability": 0.1, "original_glszm_LargeAreaEmphasis": 300.0}
    )
    document["cutoffs"] = [_cutoff(-0.5, "low", "intermediate"), _cutoff(0.5, "intermediate", "high")]
    document["baseline_survival"] = {"times": [12.0, 36.0, 60.0], "survival": [0.95, 0.9, 0.9]}
    document["time_unit"] = "months"
    manifest = parse_manifest(json.dumps(document))
    assert manifest.feature_keys[1] == "tumour:correlation"
    assert manifest.features[2].request_key == "original_glcm_MaximumProbability"


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
