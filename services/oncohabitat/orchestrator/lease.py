"""Lease heartbeat: keeps a claimed job's lease alive while a long stage runs."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from oncohabitat.orchestrator.jobs import JobStoreUnavailableError
from oncohabitat.orchestrator.jobstore import JobStore

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """Context manager renewing ``worker_id``'s lease on a job every ``lease_s / 3`` seconds on a helper thread.

    A stage may then run far longer than ``lease_s`` while a crashed worker's job is still taken over within
    ``lease_s`` seconds. The keeper stops renewing once the lease is lost (job cancelled or taken over); the
    running stage is not interrupted, but its result is then refused by the store's fencing.
    """

    def __init__(self, store: JobStore, job_id: str, worker_id: str, lease_s: float) -> None:
        self._store = store
        self._job_id = job_id
        self._worker_id = worker_id
        self._lease_s = lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id[:8]}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        interval_s = self._lease_s / 3.0
        while not self._stop.wait(interval_s):
            try:
                renewed = self._store.renew_lease(self._job_id, self._worker_id, self._lease_s)
            except JobStoreUnavailableError as exc:
                logger.warning("job %s: lease renewal failed (%s); will retry", self._job_id, exc.public_message)
                continue
            if not renewed:
                logger.warning("job %s: lease lost while a stage was running", self._job_id)
                return
