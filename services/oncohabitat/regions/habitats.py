"""Tumour habitats: voxel features -> scaling -> clustering into K perfusion-ordered habitats.

Modes (:class:`~oncohabitat.regions.profile.HabitatSettings`):

* ``per_patient``: the scaler is fitted on this tumour's voxels, k-means (scikit-learn, fixed ``n_init`` and
  ``random_state``) runs with K fixed or the best K of ``k_range`` by Calinski-Harabasz or silhouette; the
  clusters are renumbered by :func:`~oncohabitat.regions.clustering.perfusion_order`, so habitat 1 is the
  least and habitat K the most perfused (seed 001: WIS, WOS, SER and PE increase from 1 to K);
* ``frozen``: scaler and centroids come from a verified bundle file (:mod:`oncohabitat.regions.frozen`); each
  voxel goes to the nearest centroid, whose number it takes;
* either, with ``supervoxels``: the tumour is first over-segmented by k-means on the scaled features and the
  voxel positions (mm / ``spatial_scale_mm``); the supervoxel mean features (weighted by size) are then
  clustered (per patient) or assigned to the frozen centroids, and every voxel takes its supervoxel's habitat.

Size rule: a habitat with fewer than ``min_voxels`` voxels or less than ``min_volume_ml`` is *undersized*. The
habitat map keeps every tumour voxel's assignment (it stays an exact partition, and MSI counts use it), but an
undersized or empty habitat is left out of the label table and its statistics carry no mean values: anything
computed from it downstream is missing, never a value from a handful of voxels. A tumour with fewer voxels
than twice the (smallest) K is not clustered at all: the map is all zero and every habitat is undersized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.regions import errors
from oncohabitat.regions.clustering import (
    FloatArray,
    IntArray,
    choose_k,
    fit_scaler,
    kmeans,
    nearest_centroid,
    perfusion_order,
    relabel,
)
from oncohabitat.regions.frozen import FrozenHabitats
from oncohabitat.regions.profile import HabitatSettings

BoolArray = npt.NDArray[np.bool_]
LabelArray = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class HabitatResult:
    """Habitat map (z, y, x; 0 outside the tumour, 1..K inside) with per-habitat counts and validity."""

    labels: LabelArray
    k: int
    counts: tuple[int, ...]
    valid: tuple[bool, ...]
    clustered: bool

    def habitat_mask(self, habitat: int) -> BoolArray:
        """Voxels of habitat ``habitat`` (1..K)."""
        return np.asarray(self.labels == habitat)


def voxel_features(tumour: BoolArray, maps: Mapping[str, npt.NDArray[np.floating]], features: list[str]) -> FloatArray:
    """(n_tumour_voxels, n_features) float64 matrix, voxels in C order, columns in ``features`` order."""
    return np.stack([np.asarray(maps[name][tumour], dtype=np.float64) for name in features], axis=1)


def _supervoxels(
    scaled: FloatArray, positions_mm: FloatArray, settings: HabitatSettings
) -> tuple[IntArray, FloatArray, FloatArray]:
    """Supervoxel label of every voxel, supervoxel mean (scaled) features and sizes."""
    assert settings.supervoxels is not None
    n_segments = max(2, min(settings.supervoxels.n_segments, len(scaled) // 5))
    joint = np.hstack([scaled, positions_mm / settings.supervoxels.spatial_scale_mm])
    segment, _ = kmeans(joint, n_segments, settings.n_init, settings.random_state)
    sizes = np.bincount(segment, minlength=n_segments).astype(np.float64)
    present = sizes > 0
    sums = np.stack([np.bincount(segment, weights=scaled[:, j], minlength=n_segments) for j in range(scaled.shape[1])])
    means = np.asarray(sums.T[present] / sizes[present, None], dtype=np.float64)
    remap = np.cumsum(present) - 1
    return np.asarray(remap[segment], dtype=np.int64), means, sizes[present]


def _per_patient(points: FloatArray, weights: FloatArray | None, settings: HabitatSettings) -> tuple[int, IntArray]:
    if settings.k is not None:
        k = settings.k
        labels, centroids = kmeans(points, k, settings.n_init, settings.random_state, weights)
    else:
        assert settings.k_range is not None
        k, labels, centroids = choose_k(
            points, settings.k_range, settings.criterion, settings.n_init, settings.random_state, weights
        )
    return k, relabel(labels, perfusion_order(points, centroids, weights))


def _minimum_k(settings: HabitatSettings, frozen: FrozenHabitats | None) -> int:
    if frozen is not None:
        return frozen.k
    if settings.k is not None:
        return settings.k
    assert settings.k_range is not None
    return settings.k_range[0]


def _check_frozen(settings: HabitatSettings, frozen: FrozenHabitats) -> None:
    if list(frozen.features) != settings.features:
        raise InvalidInputError(
            errors.CENTROIDS_INVALID,
            f"frozen centroids are for features {list(frozen.features)}, the profile uses {settings.features}",
            "habitats.features",
        )
    if settings.k is not None and settings.k != frozen.k:
        raise InvalidInputError(
            errors.CENTROIDS_INVALID, f"frozen centroids hold K = {frozen.k}, the profile says {settings.k}", "k"
        )


def build_habitats(
    tumour: BoolArray,
    maps: Mapping[str, npt.NDArray[np.floating]],
    settings: HabitatSettings,
    spacing_zyx: tuple[float, float, float],
    frozen: FrozenHabitats | None = None,
) -> HabitatResult:
    """Habitat map of ``tumour`` from the feature ``maps`` (same shape), see the module docstring.

    Raises:
        InvalidInputError: ``CENTROIDS_INVALID`` when frozen centroids do not fit the profile.
    """
    if settings.mode == "frozen":
        if frozen is None:
            raise InvalidInputError(errors.CENTROIDS_INVALID, "frozen mode without centroids", "frozen_centroids")
        _check_frozen(settings, frozen)
    active = frozen if settings.mode == "frozen" else None
    raw = voxel_features(tumour, maps, settings.features)
    labels = np.zeros(tumour.shape, dtype=np.uint8)
    min_k = _minimum_k(settings, active)
    if len(raw) < 2 * min_k:
        return HabitatResult(labels, min_k, (0,) * min_k, (False,) * min_k, clustered=False)
    scaler = active.scaler if active is not None else fit_scaler(settings.scaler, raw)
    scaled = scaler.transform(raw)
    points, weights, segment = scaled, None, None
    if settings.supervoxels is not None:
        positions = np.argwhere(tumour).astype(np.float64) * np.asarray(spacing_zyx)
        segment, points, weights = _supervoxels(scaled, positions, settings)
    if active is not None:
        k, assigned = active.k, nearest_centroid(points, active.centroids)
    else:
        k, assigned = _per_patient(points, weights, settings)
    per_voxel = assigned[segment] if segment is not None else assigned
    labels[tumour] = (per_voxel + 1).astype(np.uint8)
    counts = np.bincount(per_voxel, minlength=k)[:k]
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    valid = tuple(bool(c >= settings.min_voxels and c * voxel_ml >= settings.min_volume_ml) for c in counts)
    return HabitatResult(labels, k, tuple(int(c) for c in counts), valid, clustered=True)
