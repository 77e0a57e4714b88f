"""Printing a JobResult and job lists for people (``demo``, ``analyze``, ``jobs``, ``result``)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table

from oncohabitat.v1 import pipeline_pb2

DEMONSTRATION_NOTE = "demonstration model, not for clinical use"


def state_name(state: int) -> str:
    """``JOB_STATE_DONE`` -> ``DONE``."""
    return pipeline_pb2.JobState.Name(state).removeprefix("JOB_STATE_")


def print_jobs(console: Console, jobs: Iterable[pipeline_pb2.Job]) -> None:
    """One row per job: id, state, stage, attempts, created, reason."""
    table = Table(title="OncoHabitat jobs (newest first)")
    for column in ("job_id", "state", "stage", "attempts", "created (UTC)", "reason"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        table.add_row(job.job_id, state_name(job.state), job.stage, str(job.attempts), job.created_at, job.reason)
    console.print(table)


def _model_table(model: pipeline_pb2.ModelResult) -> Table:
    table = Table(title=f"{model.model_id} {model.model_version} ({model.model_type or 'model'})")
    table.add_column("output")
    table.add_column("value", overflow="fold")
    table.add_row("score", f"{model.score:.6g}")
    if model.HasField("probability"):
        table.add_row("probability", f"{model.probability:.4f}")
    if model.HasField("predicted_value"):
        table.add_row("predicted value", f"{model.predicted_value:.6g}")
    if model.risk_group:
        rule = model.risk_rule
        cutoffs = ", ".join(f"{c:g}" for c in rule.cutoffs) if rule.cutoffs else f"{model.cutoff:g}"
        table.add_row("risk group", f"[b]{model.risk_group}[/b] (cut-offs {cutoffs} on {rule.applies_to or 'score'})")
    for point in model.survival:
        table.add_row(f"survival at {point.time:g} {model.time_unit}", f"{point.probability:.4f}")
    top = sorted(model.contributions.items(), key=lambda item: -abs(item[1]))[:8]
    for name, contribution in top:
        value = model.features.get(name)
        shown = f"{value:.6g}" if value is not None else "-"
        table.add_row(f"  {name}", f"{shown} (contribution {contribution:+.4g})")
    for warning in model.out_of_distribution:
        table.add_row(
            "[yellow]out of distribution[/yellow]",
            f"{warning.name} = {warning.value:.6g} (training {warning.training_min:.6g}..{warning.training_max:.6g})",
        )
    if model.fallback_used:
        table.add_row("[yellow]fallback[/yellow]", "imaging-only (missing " + ", ".join(model.missing_covariates) + ")")
    return table


def print_result(console: Console, result: pipeline_pb2.JobResult) -> None:
    """Per model: score, probability, predicted value, risk group, survival, top contributions, warnings;
    then the regions (volumes, habitat fractions, mean kinetic values) and the MSI values."""
    console.print(
        f"job {result.job.job_id}: {state_name(result.job.state)}; segmentation {result.segmentation_method or '-'},"
        f" tumour {result.tumour_volume_ml:.2f} mL"
    )
    for model in result.models:
        console.print(_model_table(model))
        if "not for clinical use" in model.intended_use.lower() or "demonstration" in model.intended_use.lower():
            console.print(f"[yellow]{model.model_id}: {DEMONSTRATION_NOTE}[/yellow]")
    for refused in result.models_not_scored:
        console.print(f"[yellow]not scored for this study: {refused}[/yellow]")
    if result.regions:
        table = Table(title="regions")
        for column in ("region", "volume (mL)", "fraction of tumour", "mean SER", "mean PE"):
            table.add_column(column)
        for region in result.regions:
            fraction = f"{region.fraction_of_tumour:.3f}" if region.HasField("fraction_of_tumour") else ""
            ser, pe = region.mean_values.get("SER"), region.mean_values.get("PE")
            table.add_row(
                region.region,
                f"{region.volume_ml:.3f}",
                fraction,
                "" if ser is None else f"{ser:.4g}",
                "" if pe is None else f"{pe:.4g}",
            )
        console.print(table)
    if result.msi_features:
        console.print("MSI: " + ", ".join(f"{k} = {v:.4g}" for k, v in sorted(result.msi_features.items())))
    exported = len(result.exported_sop_instance_keys)
    console.print(f"exported to PACS: {exported} objects (SEG + SR + PDF)" if exported else "export: none sent")
