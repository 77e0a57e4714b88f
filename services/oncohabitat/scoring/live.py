"""The scoring service's live set of bundles: verified, compiled, replayed, and hot-reloaded in place.

A :class:`LiveRegistry` serves immutable :class:`Snapshot` objects. :meth:`LiveRegistry.reload` builds a new
snapshot from ``<root>/scoring/`` and swaps it in with one reference assignment, so a call in flight keeps the
compiled bundle it started with. A bundle directory is re-verified only when its files changed (size or
mtime); one that no longer verifies (tampered file, bad signature, schema violation, failing test vector,
manifest not matching the lock) is recorded as rejected and **its previously loaded version keeps serving**.
A removed directory is unloaded. The first load is strict: any invalid bundle stops the service from starting.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from oncohabitat.bundles import errors as bundle_errors
from oncohabitat.bundles.errors import BundleError
from oncohabitat.bundles.loader import Bundle, load_bundle
from oncohabitat.bundles.registry import LATEST_ALIASES, LOCK_FILE_NAME, bundle_dirs, read_lock
from oncohabitat.bundles.scoring_manifest import ScoringManifest
from oncohabitat.bundles.signature import TrustPolicy
from oncohabitat.scoring.model import CompiledBundle, compile_bundle
from oncohabitat.scoring.vectors import replay_vectors

logger = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


def _fingerprint(directory: Path, pinned: str | None) -> Fingerprint:
    """Name, size and mtime of every entry under ``directory`` (plus the pinned hash): changes when a file does."""
    entries: list[tuple[str, int, int]] = [("<lock>", 0, hash(pinned))]
    for base, _dirs, files in os.walk(directory):
        for name in files:
            path = Path(base) / name
            try:
                stat = path.lstat()
            except OSError:
                continue
            entries.append((path.relative_to(directory).as_posix(), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


def _latest(bundles: Mapping[tuple[str, str], CompiledBundle]) -> dict[str, CompiledBundle]:
    """Per model id: the highest release version, else the highest pre-release."""
    by_id: dict[str, list[CompiledBundle]] = {}
    for compiled in bundles.values():
        by_id.setdefault(compiled.bundle.id, []).append(compiled)
    latest = {}
    for model_id, candidates in by_id.items():
        releases = [c for c in candidates if not c.bundle.semver.prerelease]
        latest[model_id] = max(releases or candidates, key=lambda c: c.bundle.semver)
    return latest


@dataclass(frozen=True)
class Snapshot:
    """An immutable view: loaded bundles by ``(id, version)``, the latest per id, and rejected bundle keys."""

    bundles: Mapping[tuple[str, str], CompiledBundle] = field(default_factory=dict)
    rejected: Mapping[str, BundleError] = field(default_factory=dict)
    latest: Mapping[str, CompiledBundle] = field(default_factory=dict)

    @classmethod
    def of(cls, bundles: Mapping[tuple[str, str], CompiledBundle], rejected: Mapping[str, BundleError]) -> Snapshot:
        """A snapshot with its latest-version index."""
        return cls(
            MappingProxyType(dict(bundles)), MappingProxyType(dict(rejected)), MappingProxyType(_latest(bundles))
        )

    def __iter__(self) -> Iterator[CompiledBundle]:
        """Bundles by id, then ascending version precedence."""
        return iter(sorted(self.bundles.values(), key=lambda c: (c.bundle.id, c.bundle.semver)))

    def get(self, model_id: str, version: str | None = None) -> CompiledBundle:
        """The bundle ``model_id`` at ``version`` (None/""/"latest": highest release, else highest pre-release).

        Raises:
            BundleError: ``MODEL_NOT_FOUND`` or ``VERSION_NOT_FOUND``.
        """
        if model_id not in self.latest:
            raise BundleError(bundle_errors.MODEL_NOT_FOUND, f"no model {model_id!r} is loaded")
        if version is None or version in LATEST_ALIASES:
            return self.latest[model_id]
        found = self.bundles.get((model_id, version))
        if found is None:
            available = ", ".join(sorted(v for (i, v) in self.bundles if i == model_id))
            raise BundleError(
                bundle_errors.VERSION_NOT_FOUND,
                f"model {model_id!r} has no version {version!r} (available: {available})",
            )
        return found


class LiveRegistry:
    """Hot-reloadable scoring bundles under ``<root>/scoring/``.

    Args:
        root: the bundle root (holds ``bundles.lock.json``).
        require_lock: refuse bundles not pinned by the lock file (and a missing lock file).
        trust: signature policy.
    """

    def __init__(self, root: Path, *, require_lock: bool = True, trust: TrustPolicy | None = None) -> None:
        self._root = Path(root)
        self._require_lock = require_lock
        self._trust = trust
        self._snapshot = Snapshot()
        self._fingerprints: dict[str, Fingerprint] = {}
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def snapshot(self) -> Snapshot:
        """The current snapshot (one atomic read)."""
        return self._snapshot

    def _load_one(self, key: str, directory: Path, pinned: str | None) -> CompiledBundle:
        if self._require_lock and pinned is None:
            raise BundleError(bundle_errors.LOCK_MISSING, f"bundle {key} is not pinned in {LOCK_FILE_NAME}")
        bundle: Bundle[ScoringManifest] = load_bundle(directory, pinned, kind="scoring", trust=self._trust)
        compiled = compile_bundle(bundle)
        replay_vectors(compiled)
        return compiled

    def reload(self, *, strict: bool = False) -> Snapshot:
        """Re-read the bundle root and swap in the new snapshot; returns it.

        Raises:
            BundleError: only with ``strict`` (first load): the first invalid bundle, or a missing lock file.
        """
        with self._reload_lock:
            previous = self._snapshot
            lock = read_lock(self._root) if (self._root / LOCK_FILE_NAME).is_file() else None
            if lock is None and self._require_lock and strict:
                raise BundleError(bundle_errors.LOCK_MISSING, f"{LOCK_FILE_NAME} is missing beside the bundles")
            pins = lock or {}
            by_key = {f"scoring/{c.bundle.id}/{c.bundle.version}": c for c in previous.bundles.values()}
            loaded: dict[tuple[str, str], CompiledBundle] = {}
            rejected: dict[str, BundleError] = {}
            for key, directory in bundle_dirs(self._root, "scoring"):
                fingerprint = _fingerprint(directory, pins.get(key))
                unchanged = self._fingerprints.get(key) == fingerprint
                self._fingerprints[key] = fingerprint
                old = by_key.get(key)
                if unchanged and key in previous.rejected:
                    rejected[key] = previous.rejected[key]
                    if old is not None:
                        loaded[(old.bundle.id, old.bundle.version)] = old
                    continue
                if unchanged and old is not None:
                    loaded[(old.bundle.id, old.bundle.version)] = old
                    continue
                try:
                    compiled = self._load_one(key, directory, pins.get(key))
                except BundleError as exc:
                    if strict:
                        raise
                    logger.warning("bundle rejected", extra={"bundle": key, "reason": exc.reason})
                    rejected[key] = exc
                    if old is not None:  # a bad bundle never replaces a good one
                        loaded[(old.bundle.id, old.bundle.version)] = old
                    continue
                loaded[(compiled.bundle.id, compiled.bundle.version)] = compiled
                logger.info("bundle loaded", extra={"model_id": compiled.bundle.id, "version": compiled.bundle.version})
            for key in set(self._fingerprints) - {k for k, _ in bundle_dirs(self._root, "scoring")}:
                del self._fingerprints[key]
            self._snapshot = Snapshot.of(loaded, rejected)
            return self._snapshot

    def start_polling(self, interval_s: float) -> None:
        """Reload every ``interval_s`` seconds on a daemon thread (0 or less: no polling)."""
        if interval_s <= 0 or self._thread is not None:
            return

        def poll() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.reload()
                except BundleError as exc:  # e.g. an unreadable lock file: keep serving what is loaded
                    logger.warning("bundle reload failed", extra={"reason": exc.reason})

        self._thread = threading.Thread(target=poll, name="bundle-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
