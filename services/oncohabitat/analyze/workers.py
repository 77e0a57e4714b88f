"""The four worker services as in-process servicers, and the orchestrator's pipeline context around them.

Each servicer is built exactly as its service's ``__main__`` builds it (same settings classes, so
``ONCOHABITAT_<SERVICE>_*`` variables apply), over one study store in the output folder; the scoring
registry is loaded once (hash-verified, lock-pinned, test vectors replayed) without the hot-reload thread, and the
stages learn the served models from that scoring servicer (``ServedModels``), as the orchestrator does over gRPC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from oncohabitat.analyze.inprocess import InProcessStub
from oncohabitat.common.blobstore import BlobStore
from oncohabitat.common.codec import VolumeCodec
from oncohabitat.dicomio import RoiSelection
from oncohabitat.dicomio.dce import DceRules
from oncohabitat.dicomio.roi_selection import DEFAULT_ROI_PATTERN
from oncohabitat.features.engine import InlineRunner
from oncohabitat.features.pool import PoolRunner
from oncohabitat.features.servicer import FeaturesServicer
from oncohabitat.orchestrator.served_models import ServedModels
from oncohabitat.orchestrator.stages import PipelineContext
from oncohabitat.regions.servicer import RegionsServicer
from oncohabitat.scoring.live import LiveRegistry
from oncohabitat.scoring.servicer import ScoringServicer
from oncohabitat.segmentation.segmenter import Segmenter
from oncohabitat.segmentation.servicer import SegmentationServicer
from oncohabitat.segmentation.settings import SegmentationSettings
from oncohabitat.v1 import features_pb2_grpc, regions_pb2_grpc, scoring_pb2_grpc, segmentation_pb2_grpc


@dataclass
class InProcessWorkers:
    """The pipeline context with in-process workers; :meth:`close` stops the feature worker processes."""

    context: PipelineContext
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Release worker processes."""
        for close in self.closers:
            close()


def build_workers(
    dicom_dir: Path,
    work_dir: Path,
    models_dir: Path,
    *,
    feature_workers: int = 0,
    dce_rules: DceRules | None = None,
) -> InProcessWorkers:
    """Servicers and context for a study in ``dicom_dir``; study store and exports under ``work_dir``.

    Args:
        feature_workers: pyradiomics worker processes (0 = the CPUs available, 1 = in this process).
    """
    blobs = BlobStore(work_dir / "blobs")
    codec = VolumeCodec(blobs)
    segmentation_settings = SegmentationSettings(models_dir=models_dir)
    segmenter = Segmenter.load(
        models_dir,
        segmentation_settings.resolved_profiles_file,
        default_profile=segmentation_settings.default_profile,
        intra_op_threads=segmentation_settings.intra_op_threads,
    )
    runner: PoolRunner | InlineRunner = InlineRunner() if feature_workers == 1 else PoolRunner(feature_workers or None)
    scoring = LiveRegistry(models_dir, require_lock=True)
    scoring.reload(strict=True)
    scoring_stub = cast(scoring_pb2_grpc.ScoringStub, InProcessStub(ScoringServicer(scoring)))
    context = PipelineContext(
        blobs=blobs,
        dicom_store=dicom_dir.resolve(),
        exports_dir=work_dir / "exports",
        served_models=ServedModels(scoring_stub),
        segmentation=cast(
            segmentation_pb2_grpc.SegmentationStub, InProcessStub(SegmentationServicer(codec, segmenter))
        ),
        regions=cast(regions_pb2_grpc.RegionsStub, InProcessStub(RegionsServicer(codec, models_dir))),
        features=cast(features_pb2_grpc.FeaturesStub, InProcessStub(FeaturesServicer(codec, runner))),
        scoring=scoring_stub,
        roi_selection=RoiSelection(name=None, pattern=DEFAULT_ROI_PATTERN),
        dce_rules=dce_rules,
    )
    closers = [runner.close] if isinstance(runner, PoolRunner) else []
    return InProcessWorkers(context, closers)
