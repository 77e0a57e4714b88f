from oncohabitat.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StudyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STUDY_STATE_UNSPECIFIED: _ClassVar[StudyState]
    STUDY_STATE_RECEIVING: _ClassVar[StudyState]
    STUDY_STATE_COMPLETE: _ClassVar[StudyState]
    STUDY_STATE_HANDED_OFF: _ClassVar[StudyState]
    STUDY_STATE_REJECTED: _ClassVar[StudyState]
STUDY_STATE_UNSPECIFIED: StudyState
STUDY_STATE_RECEIVING: StudyState
STUDY_STATE_COMPLETE: StudyState
STUDY_STATE_HANDED_OFF: StudyState
STUDY_STATE_REJECTED: StudyState

class SeriesSummary(_message.Message):
    __slots__ = ("series_key", "modality", "sop_class", "instance_count", "classification", "reason", "phases")
    SERIES_KEY_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    SOP_CLASS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    series_key: str
    modality: str
    sop_class: str
    instance_count: int
    classification: str
    reason: str
    phases: _containers.RepeatedCompositeFieldContainer[_common_pb2.Phase]
    def __init__(self, series_key: _Optional[str] = ..., modality: _Optional[str] = ..., sop_class: _Optional[str] = ..., instance_count: _Optional[int] = ..., classification: _Optional[str] = ..., reason: _Optional[str] = ..., phases: _Optional[_Iterable[_Union[_common_pb2.Phase, _Mapping]]] = ...) -> None: ...

class StudySummary(_message.Message):
    __slots__ = ("study_key", "state", "instance_count", "bytes_stored", "first_received_at", "last_received_at", "reason", "series", "job_id")
    STUDY_KEY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    BYTES_STORED_FIELD_NUMBER: _ClassVar[int]
    FIRST_RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    study_key: str
    state: StudyState
    instance_count: int
    bytes_stored: int
    first_received_at: str
    last_received_at: str
    reason: str
    series: _containers.RepeatedCompositeFieldContainer[SeriesSummary]
    job_id: str
    def __init__(self, study_key: _Optional[str] = ..., state: _Optional[_Union[StudyState, str]] = ..., instance_count: _Optional[int] = ..., bytes_stored: _Optional[int] = ..., first_received_at: _Optional[str] = ..., last_received_at: _Optional[str] = ..., reason: _Optional[str] = ..., series: _Optional[_Iterable[_Union[SeriesSummary, _Mapping]]] = ..., job_id: _Optional[str] = ...) -> None: ...

class ListStudiesRequest(_message.Message):
    __slots__ = ("page_size", "state")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    state: StudyState
    def __init__(self, page_size: _Optional[int] = ..., state: _Optional[_Union[StudyState, str]] = ...) -> None: ...

class ListStudiesResponse(_message.Message):
    __slots__ = ("studies",)
    STUDIES_FIELD_NUMBER: _ClassVar[int]
    studies: _containers.RepeatedCompositeFieldContainer[StudySummary]
    def __init__(self, studies: _Optional[_Iterable[_Union[StudySummary, _Mapping]]] = ...) -> None: ...

class GetStudyRequest(_message.Message):
    __slots__ = ("study_key",)
    STUDY_KEY_FIELD_NUMBER: _ClassVar[int]
    study_key: str
    def __init__(self, study_key: _Optional[str] = ...) -> None: ...

class ResubmitStudyRequest(_message.Message):
    __slots__ = ("study_key",)
    STUDY_KEY_FIELD_NUMBER: _ClassVar[int]
    study_key: str
    def __init__(self, study_key: _Optional[str] = ...) -> None: ...

class ResubmitStudyResponse(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...
