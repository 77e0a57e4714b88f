"""The recipe of a segmentation bundle: preprocessing, inference and post-processing specs + training + export.

The defaults are those of the shipped demonstration model (2 channels: S1 - S0 subtraction and S0, 2.5 mm
isotropic target grid, breast-region crop, 64^3 inference patches). The same recipe trains on a real cohort.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from oncohabitat.segmentation.model_bundle import PreprocessingSpec, SegmentationBundle
from oncohabitat_training.cohort import CohortCase
from oncohabitat_training.dataset import prepare_case
from oncohabitat_training.evaluate import CaseScore, evaluate
from oncohabitat_training.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    check_export,
    export_onnx,
    network_from_bundle,
    write_bundle,
)
from oncohabitat_training.train import TrainConfig, train

logger = logging.getLogger(__name__)

DEMO_DESCRIPTION = (
    "DEMONSTRATION MODEL: a small 3D U-Net trained only on synthetic phantom breast DCE-MRI studies "
    "(oncohabitat.phantom). It has never seen a real patient and must not be used clinically; train a real "
    "one on a labelled cohort with the same recipe (training/)."
)

PREPROCESSING: dict[str, Any] = {
    "channels": [
        {"name": "subtraction_s1_s0", "operation": "subtract", "phases": [1, 0]},
        {"name": "pre_contrast_s0", "operation": "phase", "phases": [0]},
    ],
    "target_spacing_mm": [2.5, 2.5, 2.5],
    "normalisation": {"method": "percentile-scale", "phase": 0, "percentile": 99.0},
    "crop": {
        "method": "anterior-body",
        "foreground_fraction": 0.05,
        "anterior_depth_mm": 150.0,
        "margin_mm": 10.0,
        "min_row_fraction": 0.02,
    },
}
INFERENCE: dict[str, Any] = {
    "input_name": INPUT_NAME,
    "output_name": OUTPUT_NAME,
    "patch_size": [64, 64, 64],
    "overlap": 0.25,
    "blend": "gaussian",
    "threshold": 0.5,
    "size_multiple": 4,
}
POSTPROCESSING: dict[str, Any] = {
    "selection": "largest",
    "min_component_ml": 0.1,
    "multiple_lesion_ratio": 0.3,
    "fill_holes": True,
}


@dataclass(frozen=True)
class RecipeResult:
    """The written bundle, validation scores and the export check's max difference."""

    bundle: SegmentationBundle
    validation: list[CaseScore]
    export_max_abs_diff: float


def check_volume(channels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(1, C, *shape) test volume for the export check: a real prepared case, zero-padded/cut to ``shape``."""
    volume = np.zeros((1, channels.shape[0], *shape), dtype=np.float32)
    part = channels[:, : shape[0], : shape[1], : shape[2]]
    volume[0, :, : part.shape[1], : part.shape[2], : part.shape[3]] = part
    return volume


def build_manifest(
    model_id: str, version: str, description: str, demonstration: bool, training: dict[str, Any]
) -> dict[str, Any]:
    """Manifest document (v2, kind segmentation; the file hashes are filled in when the bundle is written)."""
    return {
        "format_version": "2",
        "kind": "segmentation",
        "id": model_id,
        "version": version,
        "title": f"3D U-Net breast tumour segmentation {model_id} {version}",
        "intended_use": "research and platform demonstration only" if demonstration else "research use",
        "notes": [description],
        "demonstration_only": demonstration,
        "model": {"file": "model.onnx", "format": "onnx"},
        "preprocessing": PREPROCESSING,
        "inference": INFERENCE,
        "postprocessing": POSTPROCESSING,
        "training": training,
    }


def run_recipe(
    train_cases: list[CohortCase],
    validation_cases: list[CohortCase],
    out_root: Path,
    model_id: str,
    version: str,
    config: TrainConfig,
    *,
    description: str = DEMO_DESCRIPTION,
    demonstration: bool = True,
    data_description: str = "",
    init: SegmentationBundle | None = None,
) -> RecipeResult:
    """Prepare, train (from scratch or continuing ``init``), export (checked against torch), write the bundle
    and score it on ``validation_cases``."""
    spec = PreprocessingSpec.model_validate(PREPROCESSING)
    prepared = [prepare_case(case, spec) for case in train_cases]
    logger.info("prepared %d training cases", len(prepared))
    start = network_from_bundle(init) if init is not None else None
    if init is not None:
        config = replace(
            config,
            base_channels=int(init.manifest.training["config"]["base_channels"]),
            levels=int(init.manifest.training["config"]["levels"]),
        )
    result = train(prepared, len(spec.channels), config, start)
    check_shape = tuple(int(n) for n in INFERENCE["patch_size"])
    model_bytes = export_onnx(result.net, len(spec.channels), (check_shape[0], check_shape[1], check_shape[2]))
    difference = check_export(result.net, model_bytes, check_volume(prepared[0].channels, check_shape))
    training = {
        "recipe": "oncohabitat_training.recipe (training/ in the OncoHabitat repository)",
        "data": data_description,
        "train_cases": [c.case_id for c in train_cases],
        "validation_cases": [c.case_id for c in validation_cases],
        "config": config.as_json(),
        "initialised_from": None
        if init is None
        else {
            "id": init.id,
            "version": init.version,
            "manifest_sha256": init.manifest_sha256,
            "training": init.manifest.training,
        },
        "final_loss": round(result.final_loss, 5),
        "train_seconds": round(result.seconds, 1),
        "export_check": {"max_abs_diff_vs_torch": difference, "tolerance": 1e-4},
    }
    scores: list[CaseScore] = []
    if validation_cases:
        with tempfile.TemporaryDirectory(prefix="bundle-") as scratch:
            draft = write_bundle(
                Path(scratch), build_manifest(model_id, version, description, demonstration, training), model_bytes
            )
            scores = evaluate(draft, validation_cases)
        training["validation"] = {
            "dice": {s.case_id: round(s.dice, 4) for s in scores},
            "mean_dice_lesion_cases": round(float(np.mean([s.dice for s in scores if s.truth_ml > 0] or [0.0])), 4),
        }
    manifest = build_manifest(model_id, version, description, demonstration, training)
    bundle = write_bundle(out_root, manifest, model_bytes)
    return RecipeResult(bundle=bundle, validation=scores, export_max_abs_diff=difference)
