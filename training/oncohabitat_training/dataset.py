"""Cohort cases -> network inputs with the service's own preprocessing, and random training patches.

:func:`prepare_case` calls :func:`oncohabitat.segmentation.preprocess.prepare`, the function the service runs
at inference, so crop, resampling and normalisation cannot drift apart. The mask is resampled onto the same
cropped target grid exactly like an image (anti-aliasing + linear), giving *soft* targets: the fraction of
each coarse voxel inside the tumour. Trained on them, the network predicts partial-volume probabilities, so
the service's linear upsampling + 0.5 threshold places boundaries below the coarse voxel size.
Arrays are (channel, z, y, x) / (z, y, x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from oncohabitat.segmentation.model_bundle import PreprocessingSpec
from oncohabitat.segmentation.preprocess import prepare, resample_onto
from oncohabitat_training.cohort import CohortCase

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class PreparedCase:
    """Network input (C, z, y, x) and soft target (z, y, x, tumour fraction 0-1) on the cropped target grid."""

    case_id: str
    channels: FloatArray
    target: FloatArray


def load_phases(case: CohortCase) -> dict[int, sitk.Image]:
    """The case's phases, each resampled (linear) onto phase 1's grid when it differs (reference grid)."""
    images = {phase: sitk.ReadImage(str(path)) for phase, path in case.phases.items()}
    reference = images[min(p for p in images if p >= 1)] if any(p >= 1 for p in images) else images[0]
    for phase, image in images.items():
        if image.GetSize() != reference.GetSize() or image.GetSpacing() != reference.GetSpacing():
            images[phase] = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
        else:
            image.CopyInformation(reference)
    return images


def prepare_case(case: CohortCase, spec: PreprocessingSpec, reference_index: int = 1) -> PreparedCase:
    """Input and target of one case, exactly as the service would prepare the study."""
    phases = load_phases(case)
    prepared = prepare(phases, reference_index, spec)
    mask = sitk.Cast(sitk.NotEqual(sitk.ReadImage(str(case.mask)), 0), sitk.sitkFloat32)
    target = np.clip(resample_onto(mask, prepared.grid), 0.0, 1.0).astype(np.float32)
    return PreparedCase(case_id=case.case_id, channels=prepared.channels, target=target)


def _padded(array: FloatArray, shape: tuple[int, ...]) -> FloatArray:
    """Zero-pad the trailing three axes of ``array`` up to ``shape`` (z, y, x) where smaller."""
    pads = [(0, 0)] * (array.ndim - 3) + [(0, max(0, s - n)) for n, s in zip(array.shape[-3:], shape, strict=True)]
    return np.pad(array, pads) if any(p[1] for p in pads) else array


class PatchSampler:
    """Random patches: ``lesion_fraction`` of them centred near a tumour voxel, the rest anywhere.

    Augmentation: random left-right flip (x axis) and a global intensity factor in [0.9, 1.1].
    """

    def __init__(
        self, cases: list[PreparedCase], patch: tuple[int, int, int], lesion_fraction: float, seed: int
    ) -> None:
        if not cases:
            raise ValueError("no training case")
        self._cases = cases
        self._patch = patch
        self._lesion_fraction = lesion_fraction
        self._rng = np.random.default_rng(seed)
        self._lesion_voxels = [np.argwhere(case.target >= 0.5) for case in cases]

    def _one(self) -> tuple[FloatArray, FloatArray]:
        index = int(self._rng.integers(len(self._cases)))
        case, lesion = self._cases[index], self._lesion_voxels[index]
        channels = _padded(case.channels, self._patch)
        target = _padded(case.target, self._patch)
        shape = target.shape
        if len(lesion) and self._rng.random() < self._lesion_fraction:
            centre = lesion[int(self._rng.integers(len(lesion)))] + self._rng.integers(-8, 9, size=3)
            start = [int(np.clip(c - p // 2, 0, n - p)) for c, p, n in zip(centre, self._patch, shape, strict=True)]
        else:
            start = [int(self._rng.integers(0, n - p + 1)) for p, n in zip(self._patch, shape, strict=True)]
        window = tuple(slice(s, s + p) for s, p in zip(start, self._patch, strict=True))
        x = channels[(slice(None), *window)] * np.float32(self._rng.uniform(0.9, 1.1))
        y = target[window][np.newaxis]
        if self._rng.random() < 0.5:
            x, y = x[..., ::-1], y[..., ::-1]
        return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, dtype=np.float32)

    def batch(self, size: int) -> tuple[FloatArray, FloatArray]:
        """(size, C, z, y, x) inputs and (size, 1, z, y, x) targets."""
        pairs = [self._one() for _ in range(size)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
