from oncohabitat.v1 import common_pb2 as _common_pb2
from oncohabitat.v1 import scoring_pb2 as _scoring_pb2
from oncohabitat.v1 import segmentation_pb2 as _segmentation_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_DONE: _ClassVar[JobState]
    JOB_STATE_NEEDS_REVIEW: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_DONE: JobState
JOB_STATE_NEEDS_REVIEW: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class SubmitStudyRequest(_message.Message):
    __slots__ = ("study_key", "content_digest", "model_ids", "export_destination", "instance_paths", "rerun", "covariates", "seed_point", "dce_classification_json")
    class CovariatesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.CovariateValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.CovariateValue, _Mapping]] = ...) -> None: ...
    STUDY_KEY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    MODEL_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPORT_DESTINATION_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_PATHS_FIELD_NUMBER: _ClassVar[int]
    RERUN_FIELD_NUMBER: _ClassVar[int]
    COVARIATES_FIELD_NUMBER: _ClassVar[int]
    SEED_POINT_FIELD_NUMBER: _ClassVar[int]
    DCE_CLASSIFICATION_JSON_FIELD_NUMBER: _ClassVar[int]
    study_key: str
    content_digest: str
    model_ids: _containers.RepeatedScalarFieldContainer[str]
    export_destination: str
    instance_paths: _containers.RepeatedScalarFieldContainer[str]
    rerun: bool
    covariates: _containers.MessageMap[str, _common_pb2.CovariateValue]
    seed_point: _segmentation_pb2.PointMm
    dce_classification_json: str
    def __init__(self, study_key: _Optional[str] = ..., content_digest: _Optional[str] = ..., model_ids: _Optional[_Iterable[str]] = ..., export_destination: _Optional[str] = ..., instance_paths: _Optional[_Iterable[str]] = ..., rerun: _Optional[bool] = ..., covariates: _Optional[_Mapping[str, _common_pb2.CovariateValue]] = ..., seed_point: _Optional[_Union[_segmentation_pb2.PointMm, _Mapping]] = ..., dce_classification_json: _Optional[str] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("model_ids", "export_destination", "covariates", "seed_point")
    class CovariatesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.CovariateValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.CovariateValue, _Mapping]] = ...) -> None: ...
    MODEL_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPORT_DESTINATION_FIELD_NUMBER: _ClassVar[int]
    COVARIATES_FIELD_NUMBER: _ClassVar[int]
    SEED_POINT_FIELD_NUMBER: _ClassVar[int]
    model_ids: _containers.RepeatedScalarFieldContainer[str]
    export_destination: str
    covariates: _containers.MessageMap[str, _common_pb2.CovariateValue]
    seed_point: _segmentation_pb2.PointMm
    def __init__(self, model_ids: _Optional[_Iterable[str]] = ..., export_destination: _Optional[str] = ..., covariates: _Optional[_Mapping[str, _common_pb2.CovariateValue]] = ..., seed_point: _Optional[_Union[_segmentation_pb2.PointMm, _Mapping]] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("header", "data", "end_of_instance")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    END_OF_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    data: bytes
    end_of_instance: bool
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., data: _Optional[bytes] = ..., end_of_instance: _Optional[bool] = ...) -> None: ...

class SubmitStudyResponse(_message.Message):
    __slots__ = ("job_id", "created")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    created: bool
    def __init__(self, job_id: _Optional[str] = ..., created: _Optional[bool] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "study_key", "state", "stage", "reason", "attempts", "created_at", "updated_at")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STUDY_KEY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    study_key: str
    state: JobState
    stage: str
    reason: str
    attempts: int
    created_at: str
    updated_at: str
    def __init__(self, job_id: _Optional[str] = ..., study_key: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., stage: _Optional[str] = ..., reason: _Optional[str] = ..., attempts: _Optional[int] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page_size", "state", "page_token", "created_from", "created_to", "model_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CREATED_FROM_FIELD_NUMBER: _ClassVar[int]
    CREATED_TO_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    state: JobState
    page_token: str
    created_from: str
    created_to: str
    model_id: str
    def __init__(self, page_size: _Optional[int] = ..., state: _Optional[_Union[JobState, str]] = ..., page_token: _Optional[str] = ..., created_from: _Optional[str] = ..., created_to: _Optional[str] = ..., model_id: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetResultRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ModelResult(_message.Message):
    __slots__ = ("model_id", "model_version", "score", "risk_group", "features", "contributions", "cutoff", "provenance", "probability", "predicted_value", "survival", "time_unit", "risk_rule", "out_of_distribution", "manifest_sha256", "intended_use", "model_type", "fallback_used", "missing_covariates")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ContributionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RISK_GROUP_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_VALUE_FIELD_NUMBER: _ClassVar[int]
    SURVIVAL_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIT_FIELD_NUMBER: _ClassVar[int]
    RISK_RULE_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    INTENDED_USE_FIELD_NUMBER: _ClassVar[int]
    MODEL_TYPE_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_USED_FIELD_NUMBER: _ClassVar[int]
    MISSING_COVARIATES_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model_version: str
    score: float
    risk_group: str
    features: _containers.ScalarMap[str, float]
    contributions: _containers.ScalarMap[str, float]
    cutoff: float
    provenance: _common_pb2.Provenance
    probability: float
    predicted_value: float
    survival: _containers.RepeatedCompositeFieldContainer[_scoring_pb2.SurvivalPoint]
    time_unit: str
    risk_rule: _scoring_pb2.RiskGroupRule
    out_of_distribution: _containers.RepeatedCompositeFieldContainer[_scoring_pb2.OutOfDistribution]
    manifest_sha256: str
    intended_use: str
    model_type: str
    fallback_used: bool
    missing_covariates: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model_id: _Optional[str] = ..., model_version: _Optional[str] = ..., score: _Optional[float] = ..., risk_group: _Optional[str] = ..., features: _Optional[_Mapping[str, float]] = ..., contributions: _Optional[_Mapping[str, float]] = ..., cutoff: _Optional[float] = ..., provenance: _Optional[_Union[_common_pb2.Provenance, _Mapping]] = ..., probability: _Optional[float] = ..., predicted_value: _Optional[float] = ..., survival: _Optional[_Iterable[_Union[_scoring_pb2.SurvivalPoint, _Mapping]]] = ..., time_unit: _Optional[str] = ..., risk_rule: _Optional[_Union[_scoring_pb2.RiskGroupRule, _Mapping]] = ..., out_of_distribution: _Optional[_Iterable[_Union[_scoring_pb2.OutOfDistribution, _Mapping]]] = ..., manifest_sha256: _Optional[str] = ..., intended_use: _Optional[str] = ..., model_type: _Optional[str] = ..., fallback_used: _Optional[bool] = ..., missing_covariates: _Optional[_Iterable[str]] = ...) -> None: ...

class RegionSummary(_message.Message):
    __slots__ = ("region", "voxel_count", "volume_ml", "fraction_of_tumour", "mean_values")
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
    FRACTION_OF_TUMOUR_FIELD_NUMBER: _ClassVar[int]
    MEAN_VALUES_FIELD_NUMBER: _ClassVar[int]
    region: str
    voxel_count: int
    volume_ml: float
    fraction_of_tumour: float
    mean_values: _containers.ScalarMap[str, float]
    def __init__(self, region: _Optional[str] = ..., voxel_count: _Optional[int] = ..., volume_ml: _Optional[float] = ..., fraction_of_tumour: _Optional[float] = ..., mean_values: _Optional[_Mapping[str, float]] = ...) -> None: ...

class JobResult(_message.Message):
    __slots__ = ("job", "models", "segmentation_method", "exported_sop_instance_keys", "regions", "msi_features", "tumour_volume_ml", "models_not_scored")
    class MsiFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    JOB_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTATION_METHOD_FIELD_NUMBER: _ClassVar[int]
    EXPORTED_SOP_INSTANCE_KEYS_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    MSI_FEATURES_FIELD_NUMBER: _ClassVar[int]
    TUMOUR_VOLUME_ML_FIELD_NUMBER: _ClassVar[int]
    MODELS_NOT_SCORED_FIELD_NUMBER: _ClassVar[int]
    job: Job
    models: _containers.RepeatedCompositeFieldContainer[ModelResult]
    segmentation_method: str
    exported_sop_instance_keys: _containers.RepeatedScalarFieldContainer[str]
    regions: _containers.RepeatedCompositeFieldContainer[RegionSummary]
    msi_features: _containers.ScalarMap[str, float]
    tumour_volume_ml: float
    models_not_scored: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., models: _Optional[_Iterable[_Union[ModelResult, _Mapping]]] = ..., segmentation_method: _Optional[str] = ..., exported_sop_instance_keys: _Optional[_Iterable[str]] = ..., regions: _Optional[_Iterable[_Union[RegionSummary, _Mapping]]] = ..., msi_features: _Optional[_Mapping[str, float]] = ..., tumour_volume_ml: _Optional[float] = ..., models_not_scored: _Optional[_Iterable[str]] = ...) -> None: ...
