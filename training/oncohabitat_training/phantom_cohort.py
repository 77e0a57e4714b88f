"""Synthetic training cohort: phantom DCE-MRI studies (:func:`oncohabitat.phantom.generate_study`) written in
the MAMA-MIA layout of :mod:`.cohort`, so the phantom and a real cohort go through the same training code.

Each study is generated as DICOM (exactly what the platform receives), read back with SimpleITK, written as
NIfTI and its DICOM deleted. Lesion radius (mm), necrosis and lesion-free cases vary with the case's seed.
Seeds are ``first_seed .. first_seed + n - 1``; evaluation must use seeds outside that range.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from oncohabitat.phantom import LesionParams, generate_study

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhantomCaseSpec:
    """What one phantom case looks like: seed, lesion radius (mm, None = lesion-free), necrotic core."""

    seed: int
    radius_mm: float | None
    necrosis: bool


def case_specs(n: int, first_seed: int, lesion_free_fraction: float = 0.15) -> list[PhantomCaseSpec]:
    """Deterministic variety: radius 7-18 mm, necrosis in ~25 % of lesions, ``lesion_free_fraction`` empty."""
    specs = []
    for seed in range(first_seed, first_seed + n):
        rng = np.random.default_rng([seed, 0x5E6])
        lesion = rng.random() >= lesion_free_fraction
        specs.append(
            PhantomCaseSpec(
                seed=seed,
                radius_mm=float(rng.uniform(7.0, 18.0)) if lesion else None,
                necrosis=bool(lesion and rng.random() < 0.25),
            )
        )
    return specs


def write_phantom_case(root: Path, spec: PhantomCaseSpec, size: str) -> str:
    """Generate one study and write it as ``images/<CASE>/<case>_000k.nii.gz`` + its mask; returns the case id."""
    case_id = f"phantom_{spec.seed:05d}"
    image_dir = root / "images" / case_id.upper()
    mask_path = root / "segmentations" / "expert" / f"{case_id}.nii.gz"
    if mask_path.is_file():
        return case_id
    with tempfile.TemporaryDirectory(prefix="phantom-") as scratch:
        lesion_params = (
            None if spec.radius_mm is None else LesionParams(radius_mm=spec.radius_mm, necrosis=spec.necrosis)
        )
        study = generate_study(
            Path(scratch) / "study",
            size=size,
            seed=spec.seed,
            lesion=spec.radius_mm is not None,
            lesion_params=lesion_params,
        )
        image_dir.mkdir(parents=True, exist_ok=True)
        for phase, files in enumerate(study.phase_files):
            image = sitk.ReadImage([str(p) for p in files])
            sitk.WriteImage(image, str(image_dir / f"{case_id}_{phase:04d}.nii.gz"), useCompression=True)
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(sitk.ReadImage(str(study.ground_truth.tumour_mask)), str(mask_path), useCompression=True)
    return case_id


def write_phantom_cohort(
    root: Path, n: int, size: str = "ispy", first_seed: int = 0, lesion_free_fraction: float = 0.15
) -> list[str]:
    """Write (or complete) a phantom cohort of ``n`` cases under ``root``; returns the case ids."""
    root.mkdir(parents=True, exist_ok=True)
    specs = case_specs(n, first_seed, lesion_free_fraction)
    case_ids = []
    for index, spec in enumerate(specs, start=1):
        case_ids.append(write_phantom_case(root, spec, size))
        logger.info("phantom case %d/%d written (seed %d)", index, n, spec.seed)
    (root / "cohort.json").write_text(
        json.dumps(
            {
                "kind": "oncohabitat-phantom-cohort",
                "size": size,
                "seeds": [s.seed for s in specs],
                "cases": [
                    {"case": c, "seed": s.seed, "radius_mm": s.radius_mm, "necrosis": s.necrosis}
                    for c, s in zip(case_ids, specs, strict=True)
                ],
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return case_ids
