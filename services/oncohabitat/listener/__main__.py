"""Run the listener: DICOM Storage/Verification SCP + completion monitor + outbox + admin gRPC API.

``python -m oncohabitat.listener``; settings from ``ONCOHABITAT_LISTENER_*`` (see :mod:`.settings`).
"""

from __future__ import annotations

import sys

from oncohabitat.common.server import ServiceRuntime
from oncohabitat.common.service_main import ServiceParts, run_service
from oncohabitat.listener.completion import CompletionMonitor
from oncohabitat.listener.handoff import GrpcHandoff
from oncohabitat.listener.index import StudyIndex
from oncohabitat.listener.outbox import Outbox
from oncohabitat.listener.scp import ListenerSCP
from oncohabitat.listener.servicer import ListenerAdminServicer
from oncohabitat.listener.settings import ListenerSettings
from oncohabitat.listener.storage import INDEX_FILE, InstanceStore
from oncohabitat.v1 import listener_pb2_grpc


def build(settings: ListenerSettings) -> ServiceParts:
    """Wire store, index, completion, outbox and SCP; the SCP starts once the admin API serves."""
    root = settings.resolved_store_dir
    root.mkdir(parents=True, exist_ok=True)
    index = StudyIndex(root / INDEX_FILE)
    store = InstanceStore(root, index)
    handoff = GrpcHandoff(settings.orchestrator_address, root, settings.handoff_timeout_s)
    outbox = Outbox(index, root, handoff, max_backoff_s=settings.handoff_max_backoff_s)
    completion = CompletionMonitor(
        index, quiet_period_s=settings.quiet_period_s, on_complete=lambda _key, _digest: outbox.wake()
    )
    scp = ListenerSCP(
        store,
        ae_title=settings.ae_title,
        host=settings.dicom_host,
        port=settings.dicom_port,
        require_called_aet=settings.require_called_ae_title,
        maximum_associations=settings.max_associations,
        network_timeout_s=settings.network_timeout_s,
    )
    servicer = ListenerAdminServicer(index, outbox)

    def start(_runtime: ServiceRuntime) -> None:
        outbox.start()
        completion.start()
        scp.start()

    def stop() -> None:
        scp.stop()
        completion.stop()
        outbox.stop()
        handoff.close()
        store.close()
        index.close()

    return ServiceParts(
        registrations=[lambda server: listener_pb2_grpc.add_ListenerAdminServicer_to_server(servicer, server)],
        service_names=["oncohabitat.v1.ListenerAdmin"],
        on_start=[start],
        on_stop=[stop],
    )


def main() -> int:
    """Serve until SIGTERM."""
    return run_service("listener", ListenerSettings, build)


if __name__ == "__main__":
    sys.exit(main())
