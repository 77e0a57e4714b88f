"""The server interceptor every service runs: authenticate, authorise, audit each gRPC call.

- health checks (``grpc.health.v1.Health``) pass untouched and are not audited;
- no token, an unknown or expired token -> UNAUTHENTICATED; a role the method does not allow ->
  PERMISSION_DENIED (both with a fixed message, the token never echoed);
- every other call runs with :data:`oncohabitat.common.auth.current_principal` set and ends with exactly one
  ``grpc_access`` audit event (who, method, status, peer), refused calls included;
- a request beyond its method's size bound (:mod:`oncohabitat.common.bounds`) -> INVALID_ARGUMENT.

Without a tokens file (authentication off) calls run anonymously and are still audited (``user_id`` empty).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from oncohabitat.common import audit
from oncohabitat.common.auth import (
    AuthError,
    Principal,
    TokenStore,
    authorise,
    bearer_token,
    current_principal,
    is_open,
)
from oncohabitat.common.bounds import request_too_large
from oncohabitat.common.interceptors import HandlerWrapper, wrap_handler

_CLIENT_ERRORS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)


def _outcome(code: grpc.StatusCode) -> int:
    if code == grpc.StatusCode.OK:
        return audit.SUCCESS
    if code in _CLIENT_ERRORS:
        return audit.MINOR_FAILURE
    return audit.SERIOUS_FAILURE


def _subject(context: grpc.ServicerContext) -> str:
    """The verified client certificate's subject (mutual TLS), or ``""``."""
    try:
        values = context.auth_context().get("x509_subject") or context.auth_context().get("x509_common_name")
    except Exception:  # noqa: BLE001 - no auth context on plaintext calls in some gRPC builds
        return ""
    return values[0].decode("utf-8", "replace") if values else ""


def _peer_ip(context: grpc.ServicerContext) -> str:
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]").replace("%5B", "").replace("%5D", "")
    return kind


def _code_of(context: grpc.ServicerContext, default: grpc.StatusCode) -> grpc.StatusCode:
    code_of = getattr(context, "code", None)
    code = code_of() if code_of is not None else None
    return code if isinstance(code, grpc.StatusCode) else default


class AuthInterceptor(grpc.ServerInterceptor):
    """Checks the bearer token and role of every non-health call and audits it.

    Args:
        tokens: The deployment's tokens (None: authentication off, calls run anonymously).
    """

    def __init__(self, tokens: TokenStore | None) -> None:
        self._tokens = tokens

    def _admit(self, context: grpc.ServicerContext, method: str) -> Principal | None:
        subject = _subject(context)
        if self._tokens is None:
            return None
        token = bearer_token(context.invocation_metadata())
        if not token:
            raise AuthError("authentication required: send 'authorization: Bearer <token>'", unauthenticated=True)
        principal = self._tokens.authenticate(token, subject)
        authorise(principal, method)
        return principal

    def _record(self, method: str, context: grpc.ServicerContext, principal: Principal | None, code: Any) -> None:
        audit.emit(
            "grpc_access",
            outcome=_outcome(code),
            user_id=principal.id if principal else "",
            peer=_peer_ip(context),
            method=method,
            status=code.name,
            certificate_subject=principal.subject if principal else _subject(context),
        )

    def _refuse(self, method: str, context: grpc.ServicerContext, exc: AuthError) -> None:
        code = grpc.StatusCode.UNAUTHENTICATED if exc.unauthenticated else grpc.StatusCode.PERMISSION_DENIED
        self._record(method, context, None, code)
        context.abort(code, exc.message)

    def _bound(self, method: str, context: grpc.ServicerContext, principal: Principal | None, request: Any) -> None:
        if request_too_large(method, request):
            self._record(method, context, principal, grpc.StatusCode.INVALID_ARGUMENT)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request is larger than this method accepts")

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if is_open(method):
            return continuation(handler_call_details)

        def wrap_unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
            def call(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    principal = self._admit(context, method)
                except AuthError as exc:
                    self._refuse(method, context, exc)
                    raise  # pragma: no cover - abort always raises
                self._bound(method, context, principal, request)
                token = current_principal.set(principal)
                code = grpc.StatusCode.UNKNOWN
                try:
                    response = behaviour(request, context)
                    code = _code_of(context, grpc.StatusCode.OK)
                    return response
                except BaseException:
                    code = _code_of(context, grpc.StatusCode.UNKNOWN)
                    raise
                finally:
                    current_principal.reset(token)
                    self._record(method, context, principal, code)

            return call

        def wrap_stream(behaviour: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
            def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    principal = self._admit(context, method)
                except AuthError as exc:
                    self._refuse(method, context, exc)
                    raise  # pragma: no cover
                self._bound(method, context, principal, request)
                token = current_principal.set(principal)
                code = grpc.StatusCode.UNKNOWN
                try:
                    yield from behaviour(request, context)
                    code = _code_of(context, grpc.StatusCode.OK)
                except GeneratorExit:
                    code = grpc.StatusCode.CANCELLED
                    raise
                except BaseException:
                    code = _code_of(context, grpc.StatusCode.UNKNOWN)
                    raise
                finally:
                    current_principal.reset(token)
                    self._record(method, context, principal, code)

            return call

        return wrap_handler(continuation(handler_call_details), HandlerWrapper(wrap_unary, wrap_stream))
