"""One training patient's tumour voxels in habitat feature space: load -> mask -> kinetic maps, in this process.

The steps are the extraction's own (:mod:`oncohabitat_training.extraction`): the patient's phases
(:func:`~oncohabitat_training.extraction.loading.load_phases`), its tumour mask by the segmentation rules
(:func:`~oncohabitat_training.extraction.segment.tumour_mask`: supplied, seeded FCM or the ONNX model), then
:func:`oncohabitat.regions.build_regions` with a *kinetic-only* copy of the region profile
(:func:`kinetic_profile`: kinetics, breast-mask settings and intensity normalisation as written; habitats, MSI,
ring and band off; derived images = the habitat features). The maps are the very float32 maps the regions
service clusters for this profile, and :func:`oncohabitat.regions.voxel_features` reads them as
:func:`oncohabitat.regions.build_habitats` does (tumour voxels in C order, one column per feature).

:func:`patient_voxels` never raises for a patient's own problem: the result holds the matrix or a curated reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from oncohabitat.common.volume import Geometry
from oncohabitat.regions import build_regions, select_phases, voxel_features
from oncohabitat.regions.grid import map_mask_to_grid
from oncohabitat.regions.profile import RegionProfile
from oncohabitat_training.cohorts import CohortPatient
from oncohabitat_training.extraction.loading import load_phases, read_image
from oncohabitat_training.extraction.patient import curated_reason, phase_inputs
from oncohabitat_training.extraction.segment import SegmentationOptions, tumour_mask

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class VoxelTask:
    """One patient to reduce to its tumour voxels: cohort position, patient, region profile (JSON), options."""

    position: int
    patient: CohortPatient
    profile_json: str
    segmentation: SegmentationOptions = field(default_factory=SegmentationOptions)


@dataclass(frozen=True)
class VoxelResult:
    """The (n_voxels, n_features) float64 matrix of a patient's tumour, or its failure; wall time (s)."""

    position: int
    voxels: FloatArray | None = None
    method: str = ""
    seconds: float = 0.0
    failure: str | None = None


def kinetic_profile(profile: RegionProfile) -> RegionProfile:
    """``profile`` reduced to what the habitat features need (see the module docstring)."""
    document = profile.model_dump(mode="json")
    document |= {
        # the breast mask only matters here for the parenchyma normalisation
        "breast": {**document["breast"], "enabled": profile.intensity_normalisation != "none"},
        "ring_width_mm": None,
        "stroma_width_mm": None,
        "habitats": {"enabled": False},
        "msi": {"enabled": False},
        "derived_images": list(profile.habitats.features),
        "statistics_images": [],
        "output_grid": "crop",
    }
    return RegionProfile.model_validate(document)


def _run(task: VoxelTask) -> VoxelResult:
    started = time.perf_counter()
    patient = task.patient
    profile = RegionProfile.model_validate_json(task.profile_json)
    loaded = load_phases(patient)
    supplied = read_image(patient.mask, "mask file") if patient.mask is not None else None
    mask = tumour_mask(loaded, supplied, patient.seed_mm, task.segmentation)
    phase_set = select_phases(phase_inputs(loaded))
    tumour = map_mask_to_grid(
        sitk.GetArrayViewFromImage(mask.mask), Geometry.of(mask.mask), phase_set.shape, phase_set.geometry
    )
    regions = build_regions(phase_set, tumour, kinetic_profile(profile))
    voxels = voxel_features(tumour[regions.box.slices], regions.derived_images, list(profile.habitats.features))
    return VoxelResult(task.position, voxels, mask.method, time.perf_counter() - started)


def patient_voxels(task: VoxelTask) -> VoxelResult:
    """The patient's tumour voxels (see the module docstring); failures come back as results."""
    started = time.perf_counter()
    try:
        return _run(task)
    except Exception as exc:  # noqa: BLE001 - every patient failure is isolated and reported, never raised
        return VoxelResult(task.position, seconds=time.perf_counter() - started, failure=curated_reason(exc))
