"""Intensity normalisations of a plan, applied to a whole image before resampling, filters and crops.

- ``none``: the image as delivered (its own pixel type).
- ``zscore``: pyradiomics' own :func:`radiomics.imageoperations.normalizeImage` (``scale``; ``removeOutliers``
  from the plan's settings), i.e. what ``setting.normalize = true`` does inside pyradiomics.
- ``fixed_range`` (seed 002): ``low + (x - min) * (high - low) / (max - min)`` with min and max over the whole
  image as delivered, in float64; a constant image cannot be mapped (refused for that image).
- ``parenchyma_mean`` (seed 004): ``x / m`` in float64, ``m`` = mean of S0 over breast minus tumour
  (:func:`parenchyma_mean`); refused when ``m`` is unknown, not finite or not positive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from oncohabitat.bundles.plan import (
    FixedRangeNormalisation,
    Normalisation,
    ParenchymaMeanNormalisation,
    ZScoreNormalisation,
)


class NormalisationError(ValueError):
    """An image cannot be normalised as the plan says (reported as missing values, with this message)."""


def parenchyma_mean(
    s0: npt.NDArray[np.generic], breast: npt.NDArray[np.bool_], tumour: npt.NDArray[np.bool_]
) -> float | None:
    """Mean of ``s0`` over ``breast & ~tumour`` (all (z, y, x) on one grid), float64; None when that is empty."""
    parenchyma = np.asarray(breast, dtype=bool) & ~np.asarray(tumour, dtype=bool)
    if not parenchyma.any():
        return None
    return float(np.mean(s0[parenchyma], dtype=np.float64))


def _from_array(array: npt.NDArray[np.float64], like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(like)
    return image


def normalise_image(
    image: sitk.Image,
    normalisation: Normalisation,
    settings: Mapping[str, Any],
    parenchyma: float | None,
) -> sitk.Image:
    """The image normalised as the plan says (see the module docstring).

    Raises:
        NormalisationError: constant image (fixed range), unusable parenchyma mean.
    """
    if isinstance(normalisation, ZScoreNormalisation):
        from radiomics import imageoperations  # deferred: only the feature workers import pyradiomics

        result: sitk.Image = imageoperations.normalizeImage(
            image, normalizeScale=normalisation.scale, removeOutliers=settings.get("removeOutliers")
        )
        return result
    if isinstance(normalisation, FixedRangeNormalisation):
        array = sitk.GetArrayViewFromImage(image).astype(np.float64)
        low, high = float(array.min()), float(array.max())
        if not high > low:
            raise NormalisationError("the image is constant: a fixed range cannot be mapped onto it")
        scaled = normalisation.low + (array - low) * ((normalisation.high - normalisation.low) / (high - low))
        return _from_array(scaled, image)
    if isinstance(normalisation, ParenchymaMeanNormalisation):
        if parenchyma is None or not math.isfinite(parenchyma) or parenchyma <= 0:
            raise NormalisationError("the parenchyma mean is unknown or not positive (no breast parenchyma?)")
        return _from_array(sitk.GetArrayViewFromImage(image).astype(np.float64) / parenchyma, image)
    return image
