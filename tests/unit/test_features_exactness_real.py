"""The plan engine against plain pyradiomics on the real breast1 / brain1 cases: every class, every filter,
with and without resampling; values equal to a relative 1e-9 (in practice bit-identical)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from oncohabitat.common.volume import Geometry, Volume
from oncohabitat.features.engine import InlineRunner, extract_plan
from oncohabitat.features.passes import GroupResult, GroupTask
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
    inputs = StudyInputs(images={"S0": Volume.of(image)}, regions={"tumour": RegionMask(mask, Geometry.of(label))})
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


class _Recording(InlineRunner):
    """Runs inline and keeps the tasks (to see which path a group took)."""

    def __init__(self) -> None:
        self.tasks: list[GroupTask] = []

    def run(self, tasks: Sequence[GroupTask], deadline: float | None, cancelled: Any) -> list[GroupResult | None]:
        self.tasks.extend(tasks)
        return super().run(tasks, deadline, cancelled)


def test_local_filters_run_on_region_crops_with_identical_values(shared_data: Path) -> None:
    image, mask, inputs = _case(shared_data, "brain1")
    params = {"setting": {"binWidth": 25}, "imageType": {"Wavelet": {}, "Gradient": {}, "Square": {}}}
    params["featureClass"] = {"firstorder": ["Mean"], "glcm": ["Idmn"]}
    expected_raw = reference(image, mask, params)
    plan, expected = plan_for({("tumour", "S0"): expected_raw}, params)
    runner = _Recording()
    assert_matches(extract_plan(plan, inputs, runner), expected)
    shapes = {task.image_type: task.array.shape for task in runner.tasks}
    full = inputs.images["S0"].array.shape
    assert shapes["Square"] == full  # a global statistic: the whole image
    assert all(a < b for a, b in zip(shapes["Wavelet"][1:], full[1:], strict=True))  # cropped in-plane
    assert all(a < b for a, b in zip(shapes["Gradient"][1:], full[1:], strict=True))
