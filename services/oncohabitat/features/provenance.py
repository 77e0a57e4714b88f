"""Provenance of a feature extraction: library versions and content hashes of the inputs."""

from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import SimpleITK as sitk

from oncohabitat.bundles.hashing import canonical_json


def image_sha256(image: sitk.Image) -> str:
    """SHA-256 identifying an image's voxels *and* geometry.

    Hashes the canonical JSON of a header (SimpleITK pixel type, components per pixel, numpy dtype,
    array shape in (z, y, x) order, spacing and origin in mm and the direction matrix in SimpleITK's
    (x, y, z) convention), a newline, then the voxels as little-endian C-order bytes of the (z, y, x) array.
    Two images with equal voxels but different placement in space therefore hash differently.
    """
    array = sitk.GetArrayViewFromImage(image)
    little_endian = array.dtype.newbyteorder("<")
    header = {
        "pixel_type": image.GetPixelIDTypeAsString(),
        "components": image.GetNumberOfComponentsPerPixel(),
        "dtype": little_endian.str,
        "shape_zyx": list(array.shape),
        "spacing_xyz": list(image.GetSpacing()),
        "origin_xyz": list(image.GetOrigin()),
        "direction": list(image.GetDirection()),
    }
    digest = hashlib.sha256(canonical_json(header).encode("utf-8"))
    digest.update(b"\n")
    digest.update(np.ascontiguousarray(array, dtype=little_endian).tobytes())
    return digest.hexdigest()


def _distribution_version(distribution: str, fallback: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return fallback


def component_versions() -> dict[str, str]:
    """Versions of the libraries that determine feature values: pyradiomics, SimpleITK, numpy."""
    import radiomics  # deferred: pyradiomics is heavy and only the features service carries it

    return {
        "pyradiomics": str(radiomics.__version__).removeprefix("v"),
        "SimpleITK": sitk.__version__,
        "numpy": np.__version__,
        "oncohabitat": _distribution_version("oncohabitat", "unknown"),
    }
