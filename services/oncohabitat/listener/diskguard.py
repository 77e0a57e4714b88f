"""Free-disk-space watermark of the store: below it the listener refuses new work, and resumes by itself.

:meth:`DiskGuard.accepting` is called for every association request and every C-STORE; it reads
``statvfs`` at most once per ``interval_s`` (cheap) and logs each transition once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from oncohabitat.listener import metrics

_LOG = logging.getLogger(__name__)


def statvfs_free_bytes(path: Path) -> int:
    """Bytes available to unprivileged users on the file system holding ``path``."""
    stats = os.statvfs(path)
    return int(stats.f_bavail * stats.f_frsize)


class DiskGuard:
    """Refuses work while free space on ``path``'s file system is below ``min_free_bytes`` (0: never).

    A measurement (by ``probe``, default :func:`statvfs_free_bytes`) is reused for ``interval_s``
    (``clock``: monotonic, s).
    """

    def __init__(
        self,
        path: Path,
        min_free_bytes: int,
        *,
        interval_s: float = 1.0,
        probe: Callable[[Path], int] = statvfs_free_bytes,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self.min_free_bytes = min_free_bytes
        self._interval_s = interval_s
        self._probe = probe
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._free = 0
        self._accepting = True

    def free_bytes(self) -> int:
        """Free bytes as of the last measurement (measured now if it is older than the interval)."""
        with self._lock:
            now = self._clock()
            if self._checked_at is None or now - self._checked_at >= self._interval_s:
                self._measure(now)
            return self._free

    def _measure(self, now: float) -> None:
        try:
            self._free = self._probe(self._path)
        except OSError as exc:
            _LOG.error("free disk space cannot be measured: %s", exc.strerror)
            self._free = 0
        self._checked_at = now
        metrics.DISK_FREE_BYTES.set(self._free)
        accepting = self.min_free_bytes <= 0 or self._free >= self.min_free_bytes
        if accepting != self._accepting:
            if accepting:
                _LOG.info("free disk space back above the watermark: accepting instances again")
            else:
                _LOG.warning(
                    "free disk space below the watermark (%d MiB < %d MiB): refusing new instances",
                    self._free >> 20,
                    self.min_free_bytes >> 20,
                )
        self._accepting = accepting
        metrics.DISK_LOW.set(0 if accepting else 1)

    def accepting(self) -> bool:
        """True while free space is at or above the watermark."""
        self.free_bytes()
        with self._lock:
            return self._accepting
