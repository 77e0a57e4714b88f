"""Rebuild the demonstration scoring bundles shipped under ``models/scoring/demo-*`` (deterministic).

::

    .venv/bin/python -m oncohabitat_training.demo_bundles --out models --work /tmp/oncohabitat-demo

The path a researcher takes with ``oncohabitat-train``, with nothing of its own:

1. ``oncohabitat phantom cohort --n 300 --size small --seed 0`` into ``WORK/cohort`` (skipped when
   ``WORK/cohort/clinical.csv`` is present);
2. its cohort file ``WORK/cohort/cohort.yaml`` (``oncohabitat-train phantom-cohort-file``,
   :func:`~oncohabitat_training.cohorts.phantom.write_phantom_cohort_file`, validation fraction 1/3: every third
   case): DICOM folders, ground-truth tumour masks, age, and the planted outcomes the recipes read (DFS
   ``time`` / ``event``, ``lp``, ``target``, ``pcr``, ``high_risk``);
3. the feature table ``WORK/features.parquet`` by the extraction run (``oncohabitat-train extract``,
   :func:`~oncohabitat_training.extraction.run.run_extraction`) with the demo recipes' plan
   (``recipes/plans/phantom-dce.yaml``), one local process per available core (``--workers``), stopping at the
   first failed patient; its per-patient parts stay under ``WORK/features.work``, so a rerun reuses them;
4. every recipe in ``recipes/demo/`` fitted on it (``oncohabitat-train fit``), replacing the bundle of the same
   id and version under ``OUT/scoring``;
5. the lock file ``OUT/bundles.lock.json`` rewritten (:func:`oncohabitat.bundles.write_lock`).

Same code, same seeds -> byte-identical bundles.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

from oncohabitat.bundles import write_lock
from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat.phantom.cohort import generate_cohort
from oncohabitat_training.cohorts.phantom import write_phantom_cohort_file
from oncohabitat_training.extraction.executors import default_workers
from oncohabitat_training.extraction.run import ExtractConfig, run_extraction
from oncohabitat_training.fitting.run import fit_recipe
from oncohabitat_training.fitting.schema import load_recipe

RECIPES = Path(__file__).resolve().parent / "recipes"
DEMO_RECIPES = RECIPES / "demo"
COHORT_SIZE, COHORT_SEED, COHORT_PHANTOM_SIZE = 300, 0, "small"
#: Every third case (index mod 3 == 2) is a validation case.
VALIDATION_FRACTION = 1 / 3


class DemoBuildError(RuntimeError):
    """The demo recipes disagree on their plan, or a patient of the phantom cohort could not be extracted."""


def demo_plan() -> ExtractionPlan:
    """The extraction plan the demo recipes share (what ``extract --recipe`` would extract for any of them)."""
    plans = {plan.sha256(): plan for _, plan, _ in (load_recipe(path) for path in sorted(DEMO_RECIPES.glob("*.yaml")))}
    if len(plans) != 1:
        raise DemoBuildError(f"the demo recipes declare {len(plans)} different extraction plans; one table needs one")
    return next(iter(plans.values()))


def feature_table(work: Path, workers: int = 0) -> Path:
    """The phantom cohort's feature table ``work/features.parquet``, by the extraction run (module docstring).

    Raises:
        DemoBuildError: a patient could not be extracted (its reason; the failures file is in the run's folder).
    """
    cohort = work / "cohort"
    if not (cohort / "clinical.csv").exists():
        generate_cohort(cohort, COHORT_SIZE, COHORT_PHANTOM_SIZE, COHORT_SEED)
    cohort_file = write_phantom_cohort_file(cohort, validation_fraction=VALIDATION_FRACTION)
    config = ExtractConfig(out=work / "features.parquet", on_error="stop", workers=workers or default_workers())
    report = run_extraction(cohort_file, demo_plan(), config)
    if report.failures or report.table is None:
        reasons = "; ".join(f"cohort row {f.row}: {f.reason}" for f in report.failures[:5])
        raise DemoBuildError(f"extraction stopped ({reasons}); see {report.failures_file}")
    print(
        f"{report.computed} patients extracted, {report.reused} reused ({report.seconds:.0f} s) -> {report.table}",
        flush=True,
    )
    return report.table


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
    parser.add_argument("--workers", type=int, default=0, help="extraction processes (default: the available cores)")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    try:
        table = feature_table(args.work, args.workers)
    except DemoBuildError as exc:
        print(f"demo_bundles: {exc}")
        return 1
    for line in rebuild(args.out, table):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
