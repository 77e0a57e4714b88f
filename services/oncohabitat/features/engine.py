"""Extract exactly the features of an :class:`~oncohabitat.bundles.plan.ExtractionPlan` from a study's inputs.

Flow: check the plan (names known to pyradiomics, settings accepted by pyradiomics and within
:mod:`oncohabitat.features.limits`) -> normalise each needed image once (whole image) -> group the pyradiomics
values by (image, filter) (:mod:`oncohabitat.features.grouping`) -> place each region on each image grid
(index shifts only) -> run the groups (:mod:`oncohabitat.features.passes`) through a runner (in-process, or
the worker-process pool of :mod:`oncohabitat.features.pool`) -> assemble the canonical names: radiomics values,
kinetic statistics, MSI values and region statistics (:mod:`oncohabitat.features.families`).

A value that cannot be computed (region not delivered or empty, region too small for a class, image not
delivered, normalisation impossible) is reported missing with a reason; the other values are computed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
import SimpleITK as sitk

from oncohabitat.bundles.canonical import CanonicalName
from oncohabitat.bundles.names import FeatureName, parse_feature_name
from oncohabitat.bundles.plan import ExtractionPlan, NoNormalisation
from oncohabitat.common.volume import Geometry, Volume
from oncohabitat.features import errors, limits
from oncohabitat.features.errors import FeatureExtractionError
from oncohabitat.features.families import Missing, kinetic_statistic, msi_value, stats_value
from oncohabitat.features.grouping import ImageGroup, Key, build_groups, phase_role_images, radiomics_keys
from oncohabitat.features.normalise import NormalisationError, normalise_image, parenchyma_mean
from oncohabitat.features.passes import GroupResult, GroupTask, RegionInput, extractor_for, run_group
from oncohabitat.features.study import PlacedRegion, StudyInputs, region_on_grid

logger = logging.getLogger(__name__)

#: Fewer phases than this make a kinetic kurtosis uninformative (seed 001 had 3): a warning is attached.
MIN_KINETIC_PHASES = 4
#: Safety voxels added to a local filter's support.
_MARGIN_SLACK = 2
_PYRADIOMICS_LOCK = threading.Lock()
T = TypeVar("T")


class ExtractionCancelledError(Exception):
    """The caller's deadline passed or the call was cancelled; the work was stopped."""


@dataclass(frozen=True)
class MissingValue:
    """Why a named feature has no value: a stable ``reason`` code and a curated ``message``."""

    reason: str
    message: str


@dataclass(frozen=True)
class PlanExtraction:
    """Values (plan order, computed names only), missing names with reasons, warnings, and work counters."""

    values: dict[str, float]
    missing: dict[str, MissingValue]
    warnings: tuple[str, ...] = ()
    groups: int = 0
    passes: int = 0
    stats: dict[str, float] = field(default_factory=dict)


class Runner(Protocol):
    """Runs group tasks; returns one result per task (None for a task stopped by deadline / cancellation)."""

    def run(
        self, tasks: Sequence[GroupTask], deadline: float | None, cancelled: Callable[[], bool] | None
    ) -> list[GroupResult | None]: ...


class InlineRunner:
    """Runs the tasks one after the other in this process (tests, CLI; not for concurrent server threads)."""

    def run(
        self, tasks: Sequence[GroupTask], deadline: float | None, cancelled: Callable[[], bool] | None
    ) -> list[GroupResult | None]:
        results: list[GroupResult | None] = []
        for task in tasks:
            stop = (deadline is not None and time.time() > deadline) or (cancelled is not None and cancelled())
            results.append(None if stop else run_group(task))
        return results

    def call(
        self,
        function: Callable[..., T],
        *args: Any,
        deadline: float | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> T:
        """Run ``function(*args)`` here (same signature as :meth:`PoolRunner.call`; no deadline check)."""
        return function(*args)


def worker_params(plan: ExtractionPlan) -> dict[str, Any]:
    """The pyradiomics parameter dict the workers build their extractor from.

    The plan's settings with ``additionalInfo`` off (no diagnostics, no hashing) and ``normalize`` removed (the
    engine normalises once per image, :mod:`oncohabitat.features.normalise`); classes are enabled per pass.
    """
    params = plan.feature_settings.to_pyradiomics()
    params["setting"]["additionalInfo"] = False
    params["setting"].pop("normalize", None)
    params["setting"].pop("normalizeScale", None)
    params["imageType"] = params.get("imageType") or {"Original": {}}
    params["featureClass"] = {}
    return params


def check_plan(plan: ExtractionPlan, inputs: StudyInputs | None = None) -> dict[str, Any]:
    """Check the plan against the installed pyradiomics and the limits; returns :func:`worker_params`.

    Thread-safe (pyradiomics' settings validation runs under a lock).

    Raises:
        FeatureExtractionError: ``FEATURE_NAME_INVALID`` naming the canonical name, ``SETTINGS_INVALID`` naming the
            setting, ``IMAGE_INVALID`` (an image beyond the voxel limit).
    """
    from radiomics import getFeatureClasses

    if len(plan.features) > limits.MAX_FEATURES:
        raise FeatureExtractionError(
            errors.FEATURE_NAME_INVALID, None, f"a plan may name at most {limits.MAX_FEATURES} features"
        )
    params = worker_params(plan)
    voxels, spacing = 0, None
    for image in inputs.images.values() if inputs is not None else []:
        if image.array.size > voxels:
            voxels, spacing = int(image.array.size), image.geometry.spacing
    limits.check_settings(params, voxels, spacing)
    with _PYRADIOMICS_LOCK:
        classes = getFeatureClasses()
        known: dict[str, set[str]] = {}
        for parsed in plan.parsed_features():
            name = parsed.radiomics
            if name is not None and name.feature_class not in known:
                known[name.feature_class] = set(classes[name.feature_class].getFeatureNames())
            if name is not None and name.feature not in known[name.feature_class]:
                raise FeatureExtractionError(
                    errors.FEATURE_NAME_INVALID,
                    parsed.full,
                    f"feature {parsed.full!r}: pyradiomics class {name.feature_class!r} has no {name.feature!r}",
                )
        extractor_for(params)
    return params


@dataclass
class _Prepared:
    """Normalised images (name -> (array, geometry)) and per-image normalisation failures."""

    images: dict[str, Volume] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _parenchyma(inputs: StudyInputs) -> float | None:
    if inputs.parenchyma_mean is not None:
        return inputs.parenchyma_mean
    s0, breast, tumour = inputs.images.get("S0"), inputs.regions.get("breast"), inputs.regions.get("tumour")
    if s0 is None or breast is None:
        return None
    placed = region_on_grid(breast, s0.geometry, s0.array.shape)
    if placed is None:
        return None
    tumour_placed = region_on_grid(tumour, s0.geometry, s0.array.shape) if tumour is not None else None
    empty = np.zeros(s0.array.shape, dtype=bool)
    return parenchyma_mean(
        s0.array, placed.full(s0.array.shape), tumour_placed.full(s0.array.shape) if tumour_placed else empty
    )


def _prepare(plan: ExtractionPlan, inputs: StudyInputs, names: set[str], params: Mapping[str, Any]) -> _Prepared:
    prepared = _Prepared()
    mean = _parenchyma(inputs) if plan.normalisation.type == "parenchyma_mean" else None
    for name in sorted(names):
        source = inputs.images.get(name)
        if source is None:
            continue
        if isinstance(plan.normalisation, NoNormalisation):
            prepared.images[name] = source
            continue
        image = source.geometry.apply(sitk.GetImageFromArray(source.array))
        try:
            normalised = normalise_image(image, plan.normalisation, params["setting"], mean)
        except NormalisationError as exc:
            prepared.failed[name] = str(exc)
            continue
        prepared.images[name] = Volume(sitk.GetArrayFromImage(normalised), source.geometry)
    return prepared


def _shift(geometry: Geometry, lower_zyx: Sequence[int]) -> Geometry:
    matrix = np.asarray(geometry.direction).reshape(3, 3) @ np.diag(geometry.spacing)
    origin = np.asarray(geometry.origin) + matrix @ np.asarray(list(reversed(lower_zyx)), dtype=np.float64)
    return Geometry(geometry.spacing, (float(origin[0]), float(origin[1]), float(origin[2])), geometry.direction)


def filter_margin(params: Mapping[str, Any], image_type: str) -> int | None:
    """Voxels of context a filter needs around a region for bit-identical values; None = the whole image.

    ``Original`` needs none. ``Gradient`` (SimpleITK's central differences) needs 1. pyradiomics' ``Wavelet``
    applies a one-level stationary transform ``start_level + level`` times without dilation (periodic extension),
    so a value depends on ``dec_len`` voxels per level. Filters with a global statistic (``square``,
    ``squareroot``, ``logarithm``, ``exponential`` use the image's maximum), the recursive (infinite-support) LoG
    and LBP need the whole image. Each gets :data:`_MARGIN_SLACK` more voxels.
    """
    if image_type == "Original":
        return 0
    if image_type == "Gradient":
        return 1 + _MARGIN_SLACK
    if image_type == "Wavelet":
        import pywt

        args = {**params["setting"], **(params["imageType"].get(image_type) or {})}
        levels = int(args.get("start_level", 0)) + int(args.get("level", 1))
        return int(pywt.Wavelet(args.get("wavelet", "coif1")).dec_len) * levels + _MARGIN_SLACK
    return None


def _box(region: RegionInput, margin: int, shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """(lower, upper) per axis (z, y, x): the region's box grown by ``margin``; an axis where that would leave the
    image is taken whole (periodic or boundary handling then sees the same image edges as on the whole image)."""
    box = []
    for axis, (start, size) in enumerate(zip(region.lower, region.crop.shape, strict=True)):
        lower, upper = start - margin, start + size + margin
        box.append((0, shape[axis]) if lower < 0 or upper > shape[axis] else (lower, upper))
    return box


def _region_dependent(params: Mapping[str, Any], image_type: str) -> bool:
    setting = params["setting"]
    resampled = setting.get("interpolator") is not None and setting.get("resampledPixelSpacing") is not None
    return bool(resampled or setting.get("preCrop", False) or image_type in ("LBP2D", "LBP3D"))


def _tasks(
    groups: Sequence[ImageGroup],
    prepared: _Prepared,
    inputs: StudyInputs,
    params: dict[str, Any],
    deadline: float | None,
    missing: dict[Key, Missing],
) -> list[GroupTask]:
    placements: dict[tuple[str, str], PlacedRegion | None] = {}
    tasks: list[tuple[float, GroupTask]] = []
    for group in groups:
        keys_of = {
            region: [
                (region, group.image, f"{i}_{c}_{f}") for i, cs in p.wanted.items() for c, fs in cs.items() for f in fs
            ]
            for region, p in group.passes.items()
        }
        image = prepared.images.get(group.image)
        if image is None:
            reason = (
                ("NORMALISATION_FAILED", prepared.failed[group.image])
                if group.image in prepared.failed
                else ("IMAGE_NOT_PROVIDED", f"image {group.image!r} was not delivered")
            )
            for keys in keys_of.values():
                missing.update(dict.fromkeys(keys, reason))
            continue
        regions: list[RegionInput] = []
        for region, region_pass in group.passes.items():
            mask = inputs.regions.get(region)
            if mask is None:
                missing.update(
                    dict.fromkeys(keys_of[region], ("REGION_NOT_PROVIDED", f"region {region!r} was not delivered"))
                )
                continue
            key = (region, group.image)
            if key not in placements:
                placements[key] = region_on_grid(mask, image.geometry, image.array.shape)
            placed = placements[key]
            if placed is None:
                missing.update(dict.fromkeys(keys_of[region], ("REGION_EMPTY", f"region {region!r} has no voxel")))
                continue
            if placed.outside:
                reason = ("REGION_OUTSIDE_IMAGE", f"region {region!r} extends beyond image {group.image!r}")
                missing.update(dict.fromkeys(keys_of[region], reason))
                continue
            regions.append(RegionInput(region, placed.crop, placed.lower, region_pass.wanted))
        if not regions:
            continue
        margin = None if _region_dependent(params, group.image_type) else filter_margin(params, group.image_type)
        weight = {"Wavelet": 8.0, "LBP3D": 20.0}.get(group.image_type, 2.0)
        boxes = [_box(r, margin, image.array.shape) for r in regions] if margin is not None else []
        if boxes:  # a local filter: each region on its own crop, in parallel (at most #regions x the image filtered)
            for region_input, box in zip(regions, boxes, strict=True):
                lower = tuple(lo for lo, _ in box)
                crop = np.ascontiguousarray(image.array[tuple(slice(lo, u) for lo, u in box)])
                inner = tuple(r - lo for r, lo in zip(region_input.lower, lower, strict=True))
                shifted = RegionInput(
                    region_input.region, region_input.crop, (inner[0], inner[1], inner[2]), region_input.wanted
                )
                task = GroupTask(
                    group.image, group.image_type, crop, _shift(image.geometry, lower), params, (shifted,), deadline
                )
                tasks.append((weight * float(crop.size), task))
        else:
            cost = weight * sum(float(r.crop.sum()) for r in regions) + float(image.array.size) * weight / 4
            task = GroupTask(
                group.image, group.image_type, image.array, image.geometry, params, tuple(regions), deadline
            )
            tasks.append((cost, task))
    tasks.sort(key=lambda item: -item[0])
    return [task for _, task in tasks]


def _assemble(
    plan: ExtractionPlan,
    inputs: StudyInputs,
    keys_by_name: Mapping[str, list[Key]],
    computed: Mapping[Key, float],
    missing: Mapping[Key, Missing],
    roles: dict[str, str],
) -> tuple[dict[str, float], dict[str, MissingValue]]:
    values: dict[str, float] = {}
    absent: dict[str, MissingValue] = {}

    def put(parsed: CanonicalName, outcome: float | Missing) -> None:
        if isinstance(outcome, tuple):
            absent[parsed.full] = MissingValue(*outcome)
        else:
            values[parsed.full] = outcome

    for parsed in plan.parsed_features():
        if parsed.family == "msi":
            put(parsed, msi_value(parsed, inputs))
        elif parsed.family == "stats":
            put(parsed, stats_value(parsed, inputs, roles))
        else:
            keys = keys_by_name[parsed.full]
            gaps = [key for key in keys if key not in computed]
            if not keys:
                put(parsed, ("PHASES_MISSING", "no phase S0..SN was delivered"))
            elif gaps:
                put(parsed, missing.get(gaps[0], ("NOT_PRODUCED", "pyradiomics did not produce this feature")))
            elif parsed.family == "kinetic":
                put(parsed, kinetic_statistic(parsed.kinetic_stat or "", [computed[key] for key in keys]))
            else:
                put(parsed, computed[keys[0]])
    return values, absent


def extract_plan(
    plan: ExtractionPlan,
    inputs: StudyInputs,
    runner: Runner | None = None,
    deadline: float | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> PlanExtraction:
    """Compute every feature the plan names (see the module docstring).

    Args:
        plan: the extraction plan.
        inputs: images, regions, MSI values and statistics of one study.
        runner: where groups run (default: in this process, serially).
        deadline: ``time.time()`` instant after which work stops (:class:`ExtractionCancelledError`).
        cancelled: polled between groups; True stops the work (:class:`ExtractionCancelledError`).

    Raises:
        FeatureExtractionError: the plan's names or settings are refused (see :func:`check_plan`).
        ExtractionCancelledError: deadline passed or cancelled.
    """
    params = check_plan(plan, inputs)
    phases = inputs.phases()
    roles = phase_role_images(plan, phases)
    keys_by_name = radiomics_keys(plan, phases)
    all_keys = list(dict.fromkeys(key for keys in keys_by_name.values() for key in keys))
    parsed_names: dict[str, FeatureName] = {key[2]: parse_feature_name(key[2]) for key in all_keys}
    groups = build_groups(all_keys, parsed_names)
    prepared = _prepare(plan, inputs, {group.image for group in groups}, params)
    missing: dict[Key, Missing] = {}
    tasks = _tasks(groups, prepared, inputs, params, deadline, missing)
    results = (runner or InlineRunner()).run(tasks, deadline, cancelled)
    computed: dict[Key, float] = {}
    for result in results:
        if result is None:
            raise ExtractionCancelledError("deadline passed or call cancelled")
        if result.error is not None:
            reason, feature, message = result.error
            raise FeatureExtractionError(reason, feature, message)
        computed.update(result.values)
        for key, why in result.missing.items():
            missing.setdefault(key, why)
    values, absent = _assemble(plan, inputs, keys_by_name, computed, missing, roles)
    warnings: list[str] = []
    if any(p.family == "kinetic" for p in plan.parsed_features()) and len(phases) < MIN_KINETIC_PHASES:
        warnings.append(
            f"KINETIC_FEW_PHASES: kinetic statistics over {len(phases)} phases (fewer than {MIN_KINETIC_PHASES}): "
            "kurtosis and skewness are uninformative"
        )
    passes = sum(len(task.regions) for task in tasks)
    logger.info("plan extracted", extra={"groups": len(tasks), "passes": passes, "missing": len(absent)})
    return PlanExtraction(values, absent, tuple(warnings), groups=len(tasks), passes=passes)
