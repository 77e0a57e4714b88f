"""``oncohabitat-train fit RECIPE --features TABLE --out ROOT``: load, check, fit, evaluate, export.

:func:`fit_recipe` is the whole run; :func:`fit_only` stops before export (tests compare its predictions with
what the scoring engine computes from the written bundle).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from oncohabitat.bundles.loader import Bundle
from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat_training.fitting.classifier import fit_forest_recipe, fit_logistic_recipe
from oncohabitat_training.fitting.export import code_version, export_bundle
from oncohabitat_training.fitting.heads import FitResult
from oncohabitat_training.fitting.inputs import FitInputs, prepare_inputs
from oncohabitat_training.fitting.regression import fit_elastic_net_recipe
from oncohabitat_training.fitting.schema import Recipe, candidate_features, load_recipe
from oncohabitat_training.fitting.survival import fit_cox_recipe
from oncohabitat_training.fitting.table import check_extraction, read_table

FITTERS: dict[str, Callable[[FitInputs], FitResult]] = {
    "cox": fit_cox_recipe,
    "logistic": fit_logistic_recipe,
    "elastic_net": fit_elastic_net_recipe,
    "random_forest": fit_forest_recipe,
}


@dataclass(frozen=True)
class FitRun:
    """A finished fit: the recipe, plan, checked inputs, fitted heads and (after export) the bundle."""

    recipe: Recipe
    plan: ExtractionPlan
    inputs: FitInputs
    fit: FitResult
    provenance: dict[str, Any]
    bundle: Bundle[Any] | None = None


def fit_only(recipe_path: Path, table_path: Path, second_reader_path: Path | None = None) -> FitRun:
    """Load and check the recipe and table, then fit (no files written).

    Raises:
        RecipeError: the recipe (schema, unknown feature, plan).
        TableError: the table (unknown feature, missing value, covariate outside its categories ...).
    """
    recipe, plan, recipe_bytes = load_recipe(recipe_path)
    table = read_table(table_path)
    check_extraction(table, plan)
    second = pd.read_parquet(second_reader_path) if second_reader_path is not None else None
    inputs = prepare_inputs(recipe, candidate_features(recipe, plan), table, second)
    fit = FITTERS[recipe.model.type](inputs)
    provenance = {
        "recipe_sha256": hashlib.sha256(recipe_bytes).hexdigest(),
        "table_sha256": table.sha256,
        "plan_sha256": plan.sha256(),
        "code": code_version(),
    }
    return FitRun(recipe, plan, inputs, fit, provenance)


def fit_recipe(recipe_path: Path, table_path: Path, out_root: Path, second_reader_path: Path | None = None) -> FitRun:
    """Fit and export the bundle to ``out_root/scoring/<id>/<version>/``."""
    run = fit_only(recipe_path, table_path, second_reader_path)
    with tempfile.TemporaryDirectory(prefix="oncohabitat-fit-") as scratch:
        bundle = export_bundle(out_root, run.recipe, run.plan, run.inputs, run.fit, run.provenance, Path(scratch))
    return FitRun(run.recipe, run.plan, run.inputs, run.fit, run.provenance, bundle)
