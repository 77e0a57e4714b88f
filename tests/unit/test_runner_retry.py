"""Retry policy (backoff bounds, cap, attempts) and transient-error classification."""

from __future__ import annotations

import random

import grpc
import pytest

from oncohabitat.orchestrator.retry import RetryPolicy, TransientStageError, describe_error, grpc_status, is_transient
from tests.conftest import free_port


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__("details that may name a patient")
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


def test_raw_delay_grows_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(base_delay_s=1.5, multiplier=3.0, max_delay_s=30.0, jitter=0.0)
    assert [policy.raw_delay_s(n) for n in range(1, 6)] == [1.5, 4.5, 13.5, 30.0, 30.0]
    assert policy.raw_delay_s(10_000) == 30.0
    with pytest.raises(ValueError, match="1-based"):
        policy.raw_delay_s(0)


def test_jittered_delay_stays_within_its_band_and_varies() -> None:
    policy = RetryPolicy(base_delay_s=4.0, max_delay_s=100.0, jitter=0.5)
    rng = random.Random(7)
    delays = [policy.delay_s(2, rng) for _ in range(200)]  # raw 8 s -> [4, 8]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert max(delays) - min(delays) > 3.0
    assert RetryPolicy(base_delay_s=4.0, jitter=0.0).delay_s(2, rng) == 8.0


def test_attempt_cap() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.can_retry(n) for n in (1, 2, 3, 4)] == [True, True, False, False]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"base_delay_s": -1.0},
        {"max_delay_s": 0.5, "base_delay_s": 1.0},
        {"multiplier": 0.5},
        {"jitter": 1.5},
        {"base_delay_s": float("inf")},
    ],
)
def test_invalid_policies_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "transient"),
    [
        (grpc.StatusCode.UNAVAILABLE, True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, True),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, True),
        (grpc.StatusCode.ABORTED, True),
        (grpc.StatusCode.INVALID_ARGUMENT, False),
        (grpc.StatusCode.INTERNAL, False),
        (grpc.StatusCode.NOT_FOUND, False),
        (grpc.StatusCode.FAILED_PRECONDITION, False),
    ],
)
def test_grpc_errors_are_classified_by_status(code: grpc.StatusCode, transient: bool) -> None:
    exc = FakeRpcError(code)
    assert is_transient(exc) is transient
    assert describe_error(exc) == f"RpcError({code.name})"
    assert grpc_status(exc) is code


def test_other_errors_are_permanent_unless_marked_transient() -> None:
    assert is_transient(TransientStageError("pacs busy"))
    assert not is_transient(ValueError("x"))
    assert not is_transient(TimeoutError())
    assert not is_transient(grpc.RpcError())  # no status code at all
    assert grpc_status(grpc.RpcError()) is None
    assert describe_error(KeyError("PatientName")) == "KeyError"


def test_transient_classification_of_a_real_failed_call() -> None:
    """A call to a port nobody listens on fails UNAVAILABLE, which must count as transient."""
    with grpc.insecure_channel(f"127.0.0.1:{free_port()}") as channel:
        call = channel.unary_unary("/x.Y/Z", request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as info:
            call(b"", timeout=5)
    assert grpc_status(info.value) is grpc.StatusCode.UNAVAILABLE
    assert is_transient(info.value) and describe_error(info.value) == "RpcError(UNAVAILABLE)"
