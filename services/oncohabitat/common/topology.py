"""The services of a deployment, their default ports and how to start them.

``oncohabitat up`` and ``oncohabitat status`` read this table; each service's settings class uses the same
defaults, so a service started by hand listens where ``status`` looks for it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    """One service: short name, module run with ``python -m``, gRPC service, default ports, env prefix."""

    name: str
    module: str
    grpc_service: str
    default_port: int
    default_metrics_port: int

    @property
    def env_prefix(self) -> str:
        """Environment prefix of this service's settings, e.g. ``ONCOHABITAT_SCORING_``."""
        return f"ONCOHABITAT_{self.name.upper()}_"


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("segmentation", "oncohabitat.segmentation", "oncohabitat.v1.Segmentation", 50052, 9102),
    ServiceSpec("regions", "oncohabitat.regions", "oncohabitat.v1.Regions", 50053, 9103),
    ServiceSpec("features", "oncohabitat.features", "oncohabitat.v1.Features", 50054, 9104),
    ServiceSpec("scoring", "oncohabitat.scoring", "oncohabitat.v1.Scoring", 50055, 9105),
    ServiceSpec("orchestrator", "oncohabitat.orchestrator", "oncohabitat.v1.Pipeline", 50050, 9100),
    ServiceSpec("listener", "oncohabitat.listener", "oncohabitat.v1.ListenerAdmin", 50051, 9101),
)
"""Start order: dependencies first (the orchestrator calls the four workers; the listener calls it)."""

DEFAULT_DICOM_PORT = 11112


def spec(name: str) -> ServiceSpec:
    """The spec of one service by short name."""
    for service in SERVICES:
        if service.name == name:
            return service
    raise KeyError(name)
