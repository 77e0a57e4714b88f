"""gRPC servicer of the scoring service (proto <-> domain only)."""

from __future__ import annotations

import grpc

from oncohabitat.scoring.convert import (
    covariates_from_proto,
    describe,
    rejected_to_proto,
    score_response,
    summary,
)
from oncohabitat.scoring.live import LiveRegistry
from oncohabitat.scoring.metrics import observe_score
from oncohabitat.scoring.model import score
from oncohabitat.v1 import scoring_pb2, scoring_pb2_grpc


class ScoringServicer(scoring_pb2_grpc.ScoringServicer):
    """Score with loaded, verified bundles; list, describe and reload them."""

    def __init__(self, registry: LiveRegistry) -> None:
        self._registry = registry

    def Score(self, request: scoring_pb2.ScoreRequest, context: grpc.ServicerContext) -> scoring_pb2.ScoreResponse:
        compiled = self._registry.snapshot.get(request.model_id, request.model_version or None)
        result = score(compiled, dict(request.features), covariates_from_proto(request.covariates))
        observe_score(result)
        return score_response(result, compiled.plan_sha256)

    def ListModels(
        self, request: scoring_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> scoring_pb2.ListModelsResponse:
        snapshot = self._registry.snapshot
        return scoring_pb2.ListModelsResponse(
            models=[summary(compiled) for compiled in snapshot], rejected=rejected_to_proto(snapshot)
        )

    def DescribeModel(
        self, request: scoring_pb2.DescribeModelRequest, context: grpc.ServicerContext
    ) -> scoring_pb2.ModelDescription:
        return describe(self._registry.snapshot.get(request.model_id, request.model_version or None))

    def ReloadModels(
        self, request: scoring_pb2.ReloadModelsRequest, context: grpc.ServicerContext
    ) -> scoring_pb2.ReloadModelsResponse:
        snapshot = self._registry.reload()
        return scoring_pb2.ReloadModelsResponse(
            loaded=[f"scoring/{c.bundle.id}/{c.bundle.version}" for c in snapshot],
            rejected=rejected_to_proto(snapshot),
        )
