"""Run the orchestrator: public Pipeline API + durable job runner. ``python -m oncohabitat.orchestrator``."""

from __future__ import annotations

import os
import socket
import sys

import grpc

from oncohabitat.bundles import load_bundles
from oncohabitat.bundles.registry import read_lock
from oncohabitat.common.blobstore import BlobStore
from oncohabitat.common.channels import make_channel
from oncohabitat.common.server import ServiceRuntime
from oncohabitat.common.service_main import ServiceParts, run_service
from oncohabitat.dicomio import RoiSelection
from oncohabitat.dicomio.dce import DceRules
from oncohabitat.orchestrator.jobstore import SqliteJobStore
from oncohabitat.orchestrator.metrics import register_sqlite_job_metrics
from oncohabitat.orchestrator.retry import RetryPolicy
from oncohabitat.orchestrator.runner import JobRunner
from oncohabitat.orchestrator.servicer import PipelineServicer
from oncohabitat.orchestrator.settings import OrchestratorSettings
from oncohabitat.orchestrator.stages import PipelineContext, build_stages
from oncohabitat.v1 import (
    features_pb2_grpc,
    pipeline_pb2_grpc,
    regions_pb2_grpc,
    scoring_pb2_grpc,
    segmentation_pb2_grpc,
)


def build_context(settings: OrchestratorSettings) -> PipelineContext:
    """Study store, bundles (hash-verified, pinned by the lock file when present) and worker stubs."""

    def channel(address: str, service: str) -> grpc.Channel:
        return make_channel(address, f"oncohabitat.v1.{service}", timeout_s=settings.rpc_timeout_s)

    return PipelineContext(
        blobs=BlobStore(settings.blob_dir),
        dicom_store=settings.resolved_dicom_store_dir,
        exports_dir=settings.data_dir / "exports",
        registry=load_bundles(settings.models_dir, pinned=read_lock(settings.models_dir)),
        segmentation=segmentation_pb2_grpc.SegmentationStub(channel(settings.segmentation_address, "Segmentation")),
        regions=regions_pb2_grpc.RegionsStub(channel(settings.regions_address, "Regions")),
        features=features_pb2_grpc.FeaturesStub(channel(settings.features_address, "Features")),
        scoring=scoring_pb2_grpc.ScoringStub(channel(settings.scoring_address, "Scoring")),
        roi_selection=RoiSelection(name=settings.roi_name or None, pattern=settings.roi_name_pattern),
        dce_rules=DceRules.from_json_file(settings.dce_rules_file) if settings.dce_rules_file else None,
        default_destination=settings.export_destination,
        calling_ae=settings.export_calling_ae,
        export_retries=settings.export_retries,
        rpc_timeout_s=settings.rpc_timeout_s,
    )


def build(settings: OrchestratorSettings) -> ServiceParts:
    """Job store, runner(s) and the Pipeline servicer."""
    settings.resolved_database_path.parent.mkdir(parents=True, exist_ok=True)
    store = SqliteJobStore(settings.resolved_database_path)
    register_sqlite_job_metrics(settings.resolved_database_path)
    stages = build_stages(build_context(settings))
    policy = RetryPolicy(max_attempts=settings.max_attempts)
    runners = [
        JobRunner(
            store,
            stages,
            worker_id=f"{socket.gethostname()}:{os.getpid()}:{n}",
            lease_s=settings.lease_s,
            poll_interval_s=settings.poll_interval_s,
            retry_policy=policy,
        )
        for n in range(settings.workers)
    ]
    servicer = PipelineServicer(store, upload_root=settings.resolved_dicom_store_dir)

    def start(_runtime: ServiceRuntime) -> None:
        for runner in runners:
            runner.start()

    def stop() -> None:
        for runner in runners:
            runner.stop(timeout=settings.grace_period_s)
        store.close()

    return ServiceParts(
        registrations=[lambda server: pipeline_pb2_grpc.add_PipelineServicer_to_server(servicer, server)],
        service_names=["oncohabitat.v1.Pipeline"],
        on_start=[start],
        on_stop=[stop],
    )


def main() -> int:
    """Serve until SIGTERM."""
    return run_service("orchestrator", OrchestratorSettings, build)


if __name__ == "__main__":
    sys.exit(main())
