"""Deployment settings of the listener service (environment prefix ``ONCOHABITAT_LISTENER_``).

Lists are comma-separated (``ALLOWED_CALLING_AE_TITLES=PACS1,PACS2``; ``ALLOWED_PEERS=10.0.0.0/8,::1``);
expected-series rules are ``pattern[:min_instances]`` separated by ``;``. Sizes are MiB, times s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from oncohabitat.common.settings import ServiceSettings
from oncohabitat.common.topology import DEFAULT_DICOM_PORT
from oncohabitat.listener.completion import HandoffPolicy
from oncohabitat.listener.index import LatePolicy
from oncohabitat.listener.storage import DuplicatePolicy

MIB = 1024 * 1024
#: Settings earlier releases had, with why they are gone: set in the environment, the listener refuses to start.
REMOVED_SETTINGS = {
    "REACTOR": "every association is served on its own thread now",
    "SPIN_US": "receives and journal syncs no longer poll",
    "JOURNAL_DIRECT": "the journal appends through the page cache with a shared fdatasync",
}


class ListenerSettings(ServiceSettings):
    """Settings of the listener service: DICOM endpoint, security, limits, completion, hand-off."""

    model_config = SettingsConfigDict(env_prefix="ONCOHABITAT_LISTENER_", extra="ignore", frozen=True)

    port: int = Field(50051, ge=0, le=65535, description="gRPC port of the admin API.")
    metrics_port: int = Field(9101, ge=0, le=65535, description="Prometheus /metrics port.")
    dicom_host: str = Field("127.0.0.1", description="Interface the DICOM SCP binds to.")
    dicom_port: int = Field(DEFAULT_DICOM_PORT, ge=0, le=65535, description="DICOM (C-STORE/C-ECHO) port.")
    ae_title: str = Field("ONCOHABITAT", min_length=1, max_length=16, description="Our DICOM AE title.")
    require_called_ae_title: bool = Field(False, description="Reject associations addressed to another AE title.")
    allowed_calling_ae_titles: str = Field("", description="Comma-separated calling AE allow-list; empty = any.")
    allowed_peers: str = Field("", description="Comma-separated peer IP addresses/networks; empty = any.")
    tls_cert_file: Path | None = Field(None, description="PEM server certificate: enables DICOM TLS.")
    tls_key_file: Path | None = Field(
        None, description="PEM private key of the server certificate (unset: the key is in TLS_CERT_FILE)."
    )
    tls_ca_file: Path | None = Field(None, description="PEM CA bundle verifying client certificates.")
    tls_require_client_cert: bool = Field(False, description="Refuse TLS peers without a valid client certificate.")
    max_associations: int = Field(10, ge=1, description="Concurrent DICOM associations.")
    max_associations_per_peer: int = Field(
        4,
        ge=1,
        description="Concurrent DICOM associations from one peer address (<= MAX_ASSOCIATIONS; left unset, it is"
        " lowered to MAX_ASSOCIATIONS where that is smaller).",
    )
    acse_timeout_s: float = Field(
        30.0, gt=0, description="TLS handshake + association request, s: a total from the connection, not per read."
    )
    dimse_timeout_s: float = Field(30.0, gt=0, description="Longest gap between fragments of one message, s.")
    network_timeout_s: float = Field(60.0, gt=0, description="Longest idle time between messages, s.")
    idle_timeout_s: float = Field(
        10.0,
        ge=0,
        description="An established association that has sent no DIMSE message by then is aborted, s (0 = off).",
    )
    max_pdu_bytes: int = Field(262_144, ge=4096, le=16 * MIB, description="Largest P-DATA PDU accepted, bytes.")
    max_dataset_mb: int = Field(1024, ge=1, description="Largest data set accepted over the wire, MiB.")
    max_pixel_mb: int = Field(512, ge=1, description="Largest declared pixel data (rows x cols x frames x bits), MiB.")
    max_inflated_mb: int = Field(256, ge=1, description="Largest inflated size of a deflated data set, MiB.")
    memory_spool_mb: int = Field(8, ge=1, description="Data sets above this size are spooled to disk, MiB.")
    min_free_disk_mb: int = Field(1024, ge=0, description="Free-space watermark of the store (0 = off), MiB.")
    fsync: bool = Field(True, description="Make every instance durable (journal or file fsync) before acknowledging.")
    journal_mb: int = Field(
        256, ge=0, description="Intake journal size, MiB (0 = no journal: fsync each instance file and directory)."
    )
    journal_defer_mb: int = Field(
        64, ge=0, description="Journaled MiB whose files/rows may wait while intake is busy (<= JOURNAL_MB/4)."
    )
    index_synchronous: Literal["FULL", "NORMAL"] = Field(
        "NORMAL", description="SQLite synchronous mode of the index; NORMAL relies on start-up reconciliation."
    )
    duplicate_policy: DuplicatePolicy = Field(DuplicatePolicy.KEEP_FIRST, description="Re-sent UID, new bytes.")
    late_policy: LatePolicy = Field(LatePolicy.RERUN, description="New instance after completion: rerun | hold.")
    quiet_period_s: float = Field(10.0, gt=0, description="A study is complete this many s after its last instance.")
    expected_series: str = Field("", description="Expected-series rules 'pattern[:min];...' for early completion.")
    settle_period_s: float = Field(2.0, ge=0, description="Quiet time once the expected series are present, s.")
    dce_rules_file: Path | None = Field(None, description="JSON file overriding the DCE classification rules.")
    handoff_policy: HandoffPolicy = Field(HandoffPolicy.ALL, description="Hand off all studies or eligible ones.")
    store_dir: Path | None = Field(None, description="DICOM store root (shared volume); default <data_dir>/dicom.")
    orchestrator_address: str = Field("127.0.0.1:50050", description="Orchestrator HOST:PORT for hand-offs.")
    handoff_timeout_s: float = Field(30.0, gt=0, description="Deadline of one hand-off call, s.")
    handoff_max_backoff_s: float = Field(300.0, gt=0, description="Cap of the hand-off retry backoff, s.")

    @model_validator(mode="after")
    def _no_removed_settings(self) -> ListenerSettings:
        prefix = self.model_config.get("env_prefix", "")
        found = [f"{prefix}{name} ({why})" for name, why in REMOVED_SETTINGS.items() if f"{prefix}{name}" in os.environ]
        if found:
            raise ValueError("removed setting(s) still set, unset them: " + "; ".join(found))
        return self

    @model_validator(mode="after")
    def _per_peer_within_total(self) -> ListenerSettings:
        explicit = "max_associations_per_peer" in self.model_fields_set
        if explicit and self.max_associations_per_peer > self.max_associations:
            raise ValueError(
                f"max_associations_per_peer ({self.max_associations_per_peer}) must not exceed max_associations"
                f" ({self.max_associations})"
            )
        return self

    @property
    def associations_per_peer(self) -> int:
        """The per-peer association limit actually used (never above ``max_associations``)."""
        return min(self.max_associations_per_peer, self.max_associations)

    @property
    def resolved_store_dir(self) -> Path:
        """The DICOM store root actually used."""
        return self.store_dir or self.data_dir / "dicom"

    @property
    def journal_layout(self) -> tuple[int, int]:
        """``(segments, segment bytes)`` of the intake journal; ``(0, 0)`` when it is off."""
        if self.journal_mb == 0:
            return 0, 0
        segment_mb = max(1, min(32, self.journal_mb // 2))
        return max(2, self.journal_mb // segment_mb), segment_mb * MIB
