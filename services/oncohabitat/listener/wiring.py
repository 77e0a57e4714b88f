"""Builds the listener's parts from :class:`ListenerSettings` (used by ``__main__`` and the test server).

Order of start: outbox, completion monitor, then the SCP; stop in reverse. The hand-off callable
is injected (gRPC to the orchestrator in production, a file in tests).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from oncohabitat.dicomio.dce import DceRules
from oncohabitat.listener.access import AccessPolicy, parse_networks
from oncohabitat.listener.checks import Budgets
from oncohabitat.listener.classify import DceStudyClassifier
from oncohabitat.listener.completion import CompletionMonitor, parse_expected_series
from oncohabitat.listener.cstore import StoreHandler
from oncohabitat.listener.diskguard import DiskGuard, statvfs_free_bytes
from oncohabitat.listener.errors import ListenerConfigError
from oncohabitat.listener.handoff import GrpcHandoff
from oncohabitat.listener.index import StudyIndex
from oncohabitat.listener.outbox import HandoffFn, Outbox
from oncohabitat.listener.scp import ListenerSCP
from oncohabitat.listener.settings import MIB, ListenerSettings
from oncohabitat.listener.storage import INDEX_FILE, InstanceStore, StorePolicy
from oncohabitat.listener.tlsconfig import TlsConfig, server_context

#: Interpreter switch interval of a listener process, s (CPython's default is 0.005): association
#: threads back from a system call (receive, journal sync, send) wait less for the GIL.
GIL_SWITCH_INTERVAL_S = 0.0005


@dataclass
class ListenerParts:
    """The running pieces of one listener."""

    index: StudyIndex
    store: InstanceStore
    outbox: Outbox
    completion: CompletionMonitor
    scp: ListenerSCP

    def start(self) -> None:
        """Tune the process (GIL switch interval, frozen start-up heap), start outbox, completion, SCP."""
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        # Freeze the start-up heap: full collections (they hold the GIL) no longer traverse its
        # long-lived objects (pydicom's dictionaries, gRPC, settings); its later garbage is never freed.
        gc.collect()
        gc.freeze()
        self.outbox.start()
        self.completion.start()
        self.scp.start()

    def stop(self) -> None:
        """Stop SCP, completion monitor and outbox, then release store and index."""
        self.scp.stop()
        self.completion.stop()
        self.outbox.stop()
        self.store.close()
        self.index.close()


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def access_policy(settings: ListenerSettings) -> AccessPolicy:
    """Calling-AE and peer allow-lists (+ called AE check) from the settings."""
    return AccessPolicy(
        calling_ae_titles=frozenset(_split(settings.allowed_calling_ae_titles)),
        peer_networks=parse_networks(_split(settings.allowed_peers)),
        called_ae_title=settings.ae_title if settings.require_called_ae_title else None,
    )


def tls_config(settings: ListenerSettings) -> TlsConfig | None:
    """The TLS configuration, or None when no TLS setting is given (plain TCP).

    Never falls back to plain TCP when some TLS setting is given: a server certificate is then
    required (its key may be in the same PEM file).

    Raises:
        ListenerConfigError: a key, CA file or client-certificate requirement without a certificate.
    """
    if settings.tls_cert_file is None:
        if settings.tls_key_file is not None or settings.tls_ca_file is not None or settings.tls_require_client_cert:
            raise ListenerConfigError(
                "TLS settings are given but no server certificate (TLS_CERT_FILE): DICOM TLS cannot be enabled"
            )
        return None
    return TlsConfig(
        settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file, settings.tls_require_client_cert
    )


def build_parts(
    settings: ListenerSettings,
    handoff: HandoffFn,
    *,
    disk_probe: Callable[[Path], int] = statvfs_free_bytes,
    sink_wrapper: Callable[[InstanceStore], StoreHandler] | None = None,
    outbox_backoff_s: float = 1.0,
    poll_interval_s: float = 1.0,
) -> ListenerParts:
    """Wire index, store, completion (with DCE classification), outbox and SCP (not started).

    Raises:
        ListenerConfigError: unusable allow-list, TLS files or expected-series rules.
        DceRulesError: unusable DCE rules file.
        StorageWriteError / StudyIndexError: the store root cannot be used.
    """
    root = settings.resolved_store_dir
    root.mkdir(parents=True, exist_ok=True)
    access = access_policy(settings)
    tls = tls_config(settings)
    context = server_context(tls) if tls is not None else None
    expected = parse_expected_series(settings.expected_series)
    rules = DceRules.from_json_file(settings.dce_rules_file) if settings.dce_rules_file else DceRules()
    index = StudyIndex(root / INDEX_FILE, late_policy=settings.late_policy, synchronous=settings.index_synchronous)
    if isinstance(handoff, GrpcHandoff):  # the classification made at completion travels with the hand-off
        handoff.use_classifications(lambda key: getattr(index.get_study(key), "classification", ""))
    journal_segments, journal_segment_bytes = settings.journal_layout
    policy = StorePolicy(
        fsync=settings.fsync,
        duplicates=settings.duplicate_policy,
        budgets=Budgets(max_inflated_bytes=settings.max_inflated_mb * MIB, max_pixel_bytes=settings.max_pixel_mb * MIB),
        memory_limit_bytes=settings.memory_spool_mb * MIB,
        max_dataset_bytes=settings.max_dataset_mb * MIB,
        journal_segments=journal_segments,
        journal_segment_bytes=journal_segment_bytes or 32 * MIB,
        defer_bytes=settings.journal_defer_mb * MIB,
    )
    disk = DiskGuard(root, settings.min_free_disk_mb * MIB, probe=disk_probe)
    store = InstanceStore(root, index, policy=policy, disk=disk)
    outbox = Outbox(
        index,
        root,
        handoff,
        base_backoff_s=outbox_backoff_s,
        max_backoff_s=max(settings.handoff_max_backoff_s, outbox_backoff_s),
        poll_interval_s=poll_interval_s,
    )
    completion = CompletionMonitor(
        index,
        quiet_period_s=settings.quiet_period_s,
        on_complete=lambda _key, _digest: outbox.wake(),
        expected=expected,
        settle_period_s=settings.settle_period_s,
        classifier=DceStudyClassifier(index, root, rules),
        handoff_policy=settings.handoff_policy,
        has_pending=store.has_pending,
    )
    scp = ListenerSCP(
        sink_wrapper(store) if sink_wrapper is not None else store,
        ae_title=settings.ae_title,
        host=settings.dicom_host,
        port=settings.dicom_port,
        access=access,
        require_called_aet=settings.require_called_ae_title,
        maximum_associations=settings.max_associations,
        maximum_associations_per_peer=settings.associations_per_peer,
        network_timeout_s=settings.network_timeout_s,
        idle_timeout_s=settings.idle_timeout_s,
        acse_timeout_s=settings.acse_timeout_s,
        dimse_timeout_s=settings.dimse_timeout_s,
        max_pdu_bytes=settings.max_pdu_bytes,
        tls=context,
    )
    return ListenerParts(index, store, outbox, completion, scp)
