"""Rebuild the demonstration scoring bundles shipped under ``models/scoring/demo-*`` (deterministic).

::

    .venv/bin/python -m oncohabitat_training.demo_bundles --out models --work /tmp/oncohabitat-demo

1. ``oncohabitat phantom cohort --n 300 --size small --seed 0`` into ``WORK/cohort`` (skipped when present);
2. the feature table ``WORK/features.parquet`` (:mod:`oncohabitat_training.demo_table`, the candidate plan
   ``recipes/plans/phantom-dce.yaml``; skipped when present);
3. every recipe in ``recipes/demo/`` fitted on it (``oncohabitat-train fit``), replacing the bundle of the same
   id and version under ``OUT/scoring``;
4. the lock file ``OUT/bundles.lock.json`` rewritten (:func:`oncohabitat.bundles.write_lock`).

Same code, same seeds -> byte-identical bundles.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

import yaml

from oncohabitat.bundles import write_lock
from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat.phantom.cohort import generate_cohort
from oncohabitat_training.demo_table import build_table
from oncohabitat_training.fitting.run import fit_recipe
from oncohabitat_training.fitting.schema import load_recipe

RECIPES = Path(__file__).resolve().parent / "recipes"
DEMO_RECIPES = RECIPES / "demo"
CANDIDATE_PLAN = RECIPES / "plans" / "phantom-dce.yaml"
COHORT_SIZE, COHORT_SEED, COHORT_PHANTOM_SIZE = 300, 0, "small"


def feature_table(work: Path, workers: int = 1) -> Path:
    """The phantom cohort's feature table (built once under ``work``)."""
    table = work / "features.parquet"
    if table.exists():
        return table
    cohort = work / "cohort"
    if not (cohort / "clinical.csv").exists():
        generate_cohort(cohort, COHORT_SIZE, COHORT_PHANTOM_SIZE, COHORT_SEED)
    plan = ExtractionPlan.model_validate(yaml.safe_load(CANDIDATE_PLAN.read_text(encoding="utf-8")))
    build_table(cohort, plan, workers).to_parquet(table, index=False)
    return table


def rebuild(out: Path, table: Path) -> list[str]:
    """Fit every demo recipe on ``table`` into ``out`` (replacing same-version bundles); rewrite the lock."""
    lines = []
    for path in sorted(DEMO_RECIPES.glob("*.yaml")):
        recipe, _, _ = load_recipe(path)
        target = out / "scoring" / recipe.id / recipe.version
        if target.exists():
            shutil.rmtree(target)
        run = fit_recipe(path, table, out)
        figures = ", ".join(f"{f['metric']}={f['value']:.3g} ({f['dataset']})" for f in run.fit.figures)
        lines.append(f"{recipe.id}: {list(run.fit.primary.features)}; {figures}")
    write_lock(out)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description="rebuild the demonstration scoring bundles")
    parser.add_argument("--out", type=Path, default=Path("models"), help="bundle root (default: models)")
    parser.add_argument("--work", type=Path, required=True, help="folder for the phantom cohort and feature table")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    for line in rebuild(args.out, feature_table(args.work, args.workers)):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
