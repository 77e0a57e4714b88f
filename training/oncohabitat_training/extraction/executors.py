"""Where patients are extracted: in this process, in local worker processes, or on a Dask cluster.

Each executor runs ``function`` on every task and yields the results as they finish (any order); ``close``
cancels what has not started (used when a run stops at its first failure). Local processes are started with
``spawn`` (pyradiomics and SimpleITK are not fork-safe in every setting); a Dask scheduler is reached by its
address (``tcp://host:8786``) or given as a ``distributed.Client``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs a function over tasks, yielding results as they finish."""

    def run(self, function: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]: ...

    def close(self) -> None: ...


class InlineExecutor:
    """One task after the other, in this process (``--workers 1``; tests)."""

    def run(self, function: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]:
        for task in tasks:
            yield function(task)

    def close(self) -> None:
        """Nothing to release."""


def _quiet() -> None:
    """Worker initialiser: pyradiomics' logger at ERROR."""
    logging.getLogger("radiomics").setLevel(logging.ERROR)


class ProcessExecutor:
    """``workers`` spawned processes of this machine."""

    def __init__(self, workers: int) -> None:
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_quiet)

    def run(self, function: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]:
        futures: list[Future[R]] = [self._pool.submit(function, task) for task in tasks]
        for future in as_completed(futures):
            yield future.result()

    def close(self) -> None:
        """Cancel the tasks not started and wait for the running ones."""
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """A Dask distributed cluster (``scheduler``: an address or a ``distributed.Client``)."""

    def __init__(self, scheduler: Any) -> None:
        from distributed import Client

        self._own = not isinstance(scheduler, Client)
        self._client = Client(scheduler) if self._own else scheduler
        self._futures: list[Any] = []

    def run(self, function: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]:
        from distributed import as_completed as dask_completed

        self._futures = [self._client.submit(function, task, pure=False) for task in tasks]
        for future in dask_completed(self._futures):
            yield future.result()

    def close(self) -> None:
        """Cancel the tasks not finished; close the client this executor opened."""
        pending = [future for future in self._futures if not future.done()]
        if pending:
            self._client.cancel(pending)
        self._futures = []
        if self._own:
            self._client.close()


def default_workers() -> int:
    """The CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def make_executor(workers: int, scheduler: Any | None = None) -> Executor:
    """A Dask executor when ``scheduler`` is given, else processes (``workers`` > 1) or this process."""
    if scheduler is not None:
        return DaskExecutor(scheduler)
    if workers > 1:
        return ProcessExecutor(workers)
    return InlineExecutor()
