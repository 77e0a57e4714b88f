"""Provenance helpers: component versions and stable hashes of parameters and inputs."""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np

import oncohabitat
from oncohabitat.v1 import common_pb2

if TYPE_CHECKING:
    # imported by sha256_image only: scoring and the listener do not carry SimpleITK (deploy/README.md)
    import SimpleITK as sitk


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal settings give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def sha256_json(value: Any) -> str:
    """SHA-256 hex of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def sha256_image(image: sitk.Image) -> str:
    """SHA-256 hex over voxels (native little-endian bytes, (z, y, x)), dtype and geometry."""
    import SimpleITK as sitk

    digest = hashlib.sha256()
    array = sitk.GetArrayViewFromImage(image)
    digest.update(str(array.dtype).encode())
    digest.update(repr((array.shape, image.GetSpacing(), image.GetOrigin(), image.GetDirection())).encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def volume_sha256(volume: common_pb2.Volume) -> str:
    """SHA-256 identifying a Volume message's voxels and geometry without re-hashing stored blobs.

    Hashes the canonical JSON of the header (shape (z, y, x), spacing, origin, direction, dtype code and
    the payload's own SHA-256: the blob reference, or the hash of the inline bytes).
    """
    payload = volume.blob.sha256 if volume.WhichOneof("payload") == "blob" else hashlib.sha256(volume.data).hexdigest()
    header = {
        "shape_zyx": list(volume.shape),
        "spacing_xyz": list(volume.spacing),
        "origin_xyz": list(volume.origin),
        "direction": list(volume.direction),
        "dtype": int(volume.dtype),
        "payload_sha256": payload,
    }
    return hashlib.sha256(canonical_json(header).encode()).hexdigest()


def package_version(name: str) -> str:
    """Installed version of a distribution, or ``"not-installed"``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not-installed"


def component_versions(extra_distributions: Iterable[str] = ()) -> list[common_pb2.ComponentVersion]:
    """Versions of the platform, Python and the numerical libraries (plus ``extra_distributions``)."""
    versions = {
        "oncohabitat": oncohabitat.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    # From the distribution's metadata (importing SimpleITK only to report it would load 264 MB), and only
    # where it is installed: the scoring image does not carry it, and the orchestrator merges scoring's
    # components over the features stage's, so a "not-installed" here would hide the version that was used.
    sitk_version = package_version("SimpleITK")
    if sitk_version != "not-installed":
        versions["SimpleITK"] = sitk_version
    for name in extra_distributions:
        versions[name] = package_version(name)
    return [common_pb2.ComponentVersion(name=k, version=v) for k, v in sorted(versions.items())]


def make_provenance(
    *,
    parameter_hashes: Mapping[str, str] | None = None,
    input_hashes: Mapping[str, str] | None = None,
    model_id: str = "",
    model_version: str = "",
    extra_distributions: Iterable[str] = (),
) -> common_pb2.Provenance:
    """A Provenance message for one result."""
    return common_pb2.Provenance(
        components=component_versions(extra_distributions),
        parameter_hashes=dict(parameter_hashes or {}),
        input_hashes=dict(input_hashes or {}),
        model_id=model_id,
        model_version=model_version,
    )
