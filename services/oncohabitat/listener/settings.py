"""Deployment settings of the listener service (environment prefix ``ONCOHABITAT_LISTENER_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from oncohabitat.common.settings import ServiceSettings
from oncohabitat.common.topology import DEFAULT_DICOM_PORT


class ListenerSettings(ServiceSettings):
    """Settings of the listener service: DICOM endpoint, completion, hand-off to the orchestrator."""

    model_config = SettingsConfigDict(env_prefix="ONCOHABITAT_LISTENER_", extra="ignore", frozen=True)

    port: int = Field(50051, ge=0, le=65535, description="gRPC port of the admin API.")
    metrics_port: int = Field(9101, ge=0, le=65535, description="Prometheus /metrics port.")
    dicom_host: str = Field("127.0.0.1", description="Interface the DICOM SCP binds to.")
    dicom_port: int = Field(DEFAULT_DICOM_PORT, ge=0, le=65535, description="DICOM (C-STORE/C-ECHO) port.")
    ae_title: str = Field("ONCOHABITAT", min_length=1, max_length=16, description="Our DICOM AE title.")
    require_called_ae_title: bool = Field(False, description="Reject associations addressed to another AE title.")
    max_associations: int = Field(10, ge=1, description="Concurrent DICOM associations.")
    network_timeout_s: float = Field(60.0, gt=0, description="DICOM network/DIMSE timeout, s.")
    quiet_period_s: float = Field(10.0, gt=0, description="A study is complete this many s after its last instance.")
    store_dir: Path | None = Field(None, description="DICOM store root (shared volume); default <data_dir>/dicom.")
    orchestrator_address: str = Field("127.0.0.1:50050", description="Orchestrator HOST:PORT for hand-offs.")
    handoff_timeout_s: float = Field(30.0, gt=0, description="Deadline of one hand-off call, s.")
    handoff_max_backoff_s: float = Field(300.0, gt=0, description="Cap of the hand-off retry backoff, s.")

    @property
    def resolved_store_dir(self) -> Path:
        """The DICOM store root actually used."""
        return self.store_dir or self.data_dir / "dicom"
