"""One group's work in a worker process: prepare an image once, filter it once, run each region's pass.

The steps are pyradiomics' own (``RadiomicsFeatureExtractor.execute``), called piecewise so that work is shared:

1. the image arrives normalised (:mod:`oncohabitat.features.normalise`, done once per image by the engine) and,
   for a local filter (``Original``, ``Gradient``, ``Wavelet``: :func:`oncohabitat.features.engine.filter_margin`),
   cropped to one region's box grown by the filter's support (an axis the margin would leave is kept whole);
2. when nothing depends on the region (no resampling, no ``preCrop``, not an LBP filter), apply the filter to the
   task's image once (``imageoperations.get<Type>Image``; LoG restricted to the sigmas asked for) and, per
   region, crop every filtered image to the region's bounding box with the filter pyradiomics uses itself
   (``CropImageFilter``). Filters with a global statistic (the max of ``square``), the recursive LoG and LBP
   get the whole image; local filters get their support around the region: values are bit-identical to a plain
   extraction on the uncropped image (the exactness tests check it);
3. otherwise (resampling, ``preCrop``, LBP) every region gets pyradiomics' own preparation: its
   ``resampleImage`` / crop anchored on that region's mask, then the filter on that result;
4. ``checkMask`` (minimum size / dimensions), shape on the mask, ``resegmentRange`` as pyradiomics applies it,
   then ``computeFeatures`` one class at a time with only the asked-for features enabled, so that one class
   failing (a region too small) leaves the others.

Gray-level limit: before a texture class runs, the number of gray levels the binning would create is checked
against :data:`oncohabitat.features.limits.MAX_GRAY_LEVELS`; above it the class is reported missing.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from oncohabitat.bundles.names import SHAPE_CLASSES
from oncohabitat.common.volume import Geometry
from oncohabitat.features import errors, limits
from oncohabitat.features.errors import FeatureExtractionError
from oncohabitat.features.grouping import Key

logger = logging.getLogger(__name__)

TEXTURE_CLASSES = frozenset({"glcm", "glrlm", "glszm", "gldm", "ngtdm"})
_REGION_DEPENDENT_TYPES = frozenset({"LBP2D", "LBP3D"})
_EXTRACTORS: dict[str, Any] = {}


def _never(_token: int) -> bool:
    return False


#: Whether the call with this token was cancelled; the worker pool installs its shared table here.
CANCELLED: Callable[[int], bool] = _never
_REFUSED = "pyradiomics refused the region (a single voxel, too few dimensions or below minimumROISize)"

# Missing-value reasons (stable codes).
REGION_EMPTY = "REGION_EMPTY"
REGION_TOO_SMALL = "REGION_TOO_SMALL"
CLASS_FAILED = "CLASS_FAILED"
NOT_PRODUCED = "NOT_PRODUCED"
NORMALISATION_FAILED = "NORMALISATION_FAILED"
GRAY_LEVEL_LIMIT = "GRAY_LEVEL_LIMIT"
DEADLINE = "DEADLINE_EXCEEDED"
REGION_OUTSIDE_IMAGE = "REGION_OUTSIDE_IMAGE"


@dataclass(frozen=True)
class RegionInput:
    """A region on the group's image grid: bounding-box crop, lower corner (z, y, x), and what to compute."""

    region: str
    crop: npt.NDArray[np.bool_]
    lower: tuple[int, int, int]
    wanted: Mapping[str, Mapping[str, list[str]]]


@dataclass(frozen=True)
class GroupTask:
    """Everything a worker needs for one (image, filter) group; picklable.

    ``array`` (z, y, x) is the normalised image on ``geometry``; region crops are placed on that grid.
    ``deadline`` is a ``time.time()`` instant after which no further region is started; ``token`` identifies the
    call for cancellation (:data:`CANCELLED`; 0 = none).
    """

    image: str
    image_type: str
    array: npt.NDArray[np.generic]
    geometry: Geometry
    params: Mapping[str, Any]
    regions: tuple[RegionInput, ...]
    deadline: float | None = None
    token: int = 0


@dataclass
class GroupResult:
    """Values and missing values (key -> (reason, message)) of one group; ``error`` = a refused request."""

    values: dict[Key, float] = field(default_factory=dict)
    missing: dict[Key, tuple[str, str]] = field(default_factory=dict)
    error: tuple[str, str | None, str] | None = None
    seconds: float = 0.0


def extractor_for(params: Mapping[str, Any]) -> Any:
    """A pyradiomics extractor for ``params`` (validated by pyradiomics' schema), cached per process.

    Only called inside a worker process (or a single-threaded caller): pyradiomics' settings validation keeps
    global state and is not thread-safe.

    Raises:
        FeatureExtractionError: ``SETTINGS_INVALID``.
    """
    key = json.dumps(params, sort_keys=True)
    cached = _EXTRACTORS.get(key)
    if cached is not None:
        return cached
    import pykwalify.errors
    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    try:
        extractor = featureextractor.RadiomicsFeatureExtractor(json.loads(key))
    except (pykwalify.errors.PyKwalifyException, ValueError, TypeError) as exc:
        message = getattr(exc, "msg", None) or type(exc).__name__
        raise FeatureExtractionError(
            errors.SETTINGS_INVALID, None, f"pyradiomics rejected the settings: {message}"
        ) from None
    if len(_EXTRACTORS) > 32:
        _EXTRACTORS.clear()
    _EXTRACTORS[key] = extractor
    return extractor


def _keys(task: GroupTask, region: RegionInput) -> Iterator[Key]:
    for image_name, classes in region.wanted.items():
        for feature_class, features in classes.items():
            for feature in features:
                yield (region.region, task.image, f"{image_name}_{feature_class}_{feature}")


def _mark(result: GroupResult, keys: Iterator[Key], reason: str, message: str) -> None:
    for key in keys:
        if key not in result.values:
            result.missing.setdefault(key, (reason, message))


def _log_name(sigma: Any) -> str:
    return f"log-sigma-{str(sigma).replace('.', '-')}-mm-3D"


def _filter_args(task: GroupTask, settings: Mapping[str, Any], needed: set[str]) -> dict[str, Any]:
    args = dict(settings)
    args.update(task.params.get("imageType", {}).get(task.image_type) or {})
    if task.image_type == "LoG":
        args["sigma"] = [s for s in args.get("sigma", []) if _log_name(s) in needed]
    return args


def _filtered(task: GroupTask, image: sitk.Image, mask: sitk.Image | None, args: dict[str, Any], needed: set[str]):  # type: ignore[no-untyped-def]
    from radiomics import imageoperations

    generator = getattr(imageoperations, f"get{task.image_type}Image")
    return [(img, name, kwargs) for img, name, kwargs in generator(image, mask, **args) if name in needed]


def _crop(image: sitk.Image, lower_xyz: list[int], size_xyz: list[int]) -> sitk.Image:
    total = image.GetSize()
    crop = sitk.CropImageFilter()
    crop.SetLowerBoundaryCropSize(lower_xyz)
    crop.SetUpperBoundaryCropSize([int(t - lo - s) for t, lo, s in zip(total, lower_xyz, size_xyz, strict=True)])
    return crop.Execute(image)


def _gray_levels(image: sitk.Image, mask: sitk.Image, settings: Mapping[str, Any]) -> int:
    """Gray levels the binning of ``image`` inside ``mask`` would create (pyradiomics' getBinEdges rule)."""
    if settings.get("binCount") is not None:
        return int(settings["binCount"])
    values = sitk.GetArrayViewFromImage(image)[sitk.GetArrayViewFromImage(mask) == settings.get("label", 1)]
    if values.size == 0:
        return 0
    width = float(settings.get("binWidth", 25))
    low, high = float(np.min(values)), float(np.max(values))
    if not (math.isfinite(low) and math.isfinite(high)):
        return limits.MAX_GRAY_LEVELS + 1
    return int(math.floor(high / width) - math.floor(low / width) + 1)


def _classes(
    extractor: Any,
    task: GroupTask,
    region: RegionInput,
    image: sitk.Image,
    mask: sitk.Image,
    image_name: str,
    kwargs: Mapping[str, Any],
    result: GroupResult,
) -> None:
    for feature_class, features in region.wanted[image_name].items():
        if feature_class in SHAPE_CLASSES:
            continue
        keys = [(region.region, task.image, f"{image_name}_{feature_class}_{f}") for f in features]
        if feature_class in TEXTURE_CLASSES and _gray_levels(image, mask, kwargs) > limits.MAX_GRAY_LEVELS:
            _mark(
                result, iter(keys), GRAY_LEVEL_LIMIT, f"more than {limits.MAX_GRAY_LEVELS} gray levels: raise binWidth"
            )
            continue
        extractor.enabledFeatures = {feature_class: list(features)}
        try:
            values = extractor.computeFeatures(image, mask, image_name, **kwargs)
        except Exception as exc:  # noqa: BLE001 - pyradiomics raises many types for degenerate regions
            logger.warning("feature class failed", extra={"feature_class": feature_class, "error": type(exc).__name__})
            _mark(result, iter(keys), CLASS_FAILED, f"{feature_class} could not be computed on this region")
            continue
        for key in keys:
            if key[2] in values:
                result.values[key] = float(values[key[2]])


def _shape(extractor: Any, task: GroupTask, region: RegionInput, image, mask, bbox, settings, result) -> None:  # type: ignore[no-untyped-def]
    wanted = region.wanted.get("original", {})
    shape = {cls: list(features) for cls, features in wanted.items() if cls in SHAPE_CLASSES}
    if not shape:
        return
    extractor.enabledFeatures = shape
    keys = [(region.region, task.image, f"original_{cls}_{f}") for cls, fs in shape.items() for f in fs]
    try:
        values = extractor.computeShape(image, mask, bbox, **settings)
    except Exception as exc:  # noqa: BLE001
        logger.warning("shape failed", extra={"error": type(exc).__name__})
        _mark(result, iter(keys), CLASS_FAILED, "shape could not be computed on this region")
        return
    for key in keys:
        if key[2] in values:
            result.values[key] = float(values[key[2]])


def _prepare_region(task, image, region, settings):  # type: ignore[no-untyped-def]
    """pyradiomics' loadImage steps after normalisation, for one region's full-grid mask."""
    from radiomics import imageoperations

    mask = sitk.GetImageFromArray(_full_mask(region, sitk.GetArrayViewFromImage(image).shape))
    mask.CopyInformation(image)
    mask = imageoperations.getMask(mask, **settings)
    if settings.get("interpolator") is not None and settings.get("resampledPixelSpacing") is not None:
        return imageoperations.resampleImage(image, mask, **settings)
    if settings.get("preCrop", False):
        bbox, corrected = imageoperations.checkMask(image, mask, **settings)
        mask = corrected if corrected is not None else mask
        return imageoperations.cropToTumorMask(image, mask, bbox, **settings)
    return image, mask


def _full_mask(region: RegionInput, shape: tuple[int, ...]) -> npt.NDArray[np.uint32]:
    out = np.zeros(shape, dtype=np.uint32)
    z, y, x = region.lower
    dz, dy, dx = region.crop.shape
    out[z : z + dz, y : y + dy, x : x + dx] = region.crop
    return out


def _run_region(extractor, task, region, image, shared, settings, args, result) -> None:  # type: ignore[no-untyped-def]
    from radiomics import imageoperations

    needed = set(region.wanted)
    if shared is None:
        base, mask = _prepare_region(task, image, region, settings)
    else:
        lower_xyz = [int(v) for v in reversed(region.lower)]
        size_xyz = [int(v) for v in reversed(region.crop.shape)]
        base = _crop(image, lower_xyz, size_xyz)
        mask = sitk.GetImageFromArray(region.crop.astype(np.uint32))
        mask.CopyInformation(base)
        mask = imageoperations.getMask(mask, **settings)
    bbox, corrected = imageoperations.checkMask(base, mask, **settings)
    mask = corrected if corrected is not None else mask
    _shape(extractor, task, region, base, mask, bbox, settings, result)
    if settings.get("resegmentRange") is not None:
        mask = imageoperations.resegmentMask(base, mask, **settings)
        bbox, _ = imageoperations.checkMask(base, mask, **settings)
    if shared is None:
        filtered = _filtered(task, base, mask, args, needed)
    else:
        filtered = [(_crop(img, lower_xyz, size_xyz), name, kw) for img, name, kw in shared if name in needed]
    for sub, name, kwargs in filtered:
        if all(cls in SHAPE_CLASSES for cls in region.wanted[name]):
            continue
        sub_c, mask_c = imageoperations.cropToTumorMask(sub, mask, bbox)
        _classes(extractor, task, region, sub_c, mask_c, name, kwargs, result)


def run_group(task: GroupTask) -> GroupResult:
    """Compute one group (see the module docstring); never raises for a region's or class's failure."""
    started = time.perf_counter()
    result = GroupResult()
    try:
        extractor = extractor_for(task.params)
    except FeatureExtractionError as exc:
        result.error = (exc.reason, exc.feature, exc.message)
        return result
    settings = dict(extractor.settings)
    image = sitk.GetImageFromArray(task.array)
    task.geometry.apply(image)
    needed = {name for region in task.regions for name in region.wanted}
    args = _filter_args(task, settings, needed)
    resampled = settings.get("interpolator") is not None and settings.get("resampledPixelSpacing") is not None
    region_dependent = resampled or settings.get("preCrop", False) or task.image_type in _REGION_DEPENDENT_TYPES
    shared = None if region_dependent else _filtered(task, image, None, args, needed)
    for region in task.regions:
        if (task.deadline is not None and time.time() > task.deadline) or (task.token and CANCELLED(task.token)):
            _mark(result, _keys(task, region), DEADLINE, "the call's deadline passed or it was cancelled")
            continue
        try:
            _run_region(extractor, task, region, image, shared, settings, args, result)
        except ValueError as exc:  # checkMask / getMask / resampling refusals: the region cannot be used
            logger.info("region refused by pyradiomics", extra={"error": type(exc).__name__})
            _mark(result, _keys(task, region), REGION_TOO_SMALL, _REFUSED)
        _mark(result, _keys(task, region), NOT_PRODUCED, "pyradiomics did not produce this feature (filter settings?)")
    result.seconds = time.perf_counter() - started
    return result
