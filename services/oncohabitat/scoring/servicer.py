"""gRPC servicer of the scoring service (proto <-> domain only)."""

from __future__ import annotations

import grpc

from oncohabitat.bundles import BundleRegistry
from oncohabitat.common.provenance import make_provenance
from oncohabitat.scoring.model import ScoreResult, score
from oncohabitat.v1 import scoring_pb2, scoring_pb2_grpc


def score_response(result: ScoreResult, feature_settings_sha256: str) -> scoring_pb2.ScoreResponse:
    """Domain result -> ScoreResponse (with provenance of the exact bundle)."""
    return scoring_pb2.ScoreResponse(
        score=result.score,
        risk_group=result.risk_group or "",
        cutoff=result.cutoff if result.cutoff is not None else 0.0,
        model_id=result.model_id,
        model_version=result.model_version,
        contributions=[
            scoring_pb2.FeatureContribution(
                name=c.key,
                value=c.value,
                scaled_value=c.scaled_value,
                coefficient=c.coefficient,
                contribution=c.contribution,
            )
            for c in result.contributions
        ],
        survival=[scoring_pb2.SurvivalPoint(time=p.time, probability=p.probability) for p in result.survival],
        provenance=make_provenance(
            parameter_hashes={"manifest": result.manifest_sha256, "feature_settings": feature_settings_sha256},
            model_id=result.model_id,
            model_version=result.model_version,
        ),
    )


class ScoringServicer(scoring_pb2_grpc.ScoringServicer):
    """Score features with a loaded, hash-verified bundle; list the loaded bundles."""

    def __init__(self, registry: BundleRegistry) -> None:
        self._registry = registry

    def Score(self, request: scoring_pb2.ScoreRequest, context: grpc.ServicerContext) -> scoring_pb2.ScoreResponse:
        bundle = self._registry.get(request.model_id, request.model_version or None)
        result = score(bundle, dict(request.features))
        return score_response(result, bundle.manifest.feature_settings.sha256())

    def ListModels(
        self, request: scoring_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> scoring_pb2.ListModelsResponse:
        return scoring_pb2.ListModelsResponse(
            models=[
                scoring_pb2.ModelSummary(
                    model_id=bundle.id,
                    model_version=bundle.version,
                    title=bundle.manifest.title,
                    modality=bundle.manifest.required_inputs.modality,
                    feature_names=bundle.feature_keys,
                    manifest_sha256=bundle.manifest_sha256,
                    intended_use=bundle.manifest.intended_use,
                )
                for bundle in self._registry
            ]
        )
