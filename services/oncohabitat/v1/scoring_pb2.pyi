from oncohabitat.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScoreRequest(_message.Message):
    __slots__ = ("model_id", "model_version", "features", "covariates")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class CovariatesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.CovariateValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.CovariateValue, _Mapping]] = ...) -> None: ...
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    COVARIATES_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model_version: str
    features: _containers.ScalarMap[str, float]
    covariates: _containers.MessageMap[str, _common_pb2.CovariateValue]
    def __init__(self, model_id: _Optional[str] = ..., model_version: _Optional[str] = ..., features: _Optional[_Mapping[str, float]] = ..., covariates: _Optional[_Mapping[str, _common_pb2.CovariateValue]] = ...) -> None: ...

class FeatureContribution(_message.Message):
    __slots__ = ("name", "value", "scaled_value", "coefficient", "contribution")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SCALED_VALUE_FIELD_NUMBER: _ClassVar[int]
    COEFFICIENT_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    scaled_value: float
    coefficient: float
    contribution: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., scaled_value: _Optional[float] = ..., coefficient: _Optional[float] = ..., contribution: _Optional[float] = ...) -> None: ...

class RiskGroupRule(_message.Message):
    __slots__ = ("applies_to", "cutoffs", "labels", "tie", "direction")
    APPLIES_TO_FIELD_NUMBER: _ClassVar[int]
    CUTOFFS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TIE_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    applies_to: str
    cutoffs: _containers.RepeatedScalarFieldContainer[float]
    labels: _containers.RepeatedScalarFieldContainer[str]
    tie: str
    direction: str
    def __init__(self, applies_to: _Optional[str] = ..., cutoffs: _Optional[_Iterable[float]] = ..., labels: _Optional[_Iterable[str]] = ..., tie: _Optional[str] = ..., direction: _Optional[str] = ...) -> None: ...

class OutOfDistribution(_message.Message):
    __slots__ = ("name", "value", "training_min", "training_max")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TRAINING_MIN_FIELD_NUMBER: _ClassVar[int]
    TRAINING_MAX_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    training_min: float
    training_max: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., training_min: _Optional[float] = ..., training_max: _Optional[float] = ...) -> None: ...

class SurvivalPoint(_message.Message):
    __slots__ = ("time", "probability")
    TIME_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    time: float
    probability: float
    def __init__(self, time: _Optional[float] = ..., probability: _Optional[float] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("score", "risk_group", "contributions", "survival", "cutoff", "model_id", "model_version", "provenance", "probability", "predicted_value", "risk_rule", "out_of_distribution", "manifest_sha256", "intended_use", "model_type", "time_unit", "fallback_used", "missing_covariates", "ignored")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RISK_GROUP_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    SURVIVAL_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_VALUE_FIELD_NUMBER: _ClassVar[int]
    RISK_RULE_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    INTENDED_USE_FIELD_NUMBER: _ClassVar[int]
    MODEL_TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIT_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_USED_FIELD_NUMBER: _ClassVar[int]
    MISSING_COVARIATES_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    score: float
    risk_group: str
    contributions: _containers.RepeatedCompositeFieldContainer[FeatureContribution]
    survival: _containers.RepeatedCompositeFieldContainer[SurvivalPoint]
    cutoff: float
    model_id: str
    model_version: str
    provenance: _common_pb2.Provenance
    probability: float
    predicted_value: float
    risk_rule: RiskGroupRule
    out_of_distribution: _containers.RepeatedCompositeFieldContainer[OutOfDistribution]
    manifest_sha256: str
    intended_use: str
    model_type: str
    time_unit: str
    fallback_used: bool
    missing_covariates: _containers.RepeatedScalarFieldContainer[str]
    ignored: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, score: _Optional[float] = ..., risk_group: _Optional[str] = ..., contributions: _Optional[_Iterable[_Union[FeatureContribution, _Mapping]]] = ..., survival: _Optional[_Iterable[_Union[SurvivalPoint, _Mapping]]] = ..., cutoff: _Optional[float] = ..., model_id: _Optional[str] = ..., model_version: _Optional[str] = ..., provenance: _Optional[_Union[_common_pb2.Provenance, _Mapping]] = ..., probability: _Optional[float] = ..., predicted_value: _Optional[float] = ..., risk_rule: _Optional[_Union[RiskGroupRule, _Mapping]] = ..., out_of_distribution: _Optional[_Iterable[_Union[OutOfDistribution, _Mapping]]] = ..., manifest_sha256: _Optional[str] = ..., intended_use: _Optional[str] = ..., model_type: _Optional[str] = ..., time_unit: _Optional[str] = ..., fallback_used: _Optional[bool] = ..., missing_covariates: _Optional[_Iterable[str]] = ..., ignored: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelSummary(_message.Message):
    __slots__ = ("model_id", "model_version", "title", "modality", "feature_names", "manifest_sha256", "intended_use", "model_type", "covariate_names")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    INTENDED_USE_FIELD_NUMBER: _ClassVar[int]
    MODEL_TYPE_FIELD_NUMBER: _ClassVar[int]
    COVARIATE_NAMES_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model_version: str
    title: str
    modality: str
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    manifest_sha256: str
    intended_use: str
    model_type: str
    covariate_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model_id: _Optional[str] = ..., model_version: _Optional[str] = ..., title: _Optional[str] = ..., modality: _Optional[str] = ..., feature_names: _Optional[_Iterable[str]] = ..., manifest_sha256: _Optional[str] = ..., intended_use: _Optional[str] = ..., model_type: _Optional[str] = ..., covariate_names: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "rejected")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelSummary]
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedBundle]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelSummary, _Mapping]]] = ..., rejected: _Optional[_Iterable[_Union[RejectedBundle, _Mapping]]] = ...) -> None: ...

class RejectedBundle(_message.Message):
    __slots__ = ("bundle", "reason", "message")
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    bundle: str
    reason: str
    message: str
    def __init__(self, bundle: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class DescribeModelRequest(_message.Message):
    __slots__ = ("model_id", "model_version")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model_version: str
    def __init__(self, model_id: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class InputDescription(_message.Message):
    __slots__ = ("name", "unit", "training_min", "training_max", "valid_min", "valid_max")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    TRAINING_MIN_FIELD_NUMBER: _ClassVar[int]
    TRAINING_MAX_FIELD_NUMBER: _ClassVar[int]
    VALID_MIN_FIELD_NUMBER: _ClassVar[int]
    VALID_MAX_FIELD_NUMBER: _ClassVar[int]
    name: str
    unit: str
    training_min: float
    training_max: float
    valid_min: float
    valid_max: float
    def __init__(self, name: _Optional[str] = ..., unit: _Optional[str] = ..., training_min: _Optional[float] = ..., training_max: _Optional[float] = ..., valid_min: _Optional[float] = ..., valid_max: _Optional[float] = ...) -> None: ...

class CovariateDescription(_message.Message):
    __slots__ = ("name", "type", "encoding", "unit", "valid_min", "valid_max", "categories", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    VALID_MIN_FIELD_NUMBER: _ClassVar[int]
    VALID_MAX_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    encoding: str
    unit: str
    valid_min: float
    valid_max: float
    categories: _containers.RepeatedScalarFieldContainer[str]
    description: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., encoding: _Optional[str] = ..., unit: _Optional[str] = ..., valid_min: _Optional[float] = ..., valid_max: _Optional[float] = ..., categories: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ...) -> None: ...

class EvaluationFigure(_message.Message):
    __slots__ = ("metric", "value", "dataset", "note")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    metric: str
    value: float
    dataset: str
    note: str
    def __init__(self, metric: _Optional[str] = ..., value: _Optional[float] = ..., dataset: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ModelDescription(_message.Message):
    __slots__ = ("summary", "contraindications", "source", "inputs", "covariates", "outputs", "risk_rule", "horizons", "time_unit", "has_fallback", "evaluation", "readings", "plan_sha256", "signed", "plan_json", "required_inputs")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CONTRAINDICATIONS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    COVARIATES_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    RISK_RULE_FIELD_NUMBER: _ClassVar[int]
    HORIZONS_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIT_FIELD_NUMBER: _ClassVar[int]
    HAS_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    READINGS_FIELD_NUMBER: _ClassVar[int]
    PLAN_SHA256_FIELD_NUMBER: _ClassVar[int]
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_INPUTS_FIELD_NUMBER: _ClassVar[int]
    summary: ModelSummary
    contraindications: _containers.RepeatedScalarFieldContainer[str]
    source: str
    inputs: _containers.RepeatedCompositeFieldContainer[InputDescription]
    covariates: _containers.RepeatedCompositeFieldContainer[CovariateDescription]
    outputs: _containers.RepeatedScalarFieldContainer[str]
    risk_rule: RiskGroupRule
    horizons: _containers.RepeatedScalarFieldContainer[float]
    time_unit: str
    has_fallback: bool
    evaluation: _containers.RepeatedCompositeFieldContainer[EvaluationFigure]
    readings: _containers.RepeatedScalarFieldContainer[str]
    plan_sha256: str
    signed: bool
    plan_json: str
    required_inputs: RequiredInputs
    def __init__(self, summary: _Optional[_Union[ModelSummary, _Mapping]] = ..., contraindications: _Optional[_Iterable[str]] = ..., source: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[InputDescription, _Mapping]]] = ..., covariates: _Optional[_Iterable[_Union[CovariateDescription, _Mapping]]] = ..., outputs: _Optional[_Iterable[str]] = ..., risk_rule: _Optional[_Union[RiskGroupRule, _Mapping]] = ..., horizons: _Optional[_Iterable[float]] = ..., time_unit: _Optional[str] = ..., has_fallback: _Optional[bool] = ..., evaluation: _Optional[_Iterable[_Union[EvaluationFigure, _Mapping]]] = ..., readings: _Optional[_Iterable[str]] = ..., plan_sha256: _Optional[str] = ..., signed: _Optional[bool] = ..., plan_json: _Optional[str] = ..., required_inputs: _Optional[_Union[RequiredInputs, _Mapping]] = ...) -> None: ...

class RequiredInputs(_message.Message):
    __slots__ = ("modality", "phases")
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    modality: str
    phases: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, modality: _Optional[str] = ..., phases: _Optional[_Iterable[str]] = ...) -> None: ...

class ReloadModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadModelsResponse(_message.Message):
    __slots__ = ("loaded", "rejected")
    LOADED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    loaded: _containers.RepeatedScalarFieldContainer[str]
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedBundle]
    def __init__(self, loaded: _Optional[_Iterable[str]] = ..., rejected: _Optional[_Iterable[_Union[RejectedBundle, _Mapping]]] = ...) -> None: ...
