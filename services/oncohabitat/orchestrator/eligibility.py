"""Which served scoring models a study can run: the bundle's declared inputs against what the study provides.

The models are the scoring service's (:mod:`oncohabitat.orchestrator.served_models`: required inputs, plan,
covariate names and fallback as DescribeModel sends them).

A bundle is eligible when

- its ``required_inputs.modality`` is the study's modality;
- the study has every phase role it lists (``"single"``; ``"pre_contrast"`` / ``"post_contrast"``;
  ``"post_contrast_<n>"`` = the n-th post-contrast phase) and every phase its plan's features name as an image
  (``S<n>``: phase index n, 0 = pre-contrast);
- the submission carries every covariate the model reads, unless the bundle has an imaging-only fallback.

Each ineligible bundle gets a curated reason (no patient data), e.g. ``"dce-x@1.0.0: needs phase S5 (the
study has S0-S3)"``; the features stage ends the job NEEDS_REVIEW ``NO_ELIGIBLE_MODEL`` with them when no
bundle is eligible, or ``MODEL_NOT_ELIGIBLE`` when a requested model (``model_ids``) is not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from oncohabitat.orchestrator.served_models import ServedModel

_PHASE_IMAGE = re.compile(r"^S(\d+)$")
_POST_N = re.compile(r"^post_contrast_(\d+)$")


@dataclass(frozen=True)
class StudyInputs:
    """What a loaded study offers: modality, phase indices (0 = pre-contrast; CT: none) and covariate names."""

    modality: str
    phase_indices: frozenset[int]
    covariates: frozenset[str]

    @classmethod
    def of(cls, loaded: Mapping[str, Any], request: Mapping[str, Any]) -> StudyInputs:
        """From the load stage's result and the job's request."""
        indices = frozenset(int(p["index"]) for p in loaded.get("phases", []))
        return cls(str(loaded["modality"]), indices, frozenset(request.get("covariates", {})))

    def describe_phases(self) -> str:
        """``"S0-S3"`` / ``"S0, S2"`` / ``"a single image"``."""
        ordered = sorted(self.phase_indices)
        if not ordered:
            return "a single image"
        if ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
            return f"S{ordered[0]}-S{ordered[-1]}"
        return ", ".join(f"S{i}" for i in ordered)


def _needed_phases(model: ServedModel) -> set[int]:
    needed: set[int] = set()
    for role in model.phases:
        if role == "pre_contrast":
            needed.add(0)
        elif role == "post_contrast":
            needed.add(1)
        elif match := _POST_N.match(role):
            needed.add(int(match.group(1)))
    if model.plan is not None:
        for parsed in model.plan.parsed_features():
            if match := _PHASE_IMAGE.match(parsed.image):
                needed.add(int(match.group(1)))
    return needed


def ineligibility(model: ServedModel, study: StudyInputs) -> str | None:
    """Why ``model`` cannot run on ``study`` (curated text), or None when it can."""
    name = model.name
    if model.modality != study.modality:
        return f"{name}: needs {model.modality}, the study is {study.modality}"
    if "single" in model.phases and study.phase_indices:
        return f"{name}: needs a single-phase study, the study has DCE phases"
    if study.phase_indices:
        missing = sorted(_needed_phases(model) - study.phase_indices)
        if missing:
            phases = ", ".join(f"S{i}" for i in missing)
            return f"{name}: needs phase {phases} (the study has {study.describe_phases()})"
    if not model.has_fallback:
        absent = sorted(set(model.covariates) - study.covariates)
        if absent:
            return f"{name}: needs covariate {', '.join(absent)} (no imaging-only fallback)"
    return None


def eligible_models(
    models: Iterable[ServedModel], study: StudyInputs, requested: Sequence[ServedModel] = ()
) -> tuple[list[ServedModel], list[str]]:
    """The eligible models (of ``requested`` when given, else of every served one) and the other ones' reasons."""
    candidates = list(requested) or list(models)
    eligible, reasons = [], []
    for model in candidates:
        reason = ineligibility(model, study)
        if reason is None:
            eligible.append(model)
        elif requested or model.modality == study.modality:
            reasons.append(reason)  # other modalities' models are not worth listing
    return eligible, reasons
