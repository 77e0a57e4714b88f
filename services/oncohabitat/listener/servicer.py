"""gRPC servicer of the listener service (proto <-> domain only)."""

from __future__ import annotations

from oncohabitat.v1 import listener_pb2_grpc


class ListenerAdminServicer(listener_pb2_grpc.ListenerAdminServicer):
    """Every RPC answers UNIMPLEMENTED until the vertical slice lands."""
