"""Segmentation bundles ``<root>/segmentation/<id>/<version>/``, loaded by the one bundle loader.

The schema (:class:`~oncohabitat.bundles.segmentation_manifest.SegmentationManifest`, re-exported here) says
how a study becomes the network's input and how its output becomes a mask. Loading verifies everything
:func:`~oncohabitat.bundles.loader.load_bundle` verifies (schema, layout, every file hash, the root's lock
when it names the bundle); a bundle that does not verify raises
:class:`~oncohabitat.bundles.errors.BundleError` so the service refuses to start (``run_service`` exits 3
with ``cannot start: ...``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oncohabitat.bundles import errors
from oncohabitat.bundles.authoring import write_bundle
from oncohabitat.bundles.errors import BundleError
from oncohabitat.bundles.loader import load_bundle
from oncohabitat.bundles.loader import parse_manifest as parse_any_manifest
from oncohabitat.bundles.manifest import MANIFEST_NAME
from oncohabitat.bundles.registry import read_lock
from oncohabitat.bundles.segmentation_manifest import (
    ChannelSpec,
    CropSpec,
    InferenceSpec,
    NormalisationSpec,
    PostprocessingSpec,
    PreprocessingSpec,
    SegmentationManifest,
)

KIND = "segmentation"

__all__ = [
    "MANIFEST_NAME",
    "ChannelSpec",
    "CropSpec",
    "InferenceSpec",
    "NormalisationSpec",
    "PostprocessingSpec",
    "PreprocessingSpec",
    "SegmentationBundle",
    "SegmentationManifest",
    "load_segmentation_bundle",
    "parse_manifest",
    "write_segmentation_bundle",
]


@dataclass(frozen=True)
class SegmentationBundle:
    """A verified bundle: directory, manifest, SHA-256 of ``manifest.json`` and the model bytes."""

    path: Path
    manifest: SegmentationManifest
    manifest_sha256: str
    model_bytes: bytes

    @property
    def id(self) -> str:
        """Model id, e.g. ``"phantom-unet3d"``."""
        return self.manifest.id

    @property
    def version(self) -> str:
        """Model version (semver)."""
        return self.manifest.version


def parse_manifest(text: str | bytes) -> SegmentationManifest:
    """Validate manifest JSON text; BundleError ``SCHEMA_INVALID`` (or ``KIND_MISMATCH``) otherwise."""
    manifest = parse_any_manifest(text)
    if not isinstance(manifest, SegmentationManifest):
        raise BundleError(errors.KIND_MISMATCH, f"{MANIFEST_NAME} is a {manifest.kind} bundle, not {KIND}")
    return manifest


def load_segmentation_bundle(root: Path, model_id: str, version: str) -> SegmentationBundle:
    """Load and verify ``<root>/segmentation/<model_id>/<version>/`` (pinned when the root's lock names it).

    Raises:
        BundleError: MODEL_NOT_FOUND, or any reason of :func:`~oncohabitat.bundles.loader.load_bundle`.
    """
    directory = root / KIND / model_id / version
    if not directory.is_dir():
        raise BundleError(
            errors.MODEL_NOT_FOUND, f"segmentation model {model_id} {version} is not deployed under the bundle root"
        )
    pinned = (read_lock(root) or {}).get(f"{KIND}/{model_id}/{version}")
    bundle = load_bundle(directory, pinned, kind=KIND)
    manifest = bundle.manifest
    assert isinstance(manifest, SegmentationManifest)  # load_bundle checked the kind
    return SegmentationBundle(
        path=directory,
        manifest=manifest,
        manifest_sha256=bundle.manifest_sha256,
        model_bytes=(directory / manifest.model.file).read_bytes(),
    )


def write_segmentation_bundle(root: Path, manifest: dict[str, Any], model_bytes: bytes) -> SegmentationBundle:
    """Write a new bundle ``<root>/segmentation/<id>/<version>/`` (training recipes) and verify it.

    Raises:
        BundleError: SCHEMA_INVALID (nothing written) or LAYOUT_INVALID when the directory already exists.
    """
    file = str(manifest["model"]["file"])
    written = write_bundle(root, manifest, {file: model_bytes})
    return load_segmentation_bundle(root, written.id, written.version)
