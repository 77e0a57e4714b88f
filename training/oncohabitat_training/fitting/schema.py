"""The recipe schema: one declarative YAML file per paper's modelling recipe (pydantic, unknown keys refused).

A recipe names the bundle it produces (``id``, ``version``, ``title``, intended use), the extraction plan the
feature table was built with (``extraction.plan``: a YAML/JSON :class:`~oncohabitat.bundles.plan.ExtractionPlan`
file relative to the recipe, or inline), the candidate features (default: every plan feature), the outcome, the
clinical covariates, the selection steps, the model and the cutoff rule. Units: survival times in
``outcome.time_unit`` (horizons in the same unit), probabilities in [0, 1], thresholds unitless.

Model types (one per paper family):

* ``cox`` — 000 / 003 / 001 DFS: univariable Cox screen -> LASSO-Cox CV (lambda_min / lambda_1se) -> the score;
  ``refit: cox`` refits an unpenalised Cox on the selected features, ``refit: calibrate`` keeps the LASSO score
  and scales it by its own Cox calibration; optional nomogram with covariates (imaging-only fallback exported);
* ``logistic`` — 001: screen (Mann-Whitney) -> LASSO-logistic CV (SMOTE on training folds only) -> unpenalised
  logistic refit (+ covariates: fusion model; imaging-only fallback exported), VIF check;
* ``elastic_net`` — 002: elastic net on a continuous target, penalties by CV, recursive feature elimination;
* ``random_forest`` — 004: screen -> top features -> random forest -> ONNX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from oncohabitat.bundles.plan import ExtractionPlan

Probability = Annotated[float, Field(gt=0.0, lt=1.0)]


class RecipeError(ValueError):
    """A recipe that cannot be used (schema, unknown feature, unreadable plan); the message names the culprit."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FullPlan(_Strict):
    """Full extraction: every feature of ``regions`` x ``images`` x the settings' filters and classes
    (:func:`oncohabitat.features.full.full_plan`), plus ``extra`` names (MSI, statistics, kinetic)."""

    regions: list[str] = Field(min_length=1)
    images: list[str] = Field(min_length=1)
    region_profile: dict[str, Any] = Field(default_factory=dict)
    normalisation: dict[str, Any] = Field(default_factory=lambda: {"type": "none"})
    feature_settings: dict[str, Any] = Field(default_factory=dict)
    extra: list[str] = Field(default_factory=list)


class Extraction(_Strict):
    """How the feature table was (or must be) extracted; the bundle's ``plan`` keeps all but the feature list.

    Exactly one of ``plan`` (a plan file, YAML or JSON relative to the recipe file, or the plan itself) and
    ``full`` (a full-extraction grid).
    """

    plan: str | ExtractionPlan | None = None
    full: FullPlan | None = None
    modality: Literal["MR", "CT"] = "MR"
    #: Phase roles a study must provide (``required_inputs.phases`` of the bundle).
    phases: list[str] = Field(default_factory=lambda: ["pre_contrast", "post_contrast"], min_length=1)

    @model_validator(mode="after")
    def _one(self) -> Extraction:
        if (self.plan is None) == (self.full is None):
            raise ValueError("extraction needs exactly one of 'plan' and 'full'")
        return self


class SurvivalOutcome(_Strict):
    """Time-to-event outcome: table columns ``outcome.<time>`` (``time_unit``) and ``outcome.<event>`` (0/1)."""

    type: Literal["survival"]
    time: str = "time"
    event: str = "event"
    time_unit: Literal["days", "weeks", "months", "years"] = "months"
    #: Horizons (time_unit) of the exported baseline survival S0(t); the first is the evaluation horizon.
    horizons: list[Annotated[float, Field(gt=0.0)]] = Field(default_factory=lambda: [36.0], min_length=1)


class BinaryOutcome(_Strict):
    """Binary outcome ``outcome.<column>`` (1 = positive class, e.g. pCR)."""

    type: Literal["binary"]
    column: str
    positive_label: str = "positive"
    negative_label: str = "negative"


class ContinuousOutcome(_Strict):
    """Continuous target ``outcome.<column>`` (e.g. a recurrence score, in ``unit``); with ``survival`` columns
    for the maximally selected log-rank cutoff on the predicted value."""

    type: Literal["continuous"]
    column: str
    unit: str = "points"
    survival: SurvivalOutcome | None = None


Outcome = Annotated[SurvivalOutcome | BinaryOutcome | ContinuousOutcome, Field(discriminator="type")]


class Covariate(_Strict):
    """A clinical covariate from table column ``clinical.<column>`` (default: its name)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    column: str | None = None
    type: Literal["numeric", "boolean", "categorical"]
    unit: str | None = None
    valid_range: tuple[float | None, float | None] | None = None
    categories: list[str] = Field(default_factory=list)
    reference: str | None = None
    description: str | None = None

    @property
    def table_column(self) -> str:
        """The feature-table column holding it."""
        return f"clinical.{self.column or self.name}"

    @model_validator(mode="after")
    def _categorical(self) -> Covariate:
        if self.type == "categorical" and (len(self.categories) < 2 or self.reference not in self.categories):
            raise ValueError(f"covariate {self.name!r}: categorical needs >= 2 categories and one as reference")
        return self


class Selection(_Strict):
    """Feature-selection steps, in this order: ICC -> z-score -> screen -> |r| filter (-> model's own)."""

    #: ICC(2,1) threshold; applied only when a second reader's table is given.
    icc_threshold: float | None = 0.75
    #: Univariable screen p-value threshold (Cox Wald for survival, Mann-Whitney for binary); null = no screen.
    screen_p: float | None = 0.05
    #: Drop one of each pair with |r| above this; null = no filter.
    correlation_threshold: float | None = 0.9
    #: Keep at most this many screened features (smallest p first); null = all.
    max_features: int | None = Field(None, ge=1)


class CoxModel(_Strict):
    """LASSO-Cox (10-fold CV) -> Cox model; optional nomogram on the covariates."""

    type: Literal["cox"]
    folds: int = Field(10, ge=3)
    penalty: Literal["min", "1se"] = "1se"
    refit: Literal["cox", "calibrate"] = "cox"


class LogisticModelSpec(_Strict):
    """LASSO-logistic (K-fold CV, optional SMOTE on training folds) -> unpenalised logistic refit."""

    type: Literal["logistic"]
    folds: int = Field(10, ge=3)
    penalty: Literal["min", "1se"] = "min"
    smote: bool = True
    vif_limit: float | None = 10.0


class ElasticNetSpec(_Strict):
    """Elastic net on a continuous target: penalties grid-searched by K-fold CV, then RFE."""

    type: Literal["elastic_net"]
    folds: int = Field(10, ge=3)
    l1_ratios: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field(
        default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
    )
    #: Features RFE keeps; null = chosen by CV (RFECV).
    n_features: int | None = Field(None, ge=1)


class RandomForestSpec(_Strict):
    """Random forest classifier exported to ONNX."""

    type: Literal["random_forest"]
    n_estimators: int = Field(200, ge=1, le=2000)
    min_samples_leaf: int = Field(3, ge=1)
    max_depth: int | None = Field(None, ge=1)


ModelChoice = Annotated[CoxModel | LogisticModelSpec | ElasticNetSpec | RandomForestSpec, Field(discriminator="type")]


class Cutoff(_Strict):
    """How the risk-group cutoff is chosen (on training rows).

    ``td_roc_youden``: Youden index of the time-dependent ROC at ``horizon`` (survival outcome);
    ``max_logrank``: maximally selected log-rank statistic, groups at least ``min_fraction`` of patients;
    ``youden``: Youden index of the ROC (binary outcome, on the probability); ``fixed``: ``value``;
    ``median``: the training median of the score.
    """

    method: Literal["td_roc_youden", "max_logrank", "youden", "fixed", "median"]
    horizon: float | None = Field(None, gt=0.0)
    min_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    value: float | None = None
    labels: tuple[str, str] = ("low", "high")
    #: What a higher value means (the bundle's ``risk_groups.direction``).
    direction: Literal["higher_is_worse", "higher_is_better"] = "higher_is_worse"

    @model_validator(mode="after")
    def _parameters(self) -> Cutoff:
        if self.method == "fixed" and self.value is None:
            raise ValueError("cutoff method 'fixed' needs a value")
        return self


class Recipe(_Strict):
    """One modelling recipe (see the module docstring)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: str = "1.0.0"
    title: str
    paper: str | None = None
    intended_use: str
    contraindications: list[str] = Field(default_factory=list)
    #: The source publication, as the bundle's ``citation`` (authors, title, journal, year, ...).
    citation: dict[str, Any] | None = None
    notes: list[str] = Field(default_factory=list)
    #: Marks the bundle as a demonstration model trained on synthetic data (said in its manifest).
    demonstration: bool = False
    seed: int = Field(0, ge=0)
    extraction: Extraction
    #: Candidate features (canonical names, each in the plan); null = every plan feature.
    features: list[str] | None = None
    outcome: Outcome
    covariates: list[Covariate] = Field(default_factory=list)
    selection: Selection = Field(default_factory=Selection)
    model: ModelChoice
    cutoff: Cutoff
    #: A patient with a missing candidate feature (e.g. an empty habitat): ``error`` stops the fit naming it,
    #: ``drop_patient`` leaves the patient out (listed in the bundle's provenance).
    missing_values: Literal["error", "drop_patient"] = "error"
    #: Bootstrap resamples of the evaluation CIs.
    n_boot: int = Field(200, ge=10)

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        kind = self.model.type
        outcome = self.outcome.type
        allowed = {
            "cox": ("survival",),
            "logistic": ("binary",),
            "random_forest": ("binary",),
            "elastic_net": ("continuous",),
        }
        if outcome not in allowed[kind]:
            raise ValueError(f"model {kind!r} needs a {allowed[kind][0]} outcome, got {outcome!r}")
        if kind in ("elastic_net", "random_forest") and self.covariates:
            raise ValueError(f"model {kind!r} takes imaging features only (no covariates)")
        return self


def _plan_document(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(f"extraction plan {path}: {exc}") from None


def resolve_plan(recipe: Recipe, recipe_dir: Path) -> ExtractionPlan:
    """The recipe's extraction plan (loading a referenced file relative to ``recipe_dir``)."""
    plan = recipe.extraction.plan
    if isinstance(plan, ExtractionPlan):
        return plan
    if plan is None:
        return _full_plan(recipe.extraction.full)  # type: ignore[arg-type]
    path = recipe_dir / plan
    try:
        return ExtractionPlan.model_validate(_plan_document(path))
    except ValidationError as exc:
        raise RecipeError(f"extraction plan {path}: {_first_error(exc)}") from None


def _full_plan(full: FullPlan) -> ExtractionPlan:
    from oncohabitat.bundles.feature_settings import FeatureSettings
    from oncohabitat.bundles.plan import NoNormalisation
    from oncohabitat.features.full import full_plan

    try:
        settings = FeatureSettings.model_validate(full.feature_settings)
        grid = full_plan(settings, full.regions, full.images, full.region_profile, NoNormalisation())
        document = grid.model_dump(mode="json", by_alias=True)
        document |= {"normalisation": full.normalisation, "features": [*grid.features, *full.extra]}
        return ExtractionPlan.model_validate(document)
    except ValidationError as exc:
        raise RecipeError(f"extraction.full: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    error = max(errors, key=lambda e: len(e["loc"]))  # of a union's branches, the one that got furthest
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def candidate_features(recipe: Recipe, plan: ExtractionPlan) -> list[str]:
    """The recipe's candidates, in recipe order; every one must be a plan feature.

    Raises:
        RecipeError: naming the first feature the plan does not extract.
    """
    if recipe.features is None:
        return list(plan.features)
    known = set(plan.features)
    for name in recipe.features:
        if name not in known:
            raise RecipeError(f"recipe {recipe.id!r}: unknown feature {name!r} (not in the extraction plan)")
    return list(recipe.features)


def load_recipe(path: Path) -> tuple[Recipe, ExtractionPlan, bytes]:
    """Parse and check a recipe file; returns the recipe, its plan and the file's bytes (for provenance).

    Raises:
        RecipeError: unreadable YAML, a schema violation (the message names the key), an unknown feature.
    """
    raw = Path(path).read_bytes()
    try:
        document = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe {path}: not YAML: {exc}") from None
    try:
        recipe = Recipe.model_validate(document)
    except ValidationError as exc:
        raise RecipeError(f"recipe {path}: {_first_error(exc)}") from None
    plan = resolve_plan(recipe, Path(path).parent)
    candidate_features(recipe, plan)
    return recipe, plan, raw
