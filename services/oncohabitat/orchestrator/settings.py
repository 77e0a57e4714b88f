"""Deployment settings of the orchestrator (environment prefix ``ONCOHABITAT_ORCHESTRATOR_``)."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from oncohabitat.common.settings import ServiceSettings
from oncohabitat.dicomio.roi_selection import DEFAULT_ROI_PATTERN


class OrchestratorSettings(ServiceSettings):
    """Settings of the orchestrator service."""

    model_config = SettingsConfigDict(env_prefix="ONCOHABITAT_ORCHESTRATOR_", extra="ignore", frozen=True)

    port: int = Field(50050, ge=0, le=65535, description="gRPC port of the public Pipeline API.")
    metrics_port: int = Field(9100, ge=0, le=65535, description="Prometheus /metrics port.")
    segmentation_address: str = Field("127.0.0.1:50052", description="Segmentation service HOST:PORT (or list).")
    regions_address: str = Field("127.0.0.1:50053", description="Regions service HOST:PORT (or list).")
    features_address: str = Field("127.0.0.1:50054", description="Features service HOST:PORT (or list).")
    scoring_address: str = Field("127.0.0.1:50055", description="Scoring service HOST:PORT (or list).")
    rpc_timeout_s: float = Field(600.0, gt=0, description="Deadline of each call to a worker service, s.")
    dicom_store_dir: Path | None = Field(
        None, description="Root of the listener's DICOM store (shared volume); default <data_dir>/dicom."
    )
    database_path: Path | None = Field(None, description="SQLite job database; default <data_dir>/jobs.sqlite3.")
    database_url: str = Field(
        "",
        description="Job database: postgresql://USER:PASS@HOST:5432/DB (several replicas share it) or"
        " sqlite:///PATH; empty = SQLite at database_path.",
        repr=False,  # carries the database password
    )
    replica_id: str = Field(
        "",
        max_length=128,
        pattern=r"^[A-Za-z0-9._-]*$",
        description="This replica's stable name in job leases (default: the host name). A restarted replica"
        " resumes the jobs leased under its name at once; give each replica on one host its own.",
    )
    export_destination: str = Field(
        "", description="Where results go, AE@HOST:PORT (e.g. PACS@10.0.0.5:104); empty = no export."
    )
    export_destinations: str = Field(
        "",
        description="More destinations a request may name, NAME=AE@HOST:PORT separated by commas; a request can"
        " only ever name a configured destination (by NAME, AE title or its AE@HOST:PORT), never a new address.",
    )
    export_calling_ae: str = Field("ONCOHABITAT", max_length=16, description="Our AE title when exporting.")
    export_retries: int = Field(3, ge=0, description="C-STORE attempts beyond the first, per export.")
    roi_name: str = Field("", description="Exact ROI/segment name to use from supplied masks; empty = pattern rule.")
    dce_rules_file: Path | None = Field(
        None,
        description="JSON file overriding the DCE classification and phase assembly rules; use the listener's"
        " (``oncohabitat up`` passes the listener's DCE_RULES_FILE on when this is not set).",
    )
    roi_name_pattern: str = Field(
        DEFAULT_ROI_PATTERN, description="Regex selecting the tumour ROI when several exist (default GTV/tumour)."
    )
    lease_s: float = Field(120.0, gt=0, description="Job lease: how soon a crashed worker's job is taken over, s.")
    poll_interval_s: float = Field(0.5, gt=0, description="Idle wait between job claims, s.")
    max_attempts: int = Field(5, ge=1, description="Attempts per job for transient errors before FAILED.")
    workers: int = Field(1, ge=1, le=16, description="Job runner threads in this process.")

    @property
    def resolved_dicom_store_dir(self) -> Path:
        """The DICOM store root actually used."""
        return self.dicom_store_dir or self.data_dir / "dicom"

    @property
    def resolved_replica_id(self) -> str:
        """The replica name actually used in lease owners."""
        return self.replica_id or socket.gethostname()

    @property
    def resolved_database_path(self) -> Path:
        """The job database actually used."""
        return self.database_path or self.data_dir / "jobs.sqlite3"
