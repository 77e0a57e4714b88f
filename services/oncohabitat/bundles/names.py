"""Parsing of fully-qualified pyradiomics feature names, without importing pyradiomics.

A pyradiomics feature name is ``<image>_<class>_<feature>``, e.g. ``original_glcm_Correlation`` or
``wavelet-LLH_firstorder_Mean``: ``<image>`` is the name pyradiomics gives the (filtered) input image,
``<class>`` a feature class and ``<feature>`` the feature inside that class. This module maps each part
to the keys of a pyradiomics parameter dict (``imageType`` / ``featureClass``) so that bundles can be
checked, and extractions restricted, without pyradiomics installed (the scoring service does not carry it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

#: Feature classes of pyradiomics 3.x (keys of its ``featureClass`` parameter).
FEATURE_CLASSES: Final = frozenset({"firstorder", "shape", "shape2D", "glcm", "glrlm", "glszm", "gldm", "ngtdm"})

#: Classes computed once on the original image only (pyradiomics never prefixes them with a filter name).
SHAPE_CLASSES: Final = frozenset({"shape", "shape2D"})

# pyradiomics image-type names (as yielded by radiomics.imageoperations.get<Type>Image) -> ``imageType`` key.
_IMAGE_TYPE_PATTERNS: Final = (
    (re.compile(r"^original$"), "Original"),
    (re.compile(r"^log-sigma-[0-9]+(?:-[0-9]+)?-mm-3D$"), "LoG"),
    (re.compile(r"^wavelet[0-9]*-[LH]+$"), "Wavelet"),
    (re.compile(r"^square$"), "Square"),
    (re.compile(r"^squareroot$"), "SquareRoot"),
    (re.compile(r"^logarithm$"), "Logarithm"),
    (re.compile(r"^exponential$"), "Exponential"),
    (re.compile(r"^gradient$"), "Gradient"),
    (re.compile(r"^lbp-2D$"), "LBP2D"),
    (re.compile(r"^lbp-3D-(?:m[0-9]+|k)$"), "LBP3D"),
)
_FEATURE = re.compile(r"^[A-Za-z0-9]+$")


@dataclass(frozen=True)
class FeatureName:
    """The parts of a fully-qualified pyradiomics feature name.

    Attributes:
        full: the name itself, e.g. ``"original_glcm_Correlation"``.
        image_name: pyradiomics' name of the input image, e.g. ``"original"``, ``"wavelet-LLH"``.
        image_type: the ``imageType`` key that produces it, e.g. ``"Original"``, ``"Wavelet"``.
        feature_class: the ``featureClass`` key, e.g. ``"glcm"``.
        feature: the feature inside its class, e.g. ``"Correlation"``.
    """

    full: str
    image_name: str
    image_type: str
    feature_class: str
    feature: str


def parse_feature_name(name: str) -> FeatureName:
    """Split and check a fully-qualified pyradiomics feature name.

    Only the syntax, the feature class and the image-type family are checked here; whether the class
    really defines ``feature`` is checked by the feature extractor against the installed pyradiomics.

    Raises:
        ValueError: ``name`` is not ``<image>_<class>_<feature>`` with a known image type and class.
    """
    parts = name.split("_")
    if len(parts) != 3:
        raise ValueError(f"feature name {name!r} is not of the form <image>_<class>_<feature>")
    image_name, feature_class, feature = parts
    image_type = next((key for pattern, key in _IMAGE_TYPE_PATTERNS if pattern.match(image_name)), None)
    if image_type is None:
        raise ValueError(f"feature name {name!r}: unknown pyradiomics image type {image_name!r}")
    if feature_class not in FEATURE_CLASSES:
        raise ValueError(
            f"feature name {name!r}: unknown feature class {feature_class!r} "
            f"(known: {', '.join(sorted(FEATURE_CLASSES))})"
        )
    if feature_class in SHAPE_CLASSES and image_type != "Original":
        raise ValueError(f"feature name {name!r}: shape features exist for the original image only")
    if not _FEATURE.match(feature):
        raise ValueError(f"feature name {name!r}: feature part {feature!r} is not alphanumeric")
    return FeatureName(name, image_name, image_type, feature_class, feature)
