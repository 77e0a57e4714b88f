"""Spatial fuzzy c-means (Chuang et al., Comput. Med. Imaging Graph. 30:9-15, 2006) on a 3D scalar image.

Standard FCM on intensities ``x_j`` with ``c`` cluster centres ``v_i`` and fuzziness ``m > 1``::

    u_ij = 1 / sum_k (|x_j - v_i| / |x_j - v_k|) ** (2 / (m - 1))

Spatial step: the spatial function ``h_ij`` averages the memberships of cluster i over a box neighbourhood of
voxel j (``neighbourhood`` voxels per (z, y, x) side, voxel j included), and memberships become::

    u'_ij = u_ij**p * h_ij**q / sum_k u_kj**p * h_kj**q

Centres are then updated from ``u'`` (``v_i = sum_j u'_ij**m x_j / sum_j u'_ij**m``). Neighbours of the same
class reinforce each other, so isolated noisy voxels follow their surroundings. Arrays are (z, y, x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

FloatArray = npt.NDArray[np.float64]
_EPS = 1e-12


@dataclass(frozen=True)
class FcmResult:
    """Memberships (clusters, z, y, x), centres sorted ascending, iterations run and convergence flag."""

    memberships: npt.NDArray[np.float32]
    centres: FloatArray
    iterations: int
    converged: bool

    def hard_labels(self) -> npt.NDArray[np.int8]:
        """Index (0 = lowest centre) of the cluster with the highest membership, per voxel (z, y, x)."""
        return np.argmax(self.memberships, axis=0).astype(np.int8)


def _memberships(x: FloatArray, centres: FloatArray, m: float) -> FloatArray:
    """Classic FCM memberships (clusters, voxels) of the flat data ``x``."""
    distance = np.abs(x[np.newaxis, :] - centres[:, np.newaxis]) + _EPS
    power = distance ** (-2.0 / (m - 1.0))
    return np.asarray(power / power.sum(axis=0, keepdims=True))


def _initial_centres(x: FloatArray, clusters: int) -> FloatArray:
    """Deterministic start: evenly spaced quantiles of the data."""
    quantiles = (np.arange(clusters, dtype=np.float64) + 0.5) / clusters
    return np.asarray(np.quantile(x, quantiles), dtype=np.float64)


def spatial_fcm(
    image: npt.NDArray[np.floating],
    clusters: int = 3,
    fuzziness: float = 2.0,
    neighbourhood: tuple[int, int, int] = (3, 3, 3),
    p: float = 1.0,
    q: float = 1.0,
    max_iterations: int = 60,
    tolerance: float = 1e-3,
) -> FcmResult:
    """Spatial FCM of ``image`` (z, y, x); ``neighbourhood`` is the box size in voxels along (z, y, x).

    ``p`` and ``q`` weight the voxel's own membership and the neighbourhood's; iteration stops when no centre
    moves by more than ``tolerance`` times the data range.

    Raises:
        ValueError: fewer than two clusters, fuzziness <= 1, an even or non-positive neighbourhood, or an
            image with fewer voxels than clusters.
    """
    if clusters < 2:
        raise ValueError("spatial FCM needs at least two clusters")
    if fuzziness <= 1.0:
        raise ValueError("fuzziness must be > 1")
    if any(n < 1 or n % 2 == 0 for n in neighbourhood):
        raise ValueError("neighbourhood must be a positive odd number of voxels")
    data = np.asarray(image, dtype=np.float64)
    if data.size < clusters:
        raise ValueError("the image has fewer voxels than clusters")
    x = data.ravel()
    spread = float(x.max() - x.min()) or 1.0
    centres = _initial_centres(x, clusters)
    converged = False
    iteration = 0
    u = _memberships(x, centres, fuzziness)
    for iteration in range(1, max_iterations + 1):  # noqa: B007 (reported as iterations)
        u = _memberships(x, centres, fuzziness)
        if max(neighbourhood) > 1:
            h = np.stack(
                [
                    ndimage.uniform_filter(u[i].reshape(data.shape), size=neighbourhood, mode="nearest").ravel()
                    for i in range(clusters)
                ]
            )
            weighted = u**p * np.maximum(h, 0.0) ** q
            u = weighted / np.maximum(weighted.sum(axis=0, keepdims=True), _EPS)
        um = u**fuzziness
        updated = (um @ x) / np.maximum(um.sum(axis=1), _EPS)
        shift = float(np.max(np.abs(updated - centres))) / spread
        centres = updated
        if shift < tolerance:
            converged = True
            break
    order = np.argsort(centres)
    memberships = u[order].reshape((clusters, *data.shape)).astype(np.float32)
    return FcmResult(memberships=memberships, centres=centres[order], iterations=iteration, converged=converged)
