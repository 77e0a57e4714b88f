"""Segmentation bundles (kind ``segmentation``): how a DCE-MRI study becomes the network's input and how its
output becomes a mask.

Conventions: phase indices as in ``Study`` (0 = pre-contrast, 1..N = post-contrast); ``target_spacing_mm`` is
SimpleITK (x, y, z) order; ``patch_size`` is (z, y, x) voxels of the target grid. The ONNX file is listed under
``files`` with its SHA-256 like every other bundle file.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from oncohabitat.bundles.manifest import ManifestBase, RelativePath, Strict


class ChannelSpec(Strict):
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


class NormalisationSpec(Strict):
    """Every channel is divided by the ``percentile`` of phase ``phase`` inside the body foreground."""

    method: Literal["percentile-scale"] = "percentile-scale"
    phase: int = Field(0, ge=0)
    percentile: float = Field(99.0, gt=0.0, le=100.0)


class CropSpec(Strict):
    """Breast region: the body foreground (phase ``normalisation.phase`` above ``foreground_fraction`` of its
    99.5th percentile), from its most anterior row to ``anterior_depth_mm`` behind it (prone breasts hang
    anteriorly; the heart and most of the thorax fall outside), plus ``margin_mm``. ``none`` keeps the volume.
    """

    method: Literal["anterior-body", "none"] = "anterior-body"
    foreground_fraction: float = Field(0.05, gt=0.0, lt=1.0)
    anterior_depth_mm: float = Field(150.0, gt=0.0)
    margin_mm: float = Field(10.0, ge=0.0)
    min_row_fraction: float = Field(0.02, ge=0.0, lt=1.0)


class PreprocessingSpec(Strict):
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


class InferenceSpec(Strict):
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


class PostprocessingSpec(Strict):
    """Candidate lesions are 26-connected components of at least ``min_component_ml``. ``largest`` keeps the
    largest unless another candidate reaches ``multiple_lesion_ratio`` of its volume (MULTIPLE_LESIONS).
    """

    selection: Literal["largest"] = "largest"
    min_component_ml: float = Field(0.1, ge=0.0)
    multiple_lesion_ratio: float = Field(0.3, gt=0.0, le=1.0)
    fill_holes: bool = True


class SegmentationModelFile(Strict):
    """The network file (bundle-relative, listed under ``files``) and its format."""

    file: RelativePath
    format: Literal["onnx"] = "onnx"


class SegmentationManifest(ManifestBase):
    """``manifest.json`` of a segmentation bundle."""

    kind: Literal["segmentation"]
    demonstration_only: bool
    model: SegmentationModelFile
    preprocessing: PreprocessingSpec
    inference: InferenceSpec
    postprocessing: PostprocessingSpec = PostprocessingSpec()
    #: Provenance of the training run (recipe, data, cases, configuration, export check, validation).
    training: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _model_listed(self) -> SegmentationManifest:
        if self.model.file not in self.files:
            raise ValueError(f"model file {self.model.file!r} is not listed under files")
        return self
