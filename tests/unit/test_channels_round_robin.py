"""Client-side round robin: one channel over several stage-service replicas spreads calls across all of them and
keeps working when one replica goes away (gRPC's built-in ``round_robin`` policy over a multi-address target)."""

from __future__ import annotations

from collections import Counter
from concurrent import futures

import grpc

from oncohabitat.common.channels import channel_target, make_channel
from oncohabitat.common.security import ClientSecurity
from oncohabitat.v1 import scoring_pb2, scoring_pb2_grpc


class _Replica(scoring_pb2_grpc.ScoringServicer):
    def __init__(self, name: str, calls: Counter[str]) -> None:
        self._name, self._calls = name, calls

    def ListModels(
        self, request: scoring_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> scoring_pb2.ListModelsResponse:
        self._calls[self._name] += 1
        return scoring_pb2.ListModelsResponse()


def _serve(name: str, calls: Counter[str]) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    scoring_pb2_grpc.add_ScoringServicer_to_server(_Replica(name, calls), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def test_calls_are_spread_over_every_replica_and_survive_one_stopping() -> None:
    calls: Counter[str] = Counter()
    servers = [_serve(name, calls) for name in ("a", "b", "c")]
    addresses = ",".join(f"127.0.0.1:{port}" for _, port in servers)
    assert channel_target(addresses).startswith("ipv4:127.0.0.1:")
    channel = make_channel(addresses, "oncohabitat.v1.Scoring", timeout_s=10, security=ClientSecurity())
    stub = scoring_pb2_grpc.ScoringStub(channel)
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
        for _ in range(60):
            stub.ListModels(scoring_pb2.ListModelsRequest())
        assert set(calls) == {"a", "b", "c"} and min(calls.values()) >= 10  # round robin, not pick-first

        servers[0][0].stop(None).wait(10)
        before = calls.copy()
        for _ in range(30):
            stub.ListModels(scoring_pb2.ListModelsRequest())  # retried on UNAVAILABLE, then routed around "a"
        assert calls["a"] == before["a"] and calls["b"] + calls["c"] == before["b"] + before["c"] + 30
    finally:
        channel.close()
        for server, _ in servers:
            server.stop(None)
