"""Run the orchestrator service: ``python -m oncohabitat.orchestrator``."""

from __future__ import annotations

import sys

from oncohabitat.common.service_main import ServiceParts, run_service
from oncohabitat.orchestrator.servicer import PipelineServicer
from oncohabitat.orchestrator.settings import OrchestratorSettings
from oncohabitat.v1 import pipeline_pb2_grpc


def build(settings: OrchestratorSettings) -> ServiceParts:
    """Servicers of the orchestrator service."""
    servicer = PipelineServicer()
    return ServiceParts(
        registrations=[lambda server: pipeline_pb2_grpc.add_PipelineServicer_to_server(servicer, server)],
        service_names=["oncohabitat.v1.Pipeline"],
    )


def main() -> int:
    """Serve until SIGTERM."""
    return run_service("orchestrator", OrchestratorSettings, build)


if __name__ == "__main__":
    sys.exit(main())
