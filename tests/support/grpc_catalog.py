"""Every RPC of every OncoHabitat service, from the generated descriptors, and a generic way to call one."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory

from oncohabitat.v1 import (
    features_pb2,
    features_pb2_grpc,
    listener_pb2,
    listener_pb2_grpc,
    pipeline_pb2,
    pipeline_pb2_grpc,
    regions_pb2,
    regions_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    segmentation_pb2,
    segmentation_pb2_grpc,
)

_MODULES = (
    (pipeline_pb2, pipeline_pb2_grpc),
    (listener_pb2, listener_pb2_grpc),
    (segmentation_pb2, segmentation_pb2_grpc),
    (regions_pb2, regions_pb2_grpc),
    (features_pb2, features_pb2_grpc),
    (scoring_pb2, scoring_pb2_grpc),
)


@dataclass(frozen=True)
class Rpc:
    """One method: full name, request/response classes, streaming shape."""

    service: str
    name: str
    request: type[Any]
    response: type[Any]
    client_streaming: bool
    server_streaming: bool

    @property
    def path(self) -> str:
        """``/package.Service/Method``."""
        return f"/{self.service}/{self.name}"

    def call(
        self, channel: grpc.Channel, request: Any, metadata: Sequence[tuple[str, str]] = (), timeout: float = 10.0
    ) -> Any:
        """Call with one request message (a client stream sends just that one); returns the response(s)."""
        serialize: Callable[[Any], bytes] = lambda m: m.SerializeToString()  # noqa: E731
        deserialize = self.response.FromString
        if self.client_streaming and not self.server_streaming:
            stub = channel.stream_unary(self.path, serialize, deserialize)
            return stub(iter([request]), metadata=metadata, timeout=timeout)
        if self.server_streaming and not self.client_streaming:
            stream: Iterator[Any] = channel.unary_stream(self.path, serialize, deserialize)(
                request, metadata=metadata, timeout=timeout
            )
            return list(stream)
        if self.client_streaming:
            stub2 = channel.stream_stream(self.path, serialize, deserialize)
            return list(stub2(iter([request]), metadata=metadata, timeout=timeout))
        return channel.unary_unary(self.path, serialize, deserialize)(request, metadata=metadata, timeout=timeout)


def all_rpcs() -> list[Rpc]:
    """Every method of every service of the platform."""
    rpcs: list[Rpc] = []
    for pb2, _ in _MODULES:
        for service in pb2.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                rpcs.append(
                    Rpc(
                        service.full_name,
                        method.name,
                        message_factory.GetMessageClass(method.input_type),
                        message_factory.GetMessageClass(method.output_type),
                        method.client_streaming,
                        method.server_streaming,
                    )
                )
    return rpcs


def register_unimplemented(server: grpc.Server) -> None:
    """Add every service with its generated base servicer (each method answers UNIMPLEMENTED)."""
    for _, pb2_grpc in _MODULES:
        for name in dir(pb2_grpc):
            if name.startswith("add_") and name.endswith("Servicer_to_server"):
                base = getattr(pb2_grpc, name.removeprefix("add_").removesuffix("_to_server"))
                getattr(pb2_grpc, name)(base(), server)


SERVICE_NAMES = [s.full_name for pb2, _ in _MODULES for s in pb2.DESCRIPTOR.services_by_name.values()]
