"""Evaluate a segmentation bundle on cohort cases through the service's own automatic pipeline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from oncohabitat.segmentation.automatic import segment_automatic
from oncohabitat.segmentation.model_bundle import SegmentationBundle
from oncohabitat.segmentation.onnx_model import OnnxSegmentationModel
from oncohabitat_training.cohort import CohortCase
from oncohabitat_training.dataset import load_phases


def dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    """Dice coefficient of two boolean masks; 1.0 when both are empty."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


@dataclass(frozen=True)
class CaseScore:
    """Dice of one case; ``found_lesion`` False when the pipeline returned an empty mask."""

    case_id: str
    dice: float
    truth_ml: float
    found_lesion: bool


def evaluate(bundle: SegmentationBundle, cases: list[CohortCase], reference_index: int = 1) -> list[CaseScore]:
    """Run :func:`segment_automatic` on each case and compare with its mask (on the reference grid)."""
    model = OnnxSegmentationModel(bundle)
    scores = []
    for case in cases:
        phases = load_phases(case)
        reference = phases[reference_index]
        output = segment_automatic(phases, reference_index, model)
        truth_image = sitk.Resample(
            sitk.ReadImage(str(case.mask)), reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0
        )
        truth = sitk.GetArrayFromImage(truth_image) != 0
        spacing = reference.GetSpacing()
        scores.append(
            CaseScore(
                case_id=case.case_id,
                dice=dice(output.mask, truth),
                truth_ml=float(truth.sum()) * spacing[0] * spacing[1] * spacing[2] / 1000.0,
                found_lesion=bool(output.mask.any()),
            )
        )
    return scores
