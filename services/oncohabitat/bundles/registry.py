"""All scoring bundles under a bundle root, looked up by model id and version; the root's lock file."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

from oncohabitat.bundles import errors
from oncohabitat.bundles.errors import BundleError
from oncohabitat.bundles.loader import Bundle, load_bundle
from oncohabitat.bundles.manifest import BUNDLE_KINDS
from oncohabitat.bundles.scoring_manifest import ScoringManifest
from oncohabitat.bundles.signature import TrustPolicy

logger = logging.getLogger(__name__)

#: Version strings that select the latest version in :meth:`BundleRegistry.get`.
LATEST_ALIASES = frozenset({"", "latest"})


ScoringBundle = Bundle[ScoringManifest]


class BundleRegistry:
    """Verified scoring bundles indexed by ``(id, version)``.

    ``rejected`` maps the directory (relative to the root) of each bundle skipped by a non-strict
    :func:`load_bundles` to its error.
    """

    def __init__(self, bundles: Iterable[ScoringBundle], rejected: Mapping[str, BundleError] | None = None) -> None:
        """Index ``bundles``.

        Raises:
            BundleError: ``DUPLICATE_BUNDLE`` when two bundles share an id and version.
        """
        self._by_id: dict[str, dict[str, ScoringBundle]] = {}
        for bundle in bundles:
            versions = self._by_id.setdefault(bundle.id, {})
            if bundle.version in versions:
                raise BundleError(errors.DUPLICATE_BUNDLE, f"bundle {bundle.id} {bundle.version} is loaded twice")
            versions[bundle.version] = bundle
        self.rejected: Mapping[str, BundleError] = MappingProxyType(dict(rejected or {}))

    def __len__(self) -> int:
        return sum(len(versions) for versions in self._by_id.values())

    def __iter__(self) -> Iterator[ScoringBundle]:
        """All bundles, by id then ascending version precedence."""
        for model_id in self.ids():
            yield from (self._by_id[model_id][v] for v in self.versions(model_id))

    def ids(self) -> list[str]:
        """Model ids, sorted."""
        return sorted(self._by_id)

    def versions(self, model_id: str) -> list[str]:
        """Versions of ``model_id`` in ascending semver precedence.

        Raises:
            BundleError: ``MODEL_NOT_FOUND``.
        """
        versions = self._versions_of(model_id)
        return sorted(versions, key=lambda v: versions[v].semver)

    def latest(self, model_id: str) -> ScoringBundle:
        """The highest release version of ``model_id``; pre-releases only when no release exists.

        Raises:
            BundleError: ``MODEL_NOT_FOUND``.
        """
        bundles = list(self._versions_of(model_id).values())
        releases = [b for b in bundles if not b.semver.prerelease]
        return max(releases or bundles, key=lambda b: b.semver)

    def get(self, model_id: str, version: str | None = None) -> ScoringBundle:
        """The bundle ``model_id`` at ``version``; ``None``, ``""`` or ``"latest"`` select :meth:`latest`.

        Raises:
            BundleError: ``MODEL_NOT_FOUND`` or ``VERSION_NOT_FOUND``.
        """
        if version is None or version in LATEST_ALIASES:
            return self.latest(model_id)
        versions = self._versions_of(model_id)
        if version not in versions:
            raise BundleError(
                errors.VERSION_NOT_FOUND,
                f"model {model_id!r} has no version {version!r} (available: {', '.join(self.versions(model_id))})",
            )
        return versions[version]

    def _versions_of(self, model_id: str) -> dict[str, ScoringBundle]:
        versions = self._by_id.get(model_id)
        if not versions:
            raise BundleError(errors.MODEL_NOT_FOUND, f"no model {model_id!r} is loaded")
        return versions


def bundle_dirs(root: Path, kind: str) -> list[tuple[str, Path]]:
    """``(lock key, directory)`` of every ``<root>/<kind>/<id>/<version>/`` (hidden entries ignored), sorted."""
    base = root / kind
    if not base.is_dir():
        return []
    found = []
    for id_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for version_dir in sorted(p for p in id_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            found.append((f"{kind}/{id_dir.name}/{version_dir.name}", version_dir))
    return found


def load_bundles(
    root: Path | str,
    *,
    strict: bool = True,
    pinned: Mapping[str, str] | None = None,
    trust: TrustPolicy | None = None,
) -> BundleRegistry:
    """Load every scoring bundle ``<root>/scoring/<id>/<version>/``.

    Args:
        root: the bundle root, e.g. the project's ``models/``.
        strict: raise on the first invalid bundle (default, so a tampered bundle stops a service from
            starting); when False, skip it with a warning and record it in ``registry.rejected``.
        pinned: optional lock ``"<kind>/<id>/<version>"`` -> expected SHA-256 of ``manifest.json`` (see
            :func:`read_lock`); scoring bundles not named are not pinned.
        trust: signature policy (None: signatures are not checked).

    Raises:
        BundleError: ``LAYOUT_INVALID`` when ``root`` is not a directory; with ``strict``, any error of
            :func:`~oncohabitat.bundles.loader.load_bundle` and ``MODEL_NOT_FOUND`` for a pinned scoring bundle
            that is absent; ``DUPLICATE_BUNDLE``.
    """
    root = Path(root)
    if not root.is_dir():
        raise BundleError(errors.LAYOUT_INVALID, f"bundle root {str(root)!r} is not a directory")
    bundles: list[ScoringBundle] = []
    rejected: dict[str, BundleError] = {}
    for key, directory in bundle_dirs(root, "scoring"):
        try:
            bundles.append(load_bundle(directory, (pinned or {}).get(key), kind="scoring", trust=trust))
        except BundleError as exc:
            if strict:
                raise
            logger.warning("bundle rejected", extra={"bundle": key, "reason": exc.reason})
            rejected[key] = exc
    wanted = {key for key in (pinned or {}) if key.startswith("scoring/")}
    missing = sorted(wanted - {b.key for b in bundles} - set(rejected))
    if missing and strict:
        raise BundleError(errors.MODEL_NOT_FOUND, f"pinned bundles not found under the root: {missing}")
    return BundleRegistry(bundles, rejected)


LOCK_FILE_NAME = "bundles.lock.json"


def default_bundle_root() -> Path:
    """The source checkout's bundle root ``models/`` when running from a checkout, else ``./models`` (images
    mount their bundles there)."""
    checkout = Path(__file__).resolve().parents[3] / "models"
    return checkout if checkout.is_dir() else Path("models").resolve()


"""Lock file at the bundle root: ``{"<kind>/<id>/<version>": "<manifest sha256>"}`` for every kind."""


def read_lock(root: Path | str) -> dict[str, str] | None:
    """The pinned manifest hashes of ``<root>/bundles.lock.json``, or None when there is no lock file."""
    path = Path(root) / LOCK_FILE_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(errors.SCHEMA_INVALID, f"{LOCK_FILE_NAME} is not valid JSON") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise BundleError(errors.SCHEMA_INVALID, f"{LOCK_FILE_NAME} must map 'kind/id/version' to a sha256")
    return data


def write_lock(root: Path | str) -> dict[str, str]:
    """Verify every bundle of every kind under ``root`` and pin its manifest hash in ``bundles.lock.json``."""
    root = Path(root)
    lock = {}
    for kind in BUNDLE_KINDS:
        for key, directory in bundle_dirs(root, kind):
            lock[key] = load_bundle(directory, kind=kind).manifest_sha256
    (root / LOCK_FILE_NAME).write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    return lock
