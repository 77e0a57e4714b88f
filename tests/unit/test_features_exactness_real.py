"""The plan engine against plain pyradiomics on the real breast1 / brain1 cases: every class, every filter,
with and without resampling; values equal to a relative 1e-9 (in practice bit-identical)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from oncohabitat.common.codec import Geometry
from oncohabitat.features.engine import extract_plan, image_input
from oncohabitat.features.study import RegionMask, StudyInputs
from tests.unit.test_features_support import assert_matches, class_features, plan_for, reference

pytestmark = [
    pytest.mark.filterwarnings("ignore:the load_module\\(\\) method is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Please import `map_coordinates`:DeprecationWarning"),
]

ALL_CLASSES = ["shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"]
EVERY_FILTER: dict[str, dict[str, Any]] = {
    "Original": {},
    "Wavelet": {},
    "LoG": {"sigma": [1.0, 3.0]},
    "Square": {},
    "SquareRoot": {},
    "Logarithm": {},
    "Exponential": {},
    "Gradient": {},
    "LBP3D": {"binWidth": 1},
}


def _case(shared_data: Path, case: str) -> tuple[sitk.Image, np.ndarray, StudyInputs]:
    image = sitk.ReadImage(str(shared_data / "pyradiomics" / f"{case}_image.nrrd"))
    label = sitk.ReadImage(str(shared_data / "pyradiomics" / f"{case}_label.nrrd"))
    mask = sitk.GetArrayFromImage(label) == 1
    inputs = StudyInputs(images={"S0": image_input(image)}, regions={"tumour": RegionMask(mask, Geometry.of(label))})
    return image, mask, inputs


def _check(image: sitk.Image, mask: np.ndarray, inputs: StudyInputs, params: dict[str, Any]) -> None:
    expected_raw = reference(image, mask, params)
    plan, expected = plan_for({("tumour", "S0"): expected_raw}, params)
    assert len(expected) > 0
    assert_matches(extract_plan(plan, inputs), expected)


@pytest.mark.parametrize("case", ["breast1", "brain1"])
@pytest.mark.parametrize("resampled", [False, True], ids=["native", "resampled"])
def test_every_class_every_feature(shared_data: Path, case: str, resampled: bool) -> None:
    image, mask, inputs = _case(shared_data, case)
    setting: dict[str, Any] = {"binWidth": 25}
    if resampled:
        setting |= {"resampledPixelSpacing": [2, 2, 2], "interpolator": "sitkBSpline"}
    params = {
        "setting": setting,
        "imageType": {"Original": {}},
        "featureClass": {c: class_features(c) for c in ALL_CLASSES},
    }
    _check(image, mask, inputs, params)


@pytest.mark.parametrize("resampled", [False, True], ids=["native", "resampled"])
def test_every_filter_on_breast1(shared_data: Path, resampled: bool) -> None:
    image, mask, inputs = _case(shared_data, "breast1")
    setting: dict[str, Any] = {"binWidth": 10}
    if resampled:
        setting |= {"resampledPixelSpacing": [1, 1, 1], "interpolator": "sitkBSpline"}
    classes = {c: class_features(c)[:2] for c in ALL_CLASSES}
    params = {"setting": setting, "imageType": EVERY_FILTER, "featureClass": classes}
    _check(image, mask, inputs, params)


def test_brain1_filters_without_lbp(shared_data: Path) -> None:
    image, mask, inputs = _case(shared_data, "brain1")
    filters = {k: v for k, v in EVERY_FILTER.items() if k != "LBP3D"}
    params = {
        "setting": {"binWidth": 25},
        "imageType": filters,
        "featureClass": {"firstorder": ["Mean"], "glcm": ["Idmn"]},
    }
    _check(image, mask, inputs, params)
