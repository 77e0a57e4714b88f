"""The ``fit`` subcommand of ``oncohabitat-train``: ``fit RECIPE --features TABLE --out BUNDLE_ROOT``.

Prints the bundle written, the selected features and the evaluation figures; exit status 1 with a message
naming the problem for a bad recipe or table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from oncohabitat.bundles.errors import BundleError
from oncohabitat_training.fitting.run import fit_recipe
from oncohabitat_training.fitting.schema import RecipeError
from oncohabitat_training.fitting.table import TableError


def add_fit_parser(commands: Any) -> None:
    """Register ``fit`` on the CLI's subparsers."""
    fit = commands.add_parser("fit", help="fit a modelling recipe (YAML) on a feature table -> scoring bundle")
    fit.add_argument("recipe", type=Path, help="recipe YAML, e.g. training/oncohabitat_training/recipes/*.yaml")
    fit.add_argument("--features", type=Path, required=True, help="feature table (Parquet) from 'extract'")
    fit.add_argument("--out", type=Path, required=True, help="bundle root (writes <root>/scoring/<id>/<version>)")
    fit.add_argument("--second-reader", type=Path, default=None, help="second reader's feature table (ICC)")


def run_fit(args: argparse.Namespace) -> int:
    """Run ``fit``; 0 on success, 1 on a recipe / table / bundle problem."""
    try:
        run = fit_recipe(args.recipe, args.features, args.out, args.second_reader)
    except (RecipeError, TableError, BundleError, ValueError) as exc:
        print(f"oncohabitat-train fit: {exc}", file=sys.stderr)
        return 1
    assert run.bundle is not None
    print(f"bundle {run.recipe.id} {run.recipe.version} written to {run.bundle.path}")
    print(f"features ({len(run.fit.primary.features)}): {', '.join(run.fit.primary.features)}")
    print(f"risk groups: {run.fit.rule.applies_to} > {run.fit.rule.cutoff:.6g} -> {run.fit.rule.labels[1]}")
    for figure in run.fit.figures:
        print(f"  {figure['dataset']:<24} {figure['metric']:<16} {figure['value']:.4g}")
    return 0
