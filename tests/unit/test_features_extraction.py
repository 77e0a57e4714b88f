"""pyradiomics feature extraction: pyradiomics' own baseline values, seed-003 features, refusals, provenance."""

from __future__ import annotations

import ast
import csv
import logging
from pathlib import Path
from typing import Any

import pytest
import radiomics
import SimpleITK as sitk
from radiomics import featureextractor

from oncohabitat.bundles import Bundle, load_bundle
from oncohabitat.features import (
    FeatureExtractionError,
    extract_features,
    image_sha256,
    pyradiomics_params,
)
from tests.unit.test_bundle_loader import SEED003

CASE = "breast1"
# pykwalify (pyradiomics' settings validator) loads its extension module with the deprecated load_module().
pytestmark = pytest.mark.filterwarnings("ignore:the load_module\\(\\) method is deprecated:DeprecationWarning")

BASELINE_SELECTION = {
    "firstorder": ["Kurtosis", "Skewness", "Entropy", "Energy", "90Percentile", "Mean", "Variance", "Uniformity"],
    "glcm": ["Correlation", "MaximumProbability", "JointEntropy", "Idmn", "Imc1", "ClusterShade", "Contrast"],
    "glszm": ["LargeAreaEmphasis", "ZoneEntropy", "SizeZoneNonUniformity", "SmallAreaEmphasis", "ZonePercentage"],
}


@pytest.fixture(scope="module")
def pyradiomics_data(shared_data: Path) -> Path:
    return shared_data / "pyradiomics"


@pytest.fixture(scope="module")
def breast_image(pyradiomics_data: Path) -> sitk.Image:
    return sitk.ReadImage(str(pyradiomics_data / f"{CASE}_image.nrrd"))


@pytest.fixture(scope="module")
def breast_mask(pyradiomics_data: Path) -> sitk.Image:
    return sitk.ReadImage(str(pyradiomics_data / f"{CASE}_label.nrrd"))


@pytest.fixture(scope="module")
def seed003() -> Bundle:
    return load_bundle(SEED003)


def read_baseline(pyradiomics_data: Path, feature_class: str) -> tuple[dict[str, Any], dict[str, float]]:
    """Settings (from the ``general_info`` rows) and feature values of ``CASE`` in one baseline CSV."""
    path = pyradiomics_data / "baseline" / f"baseline_{feature_class}.csv"
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    column = rows[0].index(CASE)
    cells = {row[0]: row[column] for row in rows[1:]}
    settings = ast.literal_eval(cells["diagnostics_Configuration_Settings"])
    image_types = ast.literal_eval(cells["diagnostics_Configuration_EnabledImageTypes"])
    values = {name: float(value) for name, value in cells.items() if name.startswith("original_")}
    # The label is chosen per request; additionalInfo only adds diagnostics.
    setting = {k: v for k, v in settings.items() if k not in ("label", "additionalInfo")}
    return {"setting": setting, "imageType": image_types, "featureClass": {}}, values


@pytest.mark.parametrize("feature_class", list(BASELINE_SELECTION))
def test_matches_pyradiomics_baseline(
    pyradiomics_data: Path,
    breast_image: sitk.Image,
    breast_mask: sitk.Image,
    feature_class: str,
) -> None:
    settings, baseline = read_baseline(pyradiomics_data, feature_class)
    assert settings["setting"]["binWidth"] == 25
    names = [f"original_{feature_class}_{feature}" for feature in BASELINE_SELECTION[feature_class]]
    result = extract_features(breast_image, breast_mask, settings, names, label=1)
    assert list(result.values) == names
    for name in names:
        assert result.values[name] == pytest.approx(baseline[name], rel=1e-6), name


def test_seed003_features_equal_a_direct_pyradiomics_run(
    seed003: Bundle, breast_image: sitk.Image, breast_mask: sitk.Image
) -> None:
    settings = seed003.manifest.feature_settings.to_pyradiomics()
    result = extract_features(breast_image, breast_mask, settings, [f.name for f in seed003.manifest.features])
    direct = featureextractor.RadiomicsFeatureExtractor(seed003.manifest.feature_settings.to_pyradiomics())
    expected = direct.execute(breast_image, breast_mask, label=1)
    assert set(result.values) == set([f.name for f in seed003.manifest.features])
    for name in [f.name for f in seed003.manifest.features]:
        assert result.values[name] == float(expected[name]), name


def test_only_needed_classes_and_features_are_enabled(seed003: Bundle) -> None:
    settings = seed003.manifest.feature_settings.to_pyradiomics()
    params = pyradiomics_params(settings, ["original_glcm_Correlation", "original_firstorder_Kurtosis"])
    assert params["imageType"] == {"Original": {}}
    assert params["featureClass"] == {"glcm": ["Correlation"], "firstorder": ["Kurtosis"]}
    assert params["setting"]["additionalInfo"] is False
    assert params["setting"]["binWidth"] == 25


def test_filtered_image_types(breast_image: sitk.Image, breast_mask: sitk.Image) -> None:
    settings = {"imageType": {"Original": {}, "LoG": {"sigma": [1.0]}}, "featureClass": {"firstorder": []}}
    name = "log-sigma-1-0-mm-3D_firstorder_Mean"
    result = extract_features(breast_image, breast_mask, settings, [name])
    assert list(result.values) == [name]
    with pytest.raises(FeatureExtractionError) as info:
        extract_features(breast_image, breast_mask, settings, ["log-sigma-2-0-mm-3D_firstorder_Mean"])
    assert (info.value.reason, info.value.feature) == ("FEATURE_NOT_PRODUCED", "log-sigma-2-0-mm-3D_firstorder_Mean")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("original_glrlm_RunEntropy", "FEATURE_NOT_PRODUCED"),  # class not enabled by the seed-003 settings
        ("wavelet-LLH_glcm_Correlation", "FEATURE_NOT_PRODUCED"),  # image type not enabled
        ("original_glcm_NoSuchFeature", "FEATURE_NAME_INVALID"),
        ("glcm_Correlation", "FEATURE_NAME_INVALID"),
    ],
)
def test_names_the_settings_cannot_produce(
    seed003: Bundle, breast_image: sitk.Image, breast_mask: sitk.Image, name: str, reason: str
) -> None:
    settings = seed003.manifest.feature_settings.to_pyradiomics()
    with pytest.raises(FeatureExtractionError) as info:
        extract_features(breast_image, breast_mask, settings, ["original_glcm_Correlation", name])
    assert (info.value.reason, info.value.feature) == (reason, name)


@pytest.mark.parametrize(
    "settings",
    [
        {"setting": {"binWidth": -1}},  # pyradiomics' schema
        {"setting": {"noSuchSetting": 1}},  # pyradiomics' schema
        {"setting": {"label": 2}},  # label belongs to the request
        {"imageType": {"Original": {}}, "extra": {}},  # not a pyradiomics parameter section
    ],
)
def test_invalid_settings(breast_image: sitk.Image, breast_mask: sitk.Image, settings: dict[str, Any]) -> None:
    with pytest.raises(FeatureExtractionError) as info:
        extract_features(breast_image, breast_mask, settings, ["original_firstorder_Mean"])
    assert info.value.reason == "SETTINGS_INVALID"


def test_invalid_inputs(breast_image: sitk.Image, breast_mask: sitk.Image) -> None:
    names = ["original_firstorder_Mean"]
    with pytest.raises(FeatureExtractionError) as info:
        extract_features(breast_image, breast_mask, {}, names, label=2)
    assert info.value.reason == "LABEL_EMPTY"
    cropped = breast_mask[:, :, :-1]
    with pytest.raises(FeatureExtractionError) as info:
        extract_features(breast_image, cropped, {}, names)
    assert info.value.reason == "GEOMETRY_MISMATCH"
    with pytest.raises(FeatureExtractionError) as info:
        extract_features(breast_image, sitk.Cast(breast_mask, sitk.sitkFloat32), {}, names)
    assert info.value.reason == "MASK_INVALID"
    with pytest.raises(FeatureExtractionError) as info:
        extract_features(breast_image[:, :, 10], breast_mask[:, :, 10], {}, names)
    assert info.value.reason == "IMAGE_INVALID"
    shifted = sitk.Image(breast_mask)
    shifted.SetOrigin(tuple(o + 5.0 for o in breast_mask.GetOrigin()))
    with pytest.raises(FeatureExtractionError) as info:
        extract_features(breast_image, shifted, {}, names)
    assert info.value.reason == "EXTRACTION_FAILED"
    assert "geometry" in info.value.message
    with pytest.raises(FeatureExtractionError) as info:
        extract_features(breast_image, breast_mask, {}, [])
    assert info.value.reason == "FEATURE_NAME_INVALID"


def test_provenance(seed003: Bundle, breast_image: sitk.Image, breast_mask: sitk.Image) -> None:
    settings = seed003.manifest.feature_settings.to_pyradiomics()
    result = extract_features(breast_image, breast_mask, settings, [f.name for f in seed003.manifest.features])
    provenance = result.provenance
    assert provenance.components["pyradiomics"] == str(radiomics.__version__).removeprefix("v")
    assert provenance.components["SimpleITK"] == sitk.__version__
    assert provenance.settings_sha256 == seed003.manifest.feature_settings.sha256()
    assert provenance.image_sha256 == image_sha256(breast_image)
    assert provenance.mask_sha256 == image_sha256(breast_mask)
    assert provenance.image_sha256 != provenance.mask_sha256
    assert provenance.label == 1
    # Key order of the settings does not matter, their content does.
    reordered = {key: settings[key] for key in reversed(list(settings))}
    again = extract_features(breast_image, breast_mask, reordered, [f.name for f in seed003.manifest.features])
    assert again.provenance.settings_sha256 == provenance.settings_sha256
    changed = {**settings, "setting": {**settings["setting"], "binWidth": 10}}
    other = extract_features(breast_image, breast_mask, changed, [f.name for f in seed003.manifest.features])
    assert other.provenance.settings_sha256 != provenance.settings_sha256


def test_image_hash_covers_geometry_and_voxels(breast_image: sitk.Image) -> None:
    moved = sitk.Image(breast_image)
    moved.SetOrigin(tuple(o + 0.5 for o in breast_image.GetOrigin()))
    edited = sitk.Image(breast_image)
    edited[0, 0, 0] = edited[0, 0, 0] + 1
    hashes = {image_sha256(breast_image), image_sha256(moved), image_sha256(edited)}
    assert len(hashes) == 3
    assert image_sha256(sitk.Image(breast_image)) == image_sha256(breast_image)


def test_radiomics_logger_is_quietened_without_handlers(
    seed003: Bundle, breast_image: sitk.Image, breast_mask: sitk.Image
) -> None:
    radiomics_logger = logging.getLogger("radiomics")
    handlers_before = list(radiomics_logger.handlers)
    radiomics_logger.setLevel(logging.DEBUG)
    extract_features(
        breast_image,
        breast_mask,
        seed003.manifest.feature_settings.to_pyradiomics(),
        [f.name for f in seed003.manifest.features],
    )
    assert radiomics_logger.level == logging.WARNING
    assert radiomics_logger.handlers == handlers_before


def test_shape_features_need_no_image_type(breast_image: sitk.Image, breast_mask: sitk.Image) -> None:
    settings = {"imageType": {"LoG": {"sigma": [2.0]}}, "featureClass": {"shape": [], "firstorder": ["Mean"]}}
    names = ["original_shape_Sphericity", "log-sigma-2-0-mm-3D_firstorder_Mean"]
    assert pyradiomics_params(settings, names)["imageType"] == {"LoG": {"sigma": [2.0]}}
    result = extract_features(breast_image, breast_mask, settings, names)
    assert 0.0 < result.values["original_shape_Sphericity"] <= 1.0
    with pytest.raises(FeatureExtractionError) as info:
        extract_features(breast_image, breast_mask, settings, ["original_firstorder_Mean"])
    assert info.value.reason == "FEATURE_NOT_PRODUCED"
