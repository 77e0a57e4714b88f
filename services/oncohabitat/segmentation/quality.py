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


def bounding_box(mask: BoolArray, margin: int = 0) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding every voxel of ``mask``, grown by ``margin`` voxels per side
    (clipped to the array); None for an empty mask."""
    box = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hits.size == 0:
            return None
        box.append(slice(max(0, int(hits[0]) - margin), min(mask.shape[axis], int(hits[-1]) + margin + 1)))
    return tuple(box)


def label_components(mask: BoolArray) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """26-connected component labels (0 = background) and the voxel count of each component 1..n.

    Labelled inside the mask's bounding box: the same labels (numbered in scan order) as over the whole array.
    """
    sizes, box, labels_in_box = _components_in_box(mask)
    labels = np.zeros(mask.shape, dtype=np.int32)
    if box is not None:
        labels[box] = labels_in_box
    return labels, sizes


def component_sizes(mask: BoolArray) -> npt.NDArray[np.int64]:
    """Voxel count of each 26-connected component 1..n (as :func:`label_components`, without the label map)."""
    return _components_in_box(mask)[0]


def _components_in_box(
    mask: BoolArray,
) -> tuple[npt.NDArray[np.int64], tuple[slice, ...] | None, npt.NDArray[np.int32]]:
    box = bounding_box(mask)
    if box is None:
        return np.zeros(0, dtype=np.int64), None, np.zeros((0,) * mask.ndim, dtype=np.int32)
    labels, count = ndimage.label(mask[box], structure=FULL_CONNECTIVITY)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return sizes.astype(np.int64), box, labels.astype(np.int32, copy=False)


def touches_border(mask: BoolArray) -> bool:
    """True when the mask has a voxel on any face of the volume."""
    return any(
        bool(np.take(mask, 0, axis=axis).any() or np.take(mask, -1, axis=axis).any()) for axis in range(mask.ndim)
    )


def fill_holes(mask: BoolArray) -> BoolArray:
    """Fill enclosed holes in 3D, then slice by slice along z (cores open at one end in 3D but closed in-plane).

    Done inside the mask's bounding box grown by one background voxel (or up to the array's edge), which
    gives the same result as over the whole array: background outside the box always reaches the edge.
    """
    result = np.zeros(mask.shape, dtype=bool)
    box = bounding_box(mask, margin=1)
    if box is None:
        return result
    filled = ndimage.binary_fill_holes(mask[box])
    for k in range(filled.shape[0]):
        if filled[k].any():
            filled[k] = ndimage.binary_fill_holes(filled[k])
    result[box] = filled
    return result


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
