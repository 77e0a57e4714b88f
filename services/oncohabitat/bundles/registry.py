"""All bundles under a root directory, looked up by model id and version."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

from oncohabitat.bundles import errors
from oncohabitat.bundles.errors import BundleError
from oncohabitat.bundles.loader import Bundle, load_bundle

logger = logging.getLogger(__name__)

#: Version strings that select the latest version in :meth:`BundleRegistry.get`.
LATEST_ALIASES = frozenset({"", "latest"})


class BundleRegistry:
    """Verified bundles indexed by ``(id, version)``.

    ``rejected`` maps the directory (relative to the root) of each bundle skipped by a non-strict
    :func:`load_bundles` to its error.
    """

    def __init__(self, bundles: Iterable[Bundle], rejected: Mapping[str, BundleError] | None = None) -> None:
        """Index ``bundles``.

        Raises:
            BundleError: ``DUPLICATE_BUNDLE`` when two bundles share an id and version.
        """
        self._by_id: dict[str, dict[str, Bundle]] = {}
        for bundle in bundles:
            versions = self._by_id.setdefault(bundle.id, {})
            if bundle.version in versions:
                raise BundleError(errors.DUPLICATE_BUNDLE, f"bundle {bundle.id} {bundle.version} is loaded twice")
            versions[bundle.version] = bundle
        self.rejected: Mapping[str, BundleError] = MappingProxyType(dict(rejected or {}))

    def __len__(self) -> int:
        return sum(len(versions) for versions in self._by_id.values())

    def __iter__(self) -> Iterator[Bundle]:
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

    def latest(self, model_id: str) -> Bundle:
        """The highest release version of ``model_id``; pre-releases only when no release exists.

        Raises:
            BundleError: ``MODEL_NOT_FOUND``.
        """
        bundles = list(self._versions_of(model_id).values())
        releases = [b for b in bundles if not b.semver.prerelease]
        return max(releases or bundles, key=lambda b: b.semver)

    def get(self, model_id: str, version: str | None = None) -> Bundle:
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

    def _versions_of(self, model_id: str) -> dict[str, Bundle]:
        versions = self._by_id.get(model_id)
        if not versions:
            raise BundleError(errors.MODEL_NOT_FOUND, f"no model {model_id!r} is loaded")
        return versions


def load_bundles(root: Path | str, *, strict: bool = True, pinned: Mapping[str, str] | None = None) -> BundleRegistry:
    """Load every bundle ``<root>/<id>/<version>/`` (hidden directories and loose files are ignored).

    Args:
        root: directory of bundles, e.g. the project's ``models/``.
        strict: raise on the first invalid bundle (default, so a tampered bundle stops a service from
            starting); when False, skip it with a warning and record it in ``registry.rejected``.
        pinned: optional ``"<id>/<version>"`` -> expected SHA-256 of that bundle's ``manifest.json``
            (see :func:`~oncohabitat.bundles.loader.load_bundle`); bundles not named are not pinned.

    Raises:
        BundleError: ``LAYOUT_INVALID`` when ``root`` is not a directory; with ``strict``, any error of
            :func:`~oncohabitat.bundles.loader.load_bundle` and ``MODEL_NOT_FOUND`` for a pinned bundle
            that is absent; ``DUPLICATE_BUNDLE``.
    """
    root = Path(root)
    if not root.is_dir():
        raise BundleError(errors.LAYOUT_INVALID, f"bundle root {str(root)!r} is not a directory")
    bundles: list[Bundle] = []
    rejected: dict[str, BundleError] = {}
    for id_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for version_dir in sorted(p for p in id_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                key = f"{id_dir.name}/{version_dir.name}"
                bundles.append(load_bundle(version_dir, (pinned or {}).get(key)))
            except BundleError as exc:
                if strict:
                    raise
                logger.warning("bundle rejected", extra={"bundle": key, "reason": exc.reason})
                rejected[key] = exc
    missing = sorted(set(pinned or {}) - {f"{b.id}/{b.version}" for b in bundles} - set(rejected))
    if missing and strict:
        raise BundleError(errors.MODEL_NOT_FOUND, f"pinned bundles not found under the root: {missing}")
    return BundleRegistry(bundles, rejected)


LOCK_FILE_NAME = "bundles.lock.json"
"""Lock file beside the bundles: ``{"<id>/<version>": "<manifest sha256>"}``, written at release time."""


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
        raise BundleError(errors.SCHEMA_INVALID, f"{LOCK_FILE_NAME} must map 'id/version' to a sha256")
    return data


def write_lock(root: Path | str) -> dict[str, str]:
    """Verify every bundle under ``root`` and pin its manifest hash in ``<root>/bundles.lock.json``."""
    registry = load_bundles(root)
    lock = {f"{b.id}/{b.version}": b.manifest_sha256 for b in registry}
    (Path(root) / LOCK_FILE_NAME).write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    return lock
