"""Sliding-window inference over a (channel, z, y, x) volume with overlapping patches and blended outputs.

Only one patch is in the network at a time, so the inference memory depends on the patch size, not on the
study; the accumulators are the size of the (coarse, cropped) input. Volumes smaller than a patch are padded
with zeros (background after normalisation) and the padding is cut off again.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
#: (1, C, pz, py, px) float32 -> (1, 1, pz, py, px) float32 probabilities.
PatchPredictor = Callable[[FloatArray], FloatArray]


def patch_starts(length: int, patch: int, overlap: float) -> list[int]:
    """Start indices of patches of ``patch`` voxels covering ``length`` voxels with at least ``overlap``."""
    if length <= patch:
        return [0]
    stride = max(1, int(patch * (1.0 - overlap)))
    count = math.ceil((length - patch) / stride) + 1
    return sorted({round(i * (length - patch) / (count - 1)) for i in range(count)})


def blend_weights(patch: tuple[int, int, int], mode: str) -> FloatArray:
    """Per-voxel weight of a patch: Gaussian (sigma = 1/8 of the side, centre-weighted) or uniform."""
    if mode == "uniform":
        return np.ones(patch, dtype=np.float32)
    axes = [np.exp(-0.5 * ((np.arange(n) - (n - 1) / 2.0) / (n / 8.0)) ** 2) for n in patch]
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    weights = weights / weights.max()
    return np.maximum(weights, 1e-3).astype(np.float32)


def sliding_window(
    volume: FloatArray,
    patch: tuple[int, int, int],
    overlap: float,
    predict: PatchPredictor,
    blend: str = "gaussian",
) -> FloatArray:
    """Blended probability map (z, y, x) of ``volume`` (C, z, y, x) computed patch by patch."""
    shape = volume.shape[1:]
    padded_shape = tuple(max(n, p) for n, p in zip(shape, patch, strict=True))
    if padded_shape != shape:
        padded = np.zeros((volume.shape[0], *padded_shape), dtype=np.float32)
        padded[:, : shape[0], : shape[1], : shape[2]] = volume
        volume = padded
    weights = blend_weights(patch, blend)
    total = np.zeros(padded_shape, dtype=np.float32)
    norm = np.zeros(padded_shape, dtype=np.float32)
    starts = [patch_starts(n, p, overlap) for n, p in zip(padded_shape, patch, strict=True)]
    for z in starts[0]:
        for y in starts[1]:
            for x in starts[2]:
                window = (slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
                batch = np.ascontiguousarray(volume[(slice(None), *window)][np.newaxis])
                probability = predict(batch)[0, 0]
                total[window] += probability * weights
                norm[window] += weights
    result = total / np.maximum(norm, 1e-6)
    return np.ascontiguousarray(result[: shape[0], : shape[1], : shape[2]])
