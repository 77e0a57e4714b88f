"""A small restartable background polling thread shared by the completion monitor and outbox."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

from oncohabitat.listener.errors import StudyIndexError

_LOG = logging.getLogger(__name__)


class PollingWorker:
    """Calls ``step()`` at start, then every ``interval_s`` s or on :meth:`wake` (a daemon thread).

    An error raised by ``step`` is logged and the loop goes on.
    """

    def __init__(self, name: str, step: Callable[[], object], interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError("poll interval must be > 0 s")
        self._name = name
        self._step = step
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True while the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (no-op when already running)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run the next step now instead of waiting for the interval."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the thread to stop and wait up to ``timeout_s`` seconds for the current step."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except (sqlite3.Error, StudyIndexError) as exc:
                _LOG.error("%s: study index error: %s", self._name, type(exc).__name__)
            except Exception:  # noqa: BLE001 - a background loop must survive a failing step
                _LOG.error("%s: step failed unexpectedly", self._name, exc_info=True)
            self._wake.wait(self._interval_s)
            self._wake.clear()
