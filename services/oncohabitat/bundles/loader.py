"""The one bundle loader: verify and load ``<root>/<kind>/<id>/<version>/`` of any kind; seal for authoring."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

from pydantic import Field, TypeAdapter, ValidationError

from oncohabitat.bundles import errors
from oncohabitat.bundles.errors import BundleError
from oncohabitat.bundles.habitats_manifest import HabitatsManifest
from oncohabitat.bundles.hashing import sha256_bytes, sha256_file
from oncohabitat.bundles.manifest import MANIFEST_NAME, SIGNATURE_NAME, ManifestBase
from oncohabitat.bundles.scoring_manifest import ScoringManifest
from oncohabitat.bundles.segmentation_manifest import SegmentationManifest
from oncohabitat.bundles.semver import SemVer
from oncohabitat.bundles.signature import TrustPolicy, verify_signature

_MAX_SCHEMA_ERRORS = 5

#: Any kind's manifest, chosen by its ``kind`` field.
AnyManifest = Annotated[ScoringManifest | SegmentationManifest | HabitatsManifest, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[ScoringManifest | SegmentationManifest | HabitatsManifest] = TypeAdapter(AnyManifest)

M = TypeVar("M", bound=ManifestBase)


@dataclass(frozen=True)
class Bundle(Generic[M]):
    """A verified bundle: its directory, parsed manifest and the SHA-256 of ``manifest.json`` as read.

    The manifest hash identifies the exact model (and through ``files`` every other file); results record it
    as provenance. ``signed`` says whether ``manifest.sig`` was verified with a configured key.
    """

    path: Path
    manifest: M
    manifest_sha256: str
    signed: bool = False

    @property
    def kind(self) -> str:
        """``"scoring"``, ``"segmentation"`` or ``"habitats"``."""
        return self.manifest.kind

    @property
    def id(self) -> str:
        """Model id, e.g. ``"seed003-ct-dfs"``."""
        return self.manifest.id

    @property
    def version(self) -> str:
        """Model version string (semver), e.g. ``"1.0.0"``."""
        return self.manifest.version

    @property
    def key(self) -> str:
        """``"<kind>/<id>/<version>"``: the bundle's key in the lock file."""
        return f"{self.kind}/{self.id}/{self.version}"

    @property
    def semver(self) -> SemVer:
        """Parsed :attr:`version`."""
        return SemVer.parse(self.manifest.version)

    @property
    def feature_keys(self) -> list[str]:
        """Scoring bundles: the canonical feature names a Score request carries, in model order."""
        if not isinstance(self.manifest, ScoringManifest):
            return []
        return self.manifest.feature_keys

    def file_path(self, relative: str) -> Path:
        """Absolute path of a file listed under ``files``.

        Raises:
            BundleError: ``FILE_MISSING`` when ``relative`` is not listed in the manifest.
        """
        if relative not in self.manifest.files:
            raise BundleError(errors.FILE_MISSING, f"{relative!r} is not a file of bundle {self.id} {self.version}")
        return self.path / relative


def _schema_message(exc: ValidationError) -> str:
    """Curated summary of a pydantic error: field locations and messages, never the offending input."""
    parts = []
    for error in exc.errors()[:_MAX_SCHEMA_ERRORS]:
        location = ".".join(str(item) for item in error["loc"]) or "<manifest>"
        parts.append(f"{location}: {error['msg']}")
    more = exc.error_count() - _MAX_SCHEMA_ERRORS
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


def parse_manifest(text: str | bytes) -> ScoringManifest | SegmentationManifest | HabitatsManifest:
    """Validate manifest JSON text against the v2 schema of its ``kind``.

    Raises:
        BundleError: ``SCHEMA_INVALID`` with a curated summary of the first problems.
    """
    try:
        return _ADAPTER.validate_json(text)
    except ValidationError as exc:
        raise BundleError(errors.SCHEMA_INVALID, _schema_message(exc)) from exc


def _bundle_files(path: Path) -> dict[str, Path]:
    """Every regular file under ``path`` except the manifest and its signature, by bundle-relative POSIX path.

    Raises:
        BundleError: ``LAYOUT_INVALID`` on a symbolic link or a special file anywhere in the bundle.
    """
    found: dict[str, Path] = {}
    for directory, subdirs, filenames in os.walk(path, followlinks=False):
        base = Path(directory)
        for name in [*subdirs, *filenames]:
            entry = base / name
            relative = entry.relative_to(path).as_posix()
            if entry.is_symlink():
                raise BundleError(errors.LAYOUT_INVALID, f"symbolic links are not allowed in a bundle: {relative!r}")
            if name in filenames:
                if not entry.is_file():
                    raise BundleError(errors.LAYOUT_INVALID, f"not a regular file: {relative!r}")
                if relative not in (MANIFEST_NAME, SIGNATURE_NAME):
                    found[relative] = entry
    return found


def load_bundle(
    path: Path | str,
    expected_manifest_sha256: str | None = None,
    *,
    kind: str | None = None,
    trust: TrustPolicy | None = None,
) -> Bundle[Any]:
    """Load and fully verify the bundle in directory ``path``.

    Checks, in order: ``manifest.json`` exists; its SHA-256 equals ``expected_manifest_sha256`` when pinned
    (the manifest cannot vouch for itself: the lock is how a deployment detects an edited manifest); the
    signature, as ``trust`` asks; the v2 schema of its kind; the kind is ``kind`` when given; the directory is
    ``.../<kind>/<id>/<version>``; no symbolic link or special file; every listed file exists with the recorded
    SHA-256; no unlisted file exists.

    Raises:
        BundleError: ``MANIFEST_MISSING``, ``HASH_MISMATCH``, ``SIGNATURE_MISSING``, ``SIGNATURE_INVALID``,
            ``SCHEMA_INVALID``, ``KIND_MISMATCH``, ``LAYOUT_INVALID``, ``FILE_MISSING`` or ``FILE_UNLISTED``.
    """
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    label = f"bundle {path.parent.name}/{path.name}"
    if not manifest_path.is_file():
        raise BundleError(errors.MANIFEST_MISSING, f"no {MANIFEST_NAME} in bundle directory {path.name!r}")
    raw = manifest_path.read_bytes()
    manifest_sha256 = sha256_bytes(raw)
    if expected_manifest_sha256 is not None and manifest_sha256 != expected_manifest_sha256.lower():
        raise BundleError(errors.HASH_MISMATCH, f"{label}: {MANIFEST_NAME} does not match its pinned SHA-256")
    signed = verify_signature(path, raw, trust, label)
    manifest = parse_manifest(raw)
    if kind is not None and manifest.kind != kind:
        raise BundleError(errors.KIND_MISMATCH, f"{label} is a {manifest.kind} bundle, not {kind}")
    if (path.parent.parent.name, path.parent.name, path.name) != (manifest.kind, manifest.id, manifest.version):
        raise BundleError(
            errors.LAYOUT_INVALID,
            f"bundle {manifest.id} {manifest.version} must live in a directory "
            f"<root>/{manifest.kind}/{manifest.id}/{manifest.version}",
        )
    present = _bundle_files(path)
    for relative, expected in manifest.files.items():
        if relative not in present:
            raise BundleError(errors.FILE_MISSING, f"{label}: listed file {relative!r} is missing")
        if sha256_file(present[relative]) != expected:
            raise BundleError(errors.HASH_MISMATCH, f"{label}: file {relative!r} does not match its recorded SHA-256")
    unlisted = sorted(set(present) - set(manifest.files))
    if unlisted:
        raise BundleError(errors.FILE_UNLISTED, f"{label}: files not listed in the manifest: {unlisted}")
    return Bundle(path=path, manifest=manifest, manifest_sha256=manifest_sha256, signed=signed)


def seal_bundle(path: Path | str) -> Bundle[Any]:
    """(Re)write the ``files`` hashes of the manifest in ``path`` for authoring, then verify the bundle.

    Every regular file of the bundle except ``manifest.json`` / ``manifest.sig`` is listed with its SHA-256
    (sorted by path); all other keys are kept as written (key order included). The manifest is rewritten
    (2-space indented UTF-8 JSON) only if the result passes the schema. A stale ``manifest.sig`` must be
    re-signed afterwards.

    Raises:
        BundleError: as :func:`load_bundle`; ``SCHEMA_INVALID`` also when the manifest is not a JSON object.
    """
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(errors.MANIFEST_MISSING, f"no {MANIFEST_NAME} in bundle directory {path.name!r}")
    try:
        document = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(errors.SCHEMA_INVALID, f"{MANIFEST_NAME} is not valid UTF-8 JSON") from exc
    if not isinstance(document, dict):
        raise BundleError(errors.SCHEMA_INVALID, f"{MANIFEST_NAME} must hold a JSON object")
    document["files"] = {relative: sha256_file(file) for relative, file in sorted(_bundle_files(path).items())}
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    parse_manifest(text)
    temporary = manifest_path.with_name(MANIFEST_NAME + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(manifest_path)
    return load_bundle(path)
