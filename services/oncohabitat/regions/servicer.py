"""gRPC servicer of the regions service (proto <-> domain only)."""

from __future__ import annotations

import grpc

from oncohabitat.common.errors import NotImplementedYetError
from oncohabitat.v1 import regions_pb2, regions_pb2_grpc


class RegionsServicer(regions_pb2_grpc.RegionsServicer):
    """Habitats, peritumoral ring, stroma band and breast mask arrive with the regions issue."""

    def BuildRegions(
        self, request: regions_pb2.BuildRegionsRequest, context: grpc.ServicerContext
    ) -> regions_pb2.BuildRegionsResponse:
        raise NotImplementedYetError("NOT_IMPLEMENTED", "BuildRegions is not implemented in this release")
