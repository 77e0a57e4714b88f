"""pyradiomics' parameter dict as a bundle declares it (``setting`` / ``imageType`` / ``featureClass``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from oncohabitat.bundles.hashing import canonical_json_sha256
from oncohabitat.bundles.names import SHAPE_CLASSES, FeatureName, parse_feature_name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Settings that belong to the request (which mask label) or to the extractor's own bookkeeping, never to a model.
_FORBIDDEN_SETTINGS = frozenset({"label", "label_channel"})
_KNOWN_IMAGE_TYPES = frozenset(
    {
        "Original",
        "LoG",
        "Wavelet",
        "Square",
        "SquareRoot",
        "Logarithm",
        "Exponential",
        "Gradient",
        "LBP2D",
        "LBP3D",
    }
)


class FeatureSettings(_Strict):
    """The pyradiomics parameter dict, exactly as passed to ``RadiomicsFeatureExtractor(params)``.

    JSON keys are pyradiomics' own: ``setting``, ``imageType``, ``featureClass``. Values are checked
    against pyradiomics' schema by the feature extractor; here only the structure and the names of
    image types and feature classes are checked. ``label`` may not appear in ``setting``: the label is
    a property of the mask in each request, not of the model.
    """

    setting: dict[str, JsonValue] = Field(default_factory=dict)
    image_type: dict[str, dict[str, JsonValue]] = Field(default_factory=dict, alias="imageType")
    feature_class: dict[str, list[str] | None] = Field(default_factory=dict, alias="featureClass")

    @model_validator(mode="after")
    def _names(self) -> FeatureSettings:
        forbidden = sorted(_FORBIDDEN_SETTINGS.intersection(self.setting))
        if forbidden:
            raise ValueError(f"setting may not contain {forbidden}: the mask label is chosen per request")
        unknown_types = sorted(set(self.image_type) - _KNOWN_IMAGE_TYPES)
        if unknown_types:
            raise ValueError(f"unknown pyradiomics imageType(s) {unknown_types}")
        for name in self.feature_class:
            parse_feature_name(f"original_{name}_X")  # raises ValueError on an unknown class
        return self

    def to_pyradiomics(self) -> dict[str, Any]:
        """A fresh deep copy in pyradiomics' layout (``{"setting": ..., "imageType": ..., "featureClass": ...}``)."""
        return self.model_dump(mode="json", by_alias=True)

    def sha256(self) -> str:
        """SHA-256 of the canonical JSON of :meth:`to_pyradiomics`: identifies the extraction configuration."""
        return canonical_json_sha256(self.to_pyradiomics())

    def produces(self, name: FeatureName) -> bool:
        """Whether a pyradiomics run with these settings computes the feature ``name``.

        Image types are checked by family only (e.g. ``Wavelet``): the exact filtered-image names also depend
        on filter settings (and ``shape2D`` on ``force2D``), which only the extractor run can confirm.
        """
        enabled_types = set(self.image_type) or {"Original"}
        if name.feature_class not in SHAPE_CLASSES and name.image_type not in enabled_types:
            return False  # shape is computed on the original mask whatever image types are enabled
        if not self.feature_class:
            return True
        if name.feature_class not in self.feature_class:
            return False
        listed = self.feature_class[name.feature_class]
        return not listed or name.feature in listed
