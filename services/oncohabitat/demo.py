"""``oncohabitat demo ct``: push a real CT + RTSTRUCT to a running platform and print the result.

The case (IBSI validation STS_001) is a soft-tissue sarcoma, not a breast cancer: the printed score is a
pipeline check of the published seed-003 CT signature, not a clinical statement.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pydicom
from rich.console import Console
from rich.table import Table

from oncohabitat.common.channels import make_channel
from oncohabitat.dicomio.identifiers import uid_key
from oncohabitat.dicomio.scu import send_instances
from oncohabitat.v1 import listener_pb2, listener_pb2_grpc, pipeline_pb2, pipeline_pb2_grpc

DEFAULT_CT_STUDY = Path(__file__).resolve().parents[2] / "tests/data/ibsi/ibsi_validation/dicom/STS_001/CT"
TERMINAL = {
    pipeline_pb2.JOB_STATE_DONE,
    pipeline_pb2.JOB_STATE_NEEDS_REVIEW,
    pipeline_pb2.JOB_STATE_FAILED,
    pipeline_pb2.JOB_STATE_CANCELLED,
}


class DemoError(Exception):
    """The demo cannot proceed; the message says why."""


@dataclass(frozen=True)
class Endpoints:
    """Where the running platform listens."""

    dicom_host: str
    dicom_port: int
    ae_title: str
    listener_admin: str
    pipeline: str


def dicom_files(study_dir: Path) -> list[Path]:
    """Every DICOM file under ``study_dir`` (recursively)."""
    files = [p for p in sorted(study_dir.rglob("*")) if p.is_file() and pydicom.misc.is_dicom(p)]
    if not files:
        raise DemoError(f"no DICOM files under {study_dir}")
    return files


def wait_for_job(admin: listener_pb2_grpc.ListenerAdminStub, study_key: str, timeout_s: float) -> str:
    """The job id the listener got for the study, once the quiet period passed and it was handed off."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            summary = admin.GetStudy(listener_pb2.GetStudyRequest(study_key=study_key), timeout=5)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
        else:
            if summary.job_id and summary.state == listener_pb2.STUDY_STATE_HANDED_OFF:
                return summary.job_id
            if summary.state == listener_pb2.STUDY_STATE_REJECTED:
                raise DemoError(f"the listener rejected the study: {summary.reason}")
        time.sleep(0.5)
    raise DemoError("the study was not handed off in time (is the orchestrator running?)")


def run_ct_demo(study_dir: Path, endpoints: Endpoints, console: Console, timeout_s: float = 300.0) -> int:
    """Push, follow, print. Returns the exit code (0 when the job is DONE)."""
    files = dicom_files(study_dir)
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    case = "IBSI validation STS_001 (soft-tissue sarcoma CT + RTSTRUCT)" if study_dir == DEFAULT_CT_STUDY else ""
    console.print(f"case: {case or study_dir}")
    console.print(
        f"pushing {len(files)} instances to {endpoints.ae_title}@{endpoints.dicom_host}:{endpoints.dicom_port}"
    )
    report = send_instances(files, endpoints.ae_title, endpoints.dicom_host, endpoints.dicom_port, calling_ae="DEMO")
    console.print(f"stored {len(report.sent_keys)} instances; waiting for study completion")
    admin = listener_pb2_grpc.ListenerAdminStub(make_channel(endpoints.listener_admin, "oncohabitat.v1.ListenerAdmin"))
    job_id = wait_for_job(admin, uid_key(study_uid), timeout_s)
    pipeline = pipeline_pb2_grpc.PipelineStub(make_channel(endpoints.pipeline, "oncohabitat.v1.Pipeline"))
    job = None
    for job in pipeline.WatchJob(pipeline_pb2.WatchJobRequest(job_id=job_id), timeout=timeout_s):
        console.print(f"job {job.job_id}: {pipeline_pb2.JobState.Name(job.state)} (stage {job.stage or '-'})")
    if job is None or job.state != pipeline_pb2.JOB_STATE_DONE:
        console.print(f"[red]job ended {job and pipeline_pb2.JobState.Name(job.state)}: {job and job.reason}[/red]")
        return 1
    result = pipeline.GetResult(pipeline_pb2.GetResultRequest(job_id=job_id), timeout=30)
    for model in result.models:
        table = Table(title=f"{model.model_id} {model.model_version} — segmentation: {result.segmentation_method}")
        for column in ("feature", "value", "contribution"):
            table.add_column(column)
        for name in sorted(model.features):
            table.add_row(name, f"{model.features[name]:.6g}", f"{model.contributions[name]:+.6g}")
        table.add_row("[b]risk score[/b]", f"[b]{model.score:.6g}[/b]", f"cutoff {model.cutoff:g}")
        table.add_row("[b]risk group[/b]", f"[b]{model.risk_group}[/b]", "")
        console.print(table)
    console.print(
        "Note: STS_001 is a soft-tissue sarcoma CT, not a breast cancer: this result checks the pipeline, "
        "it is not a clinical statement."
    )
    exported = len(result.exported_sop_instance_keys)
    console.print(
        f"exported to PACS: {exported} objects (SEG + SR)" if exported else "export: no PACS destination configured"
    )
    return 0
