"""gRPC servicer of the scoring service (proto <-> domain only)."""

from __future__ import annotations

from oncohabitat.v1 import scoring_pb2_grpc


class ScoringServicer(scoring_pb2_grpc.ScoringServicer):
    """Every RPC answers UNIMPLEMENTED until the vertical slice lands."""
