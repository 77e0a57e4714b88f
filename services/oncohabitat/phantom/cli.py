"""``oncohabitat phantom`` command line: a typer sub-app mounted by the root CLI.

oncohabitat phantom --out DIR [--size small|ispy|duke] [--seed N] [--layout per-phase|multi-phase]
                    [--no-lesion] [--necrosis/--no-necrosis] [--no-trigger-time]
oncohabitat phantom cohort --n N --out DIR [--size ...] [--seed N] [--layout ...]
oncohabitat phantom ct --out DIR [--seed N] [--size ...] [--mask rtstruct|seg|both] [--necrosis]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from oncohabitat.phantom.cohort import generate_cohort
from oncohabitat.phantom.ct import generate_ct_study
from oncohabitat.phantom.errors import PhantomError
from oncohabitat.phantom.study import generate_study

app = typer.Typer(help="Synthetic breast DCE-MRI / CT phantoms with ground truth.", no_args_is_help=False)
_console = Console(stderr=True)


class Size(StrEnum):
    """Size presets."""

    small = "small"
    ispy = "ispy"
    duke = "duke"


class Layout(StrEnum):
    """DICOM series layouts."""

    per_phase = "per-phase"
    multi_phase = "multi-phase"


class MaskKind(StrEnum):
    """Tumour mask object of the CT phantom."""

    rtstruct = "rtstruct"
    seg = "seg"
    both = "both"


OutOption = Annotated[Path, typer.Option("--out", help="Output directory (created; must be empty).")]
SizeOption = Annotated[Size, typer.Option("--size", help="Matrix and timing preset.")]
SeedOption = Annotated[int, typer.Option("--seed", min=0, help="Random seed (same seed, same files).")]
LayoutOption = Annotated[Layout, typer.Option("--layout", help="One series per phase or one multi-phase series.")]


@contextmanager
def _progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=_console, transient=False) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def _fail(error: PhantomError) -> typer.Exit:
    _console.print(f"[red]error:[/red] {error}")
    return typer.Exit(code=2)


@app.callback(invoke_without_command=True)
def phantom(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory (created; must be empty).")] = None,
    size: SizeOption = Size.small,
    seed: SeedOption = 0,
    layout: LayoutOption = Layout.per_phase,
    lesion: Annotated[bool, typer.Option("--lesion/--no-lesion", help="Draw a lesion.")] = True,
    necrosis: Annotated[bool, typer.Option("--necrosis/--no-necrosis", help="Non-enhancing core.")] = False,
    trigger_time: Annotated[
        bool,
        typer.Option(
            "--trigger-time/--no-trigger-time",
            help="Also write TriggerTime (ms since pre-contrast) as some vendors do; dciodvfy flags it (Type 2C "
            "in the MR Image module applies to gated scans only).",
        ),
    ] = False,
) -> None:
    """Write one synthetic breast DCE-MRI study (DICOM + ground truth) when no subcommand is given."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise typer.BadParameter("--out is required", param_hint="--out")
    start = time.perf_counter()
    try:
        with _progress_bar("writing DICOM") as update:
            study = generate_study(
                out,
                size=size.value,
                seed=seed,
                layout=layout.value,
                lesion=lesion,
                necrosis=necrosis,
                trigger_time=trigger_time,
                progress=update,
            )
    except PhantomError as error:
        raise _fail(error) from error
    files = sum(len(f) for f in study.phase_files)
    _console.print(
        f"{files} MR files in {len(study.series_dirs)} series, {len(study.phase_times_s)} phases, "
        f"ground truth in {study.ground_truth.tumour_mask.parent} ({time.perf_counter() - start:.1f} s)"
    )


@app.command()
def cohort(
    out: OutOption,
    n: Annotated[int, typer.Option("--n", min=1, help="Number of studies.")],
    size: SizeOption = Size.small,
    seed: SeedOption = 0,
    layout: LayoutOption = Layout.per_phase,
) -> None:
    """Write N studies and clinical.csv whose survival depends on known lesion properties."""
    start = time.perf_counter()
    try:
        with _progress_bar(f"writing {n} studies") as update:
            result = generate_cohort(out, n, size=size.value, seed=seed, layout=layout.value, progress=update)
    except PhantomError as error:
        raise _fail(error) from error
    _console.print(
        f"{len(result.studies)} studies, clinical table {result.clinical_csv} ({time.perf_counter() - start:.1f} s)"
    )


@app.command()
def ct(
    out: OutOption,
    seed: SeedOption = 0,
    size: SizeOption = Size.small,
    mask: Annotated[MaskKind, typer.Option("--mask", help="Tumour as RTSTRUCT, SEG or both.")] = MaskKind.rtstruct,
    necrosis: Annotated[bool, typer.Option("--necrosis/--no-necrosis", help="Non-enhancing core.")] = False,
) -> None:
    """Write a venous-phase contrast CT study with the tumour as RTSTRUCT and/or DICOM SEG."""
    start = time.perf_counter()
    try:
        with _progress_bar("writing CT") as update:
            study = generate_ct_study(
                out, seed=seed, size=size.value, mask=mask.value, necrosis=necrosis, progress=update
            )
    except PhantomError as error:
        raise _fail(error) from error
    _console.print(
        f"{len(study.ct_files)} CT files, masks: {', '.join(sorted(study.mask_files))} "
        f"({time.perf_counter() - start:.1f} s)"
    )
