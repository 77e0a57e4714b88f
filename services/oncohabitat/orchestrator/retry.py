"""Retry policy for pipeline stages: exponential backoff with jitter, and transient-error classification.

Transient (worth retrying): a ``grpc.RpcError`` whose status is UNAVAILABLE, DEADLINE_EXCEEDED,
RESOURCE_EXHAUSTED or ABORTED, and :class:`TransientStageError`, which stages raise for their own temporary
failures (e.g. a PACS refusing an association). Everything else is permanent.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import grpc

TRANSIENT_GRPC_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)
_MAX_EXPONENT = 64  # beyond this the delay is capped anyway; avoids float overflow for huge attempt counts


class TransientStageError(Exception):
    """Raised by a stage for a temporary failure that a later attempt may not hit (the job is retried).

    The message must be curated: the runner records only the class name, never ``str(exc)``.
    """


def grpc_status(exc: BaseException) -> grpc.StatusCode | None:
    """Status code of a failed gRPC call, or None when ``exc`` is not one (or carries no code)."""
    if not isinstance(exc, grpc.RpcError):
        return None
    code_of = getattr(exc, "code", None)
    if not callable(code_of):
        return None
    code = code_of()
    return code if isinstance(code, grpc.StatusCode) else None


def is_transient(exc: BaseException) -> bool:
    """True when retrying may succeed: transient gRPC status or :class:`TransientStageError`."""
    return isinstance(exc, TransientStageError) or grpc_status(exc) in TRANSIENT_GRPC_CODES


def describe_error(exc: BaseException) -> str:
    """Patient-data-free description: ``"RpcError(UNAVAILABLE)"`` for gRPC errors, else the class name."""
    code = grpc_status(exc)
    if code is not None:
        return f"RpcError({code.name})"
    return type(exc).__name__


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter and a cap on attempts.

    The raw delay after attempt ``n`` (1-based) is ``min(max_delay_s, base_delay_s * multiplier ** (n - 1))``
    seconds; the jittered delay is drawn uniformly from ``[raw * (1 - jitter), raw]`` (``jitter=1`` is "full
    jitter", ``jitter=0`` none), which spreads retries of many jobs hitting the same outage.

    Attributes:
        max_attempts: Executions allowed per job (>= 1); the attempt that reaches it is not retried.
        base_delay_s: Delay after the first failed attempt, in seconds.
        max_delay_s: Upper bound of any delay, in seconds.
        multiplier: Growth factor per attempt (>= 1).
        jitter: Fraction of the raw delay that is randomised, in [0, 1].
    """

    max_attempts: int = 5
    base_delay_s: float = 2.0
    max_delay_s: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not (math.isfinite(self.base_delay_s) and self.base_delay_s >= 0):
            raise ValueError("base_delay_s must be a finite non-negative number of seconds")
        if not (math.isfinite(self.max_delay_s) and self.max_delay_s >= self.base_delay_s):
            raise ValueError("max_delay_s must be finite and at least base_delay_s")
        if not (math.isfinite(self.multiplier) and self.multiplier >= 1):
            raise ValueError("multiplier must be finite and at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be in [0, 1]")

    def can_retry(self, attempts: int) -> bool:
        """True when a job that has been executed ``attempts`` times may run again."""
        return attempts < self.max_attempts

    def raw_delay_s(self, attempt: int) -> float:
        """Un-jittered delay in seconds after failed attempt ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError("attempt is 1-based")
        exponent = min(attempt - 1, _MAX_EXPONENT)
        return float(min(self.max_delay_s, self.base_delay_s * self.multiplier**exponent))

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Jittered delay in seconds after failed attempt ``attempt`` (1-based), within [raw*(1-jitter), raw]."""
        raw = self.raw_delay_s(attempt)
        low = raw * (1.0 - self.jitter)
        return (rng or random).uniform(low, raw)
