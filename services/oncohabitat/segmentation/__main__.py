"""Run the segmentation service: ``python -m oncohabitat.segmentation``."""

from __future__ import annotations

import sys

from oncohabitat.common.blobstore import BlobStore
from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.service_main import ServiceParts, run_service
from oncohabitat.segmentation.servicer import SegmentationServicer
from oncohabitat.segmentation.settings import SegmentationSettings
from oncohabitat.v1 import segmentation_pb2_grpc


def build(settings: SegmentationSettings) -> ServiceParts:
    """Servicers of the segmentation service."""
    servicer = SegmentationServicer(VolumeCodec(BlobStore(settings.blob_dir)))
    return ServiceParts(
        registrations=[lambda server: segmentation_pb2_grpc.add_SegmentationServicer_to_server(servicer, server)],
        service_names=["oncohabitat.v1.Segmentation"],
    )


def main() -> int:
    """Serve until SIGTERM."""
    return run_service("segmentation", SegmentationSettings, build)


if __name__ == "__main__":
    sys.exit(main())
