"""Scoring bundles (kind ``scoring``): the extraction plan, inputs, covariates, model, groups and test vectors.

The manifest declares the :class:`~oncohabitat.bundles.plan.ExtractionPlan` the regions and features stages
run, one :class:`InputSpec` per plan feature (same names, same order), optional clinical covariates, the model
(:data:`~oncohabitat.bundles.scoring_parts.ModelSpec`: linear family or ONNX), optional risk groups, an optional
imaging-only fallback, the evaluation figures recorded at training and the file of test vectors replayed at
load (``test_vectors``, listed under ``files``; schema :class:`~oncohabitat.bundles.vectors.TestVectors`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, JsonValue, model_validator

from oncohabitat.bundles.canonical import parse_canonical_name
from oncohabitat.bundles.feature_settings import FeatureSettings
from oncohabitat.bundles.manifest import Identifier, ManifestBase, RelativePath, Strict, check_unique
from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat.bundles.scoring_parts import (
    CovariateSpec,
    EvaluationFigure,
    FallbackSpec,
    InputSpec,
    LinearModel,
    ModelSpec,
    OnnxModel,
    RiskGroups,
    check_head,
)


class RequiredInputs(Strict):
    """What a study must provide: modality and phase roles (``"single"``, ``"pre_contrast"``, ...)."""

    modality: Literal["CT", "MR"]
    phases: list[Identifier] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> RequiredInputs:
        check_unique(self.phases, "phase")
        return self


@dataclass(frozen=True)
class FeatureView:
    """A plan feature seen the v1 way (region, pyradiomics image and name, request key = canonical name)."""

    name: str
    region: str
    image: str
    request_key: str


class ScoringManifest(ManifestBase):
    """``manifest.json`` of a scoring bundle.

    Cross-field rules: ``inputs`` names the plan's features in plan order; covariate names are unique and
    distinct from every column; the model reads exactly the feature columns then the covariate columns, the
    fallback exactly the feature columns; probability / predicted-value groups need such an output; an ONNX
    model file and the test-vector file are listed under ``files``.
    """

    kind: Literal["scoring"]
    required_inputs: RequiredInputs
    plan: ExtractionPlan
    inputs: list[InputSpec] = Field(min_length=1)
    covariates: list[CovariateSpec] = Field(default_factory=list)
    model: ModelSpec
    risk_groups: RiskGroups | None = None
    fallback: FallbackSpec | None = None
    test_vectors: RelativePath
    evaluation: list[EvaluationFigure] = Field(default_factory=list)
    #: Provenance of the training run (cohort, recipe, seeds, ...), free JSON.
    training: dict[str, JsonValue] = Field(default_factory=dict)

    @property
    def feature_columns(self) -> list[str]:
        """Canonical feature names in model order (= ``plan.features``)."""
        return [spec.name for spec in self.inputs]

    @property
    def covariate_columns(self) -> list[str]:
        """Encoded covariate columns in declaration order."""
        return [column for covariate in self.covariates for column in covariate.columns()]

    @property
    def columns(self) -> list[str]:
        """Every design column: features then covariate columns."""
        return self.feature_columns + self.covariate_columns

    @property
    def feature_keys(self) -> list[str]:
        """Keys a Score request's ``features`` must carry (canonical names), in model order."""
        return self.feature_columns

    @property
    def feature_settings(self) -> FeatureSettings:
        """The plan's pyradiomics settings (v1 accessor)."""
        return self.plan.feature_settings

    @property
    def features(self) -> list[FeatureView]:
        """The plan features seen the v1 way, for stage code that has not moved to :attr:`plan` yet."""
        views = []
        for name in self.feature_columns:
            parsed = parse_canonical_name(name)
            image = parsed.radiomics.image_name if parsed.radiomics is not None else parsed.image
            views.append(FeatureView(name=parsed.feature, region=parsed.region, image=image, request_key=name))
        return views

    @property
    def model_type(self) -> str:
        """``linear_score``, ``cox``, ``logistic``, ``linear_regression``, ``elastic_net`` or ``onnx``."""
        return self.model.type

    def model_files(self) -> list[str]:
        """Files of ONNX models (primary and fallback)."""
        models = [self.model] + ([self.fallback.model] if self.fallback is not None else [])
        return [m.file for m in models if isinstance(m, OnnxModel)]

    @model_validator(mode="after")
    def _consistent(self) -> ScoringManifest:
        if self.feature_columns != self.plan.features:
            raise ValueError("inputs must name the plan's features, in the plan's order")
        check_unique([c.name for c in self.covariates], "covariate")
        clash = sorted(set(self.feature_columns) & {c.name for c in self.covariates})
        if clash:
            raise ValueError(f"covariate names clash with features: {clash}")
        check_unique(self.columns, "design column")
        check_head(self.model, self.risk_groups, self.columns, "model")
        if self.fallback is not None:
            if not self.covariates:
                raise ValueError("an imaging-only fallback needs covariates to fall back from")
            check_head(self.fallback.model, self.fallback.risk_groups, self.feature_columns, "fallback")
        for file in [*self.model_files(), self.test_vectors]:
            if file not in self.files:
                raise ValueError(f"file {file!r} is not listed under files")
        return self


__all__ = [
    "CovariateSpec",
    "FallbackSpec",
    "FeatureView",
    "InputSpec",
    "LinearModel",
    "OnnxModel",
    "RequiredInputs",
    "RiskGroups",
    "ScoringManifest",
]
