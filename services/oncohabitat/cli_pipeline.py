"""Commands about the platform's main job: ``demo`` (DCE phantom), ``analyze DIR``, ``jobs``, ``result JOB_ID``.

``demo``, ``jobs`` and ``result`` talk to a running platform (ports from the ``ONCOHABITAT_<SERVICE>_PORT``
variables, as ``status`` reads them); ``analyze`` needs no server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from google.protobuf.json_format import MessageToDict
from rich.console import Console

from oncohabitat.common.topology import DEFAULT_DICOM_PORT, spec
from oncohabitat.demo import Endpoints

console = Console()


def endpoints(host: str) -> Endpoints:
    """Where the local platform listens (environment overrides, else the defaults of ``oncohabitat up``)."""

    def port(name: str) -> int:
        service = spec(name)
        return int(os.environ.get(f"{service.env_prefix}PORT", service.default_port))

    return Endpoints(
        dicom_host=host,
        dicom_port=int(os.environ.get("ONCOHABITAT_LISTENER_DICOM_PORT", DEFAULT_DICOM_PORT)),
        ae_title=os.environ.get("ONCOHABITAT_LISTENER_AE_TITLE", "ONCOHABITAT"),
        listener_admin=f"{host}:{port('listener')}",
        pipeline=f"{host}:{port('orchestrator')}",
    )


def _pipeline(host: str) -> Any:
    from oncohabitat.common.channels import make_channel
    from oncohabitat.v1 import pipeline_pb2_grpc

    return pipeline_pb2_grpc.PipelineStub(make_channel(endpoints(host).pipeline, "oncohabitat.v1.Pipeline"))


def _fail_rpc(exc: grpc.RpcError) -> typer.Exit:
    code = exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
    details = exc.details() if isinstance(exc, grpc.Call) else ""
    console.print(f"[red]{code}: {details}[/red]")
    return typer.Exit(1)


def demo_dce(
    host: Annotated[str, typer.Option(help="Host the platform runs on.")] = "127.0.0.1",
    timeout_s: Annotated[float, typer.Option(help="Seconds to wait for the result.")] = 300.0,
    size: Annotated[str, typer.Option(help="Phantom size: small, ispy or duke.")] = "ispy",
    study_dir: Annotated[Path | None, typer.Option(help="Phantom folder to use or create (kept).")] = None,
) -> None:
    """Push an ispy-size phantom DCE-MRI study over C-STORE, follow each stage live, print the results."""
    from oncohabitat.demo import DemoError
    from oncohabitat.demo_dce import run_dce_demo

    try:
        code = run_dce_demo(endpoints(host), console, timeout_s, study_dir, size)
    except DemoError as exc:
        console.print(f"[red]demo failed: {exc}[/red]")
        raise typer.Exit(1) from None
    except grpc.RpcError as exc:
        raise _fail_rpc(exc) from None
    raise typer.Exit(code)


def _covariates(items: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r}: use NAME=VALUE", param_hint="--covariate")
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            values[name.strip()] = lowered == "true"
            continue
        try:
            values[name.strip()] = float(text)
        except ValueError:
            values[name.strip()] = text.strip()
    return values


def _seed(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise typer.BadParameter("X,Y,Z in mm (patient coordinates)", param_hint="--seed-point")
    return values


def analyze(
    dicom_dir: Annotated[Path, typer.Argument(help="Folder with one study's DICOM files (searched recursively).")],
    out: Annotated[Path, typer.Option(help="Where result.json, the SEG, SR and PDF go.")] = Path("oncohabitat-results"),
    models_dir: Annotated[Path | None, typer.Option(help="Bundle root (default: the checkout's models/).")] = None,
    covariate: Annotated[list[str] | None, typer.Option(help="Clinical covariate NAME=VALUE (repeatable).")] = None,
    seed_point: Annotated[
        str | None, typer.Option(help="Tumour seed X,Y,Z in patient mm: seeded fuzzy c-means segmentation.")
    ] = None,
    workers: Annotated[int, typer.Option(help="pyradiomics processes (0 = the CPUs, 1 = in-process).")] = 0,
) -> None:
    """Run the whole pipeline on a folder in this process (no servers) and write the results."""
    from oncohabitat.analyze.run import analyze_folder
    from oncohabitat.bundles.registry import default_bundle_root
    from oncohabitat.common.errors import DomainError
    from oncohabitat.result_view import print_result, state_name

    if not dicom_dir.is_dir():
        raise typer.BadParameter(f"{dicom_dir} is not a folder", param_hint="DIR")

    def progress(stage: str, seconds: float) -> None:
        console.print(f"  {stage:12s} {seconds:6.2f} s")

    try:
        outcome = analyze_folder(
            dicom_dir,
            out,
            models_dir or default_bundle_root(),
            covariates=_covariates(covariate or []),
            seed_point=_seed(seed_point),
            feature_workers=workers,
            progress=progress,
        )
    except DomainError as exc:
        console.print(f"[red]{exc.reason}: {exc.public_message}[/red]")
        raise typer.Exit(2) from None
    job = outcome.job
    if job.state.value != "DONE":
        console.print(f"[red]job ended {job.state.value}: {job.reason}[/red]")
        console.print(f"written: {out / 'result.json'}")
        raise typer.Exit(1)
    print_result(console, outcome.result)
    console.print(f"written to {out}: result.json, " + ", ".join(path.name for path in outcome.files))
    console.print(f"state {state_name(outcome.result.job.state)}")


def jobs(
    host: Annotated[str, typer.Option(help="Host the platform runs on.")] = "127.0.0.1",
    state: Annotated[str, typer.Option(help="Only jobs in this state (QUEUED, DONE, NEEDS_REVIEW, ...).")] = "",
    limit: Annotated[int, typer.Option(help="At most this many jobs, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    since: Annotated[str, typer.Option(help="Only jobs created at or after this RFC 3339 UTC time.")] = "",
    until: Annotated[str, typer.Option(help="Only jobs created before this RFC 3339 UTC time.")] = "",
    model: Annotated[str, typer.Option(help="Only jobs that requested or ran this model id.")] = "",
    page_token: Annotated[str, typer.Option(help="Continue after an earlier page (its printed next token).")] = "",
) -> None:
    """List jobs (public Pipeline API, ListJobs); prints the next page's token when there are more."""
    from oncohabitat.result_view import print_jobs
    from oncohabitat.v1 import pipeline_pb2

    wanted = f"JOB_STATE_{state.upper()}" if state else "JOB_STATE_UNSPECIFIED"
    if wanted not in pipeline_pb2.JobState.keys():
        raise typer.BadParameter(f"unknown state {state!r}", param_hint="--state")
    request = pipeline_pb2.ListJobsRequest(
        page_size=limit, state=wanted, created_from=since, created_to=until, model_id=model, page_token=page_token
    )
    try:
        response = _pipeline(host).ListJobs(request, timeout=10)
    except grpc.RpcError as exc:
        raise _fail_rpc(exc) from None
    if as_json:
        rows = [MessageToDict(job, preserving_proto_field_name=True) for job in response.jobs]
        typer.echo(json.dumps(rows, indent=2))
    else:
        print_jobs(console, response.jobs)
        if response.next_page_token:
            console.print(f"more: --page-token {response.next_page_token}")


def result(
    job_id: Annotated[str, typer.Argument(help="The job id (see `oncohabitat jobs`).")],
    host: Annotated[str, typer.Option(help="Host the platform runs on.")] = "127.0.0.1",
    as_json: Annotated[bool, typer.Option("--json", help="Print the JobResult as JSON.")] = False,
) -> None:
    """Print a DONE job's result (public Pipeline API, GetResult); other states print the job and its reason."""
    from oncohabitat.result_view import print_result, state_name
    from oncohabitat.v1 import pipeline_pb2

    stub = _pipeline(host)
    try:
        job = stub.GetJob(pipeline_pb2.GetJobRequest(job_id=job_id), timeout=10)
        if job.state != pipeline_pb2.JOB_STATE_DONE:
            console.print(f"job {job.job_id}: {state_name(job.state)} (stage {job.stage or '-'}) {job.reason}")
            raise typer.Exit(1)
        response = stub.GetResult(pipeline_pb2.GetResultRequest(job_id=job_id), timeout=30)
    except grpc.RpcError as exc:
        raise _fail_rpc(exc) from None
    if as_json:
        typer.echo(json.dumps(MessageToDict(response, preserving_proto_field_name=True), indent=2))
    else:
        print_result(console, response)


def register(app: typer.Typer, demo_app: typer.Typer) -> None:
    """Mount the commands on the main app; ``oncohabitat demo`` without a sub-command runs the DCE demo."""
    app.command()(analyze)
    app.command()(jobs)
    app.command()(result)

    @demo_app.callback(invoke_without_command=True)
    def demo_default(
        ctx: typer.Context,
        host: Annotated[str, typer.Option(help="Host the platform runs on.")] = "127.0.0.1",
        timeout_s: Annotated[float, typer.Option(help="Seconds to wait for the result.")] = 300.0,
        size: Annotated[str, typer.Option(help="Phantom size: small, ispy or duke.")] = "ispy",
        study_dir: Annotated[Path | None, typer.Option(help="Phantom folder to use or create (kept).")] = None,
    ) -> None:
        """Without a sub-command: the ispy-size phantom DCE study (see `demo ct` for the real CT case)."""
        if ctx.invoked_subcommand is None:
            demo_dce(host, timeout_s, size, study_dir)
