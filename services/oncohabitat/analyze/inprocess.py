"""In-process adapters: a service's servicer called like its gRPC stub, without a server or a channel.

``oncohabitat analyze`` runs the orchestrator's own stage functions; they call ``context.segmentation.Segment
(request, timeout=...)`` and so on. :class:`InProcessStub` gives them the servicer instead: same request and
response messages, and a servicer's :class:`~oncohabitat.common.errors.DomainError` becomes an
:class:`InProcessRpcError` with the status code and ``ErrorDetail`` trailer the error interceptor would send,
so the stages' NEEDS_REVIEW / retry rules apply unchanged. Unexpected exceptions propagate as they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from oncohabitat.common.errors import ERROR_DETAIL_KEY, DomainError


class InProcessRpcError(grpc.RpcError, grpc.Call):
    """A failed in-process call, shaped like a client-side ``grpc.RpcError`` (code, details, trailers)."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers: tuple[tuple[str, bytes], ...] = ()) -> None:
        super().__init__(details)
        self._code = code
        self._details = details
        self._trailers = trailers

    def code(self) -> grpc.StatusCode:
        """The status code."""
        return self._code

    def details(self) -> str:
        """The public message."""
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        """The ErrorDetail trailer, when the servicer raised a domain error."""
        return self._trailers

    def initial_metadata(self) -> tuple[tuple[str, bytes], ...]:
        """None sent."""
        return ()

    def is_active(self) -> bool:
        """The call is over."""
        return False

    def time_remaining(self) -> float | None:
        """The call is over."""
        return None

    def cancel(self) -> bool:
        """The call is over."""
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        """The call is over."""
        return False


class InProcessContext:
    """The part of ``grpc.ServicerContext`` the servicers use: deadline, liveness, abort, trailers."""

    def __init__(self, timeout_s: float | None) -> None:
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._trailers: tuple[tuple[str, bytes], ...] = ()

    def time_remaining(self) -> float | None:
        """Seconds left before the call's deadline (None: no deadline)."""
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def is_active(self) -> bool:
        """True until the deadline passed."""
        return self._deadline is None or time.monotonic() < self._deadline

    def set_trailing_metadata(self, metadata: tuple[tuple[str, bytes], ...]) -> None:
        """Kept for the error raised by :meth:`abort`."""
        self._trailers = tuple(metadata)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        """None sent."""
        return ()

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        """End the call with ``code``."""
        raise InProcessRpcError(code, details, self._trailers)


class InProcessStub:
    """``stub.Method(request, timeout=s)`` -> ``servicer.Method(request, context)`` (see the module docstring)."""

    def __init__(self, servicer: Any) -> None:
        self._servicer = servicer

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._servicer, name)

        def call(request: Any, timeout: float | None = None, **_options: Any) -> Any:
            context = InProcessContext(timeout)
            try:
                return method(request, context)
            except DomainError as exc:
                trailers = ((ERROR_DETAIL_KEY, exc.detail().SerializeToString()),)
                raise InProcessRpcError(exc.code, exc.public_message, trailers) from exc

        return call
