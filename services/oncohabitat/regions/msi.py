"""Multiregional spatial interaction (MSI) matrix and features (Wu et al., Radiology 2018; 288:26-35).

Definitions (they follow the authors' public MATLAB demo; ``L`` is the habitat map, 0 outside the tumour,
1..K habitats, and the neighbourhood is a set of offsets, default the in-plane 8-neighbourhood):

1. Counting: for every tumour voxel v (L(v) >= 1) and every offset o of the neighbourhood, add 1 to
   ``M[L(v), L(v + o)]`` (a neighbour beyond the image counts as 0). Pairs of tumour voxels are thus counted
   in both directions (the habitat block is symmetric); pairs with an outside voxel only from the tumour side.
2. Symmetrisation: ``M[0, 0] = 0`` and ``M[0, j] = M[j, 0]`` for j = 1..K. M is (K+1) x (K+1) and symmetric.
3. GLCM-style features on ``P = M / sum(M)`` with i, j the label values 0..K (MATLAB ``graycoprops``):
   ``msi_contrast = sum P(i,j) (i-j)^2``; ``msi_homogeneity = sum P(i,j) / (1 + |i-j|)``;
   ``msi_energy = sum P(i,j)^2``; ``msi_correlation = sum (i-mu_i)(j-mu_j) P(i,j) / (sigma_i sigma_j)``
   with ``mu_i = sum i P(i,j)``, ``sigma_i^2 = sum (i-mu_i)^2 P(i,j)`` (same for j). When a sigma is 0 the
   correlation is undefined and left out (missing, never NaN).
4. Raw counts scaled by the voxel volume (mm^3): ``msi_count_i_i = M[i,i] * V`` for i = 1..K (diagonal, the
   0-0 cell is always 0 and not reported) and ``msi_count_i_j = M[j,i] * V`` for 0 <= i < j <= K (the lower
   triangle in MATLAB's column order: (1,0), (2,0), ..., (K,0), (2,1), ...).
5. Normalised: ``msi_norm_i_j = M[i,j] / sum(M)`` for the same cells (the sum runs over the full symmetric
   matrix, both triangles).

For K = 3 that is 4 + 3 + 6 + 3 + 6 = 22 features. An empty matrix (no tumour voxel) gives no feature.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt

IntMatrix = npt.NDArray[np.int64]
LabelArray = npt.NDArray[np.integer]

GLCM_NAMES = ("msi_contrast", "msi_homogeneity", "msi_correlation", "msi_energy")


def neighbour_offsets(neighbourhood: str) -> list[tuple[int, int, int]]:
    """Offsets (dz, dy, dx) of a neighbourhood: "2d-4", "2d-8", "3d-6", "3d-18" or "3d-26"."""
    dims, count = neighbourhood.split("-")
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=3) if o != (0, 0, 0)]
    if dims == "2d":
        offsets = [o for o in offsets if o[0] == 0]
    order = {o: sum(abs(c) for c in o) for o in offsets}
    limit = {"4": 1, "8": 2, "6": 1, "18": 2, "26": 3}[count]
    selected = [o for o in offsets if order[o] <= limit]
    return [(o[0], o[1], o[2]) for o in selected]


def msi_matrix(labels: LabelArray, k: int, neighbourhood: str = "2d-8") -> IntMatrix:
    """The symmetric (K+1) x (K+1) MSI count matrix of a habitat map (z, y, x) with values 0..K."""
    size = k + 1
    padded = np.pad(np.asarray(labels, dtype=np.int64), 1, mode="constant", constant_values=0)
    centre = padded[1:-1, 1:-1, 1:-1]
    inside = centre > 0
    source = centre[inside]
    matrix = np.zeros((size, size), dtype=np.int64)
    nz, ny, nx = centre.shape
    for dz, dy, dx in neighbour_offsets(neighbourhood):
        neighbour = padded[1 + dz : 1 + dz + nz, 1 + dy : 1 + dy + ny, 1 + dx : 1 + dx + nx][inside]
        matrix += np.bincount(source * size + neighbour, minlength=size * size).reshape(size, size)
    matrix[0, 0] = 0
    matrix[0, 1:] = matrix[1:, 0]
    return matrix


def _glcm_features(matrix: IntMatrix) -> dict[str, float]:
    p = matrix / matrix.sum()
    i, j = np.indices(p.shape, dtype=np.float64)
    features = {
        "msi_contrast": float((p * (i - j) ** 2).sum()),
        "msi_homogeneity": float((p / (1.0 + np.abs(i - j))).sum()),
        "msi_energy": float((p**2).sum()),
    }
    mu_i, mu_j = (i * p).sum(), (j * p).sum()
    sigma_i = np.sqrt(((i - mu_i) ** 2 * p).sum())
    sigma_j = np.sqrt(((j - mu_j) ** 2 * p).sum())
    if sigma_i > 0 and sigma_j > 0:
        features["msi_correlation"] = float(((i - mu_i) * (j - mu_j) * p).sum() / (sigma_i * sigma_j))
    return features


def msi_cells(k: int) -> list[tuple[int, int]]:
    """Reported cells (i, j): the diagonal 1..K, then i < j in MATLAB's lower-triangle column order."""
    diagonal = [(i, i) for i in range(1, k + 1)]
    off_diagonal = [(col, row) for col in range(k + 1) for row in range(col + 1, k + 1)]
    return diagonal + off_diagonal


def msi_features(matrix: IntMatrix, voxel_volume_mm3: float) -> dict[str, float]:
    """The named MSI features of a count matrix (see the module docstring); {} for an empty matrix."""
    total = int(matrix.sum())
    if total == 0:
        return {}
    k = matrix.shape[0] - 1
    features = _glcm_features(matrix)
    ordered = {name: features[name] for name in GLCM_NAMES if name in features}
    cells = msi_cells(k)
    for i, j in cells:
        ordered[f"msi_count_{i}_{j}"] = float(matrix[j, i]) * voxel_volume_mm3
    for i, j in cells:
        ordered[f"msi_norm_{i}_{j}"] = float(matrix[j, i]) / total
    return ordered
