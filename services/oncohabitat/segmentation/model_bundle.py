"""Segmentation bundles: ``<models_dir>/<id>/<version>/manifest.json`` + the ONNX model it pins by SHA-256.

These are not scoring bundles (:mod:`oncohabitat.bundles`): the manifest describes how a study becomes the
network's input and how its output becomes a mask. Conventions: phase indices as in ``Study`` (0 =
pre-contrast, 1..N = post-contrast); ``target_spacing_mm`` is SimpleITK (x, y, z) order; ``patch_size`` is
(z, y, x) voxels of the target grid. Loading verifies the schema, the directory name and the model hash; a
bundle that does not verify raises :class:`~oncohabitat.bundles.errors.BundleError` so the service refuses to
start (``run_service`` exits 3 with ``cannot start: ...``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from oncohabitat.bundles import errors
from oncohabitat.bundles.errors import BundleError
from oncohabitat.bundles.hashing import sha256_bytes, sha256_file

MANIFEST_NAME = "manifest.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChannelSpec(_Strict):
    """One input channel: a phase (``phase``, one index) or a subtraction (``subtract``: phases[0] - phases[1])."""

    name: str = Field(min_length=1)
    operation: Literal["phase", "subtract"]
    phases: tuple[int, ...]

    @model_validator(mode="after")
    def _arity(self) -> ChannelSpec:
        needed = 1 if self.operation == "phase" else 2
        if len(self.phases) != needed or any(p < 0 for p in self.phases):
            raise ValueError(f"operation {self.operation!r} takes {needed} non-negative phase index(es)")
        return self


class NormalisationSpec(_Strict):
    """Every channel is divided by the ``percentile`` of phase ``phase`` inside the body foreground."""

    method: Literal["percentile-scale"] = "percentile-scale"
    phase: int = Field(0, ge=0)
    percentile: float = Field(99.0, gt=0.0, le=100.0)


class CropSpec(_Strict):
    """Breast region: the body foreground (phase ``normalisation.phase`` above ``foreground_fraction`` of its
    99.5th percentile), from its most anterior row to ``anterior_depth_mm`` behind it (prone breasts hang
    anteriorly; the heart and most of the thorax fall outside), plus ``margin_mm``. ``none`` keeps the volume.
    """

    method: Literal["anterior-body", "none"] = "anterior-body"
    foreground_fraction: float = Field(0.05, gt=0.0, lt=1.0)
    anterior_depth_mm: float = Field(150.0, gt=0.0)
    margin_mm: float = Field(10.0, ge=0.0)
    min_row_fraction: float = Field(0.02, ge=0.0, lt=1.0)


class PreprocessingSpec(_Strict):
    """Channels, resampling (target spacing, mm, x/y/z), normalisation and crop."""

    channels: tuple[ChannelSpec, ...] = Field(min_length=1)
    target_spacing_mm: tuple[float, float, float]
    normalisation: NormalisationSpec = NormalisationSpec()
    crop: CropSpec = CropSpec()

    @model_validator(mode="after")
    def _positive_spacing(self) -> PreprocessingSpec:
        if any(s <= 0 for s in self.target_spacing_mm):
            raise ValueError("target_spacing_mm must be positive")
        return self

    @property
    def required_phases(self) -> tuple[int, ...]:
        """Sorted phase indices the channels and the normalisation read."""
        phases = {p for channel in self.channels for p in channel.phases} | {self.normalisation.phase}
        return tuple(sorted(phases))


class InferenceSpec(_Strict):
    """Sliding-window inference: patch (z, y, x voxels), overlap fraction, blending and probability threshold."""

    input_name: str = "image"
    output_name: str = "probability"
    patch_size: tuple[int, int, int]
    overlap: float = Field(0.25, ge=0.0, lt=0.9)
    blend: Literal["gaussian", "uniform"] = "gaussian"
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    size_multiple: int = Field(4, ge=1, description="every patch side must be a multiple of this")

    @model_validator(mode="after")
    def _patch_multiple(self) -> InferenceSpec:
        if any(n <= 0 or n % self.size_multiple for n in self.patch_size):
            raise ValueError(f"patch_size sides must be positive multiples of {self.size_multiple}")
        return self


class PostprocessingSpec(_Strict):
    """Candidate lesions are 26-connected components of at least ``min_component_ml``. ``largest`` keeps the
    largest unless another candidate reaches ``multiple_lesion_ratio`` of its volume (MULTIPLE_LESIONS).
    """

    selection: Literal["largest"] = "largest"
    min_component_ml: float = Field(0.1, ge=0.0)
    multiple_lesion_ratio: float = Field(0.3, gt=0.0, le=1.0)
    fill_holes: bool = True


class ModelFile(_Strict):
    """The network file and its SHA-256 (lowercase hex)."""

    file: str = Field(pattern=r"^[A-Za-z0-9._-]+\.onnx$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    format: Literal["onnx"] = "onnx"


class SegmentationManifest(_Strict):
    """``manifest.json`` of a segmentation bundle (format 1)."""

    format_version: Literal[1] = 1
    kind: Literal["segmentation"] = "segmentation"
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    version: str = Field(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")
    description: str
    intended_use: str
    demonstration_only: bool
    model: ModelFile
    preprocessing: PreprocessingSpec
    inference: InferenceSpec
    postprocessing: PostprocessingSpec = PostprocessingSpec()
    training: dict[str, Any] = Field(default_factory=dict)


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


def parse_manifest(text: str) -> SegmentationManifest:
    """Validate manifest JSON text; BundleError ``SCHEMA_INVALID`` with the first problem otherwise."""
    try:
        return SegmentationManifest.model_validate(json.loads(text))
    except json.JSONDecodeError:
        raise BundleError(errors.SCHEMA_INVALID, f"{MANIFEST_NAME} is not valid JSON") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BundleError(errors.SCHEMA_INVALID, f"{MANIFEST_NAME}: {where}: {first['msg']}") from None


def load_segmentation_bundle(root: Path, model_id: str, version: str) -> SegmentationBundle:
    """Load and verify ``<root>/<model_id>/<version>/`` (schema, directory name, model SHA-256).

    Raises:
        BundleError: MODEL_NOT_FOUND / MANIFEST_MISSING / SCHEMA_INVALID / LAYOUT_INVALID / FILE_MISSING /
            HASH_MISMATCH, with bundle-relative names only.
    """
    directory = root / model_id / version
    label = f"segmentation model {model_id} {version}"
    if not directory.is_dir():
        raise BundleError(errors.MODEL_NOT_FOUND, f"{label} is not deployed under the segmentation models root")
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(errors.MANIFEST_MISSING, f"{label}: {MANIFEST_NAME} is missing")
    raw = manifest_path.read_bytes()
    manifest = parse_manifest(raw.decode("utf-8", errors="replace"))
    if (manifest.id, manifest.version) != (model_id, version):
        raise BundleError(errors.LAYOUT_INVALID, f"{label}: manifest declares {manifest.id} {manifest.version}")
    model_path = directory / manifest.model.file
    if model_path.is_symlink() or not model_path.is_file():
        raise BundleError(errors.FILE_MISSING, f"{label}: {manifest.model.file} is missing")
    if sha256_file(model_path) != manifest.model.sha256:
        raise BundleError(
            errors.HASH_MISMATCH,
            f"{label}: {manifest.model.file} does not match the SHA-256 in its manifest (corrupted or modified)",
        )
    return SegmentationBundle(
        path=directory, manifest=manifest, manifest_sha256=sha256_bytes(raw), model_bytes=model_path.read_bytes()
    )


def write_segmentation_bundle(root: Path, manifest: dict[str, Any], model_bytes: bytes) -> SegmentationBundle:
    """Write a new bundle (training recipes): fills ``model.sha256``, validates, writes, verifies.

    Raises:
        BundleError: SCHEMA_INVALID (nothing written) or LAYOUT_INVALID when the directory already exists.
    """
    document = {**manifest, "model": {**manifest["model"], "sha256": sha256_bytes(model_bytes)}}
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    parsed = parse_manifest(text)
    directory = root / parsed.id / parsed.version
    if directory.exists():
        raise BundleError(errors.LAYOUT_INVALID, f"bundle directory {parsed.id}/{parsed.version} already exists")
    directory.mkdir(parents=True)
    (directory / parsed.model.file).write_bytes(model_bytes)
    (directory / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return load_segmentation_bundle(root, parsed.id, parsed.version)
