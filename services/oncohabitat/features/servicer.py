"""gRPC servicer of the features service (proto <-> domain only)."""

from __future__ import annotations

from oncohabitat.v1 import features_pb2_grpc


class FeaturesServicer(features_pb2_grpc.FeaturesServicer):
    """Every RPC answers UNIMPLEMENTED until the vertical slice lands."""
