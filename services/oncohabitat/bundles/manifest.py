"""Schema of ``manifest.json``, model bundle format v1 (pydantic v2, unknown keys refused).

A bundle is a directory ``<root>/<id>/<version>/`` holding ``manifest.json`` and any other files it lists
under ``files`` with their SHA-256. The manifest says what the model needs (modality, phases, regions),
how its features are computed (the exact pyradiomics parameter dict), and how they are turned into a
score (scaler, coefficients, intercept, cutoffs, optional Cox baseline survival), together with the
published source and the implementers' readings of anything the source left ambiguous.

Everything that can be checked without the feature extractor installed is checked here, including the
cross-field rules listed on :class:`Manifest`.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, model_validator

from oncohabitat.bundles.feature_settings import FeatureSettings
from oncohabitat.bundles.names import SHAPE_CLASSES, FeatureName, parse_feature_name
from oncohabitat.bundles.semver import SEMVER_PATTERN

FORMAT_VERSION = "1"
MANIFEST_NAME = "manifest.json"

#: Model types a v1 bundle may declare.
ModelType = Literal["linear_score", "cox", "logistic", "elastic_net", "random_forest"]

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
NonEmptyStr = Annotated[str, Field(min_length=1)]
#: Lower-case identifier for phases, regions and input images, e.g. ``"tumour"``, ``"post_contrast"``.
Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]

def check_relative_path(value: str) -> str:
    """A bundle-relative POSIX path without ``..``, empty parts or backslashes, and not the manifest."""
    if not value or value.startswith("/") or "\\" in value:
        raise ValueError(f"{value!r} is not a relative POSIX path")
    parts = PurePosixPath(value).parts
    if any(part in ("", ".", "..") for part in parts) or "/".join(parts) != value:
        raise ValueError(f"{value!r} is not a normalised relative path (no '.', '..' or '//')")
    if value == MANIFEST_NAME:
        raise ValueError(f"{MANIFEST_NAME} never lists itself under files")
    return value


RelativePath = Annotated[str, AfterValidator(check_relative_path)]


def _check_unique(values: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what}: {value!r}")
        seen.add(value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Citation(_Strict):
    """The publication the model comes from."""

    authors: list[NonEmptyStr] = Field(min_length=1)
    title: NonEmptyStr
    journal: NonEmptyStr
    year: int = Field(strict=True, ge=1900, le=2100)
    volume: str | None = None
    article: str | None = Field(default=None, description="Article number or page range.")
    doi: str | None = Field(default=None, pattern=r"^10\.\d{4,9}/\S+$")
    url: str | None = None


class RequiredInputs(_Strict):
    """What a study must provide for this model to run."""

    modality: Literal["CT", "MR"]
    #: Phase roles, lower-case ``PhaseRole`` names: ``"single"``, ``"pre_contrast"``, ``"post_contrast"``.
    phases: list[Identifier] = Field(min_length=1)
    #: Region names (``Label.name`` values), e.g. ``"tumour"``, ``"peritumoral_ring_5mm"``.
    regions: list[Identifier] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> RequiredInputs:
        _check_unique(self.phases, "phase")
        _check_unique(self.regions, "region")
        return self


class FeatureSpec(_Strict):
    """One model input: a pyradiomics feature computed on one region of one input image."""

    #: Fully-qualified pyradiomics name, e.g. ``"original_glcm_Correlation"``.
    name: str
    #: Region it is computed on; one of ``required_inputs.regions``.
    region: Identifier
    #: pyradiomics image-type name, the first part of ``name`` (e.g. ``"original"``, ``"wavelet-LLH"``).
    image: NonEmptyStr
    #: Input image (phase role or derived map such as ``"sm0"``) when the model uses several; None = the only one.
    input_image: Identifier | None = None
    #: Key of this feature in a scoring request; defaults to ``name``. Needed when names repeat across
    #: regions or input images.
    key: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    #: Inclusive plausibility range ``[min, max]`` of the raw value; null for an open end.
    valid_range: tuple[FiniteFloat | None, FiniteFloat | None] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        parsed = parse_feature_name(self.name)
        if parsed.image_name != self.image:
            raise ValueError(f"feature {self.name!r}: image {self.image!r} does not match the name's prefix")
        if self.valid_range is not None:
            low, high = self.valid_range
            if low is not None and high is not None and low > high:
                raise ValueError(f"feature {self.name!r}: valid_range min {low} > max {high}")
        return self

    @property
    def request_key(self) -> str:
        """The key under which a scoring request carries this feature (``key`` or else ``name``)."""
        return self.key if self.key is not None else self.name

    @property
    def parsed_name(self) -> FeatureName:
        """``name`` split into image type, feature class and feature."""
        return parse_feature_name(self.name)


class ModelSpec(_Strict):
    """Which model maps the (scaled) features to a score."""

    type: ModelType
    #: Bundle-relative path of a serialised model (required for ``random_forest``), listed under ``files``.
    file: RelativePath | None = None

    @model_validator(mode="after")
    def _file(self) -> ModelSpec:
        if self.type == "random_forest" and self.file is None:
            raise ValueError("model type random_forest needs a model file")
        return self


class NoScaler(_Strict):
    """Features are used raw."""

    type: Literal["none"]


class ZScoreScaler(_Strict):
    """``scaled = (raw - mean) / std`` with per-feature training statistics, keyed by request key."""

    type: Literal["zscore"]
    mean: dict[str, FiniteFloat]
    std: dict[str, Annotated[float, Field(strict=True, gt=0.0, allow_inf_nan=False)]]


Scaler = Annotated[NoScaler | ZScoreScaler, Field(discriminator="type")]


class Cutoff(_Strict):
    """A threshold splitting a value into a low and a high group.

    With ``direction="greater"`` the value is high when ``value > cutoff``; with ``"greater_equal"`` when
    ``value >= cutoff``. ``applies_to`` says whether the score (linear predictor) or, for logistic and
    random-forest models, the predicted probability is compared.
    """

    value: FiniteFloat
    direction: Literal["greater", "greater_equal"]
    low_label: NonEmptyStr
    high_label: NonEmptyStr
    applies_to: Literal["score", "probability"] = "score"

    def is_high(self, value: float) -> bool:
        """Whether ``value`` falls on the high side of this cutoff."""
        return value > self.value if self.direction == "greater" else value >= self.value


class BaselineSurvival(_Strict):
    """Cox baseline survival ``S0(t)`` at increasing times (in ``time_unit``); ``S(t|x) = S0(t)^exp(lp)``."""

    times: list[Annotated[float, Field(strict=True, ge=0.0, allow_inf_nan=False)]] = Field(min_length=1)
    survival: list[Annotated[float, Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False)]] = Field(min_length=1)

    @model_validator(mode="after")
    def _monotone(self) -> BaselineSurvival:
        if len(self.times) != len(self.survival):
            raise ValueError("baseline_survival: times and survival differ in length")
        if any(b <= a for a, b in pairwise(self.times)):
            raise ValueError("baseline_survival: times must be strictly increasing")
        if any(b > a for a, b in pairwise(self.survival)):
            raise ValueError("baseline_survival: survival must be non-increasing")
        return self


class Manifest(_Strict):
    """``manifest.json`` of a v1 bundle.

    Cross-field rules: feature request keys are unique; each feature's region is a required region and its
    image type / class are produced by ``feature_settings``; ``coefficients`` has one entry per feature in
    the same order (empty for ``random_forest``); a z-score scaler has mean and std for exactly the feature
    keys; cutoffs are strictly increasing, compare one quantity, and chain their labels (the high label of
    one is the low label of the next); probability cutoffs lie in [0, 1] and need a logistic or
    random-forest model; ``baseline_survival`` needs a Cox model and a ``time_unit``; ``model.file`` is
    listed under ``files``.
    """

    format_version: Literal["1"]
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=100)]
    version: Annotated[str, Field(pattern=SEMVER_PATTERN)]
    title: NonEmptyStr
    intended_use: NonEmptyStr
    contraindications: list[NonEmptyStr]
    citation: Citation
    required_inputs: RequiredInputs
    feature_settings: FeatureSettings
    features: list[FeatureSpec] = Field(min_length=1)
    model: ModelSpec
    scaler: Scaler
    coefficients: list[FiniteFloat]
    intercept: FiniteFloat = 0.0
    cutoffs: list[Cutoff] = Field(default_factory=list)
    baseline_survival: BaselineSurvival | None = None
    time_unit: Literal["days", "weeks", "months", "years"] | None = None
    #: How ambiguities of the source were resolved, e.g. raw versus z-scored features.
    readings: list[NonEmptyStr] = Field(default_factory=list)
    notes: list[NonEmptyStr] = Field(default_factory=list)
    #: Every other file of the bundle: bundle-relative POSIX path -> lowercase hex SHA-256.
    files: dict[RelativePath, Sha256Hex] = Field(default_factory=dict)

    @property
    def feature_keys(self) -> list[str]:
        """Request keys of the features, in model order."""
        return [feature.request_key for feature in self.features]

    @model_validator(mode="after")
    def _features(self) -> Manifest:
        keys = self.feature_keys
        _check_unique(keys, "feature key")
        _check_unique(
            [f"{f.region}|{f.input_image}|{f.name}" for f in self.features], "feature (name, region, input_image)"
        )
        for feature in self.features:
            if feature.region not in self.required_inputs.regions:
                raise ValueError(f"feature {feature.request_key!r}: region {feature.region!r} is not required")
            if not self.feature_settings.produces(feature.parsed_name):
                raise ValueError(f"feature {feature.name!r} is not produced by feature_settings")
        return self

    @model_validator(mode="after")
    def _model_parameters(self) -> Manifest:
        keys = self.feature_keys
        expected = 0 if self.model.type == "random_forest" else len(keys)
        if len(self.coefficients) != expected:
            raise ValueError(f"{len(self.coefficients)} coefficients for {expected} expected (one per feature)")
        if isinstance(self.scaler, ZScoreScaler):
            for stat, values in (("mean", self.scaler.mean), ("std", self.scaler.std)):
                if set(values) != set(keys):
                    raise ValueError(f"scaler {stat} must have exactly the feature keys")
        if self.model.file is not None and self.model.file not in self.files:
            raise ValueError(f"model file {self.model.file!r} is not listed under files")
        if self.baseline_survival is not None:
            if self.model.type != "cox":
                raise ValueError("baseline_survival is only meaningful for a cox model")
            if self.time_unit is None:
                raise ValueError("baseline_survival needs a time_unit")
        return self

    @model_validator(mode="after")
    def _cutoffs(self) -> Manifest:
        cutoffs = self.cutoffs
        if any(b.value <= a.value for a, b in pairwise(cutoffs)):
            raise ValueError("cutoffs must be strictly increasing")
        if any(a.high_label != b.low_label for a, b in pairwise(cutoffs)):
            raise ValueError("consecutive cutoffs must chain labels (high_label of one = low_label of the next)")
        if len({c.applies_to for c in cutoffs}) > 1:
            raise ValueError("all cutoffs must apply to the same quantity")
        for cutoff in cutoffs:
            if cutoff.applies_to == "probability":
                if self.model.type not in ("logistic", "random_forest"):
                    raise ValueError("probability cutoffs need a logistic or random_forest model")
                if not 0.0 <= cutoff.value <= 1.0:
                    raise ValueError("a probability cutoff must lie in [0, 1]")
        return self
