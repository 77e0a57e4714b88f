"""The pipeline stages of a job, in order: load_study -> segment -> regions -> features -> score -> export.

Each stage reads earlier results (JSON), calls one worker service or library, and returns a small JSON result;
volumes are kept in the content-addressed study store and referenced by digest. Every stage is safe to run
again after a crash (the runner gives at-least-once execution): results are recomputed identically, and the
export derives its DICOM UIDs from the job id, so a re-sent SEG/SR replaces itself in PACS instead of
duplicating.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from oncohabitat.common.blobstore import BlobStore
from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.errors import error_detail_from
from oncohabitat.dicomio import RoiSelection
from oncohabitat.dicomio.dce import DceRules
from oncohabitat.orchestrator.export_stage import ExportFailedError as ExportFailedError  # re-export
from oncohabitat.orchestrator.export_stage import export_stage
from oncohabitat.orchestrator.feature_stages import features_stage, regions_stage
from oncohabitat.orchestrator.jobs import Job
from oncohabitat.orchestrator.results import SCORE_STAGE, SEGMENT_STAGE
from oncohabitat.orchestrator.runner import FunctionStage, StageOutcome, StageResults
from oncohabitat.orchestrator.score_stage import score_stage
from oncohabitat.orchestrator.served_models import ModelCatalogue
from oncohabitat.orchestrator.study_loading import (
    Handoff,
    ReviewNeeded,
    load_study,
    resolve_instance_paths,
    series_key,
)
from oncohabitat.v1 import (
    common_pb2,
    features_pb2_grpc,
    regions_pb2_grpc,
    scoring_pb2_grpc,
    segmentation_pb2,
    segmentation_pb2_grpc,
)

if TYPE_CHECKING:
    import SimpleITK as sitk

logger = logging.getLogger(__name__)

LOAD_STAGE = "load_study"
REGIONS_STAGE = "regions"
FEATURES_STAGE = "features"
EXPORT_STAGE = "export"
#: Worker answers that mean "this input cannot be processed": a person must look at the study.
REVIEW_CODES = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND}
)


@dataclass(frozen=True)
class Destination:
    """A DICOM peer: AE title, host, port."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``AE@HOST:PORT`` -> Destination."""
        ae_title, _, address = text.partition("@")
        host, _, port = address.rpartition(":")
        return cls(ae_title, host.strip("[]"), int(port))


@dataclass
class PipelineContext:
    """What the stages share: the study store, worker stubs, the served models and deployment choices."""

    blobs: BlobStore
    dicom_store: Path
    exports_dir: Path
    served_models: ModelCatalogue  # the scoring service's models (orchestrator.served_models)
    segmentation: segmentation_pb2_grpc.SegmentationStub
    regions: regions_pb2_grpc.RegionsStub
    features: features_pb2_grpc.FeaturesStub
    scoring: scoring_pb2_grpc.ScoringStub
    roi_selection: RoiSelection
    dce_rules: DceRules | None = None
    default_destination: str = ""
    export_destinations: str = ""  # NAME=AE@HOST:PORT,... (orchestrator.destinations): the allow-list beyond default
    calling_ae: str = "ONCOHABITAT"
    export_retries: int = 3
    rpc_timeout_s: float = 600.0

    @property
    def codec(self) -> VolumeCodec:
        """Volumes above 1 MiB travel as references to the study store."""
        return VolumeCodec(self.blobs)

    def save_message(self, message: Any) -> str:
        """Persist a (small) proto message in the study store; returns its digest."""
        return self.blobs.put(message.SerializeToString())

    def load_volume(self, digest: str) -> common_pb2.Volume:
        """A Volume message saved by :meth:`save_message`."""
        return common_pb2.Volume.FromString(self.blobs.get(digest))


def _study_message(context: PipelineContext, loaded: Mapping[str, Any]) -> common_pb2.Study:
    """The Study message of a loaded study: its DCE phases, or its single image."""
    if not loaded.get("phases"):
        phase = common_pb2.Phase(role=common_pb2.PHASE_ROLE_SINGLE, volume=context.load_volume(loaded["image_volume"]))
        return common_pb2.Study(study_key="", modality=loaded["modality"], phases=[phase])
    return common_pb2.Study(
        modality=loaded["modality"],
        phases=[
            common_pb2.Phase(
                role=common_pb2.PHASE_ROLE_PRE_CONTRAST if p["pre_contrast"] else common_pb2.PHASE_ROLE_POST_CONTRAST,
                index=p["index"],
                time_offset_s=p["time_from_pre_s"],
                time_after_injection_s=p.get("time_after_injection_s"),
                resampled_to_pre_contrast=bool(p.get("resampled", False)),
                volume=context.load_volume(p["volume"]),
            )
            for p in loaded["phases"]
        ],
    )


def load_study_stage(context: PipelineContext, job: Job, _previous: StageResults) -> StageOutcome:
    """Assemble the image series and rasterise the supplied mask; both go to the study store."""
    paths = resolve_instance_paths(context.dicom_store, job.request.get("instance_paths", []))
    try:
        summary = job.request.get("dce_classification")
        handoff = Handoff(summary, context.dicom_store) if summary else None
        study = load_study(paths, context.roi_selection, context.dce_rules, handoff)
    except ReviewNeeded as review:
        return StageOutcome.needs_review(review.reason)
    modality = study.series.modality
    if study.mask is None and not study.phases:
        return StageOutcome.needs_review(
            f"NO_MASK: the {modality} study carries no RTSTRUCT/SEG and automatic segmentation needs a DCE study"
        )
    saved: dict[int, str] = {}  # id(image) -> digest: the reference series is also one of the phases

    def save_image(image: sitk.Image) -> str:
        if id(image) not in saved:
            saved[id(image)] = context.save_message(context.codec.encode_image(image))
        return saved[id(image)]

    result: dict[str, Any] = {
        "modality": modality,
        "series_key": series_key(study.series.series_instance_uid),
        "series_paths": [str(p.relative_to(context.dicom_store.resolve())) for p in study.series_paths],
        "image_volume": save_image(study.series.image),
        "supplied_mask_volume": "",
        "mask_kind": study.mask_kind,
        "roi_name": "",
        "phases": [
            {
                "index": phase.index,
                "pre_contrast": phase.pre_contrast,
                "time_from_pre_s": phase.time_from_pre_s,
                "time_after_injection_s": phase.time_after_injection_s,
                "resampled": phase.resampled,
                "volume": save_image(phase.image),
            }
            for phase in study.phases
        ],
    }
    if study.mask is not None:
        result["supplied_mask_volume"] = context.save_message(context.codec.encode_image(study.mask.image))
        result["roi_name"] = study.mask.roi_name
    return StageOutcome.ok(result)


def segment_stage(context: PipelineContext, _job: Job, previous: StageResults) -> StageOutcome:
    """Tumour mask from the segmentation service (supplied masks pass through, resampled if needed; a submitted
    seed point, patient coordinates in mm, selects seeded spatial fuzzy c-means)."""
    loaded = previous[LOAD_STAGE]
    request = segmentation_pb2.SegmentRequest(study=_study_message(context, loaded))
    if loaded["supplied_mask_volume"]:
        request.supplied_mask.CopyFrom(
            common_pb2.LabelMap(
                volume=context.load_volume(loaded["supplied_mask_volume"]),
                labels=[common_pb2.Label(value=1, name="tumour", description=loaded["mask_kind"])],
            )
        )
    seed = _job.request.get("seed_point_mm")
    if seed and not loaded["supplied_mask_volume"]:  # a seed point selects seeded spatial FCM
        request.seed.CopyFrom(segmentation_pb2.PointMm(x=seed[0], y=seed[1], z=seed[2]))
        request.has_seed = True
    response = context.segmentation.Segment(request, timeout=context.rpc_timeout_s)
    if response.outcome != segmentation_pb2.SEGMENTATION_OUTCOME_OK:
        outcome = segmentation_pb2.SegmentationOutcome.Name(response.outcome).removeprefix("SEGMENTATION_OUTCOME_")
        return StageOutcome.needs_review(f"SEGMENTATION_{outcome}: {response.reason}")
    return StageOutcome.ok(
        {
            "method": response.method,
            "mask_volume": context.save_message(response.mask.volume),
            "volume_ml": response.qc.volume_ml,
            "component_count": response.qc.component_count,
        }
    )


def build_stages(context: PipelineContext) -> list[FunctionStage]:
    """The stage list the runner executes, in order."""

    def bind(name: str, function: Callable[[PipelineContext, Job, StageResults], StageOutcome]) -> FunctionStage:
        def run(job: Job, previous: StageResults) -> StageOutcome:
            try:
                return function(context, job, previous)
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else None
                if code not in REVIEW_CODES:
                    raise  # transient codes are retried by the runner, others fail the job
                detail = error_detail_from(exc)
                reason = detail.reason if detail is not None and detail.reason else str(code.name)  # type: ignore[union-attr]
                return StageOutcome.needs_review(f"{name.upper()}_REFUSED: {reason}")

        return FunctionStage(name, run)

    return [
        bind(LOAD_STAGE, load_study_stage),
        bind(SEGMENT_STAGE, segment_stage),
        bind(REGIONS_STAGE, regions_stage),
        bind(FEATURES_STAGE, features_stage),
        bind(SCORE_STAGE, score_stage),
        bind(EXPORT_STAGE, export_stage),
    ]
