"""IBSI digital phantom (IBSI 1): our names against the IBSI reference values, with the settings and the known
deviations of docs/radiomics-conformance.md (values of the IBSI reference manual, 3 significant digits)."""

from __future__ import annotations

from pathlib import Path

import pytest
import SimpleITK as sitk

from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat.common.volume import Geometry, Volume
from oncohabitat.features.engine import extract_plan
from oncohabitat.features.study import RegionMask, StudyInputs

pytestmark = pytest.mark.filterwarnings("ignore:the load_module\\(\\) method is deprecated:DeprecationWarning")

#: IBSI setting for the digital phantom: no resampling, no discretisation (gray levels 1..6 are the bins).
SETTINGS = {"setting": {"binWidth": 1}}

#: our feature (pyradiomics name) -> (IBSI feature, IBSI reference value). pyradiomics' GLCM / GLRLM are the
#: IBSI "3D, averaged over directions" variants, GLSZM / NGTDM / GLDM (= NGLDM, alpha 0) the 3D ones.
IBSI = {
    "original_shape_MeshVolume": ("Morphology: volume (mesh)", 556),
    "original_shape_VoxelVolume": ("Morphology: approximate volume", 592),
    "original_shape_SurfaceArea": ("Morphology: surface area (mesh)", 388),
    "original_shape_SurfaceVolumeRatio": ("Morphology: surface to volume ratio", 0.698),
    "original_shape_Sphericity": ("Morphology: sphericity", 0.843),
    "original_firstorder_Mean": ("Intensity statistics: mean", 2.15),
    "original_firstorder_Variance": ("Intensity statistics: variance", 3.05),
    "original_firstorder_Skewness": ("Intensity statistics: skewness", 1.08),
    "original_firstorder_Median": ("Intensity statistics: median", 1),
    "original_firstorder_Minimum": ("Intensity statistics: minimum", 1),
    "original_firstorder_10Percentile": ("Intensity statistics: 10th percentile", 1),
    "original_firstorder_90Percentile": ("Intensity statistics: 90th percentile", 4),
    "original_firstorder_Maximum": ("Intensity statistics: maximum", 6),
    "original_firstorder_InterquartileRange": ("Intensity statistics: interquartile range", 3),
    "original_firstorder_Range": ("Intensity statistics: range", 5),
    "original_firstorder_MeanAbsoluteDeviation": ("Intensity statistics: mean absolute deviation", 1.55),
    "original_firstorder_RobustMeanAbsoluteDeviation": ("Intensity statistics: robust mean absolute deviation", 1.11),
    "original_firstorder_Energy": ("Intensity statistics: energy", 567),
    "original_firstorder_RootMeanSquared": ("Intensity statistics: root mean square", 2.77),
    "original_firstorder_Entropy": ("Intensity histogram: entropy", 1.27),
    "original_firstorder_Uniformity": ("Intensity histogram: uniformity", 0.512),
    "original_glcm_MaximumProbability": ("GLCM 3D avg: joint maximum", 0.503),
    "original_glcm_JointAverage": ("GLCM 3D avg: joint average", 2.14),
    "original_glcm_JointEntropy": ("GLCM 3D avg: joint entropy", 2.40),
    "original_glcm_DifferenceAverage": ("GLCM 3D avg: difference average", 1.43),
    "original_glcm_Contrast": ("GLCM 3D avg: contrast", 5.32),
    "original_glcm_JointEnergy": ("GLCM 3D avg: angular second moment", 0.303),
    "original_glcm_Correlation": ("GLCM 3D avg: correlation", 0.157),
    "original_glcm_ClusterShade": ("GLCM 3D avg: cluster shade", 16.6),
    "original_glcm_Imc1": ("GLCM 3D avg: information correlation 1", -0.157),
    "original_glcm_Imc2": ("GLCM 3D avg: information correlation 2", 0.520),
    "original_glrlm_ShortRunEmphasis": ("GLRLM 3D avg: short runs emphasis", 0.705),
    "original_glrlm_LongRunEmphasis": ("GLRLM 3D avg: long runs emphasis", 3.06),
    "original_glrlm_GrayLevelNonUniformity": ("GLRLM 3D avg: grey level non-uniformity", 21.8),
    "original_glrlm_RunLengthNonUniformity": ("GLRLM 3D avg: run length non-uniformity", 26.9),
    "original_glrlm_RunPercentage": ("GLRLM 3D avg: run percentage", 0.680),
    "original_glrlm_RunEntropy": ("GLRLM 3D avg: run entropy", 2.43),
    "original_glszm_SmallAreaEmphasis": ("GLSZM 3D: small zone emphasis", 0.255),
    "original_glszm_LargeAreaEmphasis": ("GLSZM 3D: large zone emphasis", 550),
    "original_glszm_LowGrayLevelZoneEmphasis": ("GLSZM 3D: low grey level zone emphasis", 0.253),
    "original_glszm_HighGrayLevelZoneEmphasis": ("GLSZM 3D: high grey level zone emphasis", 15.6),
    "original_glszm_GrayLevelNonUniformity": ("GLSZM 3D: grey level non-uniformity", 1.4),
    "original_glszm_SizeZoneNonUniformity": ("GLSZM 3D: zone size non-uniformity", 1),
    "original_glszm_ZonePercentage": ("GLSZM 3D: zone percentage", 0.0676),
    "original_glszm_GrayLevelVariance": ("GLSZM 3D: grey level variance", 2.64),
    "original_glszm_ZoneVariance": ("GLSZM 3D: zone size variance", 331),
    "original_glszm_ZoneEntropy": ("GLSZM 3D: zone size entropy", 2.32),
    "original_gldm_LargeDependenceEmphasis": ("NGLDM 3D: high dependence emphasis", 109),
    "original_gldm_SmallDependenceEmphasis": ("NGLDM 3D: low dependence emphasis", 0.045),
    "original_gldm_DependenceNonUniformity": ("NGLDM 3D: dependence count non-uniformity", 4.86),
    "original_gldm_GrayLevelNonUniformity": ("NGLDM 3D: grey level non-uniformity", 37.9),
    "original_gldm_DependenceEntropy": ("NGLDM 3D: dependence count entropy", 4.40),
    "original_ngtdm_Coarseness": ("NGTDM 3D: coarseness", 0.0296),
    "original_ngtdm_Contrast": ("NGTDM 3D: contrast", 0.584),
    "original_ngtdm_Busyness": ("NGTDM 3D: busyness", 6.54),
    "original_ngtdm_Complexity": ("NGTDM 3D: complexity", 13.5),
    "original_ngtdm_Strength": ("NGTDM 3D: strength", 0.763),
}
#: Known deviation: pyradiomics' Kurtosis is the plain fourth standardised moment, IBSI's is the excess (- 3).
KURTOSIS_IBSI = -0.355


def _values(shared_data: Path, names: list[str]) -> dict[str, float]:
    folder = shared_data / "ibsi" / "ibsi_1_digital_phantom" / "nifti"
    image = sitk.ReadImage(str(folder / "image" / "phantom.nii.gz"))
    mask = sitk.ReadImage(str(folder / "mask" / "mask.nii.gz"))
    inputs = StudyInputs(
        images={"S0": Volume.of(image)},
        regions={"tumour": RegionMask(sitk.GetArrayFromImage(mask) == 1, Geometry.of(mask))},
    )
    plan = ExtractionPlan.model_validate({"features": [f"tumour/S0/{n}" for n in names], "feature_settings": SETTINGS})
    result = extract_plan(plan, inputs)
    assert not result.missing
    return {name.removeprefix("tumour/S0/"): value for name, value in result.values.items()}


def _agrees(ours: float, reference: float) -> bool:
    """Equal at the reference's 3 significant digits (half a unit in the last reported digit)."""
    if reference == 0:
        return abs(ours) < 5e-4
    digits = f"{abs(reference):.3g}"
    scale = 10 ** (len(str(int(float(digits)))) - 3) if abs(reference) >= 1 else 10 ** (-len(digits.split(".")[1]))
    return abs(ours - reference) <= 0.5 * scale + 1e-12


def test_ibsi_digital_phantom_values(shared_data: Path) -> None:
    values = _values(shared_data, [*IBSI, "original_firstorder_Kurtosis"])
    disagreeing = {name: (values[name], ref) for name, (_, ref) in IBSI.items() if not _agrees(values[name], ref)}
    assert disagreeing == {}
    assert _agrees(values["original_firstorder_Kurtosis"] - 3.0, KURTOSIS_IBSI)
    assert not _agrees(values["original_firstorder_Kurtosis"], KURTOSIS_IBSI)
