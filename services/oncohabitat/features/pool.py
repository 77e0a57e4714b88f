"""Worker processes for pyradiomics work, shared by every call of a server (thread-safe).

pyradiomics is not thread-safe (its settings validation through pykwalify and its module-level geometry
tolerance are global state: concurrent ExtractFeatures calls on server threads failed with ComposerError,
ParserError, IndexError). Here every pyradiomics call runs in a worker process that does one task at a time;
server threads only submit tasks and wait. Processes are started with ``spawn`` (never ``fork`` a process that
runs gRPC threads).

Stopping: a call's deadline travels in every task (a worker starts no further region after it); while waiting,
the server polls the deadline and the call's cancellation and, when either fires, cancels the tasks that have
not started, writes the call's token into a table shared with the workers (a running task starts no further
region of that call) and returns at once. A task already running finishes its current region pass (seconds at
most on an I-SPY-sized study) and its result is dropped.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from oncohabitat.common.errors import UnavailableError
from oncohabitat.features import passes
from oncohabitat.features.passes import GroupResult, GroupTask, run_group

logger = logging.getLogger(__name__)

T = TypeVar("T")
POLL_S = 0.05


_CANCEL_SLOTS = 256
_table: Any = None


def _is_cancelled(token: int) -> bool:
    table = _table
    return table is not None and token in table[:]


#: How often a worker checks that the process that started it is still alive, s.
PARENT_CHECK_S = 1.0


def _exit_with_parent(parent: int) -> None:
    """End this worker once its parent is gone (killed: it never shuts the pool down).

    An idle worker waits on its call queue, whose pipe every worker also holds open: the parent's death
    alone never ends that wait, and the orphan would keep its memory until the host restarts.
    """
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _warm(table: Any = None) -> None:
    """Worker initialiser: install the shared table of cancelled calls, watch the parent, import pyradiomics,
    quieten its logger."""
    global _table
    if table is not None:
        _table = table
        passes.CANCELLED = _is_cancelled
        threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    import radiomics  # noqa: F401

    logging.getLogger("radiomics").setLevel(logging.ERROR)


def _ready(seconds: float) -> bool:
    """A warm-up task: holds its worker briefly so that every worker of the pool gets started."""
    _warm()
    time.sleep(seconds)
    return True


def default_workers() -> int:
    """The default worker count: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class StoppedError(Exception):
    """The deadline passed or the call was cancelled while waiting for workers."""


class PoolRunner:
    """A lazily started pool of ``workers`` processes (default: the CPUs); see the module docstring."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_workers()
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._context = multiprocessing.get_context("spawn")
        #: Tokens of cancelled calls (a ring), shared with the workers: they start no further region of those calls.
        self._cancelled = self._context.Array("q", _CANCEL_SLOTS, lock=True)
        self._tokens = itertools.count(1)
        self._slot = itertools.count()

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=self._context, initializer=_warm, initargs=(self._cancelled,)
                )
            return self._executor

    def _reset(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:
                self._executor = None
        broken.shutdown(wait=False, cancel_futures=True)

    def _wait(
        self, futures: Sequence[Future[Any]], deadline: float | None, cancelled: Callable[[], bool] | None
    ) -> bool:
        """Wait for all futures; False (pending ones cancelled) when the deadline passes or the call is cancelled."""
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            if pending and ((deadline is not None and time.time() > deadline) or (cancelled and cancelled())):
                for future in pending:
                    future.cancel()
                return False
        return True

    def run(
        self, tasks: Sequence[GroupTask], deadline: float | None, cancelled: Callable[[], bool] | None
    ) -> list[GroupResult | None]:
        """Run group tasks in the workers; None for each task stopped by the deadline or a cancellation."""
        pool = self._pool()
        token = next(self._tokens)
        try:
            futures = [pool.submit(run_group, dataclasses.replace(task, token=token)) for task in tasks]
            if not self._wait(futures, deadline, cancelled):
                self._cancelled[next(self._slot) % _CANCEL_SLOTS] = token  # running tasks stop at their next region
                return [None] * len(futures)
            return [future.result() for future in futures]
        except BrokenProcessPool:
            self._reset(pool)
            raise UnavailableError("FEATURE_WORKER_LOST", "a feature worker process died; retry the call") from None

    def call(
        self,
        function: Callable[..., T],
        *args: Any,
        deadline: float | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> T:
        """Run one function in a worker (exceptions are re-raised here).

        Raises:
            StoppedError: deadline passed or call cancelled.
        """
        pool = self._pool()
        try:
            future = pool.submit(function, *args)
            if not self._wait([future], deadline, cancelled):
                raise StoppedError("deadline passed or call cancelled")
            return future.result()
        except BrokenProcessPool:
            self._reset(pool)
            raise UnavailableError("FEATURE_WORKER_LOST", "a feature worker process died; retry the call") from None

    def warm(self) -> None:
        """Start every worker now (spawning one and importing pyradiomics takes seconds), not on the first calls."""
        pool = self._pool()
        futures = [pool.submit(_ready, 0.2) for _ in range(self.workers)]
        for future in futures:
            future.result()

    def close(self) -> None:
        """Stop the workers (pending tasks are cancelled)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
