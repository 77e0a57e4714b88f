from oncohabitat.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExtractFeaturesRequest(_message.Message):
    __slots__ = ("image", "mask", "label", "settings_json", "feature_names")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_JSON_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Volume
    mask: _common_pb2.LabelMap
    label: int
    settings_json: str
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, image: _Optional[_Union[_common_pb2.Volume, _Mapping]] = ..., mask: _Optional[_Union[_common_pb2.LabelMap, _Mapping]] = ..., label: _Optional[int] = ..., settings_json: _Optional[str] = ..., feature_names: _Optional[_Iterable[str]] = ...) -> None: ...

class ExtractFeaturesResponse(_message.Message):
    __slots__ = ("values", "provenance")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    values: _containers.ScalarMap[str, float]
    provenance: _common_pb2.Provenance
    def __init__(self, values: _Optional[_Mapping[str, float]] = ..., provenance: _Optional[_Union[_common_pb2.Provenance, _Mapping]] = ...) -> None: ...

class NamedImage(_message.Message):
    __slots__ = ("name", "volume")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    name: str
    volume: _common_pb2.Volume
    def __init__(self, name: _Optional[str] = ..., volume: _Optional[_Union[_common_pb2.Volume, _Mapping]] = ...) -> None: ...

class ExtractPlanRequest(_message.Message):
    __slots__ = ("plan_json", "images", "regions", "msi_features", "statistics", "parenchyma_mean")
    class MsiFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class StatisticsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    MSI_FEATURES_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    PARENCHYMA_MEAN_FIELD_NUMBER: _ClassVar[int]
    plan_json: str
    images: _containers.RepeatedCompositeFieldContainer[NamedImage]
    regions: _containers.RepeatedCompositeFieldContainer[_common_pb2.LabelMap]
    msi_features: _containers.ScalarMap[str, float]
    statistics: _containers.ScalarMap[str, float]
    parenchyma_mean: float
    def __init__(self, plan_json: _Optional[str] = ..., images: _Optional[_Iterable[_Union[NamedImage, _Mapping]]] = ..., regions: _Optional[_Iterable[_Union[_common_pb2.LabelMap, _Mapping]]] = ..., msi_features: _Optional[_Mapping[str, float]] = ..., statistics: _Optional[_Mapping[str, float]] = ..., parenchyma_mean: _Optional[float] = ...) -> None: ...

class MissingFeature(_message.Message):
    __slots__ = ("name", "reason", "message")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    message: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ExtractPlanResponse(_message.Message):
    __slots__ = ("values", "missing", "warnings", "feature_order", "provenance")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_ORDER_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    values: _containers.ScalarMap[str, float]
    missing: _containers.RepeatedCompositeFieldContainer[MissingFeature]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    feature_order: _containers.RepeatedScalarFieldContainer[str]
    provenance: _common_pb2.Provenance
    def __init__(self, values: _Optional[_Mapping[str, float]] = ..., missing: _Optional[_Iterable[_Union[MissingFeature, _Mapping]]] = ..., warnings: _Optional[_Iterable[str]] = ..., feature_order: _Optional[_Iterable[str]] = ..., provenance: _Optional[_Union[_common_pb2.Provenance, _Mapping]] = ...) -> None: ...
