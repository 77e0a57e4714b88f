"""All bundles under a root directory, looked up by model id and version."""

from __future__ import annotations

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


def load_bundles(root: Path | str, *, strict: bool = True) -> BundleRegistry:
    """Load every bundle ``<root>/<id>/<version>/`` (hidden directories and loose files are ignored).

    Args:
        root: directory of bundles, e.g. the project's ``models/``.
        strict: raise on the first invalid bundle (default, so a tampered bundle stops a service from
            starting); when False, skip it with a warning and record it in ``registry.rejected``.

    Raises:
        BundleError: ``LAYOUT_INVALID`` when ``root`` is not a directory; with ``strict``, any error of
            :func:`~oncohabitat.bundles.loader.load_bundle`; ``DUPLICATE_BUNDLE``.
    """
    root = Path(root)
    if not root.is_dir():
        raise BundleError(errors.LAYOUT_INVALID, f"bundle root {str(root)!r} is not a directory")
    bundles: list[Bundle] = []
    rejected: dict[str, BundleError] = {}
    for id_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for version_dir in sorted(p for p in id_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                bundles.append(load_bundle(version_dir))
            except BundleError as exc:
                if strict:
                    raise
                relative = version_dir.relative_to(root).as_posix()
                logger.warning("bundle rejected", extra={"bundle": relative, "reason": exc.reason})
                rejected[relative] = exc
    return BundleRegistry(bundles, rejected)
