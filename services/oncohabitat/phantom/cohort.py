"""Synthetic cohort: N phantom studies plus ``clinical.csv`` with survival driven by lesion properties.

Generating model (all draws from ``numpy.random.default_rng([seed, 0xC0])``, case i uses study seed
``seed * 100000 + i``):

* lesion: nominal radius R ~ U(8, 16) mm; wash-out fraction w ~ U(0.15, 0.65); plateau fraction
  p ~ U(0.15, 0.35) capped at 0.9 - w; persistent = 1 - w - p; necrotic core with probability 0.3
  (15 % of the tumour); side L/R with probability 1/2. Age ~ N(55, 10) years rounded, clipped to 28-85.
* linear predictor, from the *realised* ground truth of each study (voxel counts)::

      eta = 1.0 * (washout_fraction - 0.40) / 0.15 + 0.7 * ln(volume_ml / 8) + 0.2 * (age - 55) / 10

  with ``washout_fraction`` the wash-out share of the enhancing (non-necrotic) tumour volume.
* event time (months), Weibull proportional hazards with shape k = 1.3 and scale 60 months::

      T = 60 * (-ln U * exp(-eta)) ** (1 / 1.3),   U ~ U(0, 1)

  i.e. hazard h(t) = (k / 60) (t / 60)^(k-1) exp(eta); hazard ratios exp(1.0) per 0.15 of wash-out
  fraction and exp(0.7) per e-fold volume.
* censoring: C ~ U(24, 120) months (staggered accrual, administrative end at 120); observed
  ``time_months = min(T, C)`` rounded to 0.1 (at least 0.1), ``event = 1`` if T <= C else 0.

``clinical.csv`` columns: case_id (folder name), seed, study_instance_uid, age, time_months, event,
lesion_volume_ml, washout_fraction, plateau_fraction, persistent_fraction, necrosis,
necrosis_volume_ml, lesion_radius_mm, lesion_side, true_linear_predictor (the planted eta, for checking
a trained model against the oracle).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oncohabitat.phantom.errors import PhantomError
from oncohabitat.phantom.lesion import LesionParams
from oncohabitat.phantom.presets import get_preset
from oncohabitat.phantom.progress import ProgressCallback
from oncohabitat.phantom.study import PhantomStudy, check_seed, generate_study, prepare_output_dir

CLINICAL_CSV = "clinical.csv"
CASE_SEED_STRIDE = 100_000
COEF_WASHOUT, COEF_LOG_VOLUME, COEF_AGE = 1.0, 0.7, 0.2
WEIBULL_SHAPE, WEIBULL_SCALE_MONTHS = 1.3, 60.0
CENSOR_MIN_MONTHS, CENSOR_MAX_MONTHS = 24.0, 120.0
_COHORT_STREAM = 0xC0

COLUMNS = (
    "case_id",
    "seed",
    "study_instance_uid",
    "age",
    "time_months",
    "event",
    "lesion_volume_ml",
    "washout_fraction",
    "plateau_fraction",
    "persistent_fraction",
    "necrosis",
    "necrosis_volume_ml",
    "lesion_radius_mm",
    "lesion_side",
    "true_linear_predictor",
)


@dataclass(frozen=True)
class PhantomCohort:
    """Generated cohort: the studies (in case order) and the clinical table."""

    out_dir: Path
    clinical_csv: Path
    studies: tuple[PhantomStudy, ...]


def linear_predictor(washout_fraction: float, volume_ml: float, age: float) -> float:
    """The planted risk ``eta`` (see the module docstring)."""
    return (
        COEF_WASHOUT * (washout_fraction - 0.40) / 0.15
        + COEF_LOG_VOLUME * math.log(volume_ml / 8.0)
        + COEF_AGE * (age - 55.0) / 10.0
    )


def survival_outcome(eta: float, u_event: float, censor_months: float) -> tuple[float, int]:
    """Observed (time_months, event) for linear predictor ``eta``, uniform draw ``u_event`` and censoring time."""
    event_time = WEIBULL_SCALE_MONTHS * (-math.log(max(u_event, 1e-12)) * math.exp(-eta)) ** (1.0 / WEIBULL_SHAPE)
    return max(round(min(event_time, censor_months), 1), 0.1), int(event_time <= censor_months)


def _case_params(rng: np.random.Generator) -> tuple[LesionParams, int]:
    washout = float(rng.uniform(0.15, 0.65))
    plateau = min(float(rng.uniform(0.15, 0.35)), 0.9 - washout)
    params = LesionParams(
        radius_mm=float(rng.uniform(8.0, 16.0)),
        side="L" if rng.random() < 0.5 else "R",
        fractions=(1.0 - washout - plateau, plateau, washout),
        necrosis=bool(rng.random() < 0.3),
    )
    age = int(np.clip(round(float(rng.normal(55.0, 10.0))), 28, 85))
    return params, age


def generate_cohort(
    out_dir: Path,
    n: int,
    size: str = "small",
    seed: int = 0,
    layout: str = "per-phase",
    *,
    progress: ProgressCallback | None = None,
) -> PhantomCohort:
    """Write ``n`` studies to ``out_dir/case_NNNN`` and ``out_dir/clinical.csv``."""
    check_seed(seed)
    if n < 1:
        raise PhantomError(f"cohort size must be at least 1, got {n}")
    preset = get_preset(size)
    out_dir = Path(out_dir)
    prepare_output_dir(out_dir)
    rng = np.random.default_rng([seed, _COHORT_STREAM])
    files_per_study = preset.n_phases * preset.size_xyz[2]
    total = n * files_per_study
    studies: list[PhantomStudy] = []
    rows: list[dict[str, object]] = []
    for i in range(n):
        params, age = _case_params(rng)
        u_event, censor = float(rng.random()), float(rng.uniform(CENSOR_MIN_MONTHS, CENSOR_MAX_MONTHS))
        offset = i * files_per_study

        def case_progress(done: int, _total: int, offset: int = offset) -> None:
            if progress is not None:
                progress(offset + done, total)

        case_id = f"case_{i:04d}"
        study = generate_study(
            out_dir / case_id,
            size=size,
            seed=seed * CASE_SEED_STRIDE + i,
            layout=layout,
            lesion_params=params,
            patient_age_years=age,
            progress=case_progress,
        )
        lesion = study.lesion
        if lesion is None:  # pragma: no cover - generate_study always draws a lesion when params are given
            raise PhantomError("cohort study without lesion")
        eta = linear_predictor(lesion.compartment_fractions[3], lesion.volume_ml, age)
        time_months, event = survival_outcome(eta, u_event, censor)
        studies.append(study)
        rows.append(
            {
                "case_id": case_id,
                "seed": study.seed,
                "study_instance_uid": study.study_instance_uid,
                "age": age,
                "time_months": time_months,
                "event": event,
                "lesion_volume_ml": round(lesion.volume_ml, 4),
                "washout_fraction": round(lesion.compartment_fractions[3], 4),
                "plateau_fraction": round(lesion.compartment_fractions[2], 4),
                "persistent_fraction": round(lesion.compartment_fractions[1], 4),
                "necrosis": int(lesion.necrosis),
                "necrosis_volume_ml": round(lesion.necrosis_volume_ml, 4),
                "lesion_radius_mm": round(lesion.radius_mm, 3),
                "lesion_side": lesion.side,
                "true_linear_predictor": round(eta, 6),
            }
        )
    clinical = out_dir / CLINICAL_CSV
    with clinical.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return PhantomCohort(out_dir=out_dir, clinical_csv=clinical, studies=tuple(studies))
