"""Feature table of a phantom cohort (``oncohabitat phantom cohort``) for the demonstration scoring bundles.

A stand-in for ``oncohabitat-train extract`` on phantom studies, built from the same library functions the
platform runs (DICOM reader -> :func:`oncohabitat.regions.pipeline.build_regions` with the recipe's region
profile -> :func:`oncohabitat.features.full.full_row` with the recipe's plan), on the ground-truth tumour mask.
Output: one Parquet table in the extraction layout — ``patient_id``, ``split``, ``outcome.<name>``,
``clinical.<name>``, then the canonical feature names (plan order), rows sorted by ``patient_id``.

Outcomes written (all from the cohort's ``clinical.csv``; see :mod:`oncohabitat.phantom.cohort`):

* ``outcome.time`` (months) and ``outcome.event`` (0/1): the planted Weibull DFS;
* ``outcome.lp``: the planted linear predictor eta (the continuous target of the seed-002-style recipe);
* ``outcome.target``: a recurrence-score-like transform of eta, ``50 + 15 * eta`` (unitless points);
* ``outcome.pcr``: a documented binary label, 1 when ``eta < median(eta)`` of the cohort ("responders" have
  the low planted risk: little wash-out, small volume);
* ``outcome.high_risk``: 1 when ``eta >= median(eta)`` (the seed-004-style classifier's label).

Split: cases whose index mod 3 == 2 are ``validation``, the others ``train`` (deterministic).
Covariate: ``clinical.age`` (years).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import SimpleITK as sitk

from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat.common.phases import PhaseInput, select_phases
from oncohabitat.common.volume import Geometry
from oncohabitat.dicomio import load_series
from oncohabitat.features.full import full_row
from oncohabitat.features.study import ImageInput, LabelTable, StudyInputs, canonical_regions
from oncohabitat.regions.pipeline import build_regions
from oncohabitat.regions.profile import RegionProfile

logger = logging.getLogger(__name__)

#: Recurrence-score-like transform of the planted eta: ``TARGET_OFFSET + TARGET_SCALE * eta`` (points).
TARGET_OFFSET, TARGET_SCALE = 50.0, 15.0


def _phases(case_dir: Path) -> list[PhaseInput]:
    meta = json.loads((case_dir / "phantom.json").read_text(encoding="utf-8"))
    phases = []
    for index, series in enumerate(meta["series_dirs"]):
        files = sorted((case_dir / series).glob("*.dcm")) or sorted(p for p in (case_dir / series).iterdir())
        image = load_series(files).image
        role: Literal["pre", "post"] = "pre" if index == 0 else "post"
        phases.append(
            PhaseInput(
                role, index, float(meta["phase_times_s"][index]), sitk.GetArrayFromImage(image), Geometry.of(image)
            )
        )
    return phases


def study_row(case_dir: Path, plan: ExtractionPlan) -> dict[str, float]:
    """Canonical feature values of one phantom study (plan order; NaN where missing)."""
    phases = _phases(case_dir)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(case_dir / "ground_truth" / "tumour_mask.nrrd"))) > 0
    profile = RegionProfile.model_validate(plan.region_profile)
    result = build_regions(select_phases(phases), mask, profile)
    images = {f"S{phase.index}": ImageInput(phase.array, phase.geometry) for phase in phases}
    grid = result.geometry
    images.update({name: ImageInput(array, grid) for name, array in result.derived_images.items()})
    tables = [
        LabelTable(region_map.array, grid, {entry.value: entry.name for entry in region_map.labels})
        for region_map in result.maps
    ]
    inputs = StudyInputs(
        images=images,
        regions=canonical_regions(tables),
        msi=dict(result.msi_features),
        parenchyma_mean=result.parenchyma_s0_mean,
    )
    row, _ = full_row(plan, inputs)
    return row


def _clinical(cohort_dir: Path) -> list[dict[str, str]]:
    with (cohort_dir / "clinical.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _one(args: tuple[Path, str, str]) -> tuple[str, dict[str, float]]:
    cohort_dir, case_id, plan_json = args
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    return case_id, study_row(cohort_dir / case_id, ExtractionPlan.model_validate_json(plan_json))


def build_table(cohort_dir: Path, plan: ExtractionPlan, workers: int = 1) -> pd.DataFrame:
    """The feature table of every study in ``cohort_dir`` (see the module docstring)."""
    clinical = _clinical(cohort_dir)
    jobs = [(cohort_dir, row["case_id"], plan.model_dump_json(by_alias=True)) for row in clinical]
    started = time.monotonic()
    rows: dict[str, dict[str, float]] = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for done, (case_id, values) in enumerate(pool.map(_one, jobs), start=1):
            rows[case_id] = values
            print(f"{done}/{len(jobs)} {case_id} {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    eta = np.array([float(row["true_linear_predictor"]) for row in clinical])
    median = float(np.median(eta))
    records = []
    for index, row in enumerate(clinical):
        lp = float(row["true_linear_predictor"])
        records.append(
            {
                "patient_id": row["case_id"],
                "split": "validation" if index % 3 == 2 else "train",
                "outcome.time": float(row["time_months"]),
                "outcome.event": int(row["event"]),
                "outcome.lp": lp,
                "outcome.target": TARGET_OFFSET + TARGET_SCALE * lp,
                "outcome.pcr": int(lp < median),
                "outcome.high_risk": int(lp >= median),
                "clinical.age": float(row["age"]),
                **rows[row["case_id"]],
            }
        )
    table = pd.DataFrame.from_records(records).sort_values("patient_id", kind="stable").reset_index(drop=True)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m oncohabitat_training.demo_table COHORT_DIR --plan PLAN_JSON --out TABLE.parquet``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("cohort", type=Path)
    parser.add_argument("--plan", type=Path, required=True, help="ExtractionPlan JSON (the candidate features)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    plan = ExtractionPlan.model_validate_json(args.plan.read_text(encoding="utf-8"))
    table = build_table(args.cohort, plan, args.workers)
    missing = int(table[list(plan.features)].isna().sum().sum())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)
    print(f"{len(table)} rows x {len(plan.features)} features -> {args.out} ({missing} missing values)")
    return 0 if not math.isnan(missing) else 1


if __name__ == "__main__":
    raise SystemExit(main())
