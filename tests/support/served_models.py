"""Served models for orchestrator tests: a bundle root through the scoring service's own description code, or
one hand-made model, as the orchestrator's catalogue (:mod:`oncohabitat.orchestrator.served_models`) sees them."""

from __future__ import annotations

from pathlib import Path

from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat.orchestrator.served_models import ModelSet, ServedModel
from oncohabitat.scoring.convert import describe
from oncohabitat.scoring.live import LiveRegistry


def served_model_set(models_dir: Path) -> ModelSet:
    """What the scoring service would serve from ``models_dir`` (verified, replayed), as DescribeModel sends it."""
    registry = LiveRegistry(models_dir, require_lock=True)
    snapshot = registry.reload(strict=True)
    return ModelSet(ServedModel.from_description(describe(compiled)) for compiled in snapshot)


def served_model(
    plan: ExtractionPlan | None,
    *,
    id: str = "model",
    version: str = "1.0.0",
    modality: str = "MR",
    phases: tuple[str, ...] = ("pre_contrast", "post_contrast"),
    covariates: tuple[str, ...] = (),
    has_fallback: bool = False,
) -> ServedModel:
    """One served model with ``plan``."""
    return ServedModel(
        id=id,
        version=version,
        manifest_sha256="",
        modality=modality,
        phases=phases,
        covariates=covariates,
        has_fallback=has_fallback,
        plan=plan,
        plan_sha256=plan.sha256() if plan is not None else "",
    )
