"""Clustering primitives of the habitats (scikit-learn): scalers, k-means, choice of K, perfusion order.

Points are rows of a (n, n_features) float64 matrix. Everything is deterministic: k-means runs with a fixed
``n_init`` and ``random_state``, nearest-centroid ties go to the lower habitat number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.cluster import KMeans
from sklearn.metrics import calinski_harabasz_score, pairwise_distances_argmin, silhouette_score
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Points used by the silhouette criterion (a fixed random subset above this size).
SILHOUETTE_SAMPLE = 3000


@dataclass(frozen=True)
class AffineScaler:
    """``scaled = (x - center) / scale`` per feature; a zero spread is replaced by 1 (as scikit-learn does)."""

    kind: str
    center: FloatArray
    scale: FloatArray

    def transform(self, points: FloatArray) -> FloatArray:
        """Scale (n, n_features) points."""
        return np.asarray((points - self.center) / self.scale, dtype=np.float64)

    def inverse(self, points: FloatArray) -> FloatArray:
        """Back to feature units."""
        return np.asarray(points * self.scale + self.center, dtype=np.float64)


def fit_scaler(kind: str, points: FloatArray) -> AffineScaler:
    """Fit a scaler of ``kind`` ("zscore", "minmax", "robust" or "none") with scikit-learn."""
    n_features = points.shape[1]
    if kind == "none":
        return AffineScaler(kind, np.zeros(n_features), np.ones(n_features))
    if kind == "zscore":
        standard = StandardScaler().fit(points)
        return AffineScaler(kind, np.asarray(standard.mean_), np.asarray(standard.scale_))
    if kind == "minmax":
        minmax = MinMaxScaler().fit(points)
        spread = np.asarray(minmax.data_range_, dtype=np.float64)
        return AffineScaler(kind, np.asarray(minmax.data_min_), np.where(spread > 0, spread, 1.0))
    if kind == "robust":
        robust = RobustScaler().fit(points)
        return AffineScaler(kind, np.asarray(robust.center_), np.asarray(robust.scale_))
    raise ValueError(f"unknown scaler {kind!r}")


def kmeans(
    points: FloatArray, k: int, n_init: int, random_state: int, weights: FloatArray | None = None
) -> tuple[IntArray, FloatArray]:
    """k-means labels (0..k-1) and centroids (k, n_features); ``weights`` are per-point sample weights."""
    model = KMeans(n_clusters=k, n_init=n_init, random_state=random_state)
    labels = model.fit_predict(points, sample_weight=weights)
    return np.asarray(labels, dtype=np.int64), np.asarray(model.cluster_centers_, dtype=np.float64)


def criterion_score(points: FloatArray, labels: IntArray, criterion: str, random_state: int) -> float:
    """Calinski-Harabasz index or mean silhouette (sampled above :data:`SILHOUETTE_SAMPLE` points)."""
    if len(np.unique(labels)) < 2:
        return -np.inf
    if criterion == "calinski_harabasz":
        return float(calinski_harabasz_score(points, labels))
    sample = min(len(points), SILHOUETTE_SAMPLE)
    return float(silhouette_score(points, labels, sample_size=sample, random_state=random_state))


def choose_k(
    points: FloatArray,
    k_range: tuple[int, int],
    criterion: str,
    n_init: int,
    random_state: int,
    weights: FloatArray | None = None,
) -> tuple[int, IntArray, FloatArray]:
    """Best K in ``k_range`` (inclusive) by ``criterion`` (higher is better; ties keep the smaller K).

    Returns K with its labels and centroids. Criteria are computed on unweighted points.
    """
    best: tuple[float, int, IntArray, FloatArray] | None = None
    low, high = k_range
    for k in range(low, min(high, len(points) - 1) + 1):
        labels, centroids = kmeans(points, k, n_init, random_state, weights)
        score = criterion_score(points, labels, criterion, random_state)
        if best is None or score > best[0]:
            best = (score, k, labels, centroids)
    if best is None:
        labels, centroids = kmeans(points, low, n_init, random_state, weights)
        return low, labels, centroids
    return best[1], best[2], best[3]


def perfusion_order(points: FloatArray, centroids: FloatArray, weights: FloatArray | None = None) -> IntArray:
    """Permutation sorting centroids from least to most perfused.

    Score of a centroid = sum over features of its z-score relative to the points' (weighted) mean and
    standard deviation, every feature counting as "higher = more perfused" (true of WIS, WOS, SER, PE).
    Ties are broken by the centroid coordinates (lexicographic), so the order is fully deterministic.
    """
    mean = np.average(points, axis=0, weights=weights)
    spread = np.sqrt(np.average((points - mean) ** 2, axis=0, weights=weights))
    spread = np.where(spread > 0, spread, 1.0)
    scores = ((centroids - mean) / spread).sum(axis=1)
    keys = [*(centroids[:, j] for j in reversed(range(centroids.shape[1]))), scores]
    return np.asarray(np.lexsort(keys), dtype=np.int64)


def relabel(labels: IntArray, order: IntArray) -> IntArray:
    """Map cluster ``order[i]`` to rank ``i`` for every point label."""
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return np.asarray(rank[labels], dtype=np.int64)


def nearest_centroid(points: FloatArray, centroids: FloatArray) -> IntArray:
    """Index of the nearest centroid (Euclidean) of every point; ties go to the lower index."""
    return np.asarray(pairwise_distances_argmin(points, centroids), dtype=np.int64)
