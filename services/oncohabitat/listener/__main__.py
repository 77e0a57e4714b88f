"""Run the listener: DICOM Storage/Verification SCP + completion monitor + outbox + admin gRPC API.

``python -m oncohabitat.listener``; settings from ``ONCOHABITAT_LISTENER_*`` (see :mod:`.settings`).
"""

from __future__ import annotations

import sys

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.common.service_main import ServiceParts, run_service
from oncohabitat.listener.errors import ListenerError
from oncohabitat.listener.handoff import GrpcHandoff
from oncohabitat.listener.servicer import ListenerAdminServicer
from oncohabitat.listener.settings import ListenerSettings
from oncohabitat.listener.wiring import build_parts
from oncohabitat.v1 import listener_pb2_grpc


def build(settings: ListenerSettings) -> ServiceParts:
    """Wire store, index, completion, outbox and SCP; the SCP starts once the admin API serves.

    Raises:
        InvalidInputError: an unusable setting (allow-list, TLS files, rules) or store root.
    """
    root = settings.resolved_store_dir
    root.mkdir(parents=True, exist_ok=True)
    handoff = GrpcHandoff(settings.orchestrator_address, root, settings.handoff_timeout_s)
    try:
        parts = build_parts(settings, handoff)
    except ListenerError as exc:
        handoff.close()
        raise InvalidInputError("LISTENER_CONFIG_INVALID", str(exc)) from exc
    except InvalidInputError:
        handoff.close()
        raise
    servicer = ListenerAdminServicer(parts.index, parts.outbox)
    return ServiceParts(
        registrations=[lambda server: listener_pb2_grpc.add_ListenerAdminServicer_to_server(servicer, server)],
        service_names=["oncohabitat.v1.ListenerAdmin"],
        on_start=[lambda _runtime: parts.start()],
        on_stop=[parts.stop, handoff.close],  # in this order
    )


def main() -> int:
    """Serve until SIGTERM."""
    return run_service("listener", ListenerSettings, build)


if __name__ == "__main__":
    sys.exit(main())
