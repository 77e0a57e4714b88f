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
