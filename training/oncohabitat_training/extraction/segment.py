"""The tumour mask of a cohort patient on the reference phase's grid, by the segmentation service's rules.

Precedence (as :mod:`oncohabitat.segmentation`): a supplied mask (the cohort file's ``mask``, else a RTSTRUCT /
SEG in the DICOM folder) resampled nearest-neighbour onto the reference grid
(:func:`~oncohabitat.segmentation.supplied.to_reference_grid`); else seeded spatial fuzzy c-means from the seed
point (LPS, mm); else the automatic ONNX model of the segmentation profile (needs a models folder). The
reference phase is the first post-contrast phase. A failed segmentation check is a patient failure with the
segmentation outcome as reason, never a substitute mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from oncohabitat.common.phases import StudyPhases, choose_reference
from oncohabitat.segmentation.profiles import PROFILES_FILE_NAME, Profile, ProfileSet
from oncohabitat.segmentation.quality import Outcome
from oncohabitat.segmentation.segmenter import Segmenter
from oncohabitat.segmentation.supplied import to_reference_grid
from oncohabitat_training.extraction.loading import LoadedPhases, PatientError


@dataclass(frozen=True)
class SegmentationOptions:
    """The models root: automatic segmentation's bundles and profiles (``models_dir/segmentation/profiles.json``);
    extraction also reads a frozen-mode profile's centroids file under it."""

    models_dir: Path | None = None
    profile: str = ""


@dataclass(frozen=True)
class TumourMask:
    """The mask (uint8 on the reference grid) and the method that made it (``supplied``, ``seeded-fcm``, ``onnx``)."""

    mask: sitk.Image
    method: str


@lru_cache(maxsize=4)
def _segmenter(models_dir: Path | None) -> Segmenter:
    """One segmenter per process and models folder (ONNX sessions are loaded once)."""
    if models_dir is None:
        return Segmenter(ProfileSet(default="default", profiles={"default": Profile()}), {})
    return Segmenter.load(models_dir, models_dir / "segmentation" / PROFILES_FILE_NAME)


def study_phases(loaded: LoadedPhases) -> StudyPhases:
    """The phases as the segmentation methods see them (reference = first post-contrast phase)."""
    images = {phase.index: phase.image for phase in loaded.phases}
    reference = choose_reference(sorted(images), False, None)
    return StudyPhases(images=images, reference_index=reference, pre_index=0 if 0 in images else None)


def _supplied(mask: sitk.Image, phases: StudyPhases, method: str) -> TumourMask:
    on_grid, _ = to_reference_grid(mask, phases.reference)
    if not np.any(sitk.GetArrayViewFromImage(on_grid)):
        raise PatientError("MASK_EMPTY", "the supplied mask has no voxel on the reference grid")
    return TumourMask(on_grid, method)


def tumour_mask(
    loaded: LoadedPhases,
    supplied: sitk.Image | None,
    seed_mm: tuple[float, float, float] | None,
    options: SegmentationOptions,
) -> TumourMask:
    """The patient's tumour mask (see the module docstring).

    Raises:
        PatientError: empty supplied mask, failed segmentation check, no method available.
    """
    phases = study_phases(loaded)
    if supplied is not None:
        return _supplied(supplied, phases, "supplied")
    if loaded.dicom_mask is not None:
        return _supplied(loaded.dicom_mask, phases, "supplied-dicom")
    if seed_mm is None and options.models_dir is None:
        raise PatientError(
            "NO_SEGMENTATION_METHOD", "no mask, no seed point and no segmentation models folder (--models-dir)"
        )
    result = _segmenter(options.models_dir).segment(phases, options.profile, seed_mm)
    if result.outcome != Outcome.OK:
        raise PatientError(f"SEGMENTATION_{result.outcome.name}", result.reason)
    return TumourMask(result.mask, result.method)
