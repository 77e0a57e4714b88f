"""``generate_study``: one synthetic breast DCE-MRI study (DICOM + ground truth + metadata JSON).

Output layout below ``out_dir``::

    dicom/series_NN/IM_#####.dcm   MR Image Storage, see :mod:`.dicom_writer`
    ground_truth/*.nrrd            see :mod:`.ground_truth`
    phantom.json                   phase times (s), lesion centre (LPS mm) and volume (mL), seed, curves

Deterministic per seed: the same arguments give byte-identical DICOM files. Memory stays bounded: the
label volume (uint8) and the static signal (float32) are held once, every phase is produced and written
slice by slice.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from oncohabitat.common.volume import Geometry
from oncohabitat.phantom.anatomy import BodyShape, Tissue, body_shape, build_anatomy
from oncohabitat.phantom.dicom_common import StudyIdentity
from oncohabitat.phantom.dicom_writer import LAYOUTS, DceTiming, write_mr_series
from oncohabitat.phantom.errors import PhantomError
from oncohabitat.phantom.ground_truth import GroundTruthPaths, geometry_json, write_json, write_label_volumes
from oncohabitat.phantom.kinetics import (
    COMPARTMENT_NAMES,
    TISSUE_KINETICS,
    compartment_curve,
    kinetic_parameters,
)
from oncohabitat.phantom.lesion import LesionParams, LesionTruth, place_lesion
from oncohabitat.phantom.mr_signal import NOISE_SIGMA, phase_slice, static_signal
from oncohabitat.phantom.presets import SizePreset, get_preset
from oncohabitat.phantom.progress import ProgressCallback

logger = logging.getLogger(__name__)

METADATA_NAME = "phantom.json"

# Independent random streams per seed.
_ANATOMY_STREAM, _LESION_STREAM, _SIGNAL_STREAM = 1, 2, 3


@dataclass(frozen=True)
class PhantomStudy:
    """A generated study: paths, DCE timing (s), geometry and the realised lesion (None without one).

    ``phase_files[p]`` lists phase p's files sorted by slice index (inferior to superior); phase 0 is
    pre-contrast. ``phase_times_s`` are relative to the pre-contrast acquisition.
    """

    out_dir: Path
    dicom_dir: Path
    series_dirs: tuple[Path, ...]
    phase_files: tuple[tuple[Path, ...], ...]
    phase_times_s: tuple[float, ...]
    injection_time_s: float
    geometry: Geometry
    size_xyz: tuple[int, int, int]
    ground_truth: GroundTruthPaths
    metadata_json: Path
    lesion: LesionTruth | None
    seed: int
    size: str
    layout: str
    study_instance_uid: str


@dataclass(frozen=True)
class PhantomAnatomy:
    """Label volume (z, y, x) with the lesion drawn in, its body shape and the realised lesion."""

    geometry: Geometry
    size_xyz: tuple[int, int, int]
    shape: BodyShape
    labels: np.ndarray[Any, np.dtype[np.uint8]]
    lesion: LesionTruth | None


def check_seed(seed: int) -> None:
    """Seeds are non-negative integers."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PhantomError(f"seed must be a non-negative integer, got {seed!r}")


def prepare_output_dir(out_dir: Path) -> None:
    """Create ``out_dir``; refuse a non-empty one so that outputs of different runs never mix."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise PhantomError(f"output directory {out_dir} exists and is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)


def build_phantom_anatomy(preset: SizePreset, seed: int, lesion_params: LesionParams | None) -> PhantomAnatomy:
    """Anatomy labels for ``preset`` and ``seed``, with a lesion unless ``lesion_params`` is None."""
    geometry = preset.geometry()
    shape = body_shape(geometry, preset.anatomy_scale)
    labels = build_anatomy(geometry, preset.size_xyz, shape, np.random.default_rng([seed, _ANATOMY_STREAM]))
    truth = None
    if lesion_params is not None:
        truth = place_lesion(geometry, shape, labels, lesion_params, np.random.default_rng([seed, _LESION_STREAM]))
    return PhantomAnatomy(geometry=geometry, size_xyz=preset.size_xyz, shape=shape, labels=labels, lesion=truth)


def lesion_json(lesion: LesionTruth | None) -> dict[str, Any] | None:
    """The realised lesion as JSON (compartment keys as strings "1".."3")."""
    if lesion is None:
        return None
    payload = asdict(lesion)
    payload["centre_lps_mm"] = list(lesion.centre_lps_mm)
    payload["compartment_fractions"] = {str(k): v for k, v in lesion.compartment_fractions.items()}
    payload["compartment_volumes_ml"] = {str(k): v for k, v in lesion.compartment_volumes_ml.items()}
    return payload


def _curves_json(preset: SizePreset) -> dict[str, Any]:
    times = preset.time_since_injection_s
    tissues = {
        tissue.name.lower(): {
            "label": int(tissue),
            "s0": kin.s0,
            **kin.curve.as_dict(),
            "relative_enhancement": [kin.curve(t) for t in times],
        }
        for tissue, kin in TISSUE_KINETICS.items()
    }
    last = preset.n_phases - 1
    expected = {}
    for code, name in COMPARTMENT_NAMES.items():
        params = kinetic_parameters(compartment_curve(code, times), preset.phase_times_s, 1, last)
        expected[str(code)] = {"name": name, **asdict(params)}
    return {
        "model": "E(t) = A * (1 - exp(-t/tau_in)) * exp(-t/tau_out) for t > 0 s after injection; S = S0 * (1 + E)",
        "tissues": tissues,
        "expected_kinetics": {
            "definition": "S0 = phase 0, S1 = phase 1, S2 = last phase, noise- and bias-free; "
            "PE = (S1-S0)/S0*100, SER = (S1-S0)/(S2-S0), WIS = (S1-S0)/(t1-t0), WOS = (S1-S2)/(t2-t1)",
            "compartments": expected,
        },
    }


def generate_study(
    out_dir: Path,
    size: str = "small",
    seed: int = 0,
    layout: str = "per-phase",
    lesion: bool = True,
    necrosis: bool = False,
    *,
    lesion_params: LesionParams | None = None,
    patient_age_years: int | None = None,
    trigger_time: bool = False,
    progress: ProgressCallback | None = None,
) -> PhantomStudy:
    """Write a synthetic prone breast DCE-MRI study to ``out_dir`` (created; must be empty).

    ``lesion_params`` (takes precedence over ``necrosis``) sets the lesion radius, side, compartment
    fractions and necrosis; ``lesion=False`` writes a lesion-free study. ``trigger_time=False`` omits
    TriggerTime (strictly standard-conformant files, see :class:`.dicom_writer.DceTiming`). ``progress`` is
    called after each DICOM file with (files_done, files_total).
    """
    check_seed(seed)
    preset = get_preset(size)
    if layout not in LAYOUTS:
        raise PhantomError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    params = None
    if lesion:
        params = lesion_params if lesion_params is not None else LesionParams(necrosis=necrosis)
        params.validate()
    out_dir = Path(out_dir)
    prepare_output_dir(out_dir)
    anatomy = build_phantom_anatomy(preset, seed, params)
    geometry = anatomy.geometry
    static = static_signal(geometry, anatomy.shape, anatomy.labels, np.random.default_rng([seed, _SIGNAL_STREAM]))
    times = preset.time_since_injection_s
    identity = StudyIdentity(
        seed=seed,
        uid_key=f"mr/{seed}/{size}/{layout}/{params!r}",
        study_description="MR BREAST DCE (synthetic phantom)",
        patient_age_years=patient_age_years,
    )
    timing = DceTiming(preset.phase_times_s, preset.injection_time_s, trigger_time=trigger_time)
    written = write_mr_series(
        out_dir / "dicom",
        identity,
        geometry,
        timing,
        lambda phase, k: phase_slice(static, anatomy.labels, k, phase, times[phase], seed),
        layout,
        anatomy.size_xyz[2],
        progress,
    )
    ground_truth = write_label_volumes(out_dir / "ground_truth", geometry, anatomy.labels)
    metadata = out_dir / METADATA_NAME
    write_json(
        metadata,
        {
            "format_version": 1,
            "kind": "mr-dce",
            "seed": seed,
            "size": size,
            "layout": layout,
            "n_phases": preset.n_phases,
            "phase_times_s": list(preset.phase_times_s),
            "injection_time_s": preset.injection_time_s,
            "time_since_injection_s": list(times),
            "geometry": geometry_json(geometry, anatomy.size_xyz),
            "series_dirs": [d.relative_to(out_dir).as_posix() for d in written.series_dirs],
            "ground_truth": ground_truth.relative_to(out_dir),
            "lesion": lesion_json(anatomy.lesion),
            "tissue_labels": {str(int(t)): t.name.lower() for t in Tissue},
            "curves": _curves_json(preset),
            "noise_sigma": NOISE_SIGMA,
            "study_instance_uid": identity.study_uid,
        },
    )
    logger.info("phantom study written: size=%s layout=%s files=%d", size, layout, sum(map(len, written.phase_files)))
    return PhantomStudy(
        out_dir=out_dir,
        dicom_dir=out_dir / "dicom",
        series_dirs=written.series_dirs,
        phase_files=written.phase_files,
        phase_times_s=preset.phase_times_s,
        injection_time_s=preset.injection_time_s,
        geometry=geometry,
        size_xyz=anatomy.size_xyz,
        ground_truth=ground_truth,
        metadata_json=metadata,
        lesion=anatomy.lesion,
        seed=seed,
        size=size,
        layout=layout,
        study_instance_uid=identity.study_uid,
    )
