"""``oncohabitat demo``: an ispy-size phantom breast DCE-MRI study pushed over C-STORE to the running platform.

1. The phantom study (I-SPY1-like: 256 x 256 x 60, 1 pre- + 3 post-contrast phases; synthetic, no patient) is
   written to a temporary folder (or ``--study-dir``, kept);
2. pushed to the listener (C-STORE), which completes the study after its quiet period and hands it off;
3. the job is followed live (WatchJob): one line per stage with the seconds since the study was handed off;
4. GetResult is printed: every model's outputs, the regions (volumes, habitat fractions, kinetic means), MSI.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pydicom
from rich.console import Console

from oncohabitat.common.channels import make_channel
from oncohabitat.demo import Endpoints, dicom_files, wait_for_job
from oncohabitat.dicomio.identifiers import uid_key
from oncohabitat.dicomio.scu import send_instances
from oncohabitat.result_view import print_result, state_name
from oncohabitat.v1 import listener_pb2_grpc, pipeline_pb2, pipeline_pb2_grpc

DEMO_SEED = 2024
#: The orchestrator's stages, in order (``oncohabitat.orchestrator.stages.build_stages``).
STAGES = ("load_study", "segment", "regions", "features", "score", "export")


def follow_job(
    pipeline: pipeline_pb2_grpc.PipelineStub, job_id: str, console: Console, timeout_s: float
) -> pipeline_pb2.Job:
    """Print each stage as the job passes it (WatchJob); returns the job in its final state."""
    started = time.monotonic()
    last: pipeline_pb2.Job | None = None
    shown: set[str] = set()
    for job in pipeline.WatchJob(pipeline_pb2.WatchJobRequest(job_id=job_id), timeout=timeout_s):
        elapsed = time.monotonic() - started
        if job.stage in STAGES:  # stages shorter than WatchJob's poll are passed at once: list them too
            for stage in STAGES[: STAGES.index(job.stage)]:
                if stage not in shown:
                    shown.add(stage)
                    console.print(f"  [{elapsed:6.1f} s] {'passed':12s} stage {stage}")
        if last is None or (job.stage, job.state) != (last.stage, last.state):
            shown.add(job.stage)
            console.print(f"  [{elapsed:6.1f} s] {state_name(job.state):12s} stage {job.stage or '-'}")
        last = job
    if last is None:
        raise RuntimeError("WatchJob sent nothing")
    return last


def run_dce_demo(
    endpoints: Endpoints,
    console: Console,
    timeout_s: float = 300.0,
    study_dir: Path | None = None,
    size: str = "ispy",
) -> int:
    """Generate, push, follow, print. Returns the exit code (0 when the job is DONE)."""
    with tempfile.TemporaryDirectory(prefix="oncohabitat-demo-") as scratch:
        folder = study_dir or Path(scratch) / "study"
        if not (folder / "dicom").is_dir():
            from oncohabitat.phantom import generate_study

            console.print(f"case: phantom DCE-MRI study, size {size}, seed {DEMO_SEED} (synthetic) -> {folder}")
            generate_study(folder, size=size, seed=DEMO_SEED)
        else:
            console.print(f"case: the study in {folder}")
        files = dicom_files(folder / "dicom")
        study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
        console.print(
            f"pushing {len(files)} instances to {endpoints.ae_title}@{endpoints.dicom_host}:{endpoints.dicom_port}"
        )
        pushed = time.monotonic()
        send_instances(files, endpoints.ae_title, endpoints.dicom_host, endpoints.dicom_port, calling_ae="DEMO")
    console.print(f"pushed in {time.monotonic() - pushed:.1f} s; waiting for the listener's quiet period")
    admin = listener_pb2_grpc.ListenerAdminStub(make_channel(endpoints.listener_admin, "oncohabitat.v1.ListenerAdmin"))
    job_id = wait_for_job(admin, uid_key(str(study_uid)), timeout_s)
    console.print(f"study complete and handed off after {time.monotonic() - pushed:.1f} s: job {job_id}")
    pipeline = pipeline_pb2_grpc.PipelineStub(make_channel(endpoints.pipeline, "oncohabitat.v1.Pipeline"))
    job = follow_job(pipeline, job_id, console, timeout_s)
    if job.state != pipeline_pb2.JOB_STATE_DONE:
        console.print(f"[red]job ended {state_name(job.state)}: {job.reason}[/red]")
        return 1
    print_result(console, pipeline.GetResult(pipeline_pb2.GetResultRequest(job_id=job_id), timeout=30))
    return 0
