"""Population-level habitat centroids frozen at training time and shipped as a bundle file.

File format (JSON, UTF-8)::

    {
      "format": "oncohabitat.habitat-centroids",
      "format_version": 1,
      "features": ["WIS", "WOS", "SER", "PE"],
      "scaler": {"kind": "zscore", "center": [...], "scale": [...]},
      "centroids": [[...], [...], [...]]
    }

``centroids[k - 1]`` is habitat k in *scaled* feature space, already in perfusion order (habitat 1 = least
perfused). New voxels are scaled with the frozen scaler and assigned to the nearest centroid. The profile
names the file (relative to the service's models directory) and its SHA-256; the bytes are hashed before
every use and a mismatch is refused, so a tampered or stale file can never produce habitats.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from oncohabitat.bundles.hashing import sha256_bytes
from oncohabitat.common.errors import InvalidInputError, NotFoundError, PreconditionError
from oncohabitat.regions import errors
from oncohabitat.regions.clustering import AffineScaler, fit_scaler, kmeans, perfusion_order
from oncohabitat.regions.profile import FrozenCentroidsRef

logger = logging.getLogger(__name__)

FORMAT = "oncohabitat.habitat-centroids"
FORMAT_VERSION = 1
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FrozenHabitats:
    """Frozen scaler and centroids (scaled space, perfusion-ordered) for the named features."""

    features: tuple[str, ...]
    scaler: AffineScaler
    centroids: FloatArray

    @property
    def k(self) -> int:
        """Number of habitats."""
        return int(self.centroids.shape[0])

    def to_json(self) -> dict[str, Any]:
        """The file content as a JSON-ready dict."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "features": list(self.features),
            "scaler": {
                "kind": self.scaler.kind,
                "center": [float(v) for v in self.scaler.center],
                "scale": [float(v) for v in self.scaler.scale],
            },
            "centroids": [[float(v) for v in row] for row in self.centroids],
        }

    @classmethod
    def from_json(cls, payload: Any) -> FrozenHabitats:
        """Parse and validate the file content.

        Raises:
            ValueError: malformed content (wrong format, shapes, non-finite or non-positive scales).
        """
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"not an {FORMAT} file")
        if payload.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported format_version {payload.get('format_version')!r}")
        features = payload.get("features")
        if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
            raise ValueError("features must be a non-empty list of names")
        scaler = payload.get("scaler")
        if not isinstance(scaler, dict):
            raise ValueError("scaler must be an object")
        center = np.asarray(scaler.get("center"), dtype=np.float64)
        scale = np.asarray(scaler.get("scale"), dtype=np.float64)
        centroids = np.asarray(payload.get("centroids"), dtype=np.float64)
        n_features = len(features)
        if center.shape != (n_features,) or scale.shape != (n_features,):
            raise ValueError("scaler center/scale must have one value per feature")
        if centroids.ndim != 2 or centroids.shape[1] != n_features or not 2 <= centroids.shape[0] <= 9:
            raise ValueError("centroids must be a (K, n_features) matrix with 2 <= K <= 9")
        if not (np.isfinite(center).all() and np.isfinite(centroids).all() and np.all(scale > 0)):
            raise ValueError("values must be finite and scales positive")
        return cls(tuple(features), AffineScaler(str(scaler.get("kind", "custom")), center, scale), centroids)


def write_frozen_habitats(path: Path, model: FrozenHabitats) -> str:
    """Write the file (canonical, sorted keys) and return its SHA-256 (to record in the profile)."""
    data = (json.dumps(model.to_json(), indent=2, sort_keys=True) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return sha256_bytes(data)


def load_frozen_habitats(models_dir: Path | None, ref: FrozenCentroidsRef) -> FrozenHabitats:
    """Read a frozen-centroids file of a bundle after verifying its SHA-256.

    Raises:
        PreconditionError: ``CENTROIDS_UNAVAILABLE`` (no models directory configured) or
            ``CENTROIDS_HASH_MISMATCH`` (the file's bytes do not hash to ``ref.sha256``).
        NotFoundError: ``CENTROIDS_NOT_FOUND``.
        InvalidInputError: ``CENTROIDS_INVALID`` (path escapes the models directory, malformed content).
    """
    if models_dir is None:
        raise PreconditionError(
            errors.CENTROIDS_UNAVAILABLE, "frozen habitats need a models directory on the regions service", "file"
        )
    root = models_dir.resolve()
    path = (root / ref.file).resolve()
    if not path.is_relative_to(root):
        raise InvalidInputError(errors.CENTROIDS_INVALID, "the centroids path escapes the models directory", "file")
    if not path.is_file():
        raise NotFoundError(errors.CENTROIDS_NOT_FOUND, f"frozen centroids file {ref.file!r} not found", "file")
    data = path.read_bytes()
    digest = sha256_bytes(data)
    if digest != ref.sha256:
        logger.warning("frozen centroids hash mismatch", extra={"file": ref.file})
        raise PreconditionError(
            errors.CENTROIDS_HASH_MISMATCH,
            f"frozen centroids file {ref.file!r} does not match its recorded SHA-256 (tampered or stale); refused",
            "file",
        )
    try:
        return FrozenHabitats.from_json(json.loads(data.decode("utf-8")))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            errors.CENTROIDS_INVALID, f"frozen centroids file {ref.file!r} is malformed: {exc}", "file"
        ) from None


def fit_population_habitats(
    patients: Sequence[FloatArray],
    features: Sequence[str],
    k: int,
    scaler: str = "zscore",
    n_init: int = 10,
    random_state: int = 0,
    max_voxels_per_patient: int | None = 20000,
) -> FrozenHabitats:
    """Training side: pool the tumour voxels of several patients and freeze scaler + centroids.

    Args:
        patients: per patient, a (n_voxels, n_features) matrix of raw voxel features (feature order =
            ``features``), e.g. from :func:`oncohabitat.regions.habitats.voxel_features`.
        k: number of habitats.
        max_voxels_per_patient: voxels drawn per patient (fixed seed) so that large tumours do not dominate.

    Returns:
        The frozen model, centroids in perfusion order.
    """
    rng = np.random.default_rng(random_state)
    pooled = []
    for points in patients:
        if max_voxels_per_patient is not None and len(points) > max_voxels_per_patient:
            points = points[np.sort(rng.choice(len(points), max_voxels_per_patient, replace=False))]
        pooled.append(np.asarray(points, dtype=np.float64))
    raw = np.concatenate(pooled, axis=0)
    fitted = fit_scaler(scaler, raw)
    scaled = fitted.transform(raw)
    _, centroids = kmeans(scaled, k, n_init, random_state)
    order = perfusion_order(scaled, centroids)
    return FrozenHabitats(tuple(features), fitted, centroids[order])
