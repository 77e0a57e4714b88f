"""A cohort patient's DCE phases: from a DICOM folder (the orchestrator's study loading) or NIfTI files.

Phase index 0 is pre-contrast, 1..N post-contrast in acquisition order; ``time_s`` is seconds after the
pre-contrast acquisition. DICOM folders go through :func:`oncohabitat.orchestrator.study_loading.load_study`
(DCE classification, phase assembly on one grid, a RTSTRUCT / SEG in the folder rasterised as supplied mask).
NIfTI phases come with the cohort file's times; a phase on another grid than the pre-contrast phase is resampled
onto it (linear), as the DICOM assembly does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from oncohabitat.dicomio import RoiSelection
from oncohabitat.orchestrator.study_loading import ReviewNeeded, load_study
from oncohabitat.segmentation.supplied import same_grid
from oncohabitat_training.cohorts import CohortPatient


class PatientError(Exception):
    """A patient that cannot be extracted: a stable ``reason`` code and a curated message (no patient data)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class Phase:
    """One DCE phase on the common grid: index (0 = pre-contrast), time (s after phase 0), image."""

    index: int
    time_s: float
    image: sitk.Image


@dataclass(frozen=True)
class LoadedPhases:
    """The phases in index order and the mask found in the DICOM folder (None without one)."""

    phases: tuple[Phase, ...]
    dicom_mask: sitk.Image | None = None


def _dicom(folder: Path, selection: RoiSelection) -> LoadedPhases:
    paths = sorted(path for path in folder.rglob("*") if path.is_file())
    if not paths:
        raise PatientError("NO_IMAGE_FILES", "the DICOM folder holds no file")
    try:
        study = load_study(paths, selection)
    except ReviewNeeded as review:
        raise PatientError(review.reason.partition(":")[0], review.reason.partition(":")[2].strip()) from None
    if not study.phases:
        raise PatientError("NOT_DCE_STUDY", "the DICOM folder holds no dynamic contrast-enhanced study")
    phases = tuple(Phase(p.index, p.time_from_pre_s, p.image) for p in sorted(study.phases, key=lambda p: p.index))
    return LoadedPhases(phases, study.mask.image if study.mask is not None else None)


def read_image(path: Path, what: str) -> sitk.Image:
    """A NIfTI / NRRD / MHA volume; PatientError ``IMAGE_UNREADABLE`` naming ``what`` when it cannot be read."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise PatientError("IMAGE_UNREADABLE", f"the {what} could not be read as an image volume") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise PatientError("IMAGE_INVALID", f"the {what} is not a 3D scalar volume")
    return image


def _nifti(files: tuple[Path, ...], times_s: tuple[float, ...]) -> LoadedPhases:
    phases: list[Phase] = []
    for index, (path, time_s) in enumerate(zip(files, times_s, strict=True)):
        image = read_image(path, f"phase {index} file")
        if phases and not same_grid(image, phases[0].image):
            image = sitk.Resample(image, phases[0].image, sitk.Transform(), sitk.sitkLinear, 0.0, image.GetPixelID())
        elif phases:
            image.CopyInformation(phases[0].image)
        phases.append(Phase(index, float(time_s), image))
    return LoadedPhases(tuple(phases))


def load_phases(patient: CohortPatient, selection: RoiSelection | None = None) -> LoadedPhases:
    """The patient's phases (see the module docstring).

    Raises:
        PatientError: the images cannot be read or are not a DCE study (reason code first).
    """
    if patient.dicom is not None:
        return _dicom(patient.dicom, selection or RoiSelection())
    return _nifti(patient.nifti, patient.times_s)
