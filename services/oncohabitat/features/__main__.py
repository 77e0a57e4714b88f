"""Run the features service: ``python -m oncohabitat.features``."""

from __future__ import annotations

import sys

from oncohabitat.common.blobstore import BlobStore
from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.service_main import ServiceParts, run_service
from oncohabitat.features.pool import PoolRunner
from oncohabitat.features.servicer import FeaturesServicer
from oncohabitat.features.settings import FeaturesSettings
from oncohabitat.v1 import features_pb2_grpc


def build(settings: FeaturesSettings) -> ServiceParts:
    """Servicers of the features service."""
    servicer = FeaturesServicer(VolumeCodec(BlobStore(settings.blob_dir)), PoolRunner(settings.workers or None))
    return ServiceParts(
        registrations=[lambda server: features_pb2_grpc.add_FeaturesServicer_to_server(servicer, server)],
        service_names=["oncohabitat.v1.Features"],
        on_start=[lambda _runtime: servicer.warm()],
        on_stop=[servicer.close],
    )


def main() -> int:
    """Serve until SIGTERM."""
    return run_service("features", FeaturesSettings, build)


if __name__ == "__main__":
    sys.exit(main())
