"""The ``oncohabitat`` command line: run the platform, check it, generate phantoms, run demos, analyze a folder,
read jobs and results (the last four in :mod:`oncohabitat.cli_pipeline`)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

import oncohabitat
from oncohabitat.cli_pipeline import register as register_pipeline_commands
from oncohabitat.cli_security import token_app
from oncohabitat.common.health_client import check_health
from oncohabitat.common.topology import SERVICES

app = typer.Typer(help="OncoHabitat: DCE-MRI habitat radiomics inference platform.", no_args_is_help=True)
console = Console()


@app.callback()
def _client_credentials(
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir",
            envvar="ONCOHABITAT_DATA_DIR",
            help="Data directory of the platform (`up`): its admin token and client certificate are used.",
        ),
    ] = Path(".oncohabitat"),
) -> None:
    """Client commands present the deployment's admin token (and client certificate) unless the environment
    already names other credentials (``ONCOHABITAT_AUTH_TOKEN_FILE``, ``ONCOHABITAT_TLS_*``)."""
    from oncohabitat.common.credentials import client_environment

    if "ONCOHABITAT_AUTH_TOKEN_FILE" not in os.environ:
        for key, value in client_environment(data_dir.resolve()).items():
            os.environ.setdefault(key, value)


def _mount_optional_apps() -> None:
    """Sub-apps whose modules need optional extras (DICOM) are mounted only when importable."""
    try:
        from oncohabitat.phantom.cli import app as phantom_app
    except ImportError:
        return
    app.add_typer(phantom_app, name="phantom", help="Write synthetic DCE-MRI / CT studies with ground truth.")


@app.command()
def version() -> None:
    """Print the platform version."""
    console.print(f"oncohabitat {oncohabitat.__version__}")


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option(help="Local state: databases, DICOM store, study store.")] = Path(
        ".oncohabitat"
    ),
    config: Annotated[
        Path | None, typer.Option(help="Env-style file of ONCOHABITAT_* settings applied to every service.")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface every service binds to.")] = "127.0.0.1",
    ready_timeout_s: Annotated[float, typer.Option(help="Seconds to wait for every service to serve.")] = 90.0,
    max_restarts: Annotated[
        int, typer.Option(help="Restarts of one service within 2 minutes before `up` gives up (exit 1).")
    ] = 5,
    tls: Annotated[
        bool, typer.Option(help="Mutual TLS between every client and service (certificates generated).")
    ] = True,
) -> None:
    """Start every service as its own process on localhost (SQLite, local disk); Ctrl-C stops them all."""
    from oncohabitat.common.credentials import client_environment, ensure_credentials, service_environment
    from oncohabitat.launcher import (
        dicom_port,
        platform_environment,
        read_env_file,
        start_services,
        stop_services,
        wait_until_serving,
    )
    from oncohabitat.supervisor import RestartPolicy, Supervisor

    # secure by default: tokens (and certificates) generated once in the data directory; --config may override
    ensure_credentials(data_dir.resolve(), host, tls=tls)
    security = service_environment(data_dir.resolve())
    if not tls:
        security = {k: v for k, v in security.items() if not k.startswith("ONCOHABITAT_TLS_")}
    overrides = {**security, **(read_env_file(config) if config else {})}
    for key, value in client_environment(data_dir.resolve()).items():  # `up`'s own health checks
        if tls or not key.startswith("ONCOHABITAT_TLS_"):
            os.environ[key] = value
    env = platform_environment(data_dir.resolve(), host, overrides)
    stop_requested = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log_dir = data_dir / "logs"
    running = start_services(env, log_dir)
    states = wait_until_serving(running, ready_timeout_s)
    table = Table(title=f"OncoHabitat {oncohabitat.__version__} — logs in {log_dir}")
    for column in ("service", "gRPC", "metrics", "state"):
        table.add_column(column)
    for service in running:
        table.add_row(service.spec.name, service.address, service.metrics_address, states[service.spec.name])
    console.print(table)
    console.print(f"DICOM (C-STORE/C-ECHO): AE ONCOHABITAT at {host}:{dicom_port(env)}")
    if any(state != "SERVING" for state in states.values()):
        console.print("[red]not every service started; see the logs above. Stopping.[/red]")
        stop_services(running)
        raise typer.Exit(1)
    console.print("All services SERVING. Press Ctrl-C to stop.")
    # a service that dies is restarted with backoff (the others, DICOM intake included, keep running);
    # one that keeps dying stops the platform and `up` exits 1
    supervisor = Supervisor(
        running, env, log_dir, RestartPolicy(max_restarts=max_restarts), report=lambda line: console.print(line)
    )
    gave_up = None
    while gave_up is None and not stop_requested.wait(0.2):
        gave_up = supervisor.tick()
    codes = stop_services(supervisor.running)
    console.print("stopped: " + ", ".join(f"{name}={code}" for name, code in codes.items()))
    if gave_up is not None:
        raise typer.Exit(1)


@app.command()
def status(
    host: Annotated[str, typer.Option(help="Host the services listen on.")] = "127.0.0.1",
    timeout_s: Annotated[float, typer.Option(help="Health-check deadline per service, s.")] = 2.0,
) -> None:
    """Health-check every service (standard gRPC health protocol); exit 1 unless all are SERVING."""
    table = Table(title="OncoHabitat services")
    for column in ("service", "address", "health"):
        table.add_column(column)
    healthy = True
    for spec in SERVICES:
        port = int(os.environ.get(f"{spec.env_prefix}PORT", spec.default_port))
        address = f"{host}:{port}"
        state = check_health(address, spec.grpc_service, timeout_s)
        healthy &= state == "SERVING"
        table.add_row(spec.name, address, state)
    console.print(table)
    if not healthy:
        raise typer.Exit(1)


app.add_typer(token_app, name="token", help="Add, list and revoke API tokens (hashed tokens file).")

demo_app = typer.Typer(help="Demonstrations against a running platform (start it with `oncohabitat up`).")
app.add_typer(demo_app, name="demo")
register_pipeline_commands(app, demo_app)


@demo_app.command("ct")
def demo_ct(
    study_dir: Annotated[Path | None, typer.Option(help="Folder with the CT series and its RTSTRUCT.")] = None,
    host: Annotated[str, typer.Option(help="Host the platform runs on.")] = "127.0.0.1",
    timeout_s: Annotated[float, typer.Option(help="Seconds to wait for the result.")] = 300.0,
) -> None:
    """Push the real STS_001 CT + RTSTRUCT over C-STORE, follow the job, print the seed-003 result."""
    from oncohabitat.common.topology import DEFAULT_DICOM_PORT, spec
    from oncohabitat.demo import DEFAULT_CT_STUDY, DemoError, Endpoints, run_ct_demo

    def port(name: str) -> int:
        service = spec(name)
        return int(os.environ.get(f"{service.env_prefix}PORT", service.default_port))

    endpoints = Endpoints(
        dicom_host=host,
        dicom_port=int(os.environ.get("ONCOHABITAT_LISTENER_DICOM_PORT", DEFAULT_DICOM_PORT)),
        ae_title=os.environ.get("ONCOHABITAT_LISTENER_AE_TITLE", "ONCOHABITAT"),
        listener_admin=f"{host}:{port('listener')}",
        pipeline=f"{host}:{port('orchestrator')}",
    )
    try:
        code = run_ct_demo(study_dir or DEFAULT_CT_STUDY, endpoints, console, timeout_s)
    except DemoError as exc:
        console.print(f"[red]demo failed: {exc}[/red]")
        raise typer.Exit(1) from None
    raise typer.Exit(code)


_mount_optional_apps()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
