"""Run the scoring service: ``python -m oncohabitat.scoring``."""

from __future__ import annotations

import logging
import sys

from oncohabitat.bundles.signature import TrustPolicy
from oncohabitat.common.service_main import ServiceParts, run_service
from oncohabitat.scoring.live import LiveRegistry
from oncohabitat.scoring.servicer import ScoringServicer
from oncohabitat.scoring.settings import ScoringSettings
from oncohabitat.v1 import scoring_pb2_grpc

logger = logging.getLogger(__name__)


def load_registry(settings: ScoringSettings) -> LiveRegistry:
    """Load, verify, compile and replay every bundle; any invalid bundle stops the service (BundleError)."""
    trust = TrustPolicy.from_files(settings.signature_public_key, settings.require_signature)
    registry = LiveRegistry(settings.models_dir, require_lock=settings.require_lock, trust=trust)
    registry.reload(strict=True)
    registry.start_polling(settings.reload_interval_s)
    return registry


def build(settings: ScoringSettings) -> ServiceParts:
    """Servicers of the scoring service."""
    servicer = ScoringServicer(load_registry(settings))
    return ServiceParts(
        registrations=[lambda server: scoring_pb2_grpc.add_ScoringServicer_to_server(servicer, server)],
        service_names=["oncohabitat.v1.Scoring"],
    )


def main() -> int:
    """Serve until SIGTERM."""
    return run_service("scoring", ScoringSettings, build)


if __name__ == "__main__":
    sys.exit(main())
