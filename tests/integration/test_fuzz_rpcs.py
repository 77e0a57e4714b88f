"""Bad input is never INTERNAL: every RPC of every service, fed messages built by hypothesis from the protos
(NaN/inf numbers, unknown enum values, huge, empty and odd strings, deep and repeated fields), answers with a
client-error status and a curated message, and every service is still SERVING afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oncohabitat.common.errors import INTERNAL_MESSAGE
from oncohabitat.common.health_client import check_health
from oncohabitat.common.topology import SERVICES
from tests.support.grpc_catalog import Rpc, all_rpcs
from tests.support.platform import Platform

pytestmark = pytest.mark.integration

ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.OUT_OF_RANGE,
}
_SERVICE_OF = {s.grpc_service: s.name for s in SERVICES}
_FD = FieldDescriptor
_INT_TYPES = {_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32, _FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64}
_UINT_TYPES = {_FD.TYPE_UINT32, _FD.TYPE_FIXED32, _FD.TYPE_UINT64, _FD.TYPE_FIXED64}
_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "../../etc/passwd", "a" * 70, "x" * 100_000, "\x00", "0" * 64, "ab" * 16]),
)
_FLOAT = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -1.0, 1e308]))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _INT_TYPES:
        bits = 32 if kind in {_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32} else 64
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if kind in _UINT_TYPES:
        bits = 32 if kind in {_FD.TYPE_UINT32, _FD.TYPE_FIXED32} else 64
        return st.one_of(st.integers(0, 2**bits - 1), st.integers(0, 10))
    if kind in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return _FLOAT if kind == _FD.TYPE_DOUBLE else st.floats(width=32)
    if kind == _FD.TYPE_BOOL:
        return st.booleans()
    if kind == _FD.TYPE_STRING:
        return _TEXT
    if kind == _FD.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.just(b"\x00" * 70_000))
    if kind == _FD.TYPE_ENUM:
        return st.integers(-3, 40)
    raise AssertionError(kind)


def _fill(descriptor: Descriptor, draw: Any, depth: int) -> dict[str, Any]:
    """Random values for a random subset of ``descriptor``'s fields, as keyword arguments."""
    values: dict[str, Any] = {}
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        message = field.message_type
        if message is not None and message.GetOptions().map_entry:
            key, value = message.fields_by_name["key"], message.fields_by_name["value"]
            if value.message_type is not None:
                if depth < 3:
                    items = draw(st.dictionaries(_scalar(key), st.just(None), max_size=3))
                    values[field.name] = {k: _fill(value.message_type, draw, depth + 1) for k in items}
            else:
                values[field.name] = draw(st.dictionaries(_scalar(key), _scalar(value), max_size=4))
            continue
        single: Any
        if message is not None:
            if depth >= 3:
                continue
            single = lambda message=message: _fill(message, draw, depth + 1)  # noqa: E731
        else:
            strategy = _scalar(field)
            single = lambda strategy=strategy: draw(strategy)  # noqa: E731
        if field.is_repeated:
            count = draw(st.sampled_from([0, 1, 2, 5, 300]) if message is None else st.integers(0, 3))
            values[field.name] = [single() for _ in range(count)]
        else:
            values[field.name] = single()
    return values


def _build(rpc: Rpc, values: dict[str, Any]) -> Any:
    try:
        return rpc.request(**values)
    except (ValueError, TypeError):
        return rpc.request()  # e.g. a string that is not valid UTF-8 for a proto string: the plain empty message


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    running = Platform(tmp_path_factory.mktemp("fuzz"))
    running.start()
    yield running
    running.stop()


def _call(platform: Platform, rpc: Rpc, requests: list[Any]) -> tuple[grpc.StatusCode, str]:
    with platform.channel(_SERVICE_OF[rpc.service]) as channel:
        try:
            if rpc.client_streaming:
                serialize = lambda m: m.SerializeToString()  # noqa: E731
                stub = channel.stream_unary(rpc.path, serialize, rpc.response.FromString)
                stub(iter(requests), timeout=30)
            else:
                rpc.call(channel, requests[0], timeout=30)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize("rpc", all_rpcs(), ids=lambda r: r.path)
def test_malformed_requests_never_internal(platform: Platform, rpc: Rpc) -> None:
    @st.composite
    def requests(draw: Any) -> list[Any]:
        count = draw(st.integers(1, 3)) if rpc.client_streaming else 1
        return [_build(rpc, _fill(rpc.request.DESCRIPTOR, draw, 0)) for _ in range(count)]

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(requests())
    def check(messages: list[Any]) -> None:
        code, details = _call(platform, rpc, messages)
        fields = [(f.name, repr(v)[:80]) for f, v in messages[0].ListFields()] if messages else []
        assert code in ALLOWED, (code, details, fields)
        assert details != INTERNAL_MESSAGE

    check()
    name = _SERVICE_OF[rpc.service]
    assert check_health(platform.address(name), timeout_s=5, security=platform.security) == "SERVING"
