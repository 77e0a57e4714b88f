"""Model bundle format v1: schema, verified loading, registry and sealing.

A bundle is a directory ``<root>/<id>/<version>/`` with a ``manifest.json`` (see
:class:`~oncohabitat.bundles.manifest.Manifest`) and the files it lists with their SHA-256.
Used by the scoring service (to run models) and the orchestrator (to know what a model needs).
"""

from oncohabitat.bundles.authoring import write_bundle
from oncohabitat.bundles.errors import BundleError
from oncohabitat.bundles.hashing import canonical_json, canonical_json_sha256, sha256_bytes, sha256_file
from oncohabitat.bundles.loader import Bundle, load_bundle, parse_manifest, seal_bundle
from oncohabitat.bundles.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    BaselineSurvival,
    Citation,
    Cutoff,
    FeatureSettings,
    FeatureSpec,
    Manifest,
    ModelSpec,
    ModelType,
    NoScaler,
    RequiredInputs,
    ZScoreScaler,
)
from oncohabitat.bundles.names import FeatureName, parse_feature_name
from oncohabitat.bundles.registry import BundleRegistry, load_bundles
from oncohabitat.bundles.semver import SemVer

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "BaselineSurvival",
    "Bundle",
    "BundleError",
    "BundleRegistry",
    "Citation",
    "Cutoff",
    "FeatureName",
    "FeatureSettings",
    "FeatureSpec",
    "Manifest",
    "ModelSpec",
    "ModelType",
    "NoScaler",
    "RequiredInputs",
    "SemVer",
    "ZScoreScaler",
    "canonical_json",
    "canonical_json_sha256",
    "load_bundle",
    "load_bundles",
    "parse_feature_name",
    "parse_manifest",
    "seal_bundle",
    "sha256_bytes",
    "sha256_file",
    "write_bundle",
]
