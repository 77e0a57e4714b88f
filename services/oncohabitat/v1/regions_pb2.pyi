from oncohabitat.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BuildRegionsRequest(_message.Message):
    __slots__ = ("study", "tumour_mask", "profile_json")
    STUDY_FIELD_NUMBER: _ClassVar[int]
    TUMOUR_MASK_FIELD_NUMBER: _ClassVar[int]
    PROFILE_JSON_FIELD_NUMBER: _ClassVar[int]
    study: _common_pb2.Study
    tumour_mask: _common_pb2.LabelMap
    profile_json: str
    def __init__(self, study: _Optional[_Union[_common_pb2.Study, _Mapping]] = ..., tumour_mask: _Optional[_Union[_common_pb2.LabelMap, _Mapping]] = ..., profile_json: _Optional[str] = ...) -> None: ...

class RegionStatistics(_message.Message):
    __slots__ = ("region", "voxel_count", "volume_ml", "mean_values")
    class MeanValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REGION_FIELD_NUMBER: _ClassVar[int]
    VOXEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    VOLUME_ML_FIELD_NUMBER: _ClassVar[int]
    MEAN_VALUES_FIELD_NUMBER: _ClassVar[int]
    region: str
    voxel_count: int
    volume_ml: float
    mean_values: _containers.ScalarMap[str, float]
    def __init__(self, region: _Optional[str] = ..., voxel_count: _Optional[int] = ..., volume_ml: _Optional[float] = ..., mean_values: _Optional[_Mapping[str, float]] = ...) -> None: ...

class NamedVolume(_message.Message):
    __slots__ = ("name", "volume")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    name: str
    volume: _common_pb2.Volume
    def __init__(self, name: _Optional[str] = ..., volume: _Optional[_Union[_common_pb2.Volume, _Mapping]] = ...) -> None: ...

class BuildRegionsResponse(_message.Message):
    __slots__ = ("regions", "derived_images", "statistics", "msi_features", "provenance", "parenchyma_s0_mean")
    class MsiFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    DERIVED_IMAGES_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    MSI_FEATURES_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    PARENCHYMA_S0_MEAN_FIELD_NUMBER: _ClassVar[int]
    regions: _containers.RepeatedCompositeFieldContainer[_common_pb2.LabelMap]
    derived_images: _containers.RepeatedCompositeFieldContainer[NamedVolume]
    statistics: _containers.RepeatedCompositeFieldContainer[RegionStatistics]
    msi_features: _containers.ScalarMap[str, float]
    provenance: _common_pb2.Provenance
    parenchyma_s0_mean: float
    def __init__(self, regions: _Optional[_Iterable[_Union[_common_pb2.LabelMap, _Mapping]]] = ..., derived_images: _Optional[_Iterable[_Union[NamedVolume, _Mapping]]] = ..., statistics: _Optional[_Iterable[_Union[RegionStatistics, _Mapping]]] = ..., msi_features: _Optional[_Mapping[str, float]] = ..., provenance: _Optional[_Union[_common_pb2.Provenance, _Mapping]] = ..., parenchyma_s0_mean: _Optional[float] = ...) -> None: ...
