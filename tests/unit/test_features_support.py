"""Helpers shared by the feature-engine tests (reference pyradiomics runs, phantom study inputs), and their checks."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import SimpleITK as sitk
from radiomics import featureextractor, getFeatureClasses

from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat.common.phases import select_phases
from oncohabitat.common.volume import Geometry, Volume
from oncohabitat.features.engine import PlanExtraction
from oncohabitat.features.study import (
    LabelTable,
    RegionMask,
    StudyInputs,
    canonical_regions,
    region_on_grid,
)
from oncohabitat.regions.pipeline import RegionsResult, build_regions
from oncohabitat.regions.profile import RegionProfile
from tests.unit.test_regions_phantom_support import LoadedPhantom

TOLERANCE = 1e-9
ALL_DERIVED = ["SM0", "SL0", "M1", "M2", "PE", "SER", "WIS", "WOS", "S_I", "S_L"]
pytestmark = pytest.mark.filterwarnings("ignore:the load_module\\(\\) method is deprecated:DeprecationWarning")


def class_features(feature_class: str) -> list[str]:
    """The non-deprecated features pyradiomics defines for a class."""
    return [name for name, deprecated in getFeatureClasses()[feature_class].getFeatureNames().items() if not deprecated]


def image_of(image: Volume) -> sitk.Image:
    """A SimpleITK image of an :class:`Volume`."""
    return image.geometry.apply(sitk.GetImageFromArray(image.array))


def reference(image: sitk.Image, mask: npt.NDArray[np.bool_], params: Mapping[str, Any]) -> dict[str, float]:
    """Plain pyradiomics: ``RadiomicsFeatureExtractor(params).execute`` on the whole image and mask (label 1)."""
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    mask_image = sitk.GetImageFromArray(mask.astype(np.uint8))
    mask_image.CopyInformation(image)
    extractor = featureextractor.RadiomicsFeatureExtractor(dict(params))
    result = extractor.execute(image, mask_image, label=1)
    return {key: float(value) for key, value in result.items() if not key.startswith("diagnostics")}


def same(a: float, b: float) -> bool:
    """Relative difference <= TOLERANCE, or both NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= TOLERANCE * max(abs(a), abs(b))


def assert_matches(result: PlanExtraction, expected: Mapping[str, float]) -> float:
    """Every expected canonical name computed and equal; returns the largest relative difference."""
    assert not result.missing, dict(list(result.missing.items())[:5])
    worst = 0.0
    mismatches = []
    for name, value in expected.items():
        ours = result.values[name]
        if not same(ours, value):
            mismatches.append((name, ours, value))
        elif not (math.isnan(ours) or ours == value):
            worst = max(worst, abs(ours - value) / max(abs(ours), abs(value)))
    assert not mismatches, mismatches[:5]
    return worst


def plan_for(
    references: Mapping[tuple[str, str], Mapping[str, float]], settings: Mapping[str, Any], **extra: Any
) -> tuple[ExtractionPlan, dict[str, float]]:
    """A plan naming every feature of the references, and the expected canonical values."""
    expected = {
        f"{region}/{image}/{key}": value for (region, image), ref in references.items() for key, value in ref.items()
    }
    plan = ExtractionPlan.model_validate({"feature_settings": dict(settings), "features": list(expected), **extra})
    return plan, expected


def mask_on(inputs: StudyInputs, region: str, image: str) -> npt.NDArray[np.bool_]:
    """A region as a full boolean mask on an image's grid."""
    target = inputs.images[image]
    placed = region_on_grid(inputs.regions[region], target.geometry, target.array.shape)
    assert placed is not None and placed.outside == 0
    return placed.full(target.array.shape)


@dataclass(frozen=True)
class PhantomInputs:
    """A phantom study's inputs for the engine, and the regions result they came from."""

    inputs: StudyInputs
    regions: RegionsResult


def phantom_inputs(phantom: LoadedPhantom, profile: Mapping[str, Any] | None = None) -> PhantomInputs:
    """BuildRegions (every derived image) on a phantom, turned into engine inputs as the orchestrator does."""
    settings = {"derived_images": ALL_DERIVED, **(profile or {})}
    result = build_regions(select_phases(phantom.phases), phantom.tumour, RegionProfile.model_validate(settings))
    images = {f"S{phase.index}": Volume(phase.array, phase.geometry) for phase in phantom.phases}
    grid: Geometry = result.geometry
    images.update({name: Volume(array, grid) for name, array in result.derived_images.items()})
    tables = [
        LabelTable(region_map.array, grid, {entry.value: entry.name for entry in region_map.labels})
        for region_map in result.maps
    ]
    inputs = StudyInputs(
        images=images,
        regions=canonical_regions(tables),
        msi=dict(result.msi_features),
        parenchyma_mean=result.parenchyma_s0_mean,
    )
    return PhantomInputs(inputs, result)


def references_for(
    inputs: StudyInputs,
    regions: Sequence[str],
    images: Sequence[str],
    params: Mapping[str, Any],
    prepare: Any = None,
) -> dict[tuple[str, str], dict[str, float]]:
    """Plain pyradiomics per (region, image); ``prepare(image_name, sitk.Image)`` may transform the image first."""
    references = {}
    for image_name in images:
        image = image_of(inputs.images[image_name])
        if prepare is not None:
            image = prepare(image_name, image)
        for region in regions:
            references[(region, image_name)] = reference(image, mask_on(inputs, region, image_name), params)
    return references


def test_same_treats_nan_and_tolerance() -> None:
    assert same(float("nan"), float("nan"))
    assert not same(float("nan"), 1.0)
    assert same(1.0, 1.0 + 1e-12)
    assert not same(1.0, 1.0 + 1e-6)


def test_regions_map_to_canonical_names() -> None:
    array = np.zeros((2, 3, 3), dtype=np.uint8)
    array[0, 0, 0], array[0, 1, 1], array[1, 2, 2] = 1, 2, 1
    table = LabelTable(array, Geometry(), {1: "breast_right", 2: "breast_left"})
    tumour = LabelTable((array == 2).astype(np.uint8), Geometry(), {1: "tumour"})
    ring = LabelTable(array, Geometry(), {1: "peritumoral_ring_5mm", 2: "stroma_band_20mm"})
    regions = canonical_regions([table, tumour, ring])
    assert set(regions) == {"breast", "tumour", "parenchyma", "ring_5mm", "stroma_20mm"}
    assert int(regions["breast"].mask.sum()) == 3
    np.testing.assert_array_equal(regions["parenchyma"].mask, (array == 1))
    assert isinstance(regions["tumour"], RegionMask)
