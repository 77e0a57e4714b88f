from oncohabitat.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScoreRequest(_message.Message):
    __slots__ = ("model_id", "model_version", "features")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model_version: str
    features: _containers.ScalarMap[str, float]
    def __init__(self, model_id: _Optional[str] = ..., model_version: _Optional[str] = ..., features: _Optional[_Mapping[str, float]] = ...) -> None: ...

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

class SurvivalPoint(_message.Message):
    __slots__ = ("time", "probability")
    TIME_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    time: float
    probability: float
    def __init__(self, time: _Optional[float] = ..., probability: _Optional[float] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("score", "risk_group", "contributions", "survival", "cutoff", "model_id", "model_version", "provenance")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RISK_GROUP_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    SURVIVAL_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    score: float
    risk_group: str
    contributions: _containers.RepeatedCompositeFieldContainer[FeatureContribution]
    survival: _containers.RepeatedCompositeFieldContainer[SurvivalPoint]
    cutoff: float
    model_id: str
    model_version: str
    provenance: _common_pb2.Provenance
    def __init__(self, score: _Optional[float] = ..., risk_group: _Optional[str] = ..., contributions: _Optional[_Iterable[_Union[FeatureContribution, _Mapping]]] = ..., survival: _Optional[_Iterable[_Union[SurvivalPoint, _Mapping]]] = ..., cutoff: _Optional[float] = ..., model_id: _Optional[str] = ..., model_version: _Optional[str] = ..., provenance: _Optional[_Union[_common_pb2.Provenance, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelSummary(_message.Message):
    __slots__ = ("model_id", "model_version", "title", "modality", "feature_names", "manifest_sha256", "intended_use")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    INTENDED_USE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model_version: str
    title: str
    modality: str
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    manifest_sha256: str
    intended_use: str
    def __init__(self, model_id: _Optional[str] = ..., model_version: _Optional[str] = ..., title: _Optional[str] = ..., modality: _Optional[str] = ..., feature_names: _Optional[_Iterable[str]] = ..., manifest_sha256: _Optional[str] = ..., intended_use: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelSummary]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelSummary, _Mapping]]] = ...) -> None: ...
