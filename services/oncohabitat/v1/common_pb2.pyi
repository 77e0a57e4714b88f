from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]
    DTYPE_INT8: _ClassVar[DType]
    DTYPE_UINT16: _ClassVar[DType]
    DTYPE_INT16: _ClassVar[DType]
    DTYPE_UINT32: _ClassVar[DType]
    DTYPE_INT32: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT64: _ClassVar[DType]
    DTYPE_INT64: _ClassVar[DType]

class PhaseRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PHASE_ROLE_UNSPECIFIED: _ClassVar[PhaseRole]
    PHASE_ROLE_PRE_CONTRAST: _ClassVar[PhaseRole]
    PHASE_ROLE_POST_CONTRAST: _ClassVar[PhaseRole]
    PHASE_ROLE_SINGLE: _ClassVar[PhaseRole]
    PHASE_ROLE_SUBTRACTION: _ClassVar[PhaseRole]
DTYPE_UNSPECIFIED: DType
DTYPE_UINT8: DType
DTYPE_INT8: DType
DTYPE_UINT16: DType
DTYPE_INT16: DType
DTYPE_UINT32: DType
DTYPE_INT32: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT64: DType
DTYPE_INT64: DType
PHASE_ROLE_UNSPECIFIED: PhaseRole
PHASE_ROLE_PRE_CONTRAST: PhaseRole
PHASE_ROLE_POST_CONTRAST: PhaseRole
PHASE_ROLE_SINGLE: PhaseRole
PHASE_ROLE_SUBTRACTION: PhaseRole

class BlobRef(_message.Message):
    __slots__ = ("sha256", "size_bytes")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size_bytes: int
    def __init__(self, sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class Volume(_message.Message):
    __slots__ = ("shape", "spacing", "origin", "direction", "dtype", "data", "blob")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    SPACING_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    spacing: _containers.RepeatedScalarFieldContainer[float]
    origin: _containers.RepeatedScalarFieldContainer[float]
    direction: _containers.RepeatedScalarFieldContainer[float]
    dtype: DType
    data: bytes
    blob: BlobRef
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., spacing: _Optional[_Iterable[float]] = ..., origin: _Optional[_Iterable[float]] = ..., direction: _Optional[_Iterable[float]] = ..., dtype: _Optional[_Union[DType, str]] = ..., data: _Optional[bytes] = ..., blob: _Optional[_Union[BlobRef, _Mapping]] = ...) -> None: ...

class Label(_message.Message):
    __slots__ = ("value", "name", "description")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    value: int
    name: str
    description: str
    def __init__(self, value: _Optional[int] = ..., name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class LabelMap(_message.Message):
    __slots__ = ("volume", "labels")
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    volume: Volume
    labels: _containers.RepeatedCompositeFieldContainer[Label]
    def __init__(self, volume: _Optional[_Union[Volume, _Mapping]] = ..., labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ...) -> None: ...

class Phase(_message.Message):
    __slots__ = ("role", "index", "time_offset_s", "series_key", "volume", "time_after_injection_s", "resampled_to_pre_contrast")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TIME_OFFSET_S_FIELD_NUMBER: _ClassVar[int]
    SERIES_KEY_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    TIME_AFTER_INJECTION_S_FIELD_NUMBER: _ClassVar[int]
    RESAMPLED_TO_PRE_CONTRAST_FIELD_NUMBER: _ClassVar[int]
    role: PhaseRole
    index: int
    time_offset_s: float
    series_key: str
    volume: Volume
    time_after_injection_s: float
    resampled_to_pre_contrast: bool
    def __init__(self, role: _Optional[_Union[PhaseRole, str]] = ..., index: _Optional[int] = ..., time_offset_s: _Optional[float] = ..., series_key: _Optional[str] = ..., volume: _Optional[_Union[Volume, _Mapping]] = ..., time_after_injection_s: _Optional[float] = ..., resampled_to_pre_contrast: _Optional[bool] = ...) -> None: ...

class Study(_message.Message):
    __slots__ = ("study_key", "modality", "phases", "supplied_mask")
    STUDY_KEY_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    SUPPLIED_MASK_FIELD_NUMBER: _ClassVar[int]
    study_key: str
    modality: str
    phases: _containers.RepeatedCompositeFieldContainer[Phase]
    supplied_mask: LabelMap
    def __init__(self, study_key: _Optional[str] = ..., modality: _Optional[str] = ..., phases: _Optional[_Iterable[_Union[Phase, _Mapping]]] = ..., supplied_mask: _Optional[_Union[LabelMap, _Mapping]] = ...) -> None: ...

class ComponentVersion(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class Provenance(_message.Message):
    __slots__ = ("components", "parameter_hashes", "input_hashes", "model_id", "model_version")
    class ParameterHashesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class InputHashesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_HASHES_FIELD_NUMBER: _ClassVar[int]
    INPUT_HASHES_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    components: _containers.RepeatedCompositeFieldContainer[ComponentVersion]
    parameter_hashes: _containers.ScalarMap[str, str]
    input_hashes: _containers.ScalarMap[str, str]
    model_id: str
    model_version: str
    def __init__(self, components: _Optional[_Iterable[_Union[ComponentVersion, _Mapping]]] = ..., parameter_hashes: _Optional[_Mapping[str, str]] = ..., input_hashes: _Optional[_Mapping[str, str]] = ..., model_id: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class ErrorDetail(_message.Message):
    __slots__ = ("reason", "field", "message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    field: str
    message: str
    def __init__(self, reason: _Optional[str] = ..., field: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class CovariateValue(_message.Message):
    __slots__ = ("number", "flag", "category")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    number: float
    flag: bool
    category: str
    def __init__(self, number: _Optional[float] = ..., flag: _Optional[bool] = ..., category: _Optional[str] = ...) -> None: ...
