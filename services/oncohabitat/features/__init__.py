"""Radiomic features with pyradiomics (domain logic; the gRPC servicer sits on top)."""

from oncohabitat.features.errors import FeatureExtractionError
from oncohabitat.features.extraction import (
    FeatureExtraction,
    FeatureProvenance,
    build_extractor,
    extract_features,
    pyradiomics_params,
)
from oncohabitat.features.provenance import component_versions, image_sha256

__all__ = [
    "FeatureExtraction",
    "FeatureExtractionError",
    "FeatureProvenance",
    "build_extractor",
    "component_versions",
    "extract_features",
    "image_sha256",
    "pyradiomics_params",
]
