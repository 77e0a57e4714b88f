"""The ``extract`` and ``phantom-cohort-file`` subcommands of ``oncohabitat-train``.

Examples::

    oncohabitat phantom cohort --n 40 --size small --out /data/phantom
    oncohabitat-train phantom-cohort-file /data/phantom              # -> /data/phantom/cohort.yaml
    oncohabitat-train extract /data/phantom/cohort.yaml --profile dce-default --out features.parquet --workers 4
    oncohabitat-train extract cohort.csv --recipe recipes/seed001.yaml --out features.parquet \\
        --scheduler tcp://scheduler:8786 --on-error stop
    oncohabitat-train extract cohort.yaml --recipe frozen.yaml --models-dir models --out features.parquet

A profile whose habitats are in ``frozen`` mode reads its centroids file (written by ``oncohabitat-train
habitats``) from ``--models-dir``; the file is verified before any patient is extracted.

Exit status: 0 = every patient extracted; 1 = some patient failed (with ``--on-error continue`` the table holds
the others; the failures file lists them); 2 = the cohort file, profile, plan or recipe is unusable (every
problem printed with its row, column and patient id).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat.common.errors import DomainError
from oncohabitat.regions import parse_profile
from oncohabitat_training.cohorts import CohortFileError
from oncohabitat_training.cohorts.phantom import DEFAULT_VALIDATION_FRACTION, write_phantom_cohort_file
from oncohabitat_training.extraction.executors import default_workers
from oncohabitat_training.extraction.patient import frozen_habitats
from oncohabitat_training.extraction.profile import DEFAULT_PROFILE_NAME, ProfileError, load_plan
from oncohabitat_training.extraction.run import ExtractConfig, run_extraction
from oncohabitat_training.extraction.segment import SegmentationOptions

EXTRACT_COMMANDS = ("extract", "phantom-cohort-file")


def add_extract_parsers(commands: Any) -> None:
    """Register ``extract`` and ``phantom-cohort-file`` on the CLI's subcommands."""
    extract = commands.add_parser("extract", help="cohort file -> feature table (Parquet), resumable")
    extract.add_argument("cohort", type=Path, help="cohort file (.csv, .yaml)")
    what = extract.add_mutually_exclusive_group()
    what.add_argument("--recipe", type=Path, help="extract the plan of this recipe")
    what.add_argument("--plan", type=Path, help="a profile or extraction plan file (JSON / YAML)")
    what.add_argument("--profile", default=None, help=f"a built-in profile (default {DEFAULT_PROFILE_NAME})")
    extract.add_argument("--out", type=Path, required=True, help="the feature table (.parquet)")
    extract.add_argument("--work-dir", type=Path, default=None, help="parts and failures (default <out>.work)")
    extract.add_argument("--on-error", choices=("continue", "stop"), default="continue")
    extract.add_argument("--workers", type=int, default=0, help="local processes (default: the CPUs; 1 = inline)")
    extract.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786")
    extract.add_argument(
        "--models-dir", type=Path, default=None, help="models root (automatic segmentation, frozen habitat centroids)"
    )
    extract.add_argument("--segmentation-profile", default="", help="segmentation profile name")
    extract.add_argument("--no-progress", action="store_true", help="no progress bar")
    phantom = commands.add_parser("phantom-cohort-file", help="cohort file for an 'oncohabitat phantom cohort' folder")
    phantom.add_argument("root", type=Path)
    phantom.add_argument("--out", type=Path, default=None, help="default <root>/cohort.yaml")
    phantom.add_argument("--validation-fraction", type=float, default=DEFAULT_VALIDATION_FRACTION)


def selected_plan(args: argparse.Namespace) -> ExtractionPlan:
    """The plan of ``--recipe``, ``--plan`` or ``--profile`` (default ``dce-default``).

    Raises:
        ProfileError: unusable recipe, plan or profile.
    """
    if args.recipe is not None:
        from oncohabitat_training.fitting.schema import RecipeError, load_recipe

        try:
            return load_recipe(args.recipe)[1]
        except RecipeError as exc:
            raise ProfileError(str(exc)) from None
    return load_plan(args.plan if args.plan is not None else args.profile or DEFAULT_PROFILE_NAME)


def check_frozen_centroids(plan: ExtractionPlan, models_dir: Path | None) -> None:
    """Refuse a frozen-mode plan whose centroids file cannot be used (before any patient runs).

    Raises:
        ProfileError: invalid region profile, or centroids missing, tampered or unreadable under ``models_dir``.
    """
    try:
        frozen_habitats(parse_profile(json.dumps(plan.region_profile)), models_dir)
    except DomainError as exc:
        raise ProfileError(f"region profile: {exc.reason}: {exc.public_message}") from None


def _extract(args: argparse.Namespace) -> int:
    plan = selected_plan(args)
    check_frozen_centroids(plan, args.models_dir)
    config = ExtractConfig(
        out=args.out,
        work_dir=args.work_dir,
        on_error=args.on_error,
        workers=args.workers or default_workers(),
        scheduler=args.scheduler,
        segmentation=SegmentationOptions(args.models_dir, args.segmentation_profile),
        progress=not args.no_progress,
    )
    report = run_extraction(args.cohort, plan, config)
    print(
        f"{report.computed} patients extracted, {report.reused} reused, {len(report.failures)} failed "
        f"({report.seconds:.1f} s; {report.seconds_per_patient:.2f} s per extracted patient)"
    )
    for failure in report.failures:  # patient ids only in the failures file
        print(f"  cohort row {failure.row}: {failure.reason}", file=sys.stderr)
    if report.failures:
        print(f"failures (with patient ids) listed in {report.failures_file}", file=sys.stderr)
    if report.table is not None:
        print(f"feature table {report.table} ({len(plan.features)} features)")
    if report.reader2_table is not None:
        print(f"second reader's table {report.reader2_table}")
    return 1 if report.failures else 0


def run_extract_command(args: argparse.Namespace) -> int:
    """Run ``extract`` or ``phantom-cohort-file``; exit status as in the module docstring."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    try:
        if args.command == "phantom-cohort-file":
            print(f"cohort file {write_phantom_cohort_file(args.root, args.out, args.validation_fraction)}")
            return 0
        return _extract(args)
    except CohortFileError as exc:
        print(f"oncohabitat-train: {exc}", file=sys.stderr)
        return 2
    except ProfileError as exc:
        print(f"oncohabitat-train: {exc}", file=sys.stderr)
        return 2
