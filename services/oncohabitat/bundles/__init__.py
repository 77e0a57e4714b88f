"""Bundle format v2: one manifest base, typed payloads per kind, one verified loader, registry, lock, sealing.

A bundle is a directory ``<root>/<kind>/<id>/<version>/`` (kinds: ``scoring``, ``segmentation``,
``habitats``) with a ``manifest.json`` (base :class:`~oncohabitat.bundles.manifest.ManifestBase`), an optional
``manifest.sig`` and the files it lists with their SHA-256; ``<root>/bundles.lock.json`` pins every manifest.
"""

from oncohabitat.bundles.authoring import write_bundle, write_scoring_bundle
from oncohabitat.bundles.errors import BundleError
from oncohabitat.bundles.feature_settings import FeatureSettings
from oncohabitat.bundles.hashing import canonical_json, canonical_json_sha256, sha256_bytes, sha256_file
from oncohabitat.bundles.loader import Bundle, load_bundle, parse_manifest, seal_bundle
from oncohabitat.bundles.manifest import FORMAT_VERSION, MANIFEST_NAME, SIGNATURE_NAME, Citation, ManifestBase
from oncohabitat.bundles.names import FeatureName, parse_feature_name
from oncohabitat.bundles.registry import BundleRegistry, ScoringBundle, load_bundles, read_lock, write_lock
from oncohabitat.bundles.scoring_manifest import ScoringManifest
from oncohabitat.bundles.scoring_parts import (
    CovariateSpec,
    InputSpec,
    LinearModel,
    ModelType,
    OnnxModel,
    RiskGroups,
    SurvivalHorizons,
)
from oncohabitat.bundles.segmentation_manifest import SegmentationManifest
from oncohabitat.bundles.semver import SemVer
from oncohabitat.bundles.signature import TrustPolicy

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SIGNATURE_NAME",
    "Bundle",
    "BundleError",
    "BundleRegistry",
    "Citation",
    "CovariateSpec",
    "FeatureName",
    "FeatureSettings",
    "InputSpec",
    "LinearModel",
    "ManifestBase",
    "ModelType",
    "OnnxModel",
    "RiskGroups",
    "ScoringBundle",
    "ScoringManifest",
    "SegmentationManifest",
    "SemVer",
    "SurvivalHorizons",
    "TrustPolicy",
    "canonical_json",
    "canonical_json_sha256",
    "load_bundle",
    "load_bundles",
    "parse_feature_name",
    "parse_manifest",
    "read_lock",
    "seal_bundle",
    "sha256_bytes",
    "sha256_file",
    "write_bundle",
    "write_lock",
    "write_scoring_bundle",
]
