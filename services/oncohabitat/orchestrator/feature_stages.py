"""The regions and features stages: every applicable bundle's extraction plan, computed from the study store.

The applicable bundles are the models the scoring service serves now (:mod:`oncohabitat.orchestrator.served_models`,
asked at each of the two stages) that the study is eligible for (:mod:`oncohabitat.orchestrator.eligibility`).
The regions stage stores the models it planned (``planned``: ``id@version``); the features stage plans those of
them still served, so a model hot-loaded between the two stages waits for the next job instead of finding no
regions built for it.

regions (DCE studies): one BuildRegions call per distinct region profile among the applicable bundles' plans.
(The default profile when no applicable bundle declares a plan, so that a study's regions exist for review.)
The profile is the plan's own, with two additions that change no region: ``derived_images`` also lists every
derived image the plan names (as an image or in ``stats/mean_<image>``), and ``output_grid`` becomes ``"full"``
when the plan names ``breast`` or ``parenchyma`` features (on the default ``"crop"`` grid the breast map holds
only the tumour's surroundings). The stage stores every label map, derived image, the MSI values, the region
statistics and the parenchyma mean in the study store, keyed by the profile's SHA-256.

features: one ExtractPlan call per bundle with the phases (``S<index>``) its features read (all of them for
kinetic, ``SM`` / ``SL`` and subtraction features), the derived images and label maps of
its profile, MSI values, statistics and the parenchyma mean; single-phase studies (CT) send their image as
``S0`` and the tumour mask. The stored entry per model: ``features`` (canonical name -> value, plan order),
``missing`` (name -> reason and message), ``warnings`` and ``provenance``; the score stage sends ``features``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from oncohabitat.bundles.canonical import DERIVED_IMAGES
from oncohabitat.bundles.hashing import canonical_json_sha256
from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat.orchestrator.eligibility import StudyInputs, eligible_models
from oncohabitat.orchestrator.jobs import Job
from oncohabitat.orchestrator.results import SEGMENT_STAGE, provenance_to_json
from oncohabitat.orchestrator.runner import StageOutcome, StageResults
from oncohabitat.orchestrator.served_models import ServedModel
from oncohabitat.v1 import common_pb2, features_pb2, regions_pb2

if TYPE_CHECKING:
    from oncohabitat.orchestrator.stages import PipelineContext

LOAD_STAGE = "load_study"
REGIONS_STAGE = "regions"
_BREAST_REGIONS = frozenset({"breast", "parenchyma"})
_PHASE_IMAGE = re.compile(r"^S\d+$")


def regions_profile(plan: ExtractionPlan) -> dict[str, Any]:
    """The region profile BuildRegions gets for a plan (see the module docstring)."""
    profile: dict[str, Any] = dict(plan.region_profile)
    derived: set[str] = set()
    for parsed in plan.parsed_features():
        if parsed.image in DERIVED_IMAGES or parsed.image.startswith("SUB"):
            derived.add(parsed.image)
        if parsed.family == "stats" and parsed.feature.startswith("mean_"):
            image = parsed.feature.removeprefix("mean_")
            if image in DERIVED_IMAGES or image.startswith("SUB"):
                derived.add(image)
    declared = profile.get("derived_images", ["PE", "SER", "WIS", "WOS"])
    listed = [str(name) for name in declared] if isinstance(declared, list) else []
    profile["derived_images"] = listed + sorted(derived - set(listed))
    if any(p.region in _BREAST_REGIONS and p.family != "msi" for p in plan.parsed_features()):
        profile["output_grid"] = "full"
    return profile


def profile_key(profile: Mapping[str, Any]) -> str:
    """The key a profile's regions are stored under (SHA-256 of its canonical JSON)."""
    return canonical_json_sha256(dict(profile))


def eligible_plans(
    context: PipelineContext, job: Job, loaded: Mapping[str, Any]
) -> tuple[list[tuple[ServedModel, ExtractionPlan | None]], list[str]]:
    """The served models whose declared inputs the study satisfies, with their plans, and the others' reasons
    (:mod:`oncohabitat.orchestrator.eligibility`).

    Raises:
        grpc.RpcError: the scoring service did not answer (UNAVAILABLE: the runner retries the stage).
        BundleError: ``MODEL_NOT_FOUND`` for a requested model (``model_ids``) the scoring service does not serve.
    """
    served = context.served_models.snapshot()
    requested = [served.get(model_id) for model_id in job.request.get("model_ids", [])]
    models, reasons = eligible_models(served, StudyInputs.of(loaded, job.request), requested)
    return [(model, model.plan) for model in models], reasons


def regions_stage(context: PipelineContext, job: Job, previous: StageResults) -> StageOutcome:
    """Regions of every distinct profile the applicable bundles' plans need (DCE studies only)."""
    from oncohabitat.orchestrator.stages import _study_message

    loaded, segmented = previous[LOAD_STAGE], previous[SEGMENT_STAGE]
    if not loaded.get("phases"):
        return StageOutcome.ok({"skipped": "single-phase study: no kinetic regions", "profiles": {}})
    profiles: dict[str, dict[str, Any]] = {}
    plans = eligible_plans(context, job, loaded)[0]
    for _model, plan in plans:
        if plan is not None:
            profile = regions_profile(plan)
            profiles[profile_key(profile)] = profile
    if not profiles:  # no model needs regions: the default profile still gives the study's regions for review
        profiles[profile_key({})] = {}
    study = _study_message(context, loaded)
    tumour = common_pb2.LabelMap(
        volume=context.load_volume(segmented["mask_volume"]), labels=[common_pb2.Label(value=1, name="tumour")]
    )
    stored: dict[str, Any] = {}
    for key, profile in sorted(profiles.items()):
        response = context.regions.BuildRegions(
            regions_pb2.BuildRegionsRequest(study=study, tumour_mask=tumour, profile_json=json.dumps(profile)),
            timeout=context.rpc_timeout_s,
        )
        stored[key] = {
            "label_maps": {
                (label_map.labels[0].name if label_map.labels else f"map_{n}"): context.save_message(label_map)
                for n, label_map in enumerate(response.regions)
            },
            "derived_images": {image.name: context.save_message(image.volume) for image in response.derived_images},
            "statistics": {
                stat.region: {"voxel_count": stat.voxel_count, "volume_ml": stat.volume_ml, **dict(stat.mean_values)}
                for stat in response.statistics
            },
            "msi_features": dict(response.msi_features),
            "parenchyma_s0_mean": response.parenchyma_s0_mean if response.HasField("parenchyma_s0_mean") else None,
            "provenance": provenance_to_json(response.provenance),
        }
    return StageOutcome.ok({"profiles": stored, "planned": [model.name for model, _plan in plans]})


def plan_phase_images(plan: ExtractionPlan) -> set[str] | None:
    """The phase images (``S<n>``) a plan's features read, or None when it needs every phase (kinetic features,
    the ``SM`` / ``SL`` roles, subtraction images). The features service decodes every image it is sent: a
    Duke-size phase is ~90 MB, and most plans read none or one of them."""
    needed: set[str] = set()
    for parsed in plan.parsed_features():
        images = [parsed.image]
        if parsed.family == "stats" and parsed.feature.startswith("mean_"):
            images.append(parsed.feature.removeprefix("mean_"))
        for image in images:
            if parsed.family == "kinetic" or image in ("SM", "SL") or image.startswith("SUB"):
                return None
            if _PHASE_IMAGE.match(image):
                needed.add(image)
    return needed


def _plan_request(
    context: PipelineContext,
    loaded: Mapping[str, Any],
    segmented: Mapping[str, Any],
    regions: Mapping[str, Any] | None,
    phases: set[str] | None = None,
) -> features_pb2.ExtractPlanRequest:
    request = features_pb2.ExtractPlanRequest()
    if loaded.get("phases"):
        for phase in loaded["phases"]:
            name = f"S{phase['index']}"
            if phases is None or name in phases:
                request.images.add(name=name, volume=context.load_volume(phase["volume"]))
    else:
        request.images.add(name="S0", volume=context.load_volume(loaded["image_volume"]))
    if regions is None:
        request.regions.add(
            volume=context.load_volume(segmented["mask_volume"]), labels=[common_pb2.Label(value=1, name="tumour")]
        )
        return request
    for digest in regions["label_maps"].values():
        request.regions.append(common_pb2.LabelMap.FromString(context.blobs.get(digest)))
    for name, digest in regions["derived_images"].items():
        request.images.add(name=name, volume=context.load_volume(digest))
    request.msi_features.update(regions["msi_features"])
    if regions.get("parenchyma_s0_mean") is not None:
        request.parenchyma_mean = float(regions["parenchyma_s0_mean"])
    return request


def features_stage(context: PipelineContext, job: Job, previous: StageResults) -> StageOutcome:
    """Each applicable bundle's plan through ExtractPlan (see the module docstring)."""
    loaded, segmented = previous[LOAD_STAGE], previous[SEGMENT_STAGE]
    plans, reasons = eligible_plans(context, job, loaded)
    planned = previous.get(REGIONS_STAGE, {}).get("planned")
    if planned is not None:  # only the models the regions stage built regions for (see the module docstring)
        plans = [(model, plan) for model, plan in plans if model.name in planned]
    if reasons and job.request.get("model_ids"):
        return StageOutcome.needs_review(f"MODEL_NOT_ELIGIBLE: {'; '.join(reasons)}")
    if not plans and reasons:
        return StageOutcome.needs_review(f"NO_ELIGIBLE_MODEL: {'; '.join(reasons)}")
    if not plans:
        return StageOutcome.needs_review(f"NO_MODEL: no deployed model accepts {loaded['modality']} studies")
    stored_regions = previous.get(REGIONS_STAGE, {}).get("profiles", {})
    per_model: dict[str, Any] = {}
    for model, plan in plans:
        if plan is None:
            return StageOutcome.needs_review(f"MODEL_INPUTS_UNSUPPORTED: {model.id} declares no extraction plan")
        regions = stored_regions.get(profile_key(regions_profile(plan))) if loaded.get("phases") else None
        if loaded.get("phases") and regions is None:
            return StageOutcome.needs_review(f"REGIONS_MISSING: no regions were built for {model.id}'s profile")
        request = _plan_request(context, loaded, segmented, regions, plan_phase_images(plan))
        request.plan_json = plan.model_dump_json(by_alias=True)
        response = context.features.ExtractPlan(request, timeout=context.rpc_timeout_s)
        per_model[model.name] = {
            "model_id": model.id,
            "model_version": model.version,
            "features": {name: response.values[name] for name in response.feature_order if name in response.values},
            "missing": {m.name: {"reason": m.reason, "message": m.message} for m in response.missing},
            "warnings": list(response.warnings),
            "provenance": provenance_to_json(response.provenance),
        }
    return StageOutcome.ok({"models": per_model})
