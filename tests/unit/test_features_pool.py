"""Feature worker processes end when the service process that started them is killed (no orphans)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

_SERVICE = """
from oncohabitat.features.pool import PoolRunner

pool = PoolRunner(workers=2)
pool.warm()
print(" ".join(str(pid) for pid in pool._executor._processes), flush=True)
import time
time.sleep(600)
"""


def _running(pid: int) -> bool:
    """True while ``pid`` exists and has not exited (an exited orphan may linger as a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def test_workers_end_when_their_service_process_is_killed() -> None:
    service = subprocess.Popen([sys.executable, "-c", _SERVICE], stdout=subprocess.PIPE, text=True)
    try:
        assert service.stdout is not None
        workers = [int(pid) for pid in service.stdout.readline().split()]
        assert len(workers) == 2 and all(_running(pid) for pid in workers)
    finally:
        service.kill()
        service.wait()
    deadline = time.monotonic() + 60  # each worker checks its parent every PARENT_CHECK_S (1 s)
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_running(pid) for pid in workers)
