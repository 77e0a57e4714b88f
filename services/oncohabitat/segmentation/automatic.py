"""Automatic segmentation with an ONNX bundle: prepare -> sliding window -> back to the reference grid ->
candidate lesions -> selection.

The probability map (coarse target grid) is resampled linearly onto the part of the reference grid the crop
covers and thresholded there, so boundaries are placed at the reference resolution. Candidates are
26-connected components of at least ``min_component_ml``; ``largest`` keeps the largest one unless another
reaches ``multiple_lesion_ratio`` of its volume, in which case every candidate is returned for review
(MULTIPLE_LESIONS). Arrays are (z, y, x).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from oncohabitat.segmentation.method_output import MethodOutput
from oncohabitat.segmentation.onnx_model import OnnxSegmentationModel
from oncohabitat.segmentation.preprocess import prepare
from oncohabitat.segmentation.quality import Outcome, Verdict, fill_holes, label_components
from oncohabitat.segmentation.sliding_window import sliding_window

logger = logging.getLogger(__name__)


def covered_region(reference: sitk.Image, grid: sitk.Image) -> tuple[list[int], list[int]]:
    """(start, size) in (x, y, z) reference indices of the box of reference voxels ``grid`` covers."""
    lows, highs = [], []
    for corner in np.ndindex(2, 2, 2):
        index = [(-0.5 if bit == 0 else n - 0.5) for bit, n in zip(corner, grid.GetSize(), strict=True)]
        point = grid.TransformContinuousIndexToPhysicalPoint(index)
        position = reference.TransformPhysicalPointToContinuousIndex(point)
        lows.append(position)
        highs.append(position)
    low = np.min(np.asarray(lows), axis=0)
    high = np.max(np.asarray(highs), axis=0)
    start = [max(0, math.floor(v + 0.5)) for v in low]
    stop = [min(n, math.ceil(v - 0.5) + 1) for v, n in zip(high, reference.GetSize(), strict=True)]
    return start, [max(0, b - a) for a, b in zip(start, stop, strict=True)]


def probability_on_reference(
    probability: npt.NDArray[np.float32], grid: sitk.Image, reference: sitk.Image
) -> tuple[npt.NDArray[np.float32], tuple[slice, slice, slice]]:
    """Probability (coarse ``grid``) resampled linearly onto the covered reference region, and that region."""
    image = sitk.GetImageFromArray(probability)
    image.CopyInformation(grid)
    start, size = covered_region(reference, grid)
    origin = reference.TransformIndexToPhysicalPoint(start)
    fine = sitk.Resample(
        image,
        size,
        sitk.Transform(),
        sitk.sitkLinear,
        origin,
        reference.GetSpacing(),
        reference.GetDirection(),
        0.0,
        sitk.sitkFloat32,
    )
    region = (
        slice(start[2], start[2] + size[2]),
        slice(start[1], start[1] + size[1]),
        slice(start[0], start[0] + size[0]),
    )
    return sitk.GetArrayFromImage(fine), region


def segment_automatic(
    phases: Mapping[int, sitk.Image], reference_index: int, model: OnnxSegmentationModel
) -> MethodOutput:
    """Tumour mask on the grid of ``phases[reference_index]`` from the bundle's network.

    Raises:
        InvalidInputError: the study lacks a phase the model needs (``PHASES_MISSING``, names them).
    """
    manifest = model.bundle.manifest
    inference, post = manifest.inference, manifest.postprocessing
    reference = phases[reference_index]
    prepared = prepare(phases, reference_index, manifest.preprocessing)
    coarse = sliding_window(prepared.channels, inference.patch_size, inference.overlap, model.predict, inference.blend)
    probability, region = probability_on_reference(coarse, prepared.grid, reference)
    candidate = probability >= inference.threshold
    if post.fill_holes and candidate.any():
        candidate = fill_holes(candidate)
    spacing = reference.GetSpacing()
    voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    labels, sizes = label_components(candidate)
    plausible = [int(i) + 1 for i in np.argsort(sizes)[::-1] if sizes[i] * voxel_ml >= post.min_component_ml]
    details: dict[str, object] = {
        "candidates": len(plausible),
        "discarded_components": int(len(sizes) - len(plausible)),
    }
    full = np.zeros(tuple(reversed(reference.GetSize())), dtype=bool)
    if not plausible:
        empty = Verdict(
            Outcome.NO_LESION,
            f"the model found no lesion (no region of at least {post.min_component_ml:g} mL with probability "
            f">= {inference.threshold:g})",
        )
        return MethodOutput(mask=full, confidence=float(probability.max(initial=0.0)), verdict=empty, details=details)
    largest = sizes[plausible[0] - 1]
    verdict: Verdict | None
    rivals = [label for label in plausible[1:] if sizes[label - 1] >= post.multiple_lesion_ratio * largest]
    if rivals:
        keep = np.isin(labels, plausible)
        volumes = ", ".join(f"{sizes[label - 1] * voxel_ml:.2f}" for label in plausible)
        verdict = Verdict(
            Outcome.MULTIPLE_LESIONS,
            f"{len(plausible)} plausible lesions ({volumes} mL); the largest does not dominate",
        )
    else:
        keep = labels == plausible[0]
        verdict = None
    full[region] = keep
    confidence = float(np.mean(probability[keep], dtype=np.float64))
    return MethodOutput(mask=full, confidence=confidence, verdict=verdict, details=details)
