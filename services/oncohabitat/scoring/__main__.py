"""Run the scoring service: ``python -m oncohabitat.scoring``."""

from __future__ import annotations

import logging
import sys

from oncohabitat.bundles import BundleError, BundleRegistry, load_bundles
from oncohabitat.bundles.registry import LOCK_FILE_NAME, read_lock
from oncohabitat.common.service_main import ServiceParts, run_service
from oncohabitat.scoring.servicer import ScoringServicer
from oncohabitat.scoring.settings import ScoringSettings
from oncohabitat.v1 import scoring_pb2_grpc

logger = logging.getLogger(__name__)


def load_registry(settings: ScoringSettings) -> BundleRegistry:
    """Load and verify every bundle; a bundle that does not verify stops the service (BundleError)."""
    pinned = read_lock(settings.models_dir)
    if pinned is None and settings.require_lock:
        raise BundleError("LOCK_MISSING", f"{LOCK_FILE_NAME} is missing beside the bundles; refusing unpinned bundles")
    registry = load_bundles(settings.models_dir, strict=True, pinned=pinned)
    for bundle in registry:
        logger.info("bundle loaded", extra={"model_id": bundle.id, "model_version": bundle.version})
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
