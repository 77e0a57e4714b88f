from oncohabitat.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SegmentationOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEGMENTATION_OUTCOME_UNSPECIFIED: _ClassVar[SegmentationOutcome]
    SEGMENTATION_OUTCOME_OK: _ClassVar[SegmentationOutcome]
    SEGMENTATION_OUTCOME_NO_LESION: _ClassVar[SegmentationOutcome]
    SEGMENTATION_OUTCOME_MULTIPLE_LESIONS: _ClassVar[SegmentationOutcome]
    SEGMENTATION_OUTCOME_TOUCHES_BORDER: _ClassVar[SegmentationOutcome]
    SEGMENTATION_OUTCOME_IMPLAUSIBLE_VOLUME: _ClassVar[SegmentationOutcome]
SEGMENTATION_OUTCOME_UNSPECIFIED: SegmentationOutcome
SEGMENTATION_OUTCOME_OK: SegmentationOutcome
SEGMENTATION_OUTCOME_NO_LESION: SegmentationOutcome
SEGMENTATION_OUTCOME_MULTIPLE_LESIONS: SegmentationOutcome
SEGMENTATION_OUTCOME_TOUCHES_BORDER: SegmentationOutcome
SEGMENTATION_OUTCOME_IMPLAUSIBLE_VOLUME: SegmentationOutcome

class PointMm(_message.Message):
    __slots__ = ("x", "y", "z")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    z: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., z: _Optional[float] = ...) -> None: ...

class SegmentRequest(_message.Message):
    __slots__ = ("study", "seed", "has_seed", "supplied_mask", "profile")
    STUDY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    HAS_SEED_FIELD_NUMBER: _ClassVar[int]
    SUPPLIED_MASK_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    study: _common_pb2.Study
    seed: PointMm
    has_seed: bool
    supplied_mask: _common_pb2.LabelMap
    profile: str
    def __init__(self, study: _Optional[_Union[_common_pb2.Study, _Mapping]] = ..., seed: _Optional[_Union[PointMm, _Mapping]] = ..., has_seed: _Optional[bool] = ..., supplied_mask: _Optional[_Union[_common_pb2.LabelMap, _Mapping]] = ..., profile: _Optional[str] = ...) -> None: ...

class SegmentationQc(_message.Message):
    __slots__ = ("volume_ml", "component_count", "mean_enhancement", "confidence")
    VOLUME_ML_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_ENHANCEMENT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    volume_ml: float
    component_count: int
    mean_enhancement: float
    confidence: float
    def __init__(self, volume_ml: _Optional[float] = ..., component_count: _Optional[int] = ..., mean_enhancement: _Optional[float] = ..., confidence: _Optional[float] = ...) -> None: ...

class SegmentResponse(_message.Message):
    __slots__ = ("outcome", "reason", "method", "mask", "qc", "provenance")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    QC_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    outcome: SegmentationOutcome
    reason: str
    method: str
    mask: _common_pb2.LabelMap
    qc: SegmentationQc
    provenance: _common_pb2.Provenance
    def __init__(self, outcome: _Optional[_Union[SegmentationOutcome, str]] = ..., reason: _Optional[str] = ..., method: _Optional[str] = ..., mask: _Optional[_Union[_common_pb2.LabelMap, _Mapping]] = ..., qc: _Optional[_Union[SegmentationQc, _Mapping]] = ..., provenance: _Optional[_Union[_common_pb2.Provenance, _Mapping]] = ...) -> None: ...
