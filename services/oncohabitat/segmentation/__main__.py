"""Run the segmentation service: ``python -m oncohabitat.segmentation``."""

from __future__ import annotations

import sys

from oncohabitat.common.blobstore import BlobStore
from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.service_main import ServiceParts, run_service
from oncohabitat.segmentation.segmenter import Segmenter
from oncohabitat.segmentation.servicer import SegmentationServicer
from oncohabitat.segmentation.settings import SegmentationSettings
from oncohabitat.v1 import segmentation_pb2_grpc


def build(settings: SegmentationSettings) -> ServiceParts:
    """Servicers of the segmentation service; a bundle that does not verify raises (the service exits 3)."""
    segmenter = Segmenter.load(
        settings.models_dir,
        settings.resolved_profiles_file,
        default_profile=settings.default_profile,
        intra_op_threads=settings.intra_op_threads,
        max_concurrent=settings.max_concurrent,
    )
    servicer = SegmentationServicer(VolumeCodec(BlobStore(settings.blob_dir)), segmenter)
    return ServiceParts(
        registrations=[lambda server: segmentation_pb2_grpc.add_SegmentationServicer_to_server(servicer, server)],
        service_names=["oncohabitat.v1.Segmentation"],
    )


def main() -> int:
    """Serve until SIGTERM."""
    return run_service("segmentation", SegmentationSettings, build)


if __name__ == "__main__":
    sys.exit(main())
