"""The plan engine against plain pyradiomics on a phantom DCE study: every region the regions service builds,
every phase role and derived image, every filter, the three normalisations, with and without resampling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from oncohabitat.features.engine import extract_plan
from tests.unit.test_features_exactness_real import EVERY_FILTER
from tests.unit.test_features_support import (
    ALL_DERIVED,
    PhantomInputs,
    assert_matches,
    phantom_inputs,
    plan_for,
    references_for,
)
from tests.unit.test_regions_phantom_support import load_phantom

pytestmark = [
    pytest.mark.filterwarnings("ignore:the load_module\\(\\) method is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Please import `map_coordinates`:DeprecationWarning"),
]

REGIONS = ["tumour", "habitat_1", "habitat_2", "habitat_3", "ring_5mm", "stroma_20mm", "breast", "parenchyma"]
FEW = {"shape": ["Sphericity"], "firstorder": ["Mean", "Skewness"], "glcm": ["Correlation"], "glszm": ["ZoneEntropy"]}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> PhantomInputs:
    return phantom_inputs(load_phantom(tmp_path_factory.mktemp("phantom"), "small", seed=5))


def _params(
    setting: dict[str, Any], classes: dict[str, list[str]] | None = None, filters: Any = None
) -> dict[str, Any]:
    return {"setting": setting, "imageType": filters or {"Original": {}}, "featureClass": classes or FEW}


def test_every_region_every_image(study: PhantomInputs) -> None:
    inputs = study.inputs
    assert set(REGIONS) <= set(inputs.regions)
    images = ["S0", "S1", *ALL_DERIVED]
    params = _params({"binCount": 16})
    references = references_for(inputs, REGIONS, images, params)
    plan, expected = plan_for(references, params)
    assert_matches(extract_plan(plan, inputs), expected)


def test_phase_roles_resolve_to_the_profile_phases(study: PhantomInputs) -> None:
    inputs = study.inputs
    params = _params({"binCount": 16}, {"firstorder": ["Mean"]})
    references = references_for(inputs, ["tumour"], ["S1", "S5"], params)
    plan, _ = plan_for(
        {("tumour", "SM"): references[("tumour", "S1")], ("tumour", "SL"): references[("tumour", "S5")]}, params
    )
    result = extract_plan(plan, inputs)
    assert (
        result.values["tumour/SM/original_firstorder_Mean"] == references[("tumour", "S1")]["original_firstorder_Mean"]
    )
    assert (
        result.values["tumour/SL/original_firstorder_Mean"] == references[("tumour", "S5")]["original_firstorder_Mean"]
    )


def test_every_filter_on_habitats_and_ring(study: PhantomInputs) -> None:
    params = _params({"binCount": 16}, {"firstorder": ["Mean"], "glcm": ["Idmn"]}, EVERY_FILTER)
    references = references_for(study.inputs, ["habitat_2", "ring_5mm"], ["PE", "S0"], params)
    plan, expected = plan_for(references, params)
    assert_matches(extract_plan(plan, study.inputs), expected)


@pytest.mark.parametrize("spacing", [[2.0, 2.0, 2.0], [0.703125, 0.703125, 1.48148]], ids=["2mm", "seed002"])
def test_resampled(study: PhantomInputs, spacing: list[float]) -> None:
    params = _params({"binCount": 16, "resampledPixelSpacing": spacing, "interpolator": "sitkBSpline"})
    params["imageType"] = {"Original": {}, "LoG": {"sigma": [2.0]}}
    references = references_for(study.inputs, ["tumour", "habitat_1", "ring_5mm"], ["S0", "SER"], params)
    plan, expected = plan_for(references, params)
    assert_matches(extract_plan(plan, study.inputs), expected)


def test_zscore_is_pyradiomics_normalize(study: PhantomInputs) -> None:
    params = _params({"binWidth": 0.25, "normalize": True, "normalizeScale": 1.0})
    references = references_for(study.inputs, ["tumour", "ring_5mm"], ["S0", "SM0"], params)
    plan, expected = plan_for(references, params, normalisation={"type": "zscore", "scale": 1.0})
    assert_matches(extract_plan(plan, study.inputs), expected)


def _fixed_range(_name: str, image: sitk.Image) -> sitk.Image:
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    scaled = (array - array.min()) / (array.max() - array.min()) * 800.0
    out = sitk.GetImageFromArray(scaled)
    out.CopyInformation(image)
    return out


def test_fixed_range_and_parenchyma_mean(study: PhantomInputs) -> None:
    params = _params({"binWidth": 25})
    references = references_for(study.inputs, ["tumour", "stroma_20mm"], ["S0", "SL0"], params, _fixed_range)
    plan, expected = plan_for(references, params, normalisation={"type": "fixed_range", "low": 0, "high": 800})
    assert_matches(extract_plan(plan, study.inputs), expected)

    mean = study.regions.parenchyma_s0_mean
    assert mean is not None and mean > 0

    def divided(_name: str, image: sitk.Image) -> sitk.Image:
        out = sitk.GetImageFromArray(sitk.GetArrayFromImage(image).astype(np.float64) / mean)
        out.CopyInformation(image)
        return out

    params = _params({"binWidth": 0.05})
    references = references_for(study.inputs, ["tumour", "stroma_20mm"], ["S0", "S_I"], params, divided)
    plan, expected = plan_for(references, params, normalisation={"type": "parenchyma_mean"})
    assert_matches(extract_plan(plan, study.inputs), expected)


def test_phantom_loader_keeps_every_phase(tmp_path: Path) -> None:
    study = phantom_inputs(load_phantom(tmp_path, "small", seed=6))
    assert study.inputs.phases() == [f"S{k}" for k in range(6)]
    assert set(ALL_DERIVED) <= set(study.inputs.images)
