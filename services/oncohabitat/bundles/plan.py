"""An extraction plan: what a bundle asks of the regions and features stages (no feature library imported).

A plan names the region profile (the regions service's JSON: ring / band widths, K, habitat mode, kinetic
roles), the intensity normalisation applied to each image before pyradiomics, the pyradiomics parameter dict
(resampling, interpolator, bin width or count, filters, classes: :class:`FeatureSettings`) and the ordered
canonical feature names (:mod:`oncohabitat.bundles.canonical`). The features service groups the names so that
each (image, preprocessing, filter) is prepared once per study and each (region, image, filter) is one
pyradiomics pass.

Checked here, without pyradiomics: every name parses; every radiomics / kinetic name is produced by the
settings; ring and stroma widths and habitat numbers are ones the region profile builds; normalisation
parameters are consistent.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from oncohabitat.bundles.canonical import CanonicalName, FeatureNameError, band_region, parse_canonical_name
from oncohabitat.bundles.feature_settings import FeatureSettings
from oncohabitat.bundles.hashing import canonical_json_sha256

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]

#: Region profile defaults of the regions service (``oncohabitat.regions.profile.RegionProfile``), repeated here
#: only to check names against a profile that leaves them out; the regions service validates the profile itself.
_DEFAULT_RING_MM = 5.0
_DEFAULT_STROMA_MM = 20.0
_DEFAULT_K = 3


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoNormalisation(_Strict):
    """Images are used as delivered."""

    type: Literal["none"] = "none"


class ZScoreNormalisation(_Strict):
    """pyradiomics' own ``normalize`` (z-score over the whole image, times ``scale``)."""

    type: Literal["zscore"]
    scale: FiniteFloat = 1.0


class FixedRangeNormalisation(_Strict):
    """Seed 002: intensities mapped linearly from the image's [min, max] to [low, high] (e.g. 0-800).

    The min and max are taken over the whole image as delivered to the features stage (before any crop).
    """

    type: Literal["fixed_range"]
    low: FiniteFloat = 0.0
    high: FiniteFloat = 800.0

    @model_validator(mode="after")
    def _ordered(self) -> FixedRangeNormalisation:
        if not self.low < self.high:
            raise ValueError(f"fixed_range needs low < high, got [{self.low}, {self.high}]")
        return self


class ParenchymaMeanNormalisation(_Strict):
    """Seed 004: every image divided by the mean of S0 over the breast mask minus the tumour."""

    type: Literal["parenchyma_mean"]


Normalisation = Annotated[
    NoNormalisation | ZScoreNormalisation | FixedRangeNormalisation | ParenchymaMeanNormalisation,
    Field(discriminator="type"),
]


class ExtractionPlan(_Strict):
    """Regions, preprocessing and the ordered canonical feature names a model needs."""

    #: The regions service's profile (JSON object, ``RegionProfile``); ``{}`` = its defaults.
    region_profile: dict[str, JsonValue] = Field(default_factory=dict)
    normalisation: Normalisation = Field(default_factory=NoNormalisation)
    feature_settings: FeatureSettings = Field(default_factory=FeatureSettings)
    #: Canonical names, in model order, unique.
    features: list[str] = Field(min_length=1)

    @field_validator("features")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in value:
            parse_canonical_name(name)  # FeatureNameError is a ValueError: pydantic reports it with its token
            if name in seen:
                raise ValueError(f"duplicate feature {name!r}")
            seen.add(name)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ExtractionPlan:
        if self.feature_settings.setting.get("normalize") and not isinstance(self.normalisation, ZScoreNormalisation):
            raise ValueError("declare z-score normalisation as normalisation.type = 'zscore', not setting.normalize")
        regions = self.available_regions()
        for parsed in self.parsed_features():
            if parsed.region not in regions and parsed.habitat is None:
                raise ValueError(f"feature {parsed.full!r}: region {parsed.region!r} is not built by the profile")
            if parsed.habitat is not None and parsed.habitat > self.max_habitats():
                raise ValueError(f"feature {parsed.full!r}: the profile builds at most {self.max_habitats()} habitats")
            if parsed.radiomics is not None and not self.feature_settings.produces(parsed.radiomics):
                raise ValueError(f"feature {parsed.full!r} is not produced by feature_settings")
        return self

    def parsed_features(self) -> list[CanonicalName]:
        """:attr:`features` parsed, in order."""
        return [parse_canonical_name(name) for name in self.features]

    def _profile_value(self, key: str, default: float | None) -> float | None:
        value = self.region_profile.get(key, default)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    def max_habitats(self) -> int:
        """The largest habitat count the profile can produce (K, or the top of ``k_range``)."""
        habitats = self.region_profile.get("habitats")
        if not isinstance(habitats, dict):
            return _DEFAULT_K
        if habitats.get("enabled") is False:
            return 0
        k_range = habitats.get("k_range")
        if isinstance(k_range, list) and len(k_range) == 2 and isinstance(k_range[1], int):
            return k_range[1]
        k = habitats.get("k", _DEFAULT_K)
        return k if isinstance(k, int) and not isinstance(k, bool) else 9

    def available_regions(self) -> set[str]:
        """Region names (besides habitats) the profile builds: tumour, breast, parenchyma, its ring and band."""
        regions = {"tumour", "breast", "parenchyma"}
        ring = self._profile_value("ring_width_mm", _DEFAULT_RING_MM)
        stroma = self._profile_value("stroma_width_mm", _DEFAULT_STROMA_MM)
        if ring is not None:
            regions.add(band_region("ring", ring))
        if stroma is not None:
            regions.add(band_region("stroma", stroma))
        return regions

    def sha256(self) -> str:
        """SHA-256 of the plan's canonical JSON (provenance of the extraction)."""
        return canonical_json_sha256(self.model_dump(mode="json", by_alias=True))


__all__ = [
    "ExtractionPlan",
    "FeatureNameError",
    "FixedRangeNormalisation",
    "NoNormalisation",
    "Normalisation",
    "ParenchymaMeanNormalisation",
    "ZScoreNormalisation",
]
