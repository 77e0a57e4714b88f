"""Run the orchestrator: public Pipeline API + durable job runner. ``python -m oncohabitat.orchestrator``."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc

from oncohabitat.common.blobstore import BlobStore
from oncohabitat.common.channels import make_channel
from oncohabitat.common.server import ServiceRuntime
from oncohabitat.common.service_main import ServiceParts, run_service
from oncohabitat.dicomio import RoiSelection
from oncohabitat.dicomio.dce import DceRules
from oncohabitat.orchestrator.audit_events import audit_job_finishes
from oncohabitat.orchestrator.destinations import ExportDestinations
from oncohabitat.orchestrator.jobstore import SqliteJobStore, open_job_store
from oncohabitat.orchestrator.lease import resume_own_jobs, worker_ids
from oncohabitat.orchestrator.metrics import register_postgres_job_metrics, register_sqlite_job_metrics
from oncohabitat.orchestrator.retry import RetryPolicy
from oncohabitat.orchestrator.runner import JobRunner
from oncohabitat.orchestrator.served_models import ServedModels
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
    """Study store and worker stubs; the scoring models are the scoring service's, asked over gRPC per stage."""

    def channel(address: str, service: str) -> grpc.Channel:
        return make_channel(address, f"oncohabitat.v1.{service}", timeout_s=settings.rpc_timeout_s)

    scoring = scoring_pb2_grpc.ScoringStub(channel(settings.scoring_address, "Scoring"))
    return PipelineContext(
        blobs=BlobStore(settings.blob_dir),
        dicom_store=settings.resolved_dicom_store_dir,
        exports_dir=settings.data_dir / "exports",
        served_models=ServedModels(scoring, timeout_s=min(settings.rpc_timeout_s, 30.0)),
        segmentation=segmentation_pb2_grpc.SegmentationStub(channel(settings.segmentation_address, "Segmentation")),
        regions=regions_pb2_grpc.RegionsStub(channel(settings.regions_address, "Regions")),
        features=features_pb2_grpc.FeaturesStub(channel(settings.features_address, "Features")),
        scoring=scoring,
        roi_selection=RoiSelection(name=settings.roi_name or None, pattern=settings.roi_name_pattern),
        dce_rules=DceRules.from_json_file(settings.dce_rules_file) if settings.dce_rules_file else None,
        default_destination=settings.export_destination,
        export_destinations=settings.export_destinations,
        calling_ae=settings.export_calling_ae,
        export_retries=settings.export_retries,
        rpc_timeout_s=settings.rpc_timeout_s,
    )


def build(settings: OrchestratorSettings) -> ServiceParts:
    """Job store, runner(s) and the Pipeline servicer."""
    store = open_job_store(settings.database_url, settings.resolved_database_path)
    if isinstance(store, SqliteJobStore):
        register_sqlite_job_metrics(Path(store.path))
    else:
        register_postgres_job_metrics(settings.database_url)
    store = audit_job_finishes(store)
    stages = build_stages(build_context(settings))
    policy = RetryPolicy(max_attempts=settings.max_attempts)
    replica = settings.resolved_replica_id
    runners = [
        JobRunner(
            store,
            stages,
            worker_id=worker_id,
            lease_s=settings.lease_s,
            poll_interval_s=settings.poll_interval_s,
            retry_policy=policy,
        )
        for worker_id in worker_ids(replica, settings.workers)
    ]
    destinations = ExportDestinations.from_settings(settings.export_destination, settings.export_destinations)
    servicer = PipelineServicer(store, upload_root=settings.resolved_dicom_store_dir, destinations=destinations)

    def start(_runtime: ServiceRuntime) -> None:
        resume_own_jobs(store, replica)  # our previous process's jobs resume now, not at lease expiry
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
