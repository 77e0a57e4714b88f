"""One cohort patient through load -> segmentation -> regions -> full-extraction features, in this process.

The same library functions as the platform's stages, without gRPC: :mod:`.loading` (study loading),
:mod:`.segment` (segmentation rules), :func:`oncohabitat.regions.build_regions` with the profile the regions
stage would send (:func:`oncohabitat.orchestrator.feature_stages.regions_profile`), and
:func:`oncohabitat.features.full.full_row` on the inputs the features stage would send (phases ``S<index>``,
derived images and label maps on the regions' grid, MSI values, parenchyma mean).

Habitats in ``frozen`` mode (population centroids, ``oncohabitat-train habitats``) read the centroids file the
profile names from the models root (``--models-dir``, the bundle root the regions service uses as its
``models_dir``), verified against the profile's SHA-256 exactly as the regions service does.

:func:`extract_patient` never raises for a patient's own problem: it returns a :class:`PatientResult` holding
either the row or a curated failure reason. A second reader's mask, when given, is extracted the same way
(``reader2``), for the recipes' ICC step.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat.common.errors import DomainError
from oncohabitat.common.volume import Geometry, Volume
from oncohabitat.features.full import full_row
from oncohabitat.features.study import LabelTable, StudyInputs, canonical_regions
from oncohabitat.orchestrator.feature_stages import regions_profile
from oncohabitat.regions import (
    FrozenHabitats,
    PhaseInput,
    build_regions,
    load_frozen_habitats,
    parse_profile,
    select_phases,
)
from oncohabitat.regions.grid import map_mask_to_grid
from oncohabitat.regions.pipeline import RegionsResult
from oncohabitat.regions.profile import RegionProfile
from oncohabitat_training.cohorts import CohortPatient
from oncohabitat_training.extraction.loading import LoadedPhases, PatientError, load_phases, read_image
from oncohabitat_training.extraction.segment import SegmentationOptions, tumour_mask

#: pyradiomics is not thread-safe: patients extracted on threads of one process (a Dask LocalCluster without
#: processes) take turns for the feature step.
_FEATURES_LOCK = threading.Lock()


@dataclass(frozen=True)
class PatientTask:
    """What a worker needs for one patient: its position in the cohort, the patient, the plan and options."""

    position: int
    patient: CohortPatient
    plan: ExtractionPlan
    segmentation: SegmentationOptions = field(default_factory=SegmentationOptions)


@dataclass(frozen=True)
class PatientResult:
    """A patient's row (canonical name -> value, NaN = missing) or its failure; ``seconds`` of wall time."""

    position: int
    patient_id: str
    features: Mapping[str, float] | None = None
    missing: Mapping[str, str] = field(default_factory=dict)
    reader2: Mapping[str, float] | None = None
    method: str = ""
    seconds: float = 0.0
    failure: str | None = None


def phase_inputs(loaded: LoadedPhases) -> list[PhaseInput]:
    """The loaded phases as the regions library takes them (index 0 = pre-contrast)."""
    return [
        PhaseInput(
            "pre" if phase.index == 0 else "post",
            phase.index,
            phase.time_s,
            sitk.GetArrayFromImage(phase.image),
            Geometry.of(phase.image),
        )
        for phase in loaded.phases
    ]


def frozen_habitats(profile: RegionProfile, models_dir: Path | None) -> FrozenHabitats | None:
    """The verified frozen centroids a frozen-mode profile names (None in per-patient mode).

    Raises:
        DomainError: as :func:`oncohabitat.regions.load_frozen_habitats` (no models root, file missing,
            SHA-256 mismatch, malformed file).
    """
    reference = profile.habitats.frozen_centroids
    if not profile.habitats.enabled or profile.habitats.mode != "frozen" or reference is None:
        return None
    return load_frozen_habitats(models_dir, reference)


def _regions(
    plan: ExtractionPlan, phases: list[PhaseInput], mask: sitk.Image, models_dir: Path | None
) -> RegionsResult:
    profile = parse_profile(json.dumps(regions_profile(plan)))
    phase_set = select_phases(phases)
    tumour = map_mask_to_grid(sitk.GetArrayViewFromImage(mask), Geometry.of(mask), phase_set.shape, phase_set.geometry)
    return build_regions(phase_set, tumour, profile, frozen_habitats(profile, models_dir))


def study_inputs(phases: list[PhaseInput], regions: RegionsResult) -> StudyInputs:
    """What the features stage sends for these phases and regions (see the module docstring)."""
    images = {f"S{phase.index}": Volume(phase.array, phase.geometry) for phase in phases}
    geometry = regions.geometry
    images.update({name: Volume(array, geometry) for name, array in regions.derived_images.items()})
    tables = [
        LabelTable(np.asarray(region_map.array, dtype=np.int64), geometry, {e.value: e.name for e in region_map.labels})
        for region_map in regions.maps
    ]
    return StudyInputs(
        images=images,
        regions=canonical_regions(tables),
        msi=dict(regions.msi_features),
        parenchyma_mean=regions.parenchyma_s0_mean,
    )


def _features(
    plan: ExtractionPlan, phases: list[PhaseInput], mask: sitk.Image, models_dir: Path | None
) -> tuple[dict[str, float], dict[str, str]]:
    inputs = study_inputs(phases, _regions(plan, phases, mask, models_dir))
    with _FEATURES_LOCK:
        row, extraction = full_row(plan, inputs)
    return row, {name: missing.reason for name, missing in extraction.missing.items()}


def _run(task: PatientTask) -> PatientResult:
    patient, plan = task.patient, task.plan
    started = time.perf_counter()
    loaded = load_phases(patient)
    supplied = read_image(patient.mask, "mask file") if patient.mask is not None else None
    tumour = tumour_mask(loaded, supplied, patient.seed_mm, task.segmentation)
    phases = phase_inputs(loaded)
    models_dir = task.segmentation.models_dir
    row, missing = _features(plan, phases, tumour.mask, models_dir)
    reader2 = None
    if patient.mask_reader2 is not None:
        second = tumour_mask(loaded, read_image(patient.mask_reader2, "second reader's mask"), None, task.segmentation)
        reader2, _ = _features(plan, phases, second.mask, models_dir)
    return PatientResult(
        task.position,
        patient.patient_id,
        features=row,
        missing=missing,
        reader2=reader2,
        method=tumour.method,
        seconds=time.perf_counter() - started,
    )


def curated_reason(exc: Exception) -> str:
    """A failure reason for the failures file: the error's code and curated message, or its type."""
    if isinstance(exc, PatientError):
        return str(exc)
    if isinstance(exc, DomainError):
        return f"{exc.reason}: {exc.public_message}"
    if isinstance(exc, MemoryError):
        return "OUT_OF_MEMORY: the patient's volumes did not fit in memory"
    return f"INTERNAL_ERROR: {type(exc).__name__}"


def extract_patient(task: PatientTask) -> PatientResult:
    """Extract one patient (see the module docstring); failures come back as results, never as exceptions."""
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    started = time.perf_counter()
    try:
        return _run(task)
    except Exception as exc:  # noqa: BLE001 - every patient failure is isolated and reported, never raised
        return PatientResult(
            task.position,
            task.patient.patient_id,
            seconds=time.perf_counter() - started,
            failure=curated_reason(exc),
        )
