"""The plan engine's own rules: normalisations by hand, parenchyma mean, missing values with reasons, kinetic
statistics and their warning, MSI and statistics families, limits, grouping of the work."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import stats

from oncohabitat.bundles.plan import ExtractionPlan, FixedRangeNormalisation, ParenchymaMeanNormalisation
from oncohabitat.common.volume import Geometry, Volume
from oncohabitat.features.engine import extract_plan
from oncohabitat.features.errors import FeatureExtractionError
from oncohabitat.features.normalise import NormalisationError, normalise_image, parenchyma_mean
from oncohabitat.features.study import RegionMask, StudyInputs
from tests.unit.test_features_support import PhantomInputs, image_of, mask_on, phantom_inputs, reference
from tests.unit.test_regions_phantom_support import load_phantom

pytestmark = pytest.mark.filterwarnings("ignore:the load_module\\(\\) method is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> PhantomInputs:
    return phantom_inputs(load_phantom(tmp_path_factory.mktemp("phantom"), "small", seed=7))


def _plan(features: list[str], **extra: object) -> ExtractionPlan:
    return ExtractionPlan.model_validate(
        {"features": features, "feature_settings": {"setting": {"binCount": 8}}, **extra}
    )


def test_fixed_range_by_hand() -> None:
    image = sitk.GetImageFromArray(np.array([[[10, 20], [30, 50]]], dtype=np.int16))
    out = sitk.GetArrayFromImage(normalise_image(image, FixedRangeNormalisation(type="fixed_range"), {}, None))
    # min 10 -> 0, max 50 -> 800; 20 -> 800 * 10 / 40 = 200; 30 -> 400
    np.testing.assert_array_equal(out, np.array([[[0.0, 200.0], [400.0, 800.0]]]))
    shifted = FixedRangeNormalisation(type="fixed_range", low=-1, high=1)
    out = sitk.GetArrayFromImage(normalise_image(image, shifted, {}, None))
    np.testing.assert_array_equal(out, np.array([[[-1.0, -0.5], [0.0, 1.0]]]))
    with pytest.raises(NormalisationError):
        normalise_image(
            sitk.GetImageFromArray(np.ones((1, 2, 2))), FixedRangeNormalisation(type="fixed_range"), {}, None
        )


def test_parenchyma_mean_by_hand() -> None:
    s0 = np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.int16)
    breast = np.array([[[1, 1, 1], [1, 1, 0]]], dtype=bool)
    tumour = np.array([[[0, 1, 0], [0, 0, 0]]], dtype=bool)
    assert parenchyma_mean(s0, breast, tumour) == (1 + 3 + 4 + 5) / 4
    assert parenchyma_mean(s0, tumour, tumour) is None
    image = sitk.GetImageFromArray(s0)
    out = sitk.GetArrayFromImage(normalise_image(image, ParenchymaMeanNormalisation(type="parenchyma_mean"), {}, 3.25))
    np.testing.assert_array_equal(out, s0 / 3.25)
    for bad in (None, 0.0, -1.0, float("nan")):
        with pytest.raises(NormalisationError):
            normalise_image(image, ParenchymaMeanNormalisation(type="parenchyma_mean"), {}, bad)


def test_regions_service_parenchyma_mean_is_s0_over_breast_minus_tumour(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    phantom = load_phantom(tmp_path_factory.mktemp("full"), "small", seed=8)
    result = phantom_inputs(phantom, {"output_grid": "full"})
    breast = result.inputs.regions["breast"].mask
    s0 = np.asarray(phantom.phases[0].array, dtype=np.float64)
    expected = float(np.mean(s0[breast & ~phantom.tumour]))
    assert result.regions.parenchyma_s0_mean == expected
    # the engine computes the same from the delivered maps when the caller does not send it
    inputs = StudyInputs(images=result.inputs.images, regions=result.inputs.regions)
    plan = _plan(["tumour/S0/original_firstorder_Mean"], normalisation={"type": "parenchyma_mean"})
    ours = extract_plan(plan, inputs).values["tumour/S0/original_firstorder_Mean"]
    assert ours == pytest.approx(float(np.mean(s0[phantom.tumour])) / expected, rel=1e-12)


def test_missing_values_have_reasons_and_the_rest_is_computed(study: PhantomInputs) -> None:
    inputs = study.inputs
    regions = dict(inputs.regions)
    tumour = regions["tumour"]
    regions["habitat_3"] = RegionMask(np.zeros_like(tumour.mask), tumour.geometry)  # a habitat with 0 voxels
    single = np.zeros_like(tumour.mask)
    single[tuple(np.argwhere(tumour.mask)[0])] = True
    regions["habitat_2"] = RegionMask(single, tumour.geometry)  # one voxel: pyradiomics refuses it
    del regions["ring_5mm"]
    images = {k: v for k, v in inputs.images.items() if k != "WOS"}
    broken = StudyInputs(images=images, regions=regions, msi={}, parenchyma_mean=inputs.parenchyma_mean)
    plan = _plan(
        [
            "tumour/S0/original_glcm_Correlation",
            "habitat_3/PE/original_firstorder_Mean",
            "habitat_2/PE/original_glszm_ZoneEntropy",
            "ring_5mm/PE/original_firstorder_Mean",
            "tumour/WOS/original_firstorder_Mean",
            "tumour/msi/msi_contrast",
            "habitat_1/stats/fraction",
        ]
    )
    result = extract_plan(plan, broken)
    assert set(result.values) == {"tumour/S0/original_glcm_Correlation", "habitat_1/stats/fraction"}
    reasons = {name: missing.reason for name, missing in result.missing.items()}
    assert reasons == {
        "habitat_3/PE/original_firstorder_Mean": "REGION_EMPTY",
        "habitat_2/PE/original_glszm_ZoneEntropy": "REGION_TOO_SMALL",
        "ring_5mm/PE/original_firstorder_Mean": "REGION_NOT_PROVIDED",
        "tumour/WOS/original_firstorder_Mean": "IMAGE_NOT_PROVIDED",
        "tumour/msi/msi_contrast": "MSI_UNAVAILABLE",
    }
    assert all(missing.message for missing in result.missing.values())


def test_kinetic_statistics_over_every_phase(study: PhantomInputs) -> None:
    inputs = study.inputs
    phases = inputs.phases()
    assert len(phases) == 6
    params = {"setting": {"binCount": 8}, "featureClass": {"glcm": ["Contrast"]}}
    curve = [
        reference(image_of(inputs.images[p]), mask_on(inputs, "tumour", p), params)["original_glcm_Contrast"]
        for p in phases
    ]
    names = [f"tumour/kinetic-{s}/original_glcm_Contrast" for s in ("mean", "variance", "skewness", "kurtosis")]
    result = extract_plan(_plan(names), inputs)
    assert result.values[names[0]] == pytest.approx(np.mean(curve), rel=1e-12)
    assert result.values[names[1]] == pytest.approx(np.var(curve), rel=1e-12)
    assert result.values[names[2]] == pytest.approx(stats.skew(curve), rel=1e-12)
    assert result.values[names[3]] == pytest.approx(stats.kurtosis(curve), rel=1e-12)
    assert result.warnings == ()

    three = StudyInputs(
        images={k: v for k, v in inputs.images.items() if k not in ("S3", "S4", "S5")}, regions=inputs.regions
    )
    warned = extract_plan(_plan(names), three)
    assert any(w.startswith("KINETIC_FEW_PHASES") for w in warned.warnings)
    assert warned.values[names[0]] == pytest.approx(np.mean(curve[:3]), rel=1e-12)


def test_msi_and_statistics(study: PhantomInputs) -> None:
    inputs = study.inputs
    plan = _plan(
        [
            "tumour/msi/msi_energy",
            "tumour/stats/voxel_count",
            "tumour/stats/volume_ml",
            "habitat_2/stats/fraction",
            "ring_5mm/stats/mean_PE",
        ]
    )
    values = extract_plan(plan, inputs).values
    assert values["tumour/msi/msi_energy"] == study.regions.msi_features["msi_energy"]
    statistics = {s.region: s for s in study.regions.statistics}
    assert values["tumour/stats/voxel_count"] == statistics["tumour"].voxel_count
    assert values["tumour/stats/volume_ml"] == pytest.approx(statistics["tumour"].volume_ml, rel=1e-12)
    assert values["habitat_2/stats/fraction"] == statistics["habitat_2"].voxel_count / statistics["tumour"].voxel_count
    assert values["ring_5mm/stats/mean_PE"] == pytest.approx(
        statistics["peritumoral_ring_5mm"].mean_values["PE"], rel=1e-6
    )


def test_explosive_settings_are_refused(study: PhantomInputs) -> None:
    plan = ExtractionPlan.model_validate(
        {"features": ["tumour/S0/original_glcm_Contrast"], "feature_settings": {"setting": {"binCount": 2000}}}
    )
    with pytest.raises(FeatureExtractionError) as info:
        extract_plan(plan, study.inputs)
    assert info.value.feature == "binCount"
    # a fine bin width on a wide range: the texture class is missing, first order still computed
    plan = ExtractionPlan.model_validate(
        {
            "features": ["tumour/S0/original_glcm_Contrast", "tumour/S0/original_firstorder_Mean"],
            "feature_settings": {"setting": {"binWidth": 0.01}},
        }
    )
    result = extract_plan(plan, study.inputs)
    assert result.missing["tumour/S0/original_glcm_Contrast"].reason == "GRAY_LEVEL_LIMIT"
    assert "tumour/S0/original_firstorder_Mean" in result.values


def test_unknown_pyradiomics_feature_is_refused_by_name(study: PhantomInputs) -> None:
    plan = _plan(["tumour/S0/original_glcm_NoSuchThing"])
    with pytest.raises(FeatureExtractionError) as info:
        extract_plan(plan, study.inputs)
    assert info.value.feature == "tumour/S0/original_glcm_NoSuchThing"


def test_regions_on_a_sub_grid_are_moved_by_whole_voxels() -> None:
    big = np.arange(4 * 5 * 6, dtype=np.float64).reshape(4, 5, 6)
    geometry = Geometry((1.0, 2.0, 3.0), (10.0, 20.0, 30.0))
    sub = Geometry((1.0, 2.0, 3.0), (11.0, 22.0, 33.0))  # index (x, y, z) = (1, 1, 1)
    mask = np.zeros((2, 2, 2), dtype=bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True
    inputs = StudyInputs(images={"S0": Volume(big, geometry)}, regions={"tumour": RegionMask(mask, sub)})
    values = extract_plan(_plan(["tumour/stats/mean_S0"]), inputs).values
    assert values["tumour/stats/mean_S0"] == (big[1, 1, 1] + big[2, 2, 2]) / 2
    shifted = Geometry((1.0, 2.0, 3.0), (11.5, 22.0, 33.0))
    with pytest.raises(FeatureExtractionError):
        extract_plan(
            _plan(["tumour/stats/mean_S0"]),
            StudyInputs({"S0": Volume(big, geometry)}, {"tumour": RegionMask(mask, shifted)}),
        )
