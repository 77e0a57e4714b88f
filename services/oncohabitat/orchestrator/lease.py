"""Leases: the heartbeat keeping a claimed job's lease alive while a long stage runs, lease owner names, and the
restart rule (a replica frees the jobs its previous process held)."""

from __future__ import annotations

import logging
import os
import secrets
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


def worker_ids(replica_id: str, count: int) -> list[str]:
    """Lease owner names for ``count`` runner threads of this process: ``<replica>:<pid>:<incarnation>:<n>``.

    Unique per process start (a random incarnation, since a container's pid is the same after every restart),
    so an owner name is a fencing token: a process that lost a job's lease can never write to it again. The
    stable replica name comes first so that :func:`resume_own_jobs` finds what the previous process held.
    """
    incarnation = secrets.token_hex(4)
    return [f"{replica_id}:{os.getpid()}:{incarnation}:{n}" for n in range(count)]


def resume_own_jobs(store: JobStore, replica_id: str) -> int:
    """At start, before the runners: the jobs this replica's previous process held become claimable now.

    That process is gone (this one replaced it), so its leases need not be waited out; the jobs resume at
    their first unfinished stage. Returns how many jobs were freed.
    """
    freed = store.expire_leases_of(f"{replica_id}:")
    if freed:
        logger.warning("replica %s restarted: %d job(s) it held resume now", replica_id, freed)
    return freed
