"""Bundle format v2: the manifest base every bundle kind shares (pydantic v2, unknown keys refused).

A bundle is a directory ``<root>/<kind>/<id>/<version>/`` holding ``manifest.json``, optionally
``manifest.sig`` (an Ed25519 signature of the manifest bytes, see :mod:`oncohabitat.bundles.signature`) and the
other files the manifest lists under ``files`` with their SHA-256. The base carries identity (kind, id,
semver), what the model is for (title, intended use, contraindications), where it comes from (citation,
readings of the source, notes) and the file hashes; each kind adds a typed payload:

* ``scoring`` — :class:`~oncohabitat.bundles.scoring_manifest.ScoringManifest` (plan, inputs, covariates, model);
* ``segmentation`` — :class:`~oncohabitat.bundles.segmentation_manifest.SegmentationManifest`;
* ``habitats`` — :class:`~oncohabitat.bundles.habitats_manifest.HabitatsManifest` (frozen centroids).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from oncohabitat.bundles.semver import SEMVER_PATTERN

FORMAT_VERSION: Final = "2"
MANIFEST_NAME: Final = "manifest.json"
SIGNATURE_NAME: Final = "manifest.sig"
#: Bundle kinds, each one folder under the bundle root.
BundleKind = Literal["scoring", "segmentation", "habitats"]
BUNDLE_KINDS: Final[tuple[str, ...]] = ("scoring", "segmentation", "habitats")

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
NonEmptyStr = Annotated[str, Field(min_length=1)]
#: Lower-case identifier (covariate names, phase roles), e.g. ``"age"``, ``"post_contrast"``.
Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
BundleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=100)]
Version = Annotated[str, Field(pattern=SEMVER_PATTERN)]

_RESERVED = frozenset({MANIFEST_NAME, SIGNATURE_NAME})


def check_relative_path(value: str) -> str:
    """A bundle-relative POSIX path without ``..``, empty parts or backslashes, and not the manifest/signature."""
    if not value or value.startswith("/") or "\\" in value:
        raise ValueError(f"{value!r} is not a relative POSIX path")
    parts = PurePosixPath(value).parts
    if any(part in ("", ".", "..") for part in parts) or "/".join(parts) != value:
        raise ValueError(f"{value!r} is not a normalised relative path (no '.', '..' or '//')")
    if value in _RESERVED:
        raise ValueError(f"{value} is never listed under files")
    return value


RelativePath = Annotated[str, AfterValidator(check_relative_path)]


def check_unique(values: Sequence[str], what: str) -> None:
    """Raise ValueError naming the first repeated value."""
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what}: {value!r}")
        seen.add(value)


class Strict(BaseModel):
    """Base of every manifest part: unknown keys refused, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Citation(Strict):
    """The publication the model comes from."""

    authors: list[NonEmptyStr] = Field(min_length=1)
    title: NonEmptyStr
    journal: NonEmptyStr
    year: int = Field(strict=True, ge=1900, le=2100)
    volume: str | None = None
    article: str | None = Field(default=None, description="Article number or page range.")
    doi: str | None = Field(default=None, pattern=r"^10\.\d{4,9}/\S+$")
    url: str | None = None

    def text(self) -> str:
        """One-line reference, e.g. ``"Zhang L, ... (2021) Title. Journal 10:523327. doi:..."``."""
        parts = [f"{', '.join(self.authors)} ({self.year}) {self.title}. {self.journal}"]
        if self.volume:
            parts.append(f" {self.volume}" + (f":{self.article}" if self.article else ""))
        if self.doi:
            parts.append(f". doi:{self.doi}")
        return "".join(parts)


class ManifestBase(Strict):
    """Fields every bundle kind shares.

    ``files`` maps every other file of the bundle (bundle-relative POSIX path) to its lowercase hex SHA-256;
    ``manifest.json`` and ``manifest.sig`` never appear there.
    """

    format_version: Literal["2"]
    kind: BundleKind
    id: BundleId
    version: Version
    title: NonEmptyStr
    intended_use: NonEmptyStr
    contraindications: list[NonEmptyStr] = Field(default_factory=list)
    citation: Citation | None = None
    #: How ambiguities of the source were resolved, e.g. raw versus z-scored features.
    readings: list[NonEmptyStr] = Field(default_factory=list)
    notes: list[NonEmptyStr] = Field(default_factory=list)
    files: dict[RelativePath, Sha256Hex] = Field(default_factory=dict)

    def source_text(self) -> str:
        """Where the model comes from: the citation, else the first note, else ``""``."""
        if self.citation is not None:
            return self.citation.text()
        return self.notes[0] if self.notes else ""
