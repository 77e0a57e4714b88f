"""The families beyond pyradiomics: kinetic curve statistics, MSI values, region statistics.

- ``<region>/kinetic-<stat>/<feature>``: the pyradiomics feature on every phase S0..SN (in order), then
  ``mean`` (``numpy.mean``), ``variance`` (``numpy.var``, population, ddof = 0), ``skewness``
  (``scipy.stats.skew``, biased) or ``kurtosis`` (``scipy.stats.kurtosis``, Fisher = excess, biased). A curve
  with a missing phase value is missing; skewness and kurtosis of a constant curve are undefined (missing).
- ``tumour/msi/<name>``: the regions service's MSI value (missing when it computed none, e.g. no habitats).
- ``<region>/stats/<name>``: ``voxel_count``, ``volume_ml`` (count x voxel volume of the region's grid, mL),
  ``fraction`` (habitat voxels / tumour voxels), ``mean_<image>`` (float64 mean of the image as delivered, before
  the plan's normalisation, over the region). A value the caller supplied in ``statistics`` is used only when
  the engine lacks the image or region to compute it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats as scipy_stats

from oncohabitat.bundles.canonical import CanonicalName
from oncohabitat.features.study import StudyInputs, region_on_grid

#: (reason code, message) of a missing value.
Missing = tuple[str, str]


def kinetic_statistic(stat: str, curve: Sequence[float]) -> float | Missing:
    """One statistic of a feature's curve over phases (see the module docstring)."""
    values = np.asarray(curve, dtype=np.float64)
    if stat == "mean":
        return float(np.mean(values))
    if stat == "variance":
        return float(np.var(values))
    if values.size < 2 or float(np.ptp(values)) == 0.0 or not np.isfinite(values).all():
        return ("CURVE_UNDEFINED", f"the {stat} of a constant or non-finite curve is undefined")
    if stat == "skewness":
        return float(scipy_stats.skew(values, bias=True))
    return float(scipy_stats.kurtosis(values, fisher=True, bias=True))


def msi_value(parsed: CanonicalName, inputs: StudyInputs) -> float | Missing:
    """An MSI value from the inputs."""
    if parsed.feature in inputs.msi:
        return float(inputs.msi[parsed.feature])
    return ("MSI_UNAVAILABLE", "no MSI value: habitats were not clustered or the matrix lacks this cell")


def stats_value(parsed: CanonicalName, inputs: StudyInputs, roles: dict[str, str]) -> float | Missing:
    """A region statistic computed from the inputs (or supplied by the caller)."""
    region = inputs.regions.get(parsed.region)
    supplied = inputs.statistics.get(parsed.full)
    if region is None:
        if supplied is not None:
            return float(supplied)
        return ("REGION_NOT_PROVIDED", f"region {parsed.region!r} was not delivered")
    count = int(np.count_nonzero(region.mask))
    if parsed.feature == "voxel_count":
        return float(count)
    if parsed.feature == "volume_ml":
        return count * float(np.prod(region.geometry.spacing)) / 1000.0
    if parsed.feature == "fraction":
        tumour = inputs.regions.get("tumour")
        tumour_count = int(np.count_nonzero(tumour.mask)) if tumour is not None else 0
        if tumour_count == 0:
            return ("REGION_EMPTY", "no tumour voxel: a habitat fraction is undefined")
        return count / tumour_count
    image_name = parsed.feature.removeprefix("mean_")
    image = inputs.images.get(roles.get(image_name, image_name))
    if image is None:
        if supplied is not None:
            return float(supplied)
        return ("IMAGE_NOT_PROVIDED", f"image {image_name!r} was not delivered")
    placed = region_on_grid(region, image.geometry, image.array.shape)
    if placed is None:
        return ("REGION_EMPTY", f"region {parsed.region!r} has no voxel")
    if placed.outside:
        return ("REGION_OUTSIDE_IMAGE", f"region {parsed.region!r} extends beyond image {image_name!r}")
    z, y, x = placed.lower
    dz, dy, dx = placed.crop.shape
    values = np.asarray(image.array[z : z + dz, y : y + dy, x : x + dx][placed.crop], dtype=np.float64)
    return float(np.mean(values))
