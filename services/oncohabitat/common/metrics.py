"""Prometheus metrics of the gRPC layer, collected by a server interceptor.

Labels are bounded: gRPC service name, method name and status code — never study or patient identifiers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import Counter, Histogram

from oncohabitat.common.interceptors import HandlerWrapper, wrap_handler

RPC_HANDLED = Counter(
    "oncohabitat_grpc_server_handled_total",
    "RPCs completed on the server, by gRPC service, method and status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
RPC_LATENCY = Histogram(
    "oncohabitat_grpc_server_handling_seconds",
    "Server-side RPC latency in seconds, by gRPC service and method.",
    ["grpc_service", "grpc_method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)


def split_method(full_method: str) -> tuple[str, str]:
    """``/pkg.Service/Method`` -> (``pkg.Service``, ``Method``)."""
    _, _, rest = full_method.partition("/")
    service, _, method = rest.partition("/")
    return service or "unknown", method or "unknown"


def _code_of(context: grpc.ServicerContext, failed: bool) -> str:
    code_of = getattr(context, "code", None)
    code = code_of() if code_of is not None else None
    if code is None:
        return "UNKNOWN" if failed else "OK"
    return str(code.name)


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts every RPC and observes its latency."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        service, method = split_method(handler_call_details.method)

        def record(context: grpc.ServicerContext, started: float, failed: bool) -> None:
            RPC_LATENCY.labels(service, method).observe(time.perf_counter() - started)
            RPC_HANDLED.labels(service, method, _code_of(context, failed)).inc()

        def wrap_unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
            def call(request: Any, context: grpc.ServicerContext) -> Any:
                started = time.perf_counter()
                failed = True
                try:
                    response = behaviour(request, context)
                    failed = False
                    return response
                finally:
                    record(context, started, failed)

            return call

        def wrap_stream(behaviour: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
            def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                started = time.perf_counter()
                failed = True
                try:
                    yield from behaviour(request, context)
                    failed = False
                finally:
                    record(context, started, failed)

            return call

        return wrap_handler(continuation(handler_call_details), HandlerWrapper(wrap_unary, wrap_stream))
