"""Outcome checks shared by every segmentation method: components, border contact, plausible volume.

A segmentation that fails a check is never silently replaced by another mask: the result carries the
matching :class:`Outcome` and a reason, and the orchestrator turns it into NEEDS_REVIEW. Masks are boolean
arrays (z, y, x); volumes are in mL (1 mL = 1000 mm^3).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

BoolArray = npt.NDArray[np.bool_]

#: 26-connectivity, as in :func:`oncohabitat.segmentation.supplied.measure`.
FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


class Outcome(StrEnum):
    """Domain twin of ``SegmentationOutcome`` (proto names without the prefix)."""

    OK = "OK"
    NO_LESION = "NO_LESION"
    MULTIPLE_LESIONS = "MULTIPLE_LESIONS"
    TOUCHES_BORDER = "TOUCHES_BORDER"
    IMPLAUSIBLE_VOLUME = "IMPLAUSIBLE_VOLUME"


@dataclass(frozen=True)
class Qc:
    """Quality numbers of a result: volume (mL), components (26-connected), mean enhancement (%), confidence."""

    volume_ml: float
    component_count: int
    mean_enhancement_pct: float
    confidence: float


@dataclass(frozen=True)
class Verdict:
    """Outcome of the checks and a human-readable reason (empty when OK)."""

    outcome: Outcome
    reason: str = ""


def label_components(mask: BoolArray) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """26-connected component labels (0 = background) and the voxel count of each component 1..n."""
    labels, count = ndimage.label(mask, structure=FULL_CONNECTIVITY)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return labels.astype(np.int32, copy=False), sizes.astype(np.int64)


def touches_border(mask: BoolArray) -> bool:
    """True when the mask has a voxel on any face of the volume."""
    return any(
        bool(np.take(mask, 0, axis=axis).any() or np.take(mask, -1, axis=axis).any()) for axis in range(mask.ndim)
    )


def fill_holes(mask: BoolArray) -> BoolArray:
    """Fill enclosed holes in 3D, then slice by slice along z (cores open at one end in 3D but closed in-plane)."""
    filled = ndimage.binary_fill_holes(mask)
    for k in range(filled.shape[0]):
        if filled[k].any():
            filled[k] = ndimage.binary_fill_holes(filled[k])
    return np.asarray(filled, dtype=bool)


def check_mask(
    mask: BoolArray, voxel_ml: float, min_volume_ml: float, max_volume_ml: float, *, empty_reason: str
) -> Verdict:
    """NO_LESION (empty), TOUCHES_BORDER, IMPLAUSIBLE_VOLUME or OK, checked in that order."""
    voxels = int(np.count_nonzero(mask))
    if voxels == 0:
        return Verdict(Outcome.NO_LESION, empty_reason)
    if touches_border(mask):
        return Verdict(Outcome.TOUCHES_BORDER, "the tumour mask reaches the border of the image volume")
    volume_ml = voxels * voxel_ml
    if not min_volume_ml <= volume_ml <= max_volume_ml:
        return Verdict(
            Outcome.IMPLAUSIBLE_VOLUME,
            f"tumour volume {volume_ml:.2f} mL is outside the plausible range {min_volume_ml:g}-{max_volume_ml:g} mL",
        )
    return Verdict(Outcome.OK)


def mean_enhancement_pct(mask: BoolArray, reference: npt.NDArray[Any], pre: npt.NDArray[Any] | None) -> float:
    """Percentage enhancement of the mean signal in the mask: 100 (mean S_ref - mean S_pre) / mean S_pre.

    0.0 when there is no pre-contrast phase, the mask is empty, or the pre-contrast mean is not positive.
    """
    if pre is None or not mask.any():
        return 0.0
    pre_mean = float(np.mean(pre[mask], dtype=np.float64))
    if pre_mean <= 0.0:
        return 0.0
    return 100.0 * (float(np.mean(reference[mask], dtype=np.float64)) - pre_mean) / pre_mean
