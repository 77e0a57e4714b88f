"""A fitted recipe -> scoring bundle v2 with its report, test vectors and provenance; byte-deterministic.

The bundle's ``plan`` is the recipe's extraction plan (region profile, normalisation, feature settings exactly as
extracted) restricted to the model's features; ``inputs`` carry each feature's training range; linear models
are their z-score scaler and coefficients (Cox: baseline S0 at the horizons), forests an ONNX file. Test vectors
are the training package's own predictions on up to :data:`N_VECTORS` validation rows (training rows when
there is no validation split). The HTML report and its PNG figures go under ``report/`` in the bundle (listed
and hashed like every file). Nothing time- or machine-dependent enters the bytes: same recipe, table and code
give the same bundle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oncohabitat.bundles.authoring import write_scoring_bundle
from oncohabitat.bundles.loader import Bundle
from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat_training.fitting.heads import FitResult, ForestFit, LinearFit, Predictions, RiskRule
from oncohabitat_training.fitting.inputs import FitInputs
from oncohabitat_training.fitting.schema import Covariate, Recipe, SurvivalOutcome
from oncohabitat_training.modelling.report import EvaluationReport, write_report
from oncohabitat_training.scoring_export import estimator_to_onnx, onnx_model_section

N_VECTORS = 10
REPORT_DIR = "report"
DEMONSTRATION_NOTICE = "DEMONSTRATION MODEL trained on synthetic phantom data; not for clinical use."
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def code_version() -> dict[str, str]:
    """Training package version and the SHA-256 of its fitting and modelling sources (sorted, concatenated)."""
    digest = hashlib.sha256()
    for folder in ("fitting", "modelling"):
        for path in sorted((_PACKAGE_ROOT / folder).glob("*.py")):
            digest.update(f"{folder}/{path.name}\n".encode())
            digest.update(path.read_bytes())
    versions = {"oncohabitat-training": metadata.version("oncohabitat-training"), "sources_sha256": digest.hexdigest()}
    for dist in ("scikit-learn", "scikit-survival", "imbalanced-learn", "numpy", "skl2onnx"):
        versions[dist] = metadata.version(dist)
    return versions


def _covariate_spec(covariate: Covariate, train: pd.DataFrame) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": covariate.name, "type": covariate.type}
    if covariate.description:
        spec["description"] = covariate.description
    if covariate.type == "numeric":
        values = train[covariate.name]
        spec |= {"encoding": "identity", "training_range": [float(values.min()), float(values.max())]}
        if covariate.unit:
            spec["unit"] = covariate.unit
        if covariate.valid_range is not None:
            spec["valid_range"] = list(covariate.valid_range)
    elif covariate.type == "boolean":
        spec["encoding"] = "indicator"
    else:
        spec |= {"encoding": "one_hot", "categories": covariate.categories, "reference": covariate.reference}
    return spec


def _raw_covariates(covariates: list[Covariate], rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Per row, the covariates as a Score call passes them (numbers, booleans, category strings)."""
    out = []
    for _, row in rows.iterrows():
        values: dict[str, Any] = {}
        for c in covariates:
            raw = row[c.table_column]
            if c.type == "numeric":
                values[c.name] = float(raw)
            elif c.type == "boolean":
                values[c.name] = str(raw).lower() in ("1", "true", "1.0")
            else:
                values[c.name] = str(raw)
        out.append(values)
    return out


def _expected(predictions: Predictions, i: int, rule: RiskRule, fallback: bool) -> dict[str, Any]:
    expected: dict[str, Any] = {"score": float(predictions.score[i]), "fallback_used": fallback}
    if predictions.probability is not None:
        expected["probability"] = float(predictions.probability[i])
    if predictions.predicted_value is not None:
        expected["predicted_value"] = float(predictions.predicted_value[i])
    if predictions.survival is not None:
        expected["survival"] = [float(v) for v in predictions.survival[i]]
    expected["risk_group"] = rule.group(float(predictions.output(rule.applies_to)[i]))
    return expected


def test_vectors(inputs: FitInputs, fit: FitResult) -> list[dict[str, Any]]:
    """Cases (features, covariates, expected outputs) from the training package's own predictions."""
    split = "validation" if "validation" in inputs.splits else "train"
    rows = inputs.splits[split].iloc[:N_VECTORS]
    covariates = inputs.covariates[split].iloc[:N_VECTORS]
    features = list(fit.primary.features)
    raw = _raw_covariates(inputs.recipe.covariates, rows)
    primary = fit.primary.predict(rows, covariates)
    cases = []
    for i in range(len(rows)):
        values = {name: float(rows[name].iloc[i]) for name in features}
        cases.append({"features": values, "covariates": raw[i], "expected": _expected(primary, i, fit.rule, False)})
    if fit.fallback is not None and fit.fallback_rule is not None:
        imaging = fit.fallback.predict(rows)
        for i in range(min(3, len(rows))):
            values = {name: float(rows[name].iloc[i]) for name in features}
            cases.append({"features": values, "expected": _expected(imaging, i, fit.fallback_rule, True)})
    return cases


def _inputs_section(features: tuple[str, ...], train: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"name": name, "training_range": [float(train[name].min()), float(train[name].max())]} for name in features]


def manifest_document(
    recipe: Recipe,
    plan: ExtractionPlan,
    inputs: FitInputs,
    fit: FitResult,
    provenance: Mapping[str, Any],
) -> dict[str, Any]:
    """The scoring manifest (without ``test_vectors`` and ``files``, which authoring fills in)."""
    features = fit.primary.features
    time_unit = recipe.outcome.time_unit if isinstance(recipe.outcome, SurvivalOutcome) else None
    bundle_plan = plan.model_dump(mode="json", by_alias=True) | {"features": list(features)}
    notes = list(recipe.notes)
    if recipe.demonstration:
        notes.insert(0, DEMONSTRATION_NOTICE)
    document: dict[str, Any] = {
        "format_version": "2",
        "kind": "scoring",
        "id": recipe.id,
        "version": recipe.version,
        "title": ("[DEMONSTRATION] " if recipe.demonstration else "") + recipe.title,
        "intended_use": f"{recipe.intended_use} {DEMONSTRATION_NOTICE}"
        if recipe.demonstration
        else recipe.intended_use,
        "contraindications": list(recipe.contraindications),
        "notes": notes,
        "required_inputs": {"modality": recipe.extraction.modality, "phases": list(recipe.extraction.phases)},
        "plan": bundle_plan,
        "inputs": _inputs_section(features, inputs.train),
        "covariates": [_covariate_spec(c, inputs.covariates["train"]) for c in recipe.covariates],
        "risk_groups": fit.rule.manifest(),
        "evaluation": [dict(f) for f in fit.figures],
        "training": {
            **provenance,
            "demonstration": recipe.demonstration,
            "synthetic_data": recipe.demonstration,
            "seed": recipe.seed,
            "n": {split: len(rows) for split, rows in inputs.splits.items()},
            "n_excluded": len(inputs.excluded),  # a count only: patient ids never enter a bundle
            "selection": _jsonable(fit.selection),
        },
    }
    if recipe.citation is not None:
        document["citation"] = recipe.citation
    if isinstance(fit.primary, LinearFit):
        document["model"] = fit.primary.manifest_model(time_unit)
    else:
        document["model"] = onnx_model_section(type(fit.primary.estimator).__name__, features, probability=True)
    if fit.fallback is not None and fit.fallback_rule is not None:
        document["fallback"] = {
            "model": fit.fallback.manifest_model(time_unit),
            "risk_groups": fit.fallback_rule.manifest(),
        }
    return document


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value


def report_files(recipe: Recipe, fit: FitResult, scratch: Path) -> dict[str, bytes]:
    """The HTML report and its figures as bundle files ``report/...``."""
    notes = {"recipe": recipe.id, "model": recipe.model.type}
    if recipe.demonstration:
        notes["notice"] = DEMONSTRATION_NOTICE
    directory = scratch / REPORT_DIR
    write_report(EvaluationReport(recipe.title, list(fit.evaluations), fit.primary.coefficients(), notes), directory)
    return {
        f"{REPORT_DIR}/{path.relative_to(directory).as_posix()}": path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def export_bundle(
    root: Path,
    recipe: Recipe,
    plan: ExtractionPlan,
    inputs: FitInputs,
    fit: FitResult,
    provenance: Mapping[str, Any],
    scratch: Path,
) -> Bundle[Any]:
    """Write ``<root>/scoring/<id>/<version>/`` (manifest, test vectors, ONNX if any, report) and verify it."""
    document = manifest_document(recipe, plan, inputs, fit, provenance)
    files = report_files(recipe, fit, scratch)
    if isinstance(fit.primary, ForestFit):
        files["model.onnx"] = estimator_to_onnx(fit.primary.estimator, len(fit.primary.features))
    return write_scoring_bundle(root, document, test_vectors(inputs, fit), files)
