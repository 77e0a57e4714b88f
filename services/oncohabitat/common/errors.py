"""Domain errors and their mapping to gRPC status codes — the ONE place where that mapping lives.

Services raise :class:`DomainError` subclasses from their plain modules; :class:`ErrorMappingInterceptor`
(installed by :mod:`oncohabitat.common.server` on every server) turns them into a status code, the curated
public message and an :class:`~oncohabitat.v1.common_pb2.ErrorDetail` trailer. Anything else becomes
INTERNAL with a generic message: ``str(exc)`` from deep inside a library is never sent to a client (it may
carry file paths or patient data).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from oncohabitat.common.interceptors import HandlerWrapper, wrap_handler
from oncohabitat.v1 import common_pb2

logger = logging.getLogger(__name__)

ERROR_DETAIL_KEY = "oncohabitat-error-bin"
INTERNAL_MESSAGE = "internal error; the incident was logged"


class DomainError(Exception):
    """Base of every error a service reports to its callers.

    Args:
        reason: Stable machine-readable code, e.g. ``"FEATURE_MISSING"``.
        message: Curated public message (no patient data, no internal paths).
        field: The offending field or feature name, if any.
    """

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, reason: str, message: str, field: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.public_message = message
        self.field = field

    def detail(self) -> common_pb2.ErrorDetail:
        """The error as the ErrorDetail message sent in the trailer."""
        return common_pb2.ErrorDetail(reason=self.reason, field=self.field, message=self.public_message)


class InvalidInputError(DomainError):
    """The request is malformed or its content is unusable (INVALID_ARGUMENT)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class FeatureInputError(InvalidInputError):
    """A request's feature-level content is unusable; ``feature`` names it (None when not about one feature)."""

    def __init__(self, reason: str, feature: str | None, message: str) -> None:
        super().__init__(reason, message, feature or "")
        self.feature = feature
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class NotFoundError(DomainError):
    """A referenced job, study, model or blob does not exist (NOT_FOUND)."""

    code = grpc.StatusCode.NOT_FOUND


class PreconditionError(DomainError):
    """The system is not in a state that allows the request (FAILED_PRECONDITION)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhaustedError(DomainError):
    """A configured budget (size, memory, disk) would be exceeded (RESOURCE_EXHAUSTED)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(DomainError):
    """A dependency is temporarily unavailable; the caller may retry (UNAVAILABLE)."""

    code = grpc.StatusCode.UNAVAILABLE


class NotImplementedYetError(DomainError):
    """The RPC exists in the contract but this build does not implement it (UNIMPLEMENTED)."""

    code = grpc.StatusCode.UNIMPLEMENTED


def error_detail_from(exc: grpc.RpcError) -> common_pb2.ErrorDetail | None:
    """Client side: the ErrorDetail trailer of a failed call, if the server sent one."""
    trailers: Any = getattr(exc, "trailing_metadata", lambda: None)()
    for key, value in trailers or ():
        if key == ERROR_DETAIL_KEY:
            detail = common_pb2.ErrorDetail()
            detail.ParseFromString(value)
            return detail
    return None


def _abort(context: grpc.ServicerContext, exc: Exception, method: str) -> None:
    if isinstance(exc, DomainError):
        context.set_trailing_metadata(((ERROR_DETAIL_KEY, exc.detail().SerializeToString()),))
        context.abort(exc.code, exc.public_message)
    logger.error("unhandled error in %s: %s", method, type(exc).__name__, exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


def _already_aborted(context: grpc.ServicerContext) -> bool:
    code_of = getattr(context, "code", None)
    return code_of is not None and code_of() not in (None, grpc.StatusCode.OK)


class ErrorMappingInterceptor(grpc.ServerInterceptor):
    """Server interceptor applying the domain-error mapping to every RPC (unary and streaming)."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method

        def wrap_unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
            def call(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    return behaviour(request, context)
                except Exception as exc:
                    if _already_aborted(context):
                        raise
                    _abort(context, exc, method)
                    raise  # pragma: no cover - abort always raises

            return call

        def wrap_stream(behaviour: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
            def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from behaviour(request, context)
                except Exception as exc:
                    if _already_aborted(context):
                        raise
                    _abort(context, exc, method)
                    raise  # pragma: no cover

            return call

        return wrap_handler(continuation(handler_call_details), HandlerWrapper(wrap_unary, wrap_stream))
