"""gRPC servicer of the orchestrator service (proto <-> domain only)."""

from __future__ import annotations

from oncohabitat.v1 import pipeline_pb2_grpc


class PipelineServicer(pipeline_pb2_grpc.PipelineServicer):
    """Every RPC answers UNIMPLEMENTED until the vertical slice lands."""
