"""Run the listener service: ``python -m oncohabitat.listener``."""

from __future__ import annotations

import sys

from oncohabitat.common.service_main import ServiceParts, run_service
from oncohabitat.listener.servicer import ListenerAdminServicer
from oncohabitat.listener.settings import ListenerSettings
from oncohabitat.v1 import listener_pb2_grpc


def build(settings: ListenerSettings) -> ServiceParts:
    """Servicers of the listener service."""
    servicer = ListenerAdminServicer()
    return ServiceParts(
        registrations=[lambda server: listener_pb2_grpc.add_ListenerAdminServicer_to_server(servicer, server)],
        service_names=["oncohabitat.v1.ListenerAdmin"],
    )


def main() -> int:
    """Serve until SIGTERM."""
    return run_service("listener", ListenerSettings, build)


if __name__ == "__main__":
    sys.exit(main())
