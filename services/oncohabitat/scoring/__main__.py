"""Run the scoring service: ``python -m oncohabitat.scoring``."""

from __future__ import annotations

import sys

from oncohabitat.common.service_main import ServiceParts, run_service
from oncohabitat.scoring.servicer import ScoringServicer
from oncohabitat.scoring.settings import ScoringSettings
from oncohabitat.v1 import scoring_pb2_grpc


def build(settings: ScoringSettings) -> ServiceParts:
    """Servicers of the scoring service."""
    servicer = ScoringServicer()
    return ServiceParts(
        registrations=[lambda server: scoring_pb2_grpc.add_ScoringServicer_to_server(servicer, server)],
        service_names=["oncohabitat.v1.Scoring"],
    )


def main() -> int:
    """Serve until SIGTERM."""
    return run_service("scoring", ScoringSettings, build)


if __name__ == "__main__":
    sys.exit(main())
