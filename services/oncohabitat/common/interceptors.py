"""Helper to wrap the behaviour of a gRPC method handler, whatever its cardinality."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc


@dataclass(frozen=True)
class HandlerWrapper:
    """Decorators for behaviours returning one response (unary) or a response iterator (stream)."""

    unary_response: Callable[[Callable[..., Any]], Callable[..., Any]]
    stream_response: Callable[[Callable[..., Iterator[Any]]], Callable[..., Iterator[Any]]]


def wrap_handler(handler: grpc.RpcMethodHandler | None, wrapper: HandlerWrapper) -> grpc.RpcMethodHandler | None:
    """Return a copy of ``handler`` whose behaviour is decorated by ``wrapper``."""
    if handler is None:
        return None
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrapper.unary_response(handler.unary_unary), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrapper.stream_response(handler.unary_stream), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrapper.unary_response(handler.stream_unary), **kwargs)
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(wrapper.stream_response(handler.stream_stream), **kwargs)
    return handler
