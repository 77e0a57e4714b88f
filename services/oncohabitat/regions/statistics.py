"""Region statistics: voxel count, volume (mL) and the mean of chosen maps over each region."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class RegionStatistics:
    """Statistics of one region; ``mean_values`` is empty when the region is empty or undersized."""

    region: str
    voxel_count: int
    volume_ml: float
    mean_values: Mapping[str, float] = field(default_factory=dict)


def region_statistics(
    region: str,
    mask: BoolArray,
    voxel_volume_ml: float,
    maps: Mapping[str, npt.NDArray[np.floating]],
    with_means: bool = True,
) -> RegionStatistics:
    """Count, volume and per-map means (float64 accumulation) of ``mask``."""
    count = int(np.count_nonzero(mask))
    means: dict[str, float] = {}
    if with_means and count > 0:
        means = {name: float(np.mean(values[mask], dtype=np.float64)) for name, values in maps.items()}
    return RegionStatistics(region, count, count * voxel_volume_ml, means)
