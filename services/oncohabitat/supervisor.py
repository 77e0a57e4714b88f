"""Supervision of ``oncohabitat up``'s services: a service that dies is restarted with backoff, the others
(DICOM intake included) keep running meanwhile, and the supervisor gives up (``up`` exits non-zero) when one
service keeps dying.

A restart reuses the service's environment and ports, so its peers' channels reconnect by themselves (gRPC
retries UNAVAILABLE) and a restarted orchestrator resumes the jobs it held at once (its replica name is
stable, see ``orchestrator.lease.resume_own_jobs``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from oncohabitat.launcher import RunningService, start_service

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    """When and how often a dead service is started again.

    Attributes:
        initial_backoff_s: Wait before the first restart of a service, s (doubles per restart in a row).
        max_backoff_s: Cap of that wait, s.
        max_restarts: Restarts of one service allowed within ``window_s``; one more and the supervisor gives up.
        window_s: The sliding window those restarts are counted in, s.
        stable_after_s: A service up this long has its backoff reset to ``initial_backoff_s``.
    """

    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_restarts: int = 5
    window_s: float = 120.0
    stable_after_s: float = 30.0


@dataclass
class _Watch:
    service: RunningService
    started_at: float
    backoff_s: float
    restart_at: float | None = None
    restarts: deque[float] = field(default_factory=deque)


class Supervisor:
    """Watches the services of one ``up``; call :meth:`tick` periodically from the main loop.

    Args:
        running: The started services.
        env: Their shared environment (reused for restarts).
        log_dir: Where their logs go (a restart appends).
        policy: Backoff and give-up rule.
        report: Called with a one-line, human-readable message at every exit, restart and give-up.
        clock: Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        running: Sequence[RunningService],
        env: Mapping[str, str],
        log_dir: Path,
        policy: RestartPolicy | None = None,
        report: Callable[[str], None] = logger.warning,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._env = dict(env)
        self._log_dir = log_dir
        self._policy = policy or RestartPolicy()
        self._report = report
        self._clock = clock
        now = clock()
        self._watches = [_Watch(service, now, self._policy.initial_backoff_s) for service in running]

    @property
    def running(self) -> list[RunningService]:
        """The current process of every service (a restarted service's newest one)."""
        return [watch.service for watch in self._watches]

    @property
    def restarts(self) -> dict[str, int]:
        """Restarts per service within the current window."""
        return {watch.service.spec.name: len(watch.restarts) for watch in self._watches}

    def tick(self) -> str | None:
        """Notice exits, restart what is due; returns why the supervisor gives up, or None to go on."""
        now = self._clock()
        for watch in self._watches:
            process = watch.service.process
            name = watch.service.spec.name
            if watch.restart_at is None:
                if process.poll() is None:
                    if now - watch.started_at >= self._policy.stable_after_s:
                        watch.backoff_s = self._policy.initial_backoff_s
                    continue
                while watch.restarts and now - watch.restarts[0] > self._policy.window_s:
                    watch.restarts.popleft()
                if len(watch.restarts) >= self._policy.max_restarts:
                    reason = (
                        f"{name} exited ({process.returncode}) after {len(watch.restarts)} restarts within "
                        f"{self._policy.window_s:.0f} s; giving up"
                    )
                    self._report(reason)
                    return reason
                watch.restart_at = now + watch.backoff_s
                self._report(f"{name} exited ({process.returncode}); restarting in {watch.backoff_s:.1f} s")
                continue
            if now >= watch.restart_at:
                watch.service = start_service(watch.service.spec, self._env, self._log_dir)
                watch.restarts.append(now)
                watch.started_at = now
                watch.restart_at = None
                watch.backoff_s = min(watch.backoff_s * 2, self._policy.max_backoff_s)
                self._report(f"{name} restarted (pid {watch.service.process.pid})")
        return None
