"""The ``habitats`` subcommand of ``oncohabitat-train``: population habitat centroids -> a ``habitats`` bundle.

Example::

    oncohabitat-train habitats cohort.yaml --recipe recipes/seed001-habitat-logistic.yaml \\
        --out models --id site-habitats --version 1.0.0

Only the cohort's ``train`` patients are loaded. The bundle goes to ``<out>/habitats/<id>/<version>/``
(``manifest.json`` + ``centroids.json``) and ``<out>/bundles.lock.json`` pins it. The output ends with the
``habitats`` section a region profile needs to use the centroids (``mode: frozen`` and the
``frozen_centroids`` file + SHA-256, relative to the bundle root): put it into the recipe's region profile,
extract with ``--models-dir <out>``, then fit.

Exit status: 0 = bundle written from every training patient; 1 = some training patient failed (with
``--on-error continue`` the bundle is fitted on the others), or no bundle could be written; 2 = the cohort file,
profile, plan or recipe is unusable.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from oncohabitat.bundles.errors import BundleError
from oncohabitat.common.errors import DomainError
from oncohabitat.regions import parse_profile
from oncohabitat.regions.profile import RegionProfile
from oncohabitat_training.cohorts import CohortFileError
from oncohabitat_training.extraction.command import selected_plan
from oncohabitat_training.extraction.executors import default_workers
from oncohabitat_training.extraction.profile import DEFAULT_PROFILE_NAME, ProfileError
from oncohabitat_training.extraction.segment import SegmentationOptions
from oncohabitat_training.habitats.fit import (
    DEFAULT_MAX_VOXELS_PER_PATIENT,
    HabitatFitConfig,
    HabitatFitError,
    HabitatFitReport,
    fit_cohort_habitats,
)

HABITATS_COMMAND = "habitats"


def add_habitats_parser(commands: Any) -> None:
    """Register ``habitats`` on the CLI's subcommands."""
    fit = commands.add_parser(
        HABITATS_COMMAND, help="population habitat centroids on the cohort's training split -> habitats bundle"
    )
    fit.add_argument("cohort", type=Path, help="cohort file (.csv, .yaml); only split 'train' is used")
    what = fit.add_mutually_exclusive_group()
    what.add_argument("--recipe", type=Path, help="the region profile of this recipe's plan")
    what.add_argument("--plan", type=Path, help="a profile or extraction plan file (JSON / YAML)")
    what.add_argument("--profile", default=None, help=f"a built-in profile (default {DEFAULT_PROFILE_NAME})")
    fit.add_argument("--out", type=Path, required=True, help="bundle root, e.g. models")
    fit.add_argument("--id", required=True, help="bundle id, e.g. site-habitats")
    fit.add_argument("--version", required=True, help="bundle version (semver), e.g. 1.0.0")
    fit.add_argument("--title", default=None)
    fit.add_argument("--intended-use", default=None)
    fit.add_argument(
        "--max-voxels-per-patient",
        type=int,
        default=DEFAULT_MAX_VOXELS_PER_PATIENT,
        help=f"random subset per larger tumour (default {DEFAULT_MAX_VOXELS_PER_PATIENT}; 0 = every voxel)",
    )
    fit.add_argument("--seed", type=int, default=None, help="k-means and subset seed (default: habitats.random_state)")
    fit.add_argument("--replace", action="store_true", help="rewrite an existing bundle of this id and version")
    fit.add_argument("--on-error", choices=("continue", "stop"), default="continue")
    fit.add_argument("--workers", type=int, default=0, help="local processes (default: the CPUs; 1 = inline)")
    fit.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786")
    fit.add_argument("--models-dir", type=Path, default=None, help="models root (automatic segmentation)")
    fit.add_argument("--segmentation-profile", default="", help="segmentation profile name")


def _profile(args: argparse.Namespace) -> RegionProfile:
    plan = selected_plan(args)
    try:
        return parse_profile(json.dumps(plan.region_profile))
    except DomainError as exc:
        raise ProfileError(f"region profile: {exc.public_message}") from None


def _print(report: HabitatFitReport) -> None:
    assert report.bundle is not None and report.habitats is not None
    bundle = report.bundle
    print(
        f"bundle {bundle.key} written to {bundle.path} (K = {bundle.manifest.k} over "
        f"{', '.join(bundle.manifest.parameters)}; {report.n_patients} training patients, {report.n_voxels} voxels)"
    )
    print(f"pinned in {bundle.path.parent.parent.parent / 'bundles.lock.json'}: {bundle.manifest_sha256}")
    print("region profile habitats section (extract with --models-dir set to the bundle root):")
    print(json.dumps({"habitats": report.habitats}, indent=2))


def run_habitats_command(args: argparse.Namespace) -> int:
    """Run ``habitats``; exit status as in the module docstring."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    try:
        config = HabitatFitConfig(
            out=args.out,
            bundle_id=args.id,
            version=args.version,
            title=args.title,
            intended_use=args.intended_use,
            max_voxels_per_patient=args.max_voxels_per_patient or None,
            seed=args.seed,
            on_error=args.on_error,
            workers=args.workers or default_workers(),
            scheduler=args.scheduler,
            segmentation=SegmentationOptions(args.models_dir, args.segmentation_profile),
            replace=args.replace,
        )
        report = fit_cohort_habitats(args.cohort, _profile(args), config)
    except (CohortFileError, ProfileError) as exc:
        print(f"oncohabitat-train: {exc}", file=sys.stderr)
        return 2
    except HabitatFitError as exc:
        print(f"oncohabitat-train habitats: {exc}", file=sys.stderr)
        return 2
    except BundleError as exc:
        print(f"oncohabitat-train habitats: {exc.reason}: {exc.message}", file=sys.stderr)
        return 1
    for failure in report.failures:  # patient ids only in the cohort file, never printed
        print(f"  cohort row {failure.row}: {failure.reason}", file=sys.stderr)
    if report.bundle is None:
        print("oncohabitat-train habitats: no bundle written (see the failures above)", file=sys.stderr)
        return 1
    _print(report)
    return 1 if report.failures else 0
