"""``oncohabitat-train``: write a phantom cohort, train a segmentation bundle, or both (``demo``); cohort
extraction (``extract``), recipe fitting (``fit``) and population habitat centroids (``habitats``).

Examples::

    oncohabitat-train phantom-cohort /tmp/phantom-cohort --n 40
    oncohabitat-train train /data/MAMA-MIA --out models --id mamamia-unet3d --version 1.0.0 \\
        --no-demonstration --description "..."
    oncohabitat-train demo --out models      # the shipped demonstration model
    oncohabitat-train habitats cohort.yaml --recipe recipe.yaml --out models --id site-habitats --version 1.0.0
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from oncohabitat.segmentation.model_bundle import load_segmentation_bundle
from oncohabitat_training.cohort import MAMA_MIA_IMAGE_PATTERN, MAMA_MIA_MASK_GLOB, CohortError, discover_cohort
from oncohabitat_training.extraction.command import EXTRACT_COMMANDS, add_extract_parsers, run_extract_command
from oncohabitat_training.fitting.cli import add_fit_parser, run_fit
from oncohabitat_training.habitats.command import HABITATS_COMMAND, add_habitats_parser, run_habitats_command
from oncohabitat_training.phantom_cohort import write_phantom_cohort
from oncohabitat_training.recipe import DEMO_DESCRIPTION, RecipeResult, run_recipe
from oncohabitat_training.train import TrainConfig

DEMO_ID = "phantom-unet3d"
DEMO_VERSION = "1.0.0"
DEMO_CASES = 40
DEMO_VALIDATION = 4


def _train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, required=True, help="bundle root, e.g. models (writes <root>/segmentation/<id>/<version>)"
    )
    parser.add_argument("--iterations", type=int, default=TrainConfig.iterations)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--threads", type=int, default=TrainConfig.threads)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    parser.add_argument("--validation", type=int, default=DEMO_VALIDATION, help="last N cases held out for Dice")
    parser.add_argument("--init-bundle", type=Path, default=None, help="continue training this bundle directory")


def _config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        iterations=args.iterations,
        batch_size=args.batch_size,
        threads=args.threads,
        seed=args.seed,
        learning_rate=args.learning_rate,
    )


def _report(result: RecipeResult) -> None:
    print(f"bundle {result.bundle.id} {result.bundle.version} written to {result.bundle.path}")
    print(f"export check: max |onnxruntime - torch| = {result.export_max_abs_diff:.2e}")
    for score in result.validation:
        print(f"validation {score.case_id}: dice {score.dice:.4f} (truth {score.truth_ml:.2f} mL)")


def _train_on(
    root: Path, args: argparse.Namespace, *, description: str, demonstration: bool, data_description: str
) -> RecipeResult:
    cases = discover_cohort(root, mask_glob=args.mask_glob, image_pattern=args.image_pattern)
    init = None
    if args.init_bundle is not None:
        init = load_segmentation_bundle(
            args.init_bundle.parent.parent.parent, args.init_bundle.parent.name, args.init_bundle.name
        )
    held_out = max(0, min(args.validation, len(cases) - 1))
    split = len(cases) - held_out
    return run_recipe(
        cases[:split],
        cases[split:],
        args.out,
        args.id,
        args.version,
        _config(args),
        description=description,
        demonstration=demonstration,
        data_description=data_description,
        init=init,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; exit status 0 on success, 1 on a cohort problem."""
    parser = argparse.ArgumentParser(prog="oncohabitat-train", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    cohort = commands.add_parser("phantom-cohort", help="write phantom studies in the MAMA-MIA layout")
    cohort.add_argument("root", type=Path)
    cohort.add_argument("--n", type=int, default=DEMO_CASES)
    cohort.add_argument("--size", default="ispy", choices=("small", "ispy", "duke"))
    cohort.add_argument("--first-seed", type=int, default=0)
    trainer = commands.add_parser("train", help="train a bundle on a labelled NIfTI cohort")
    trainer.add_argument("cohort", type=Path)
    trainer.add_argument("--id", required=True)
    trainer.add_argument("--version", required=True)
    trainer.add_argument("--description", required=True)
    trainer.add_argument("--demonstration", action=argparse.BooleanOptionalAction, default=False)
    trainer.add_argument("--mask-glob", default=MAMA_MIA_MASK_GLOB)
    trainer.add_argument("--image-pattern", default=MAMA_MIA_IMAGE_PATTERN)
    _train_args(trainer)
    demo = commands.add_parser("demo", help="phantom cohort + training: the shipped demonstration bundle")
    demo.add_argument("--cohort-dir", type=Path, default=None, help="keep the phantom cohort here (default: temp)")
    demo.add_argument("--n", type=int, default=DEMO_CASES)
    _train_args(demo)
    add_fit_parser(commands)
    add_extract_parsers(commands)
    add_habitats_parser(commands)
    args = parser.parse_args(argv)
    if args.command == HABITATS_COMMAND:
        return run_habitats_command(args)
    if args.command in EXTRACT_COMMANDS:
        return run_extract_command(args)
    if args.command == "fit":
        return run_fit(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    try:
        if args.command == "phantom-cohort":
            write_phantom_cohort(args.root, args.n, args.size, args.first_seed)
        elif args.command == "train":
            _report(
                _train_on(
                    args.cohort,
                    args,
                    description=args.description,
                    demonstration=args.demonstration,
                    data_description=f"labelled cohort at {args.cohort.name}",
                )
            )
        else:
            args.id, args.version = DEMO_ID, DEMO_VERSION
            args.mask_glob, args.image_pattern = MAMA_MIA_MASK_GLOB, MAMA_MIA_IMAGE_PATTERN
            with tempfile.TemporaryDirectory(prefix="phantom-cohort-") as scratch:
                root = args.cohort_dir or Path(scratch)
                write_phantom_cohort(root, args.n, "ispy", 0)
                _report(
                    _train_on(
                        root,
                        args,
                        description=DEMO_DESCRIPTION,
                        demonstration=True,
                        data_description=f"{args.n} synthetic ispy-size phantom studies, seeds 0-{args.n - 1}",
                    )
                )
    except CohortError as exc:
        print(f"oncohabitat-train: {exc}", file=sys.stderr)
        return 1
    return 0
