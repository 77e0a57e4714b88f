"""Run the regions service: ``python -m oncohabitat.regions``."""

from __future__ import annotations

import sys

from oncohabitat.common.blobstore import BlobStore
from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.service_main import ServiceParts, run_service
from oncohabitat.regions.servicer import RegionsServicer
from oncohabitat.regions.settings import RegionsSettings
from oncohabitat.v1 import regions_pb2_grpc


def build(settings: RegionsSettings) -> ServiceParts:
    """Servicers of the regions service."""
    servicer = RegionsServicer(VolumeCodec(BlobStore(settings.blob_dir)), settings.models_dir)
    return ServiceParts(
        registrations=[lambda server: regions_pb2_grpc.add_RegionsServicer_to_server(servicer, server)],
        service_names=["oncohabitat.v1.Regions"],
    )


def main() -> int:
    """Serve until SIGTERM."""
    return run_service("regions", RegionsSettings, build)


if __name__ == "__main__":
    sys.exit(main())
