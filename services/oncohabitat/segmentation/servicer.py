"""gRPC servicer of the segmentation service (proto <-> domain only)."""

from __future__ import annotations

import grpc

from oncohabitat.common.errors import NotImplementedYetError
from oncohabitat.v1 import segmentation_pb2, segmentation_pb2_grpc


class SegmentationServicer(segmentation_pb2_grpc.SegmentationServicer):
    """Tumour segmentation; the ONNX / seeded-FCM / supplied-mask paths arrive with the segmentation issue."""

    def Segment(  # noqa: N802 - gRPC method name
        self, request: segmentation_pb2.SegmentRequest, context: grpc.ServicerContext
    ) -> segmentation_pb2.SegmentResponse:
        raise NotImplementedYetError("NOT_IMPLEMENTED", "Segment is not implemented in this release")
