"""Standalone listener for integration tests: SCP + completion + outbox, hand-off to a file.

Run ``python -m oncohabitat.listener.testserver --root DIR --port N [...]``. Each hand-off
appends one JSON line ``{"study_key", "content_digest", "instances", "job_id"}`` to
``--handoff-log`` and returns ``job-<digest[:12]>``; ``--fail-handoffs K`` makes the first K
hand-offs raise ``ConnectionError`` (orchestrator down). ``--store-delay-s`` sleeps before each
store (slow disk) so tests can interrupt a push. Prints ``READY <port>`` once serving and runs
until SIGTERM/SIGINT. Not a production entry point (that is ``python -m oncohabitat.listener``).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from oncohabitat.listener.completion import CompletionMonitor
from oncohabitat.listener.index import StudyIndex
from oncohabitat.listener.outbox import Outbox
from oncohabitat.listener.scp import ListenerSCP
from oncohabitat.listener.storage import INDEX_FILE, InstanceStore, StoreEvent


class _FileHandoff:
    """Hand-off that appends a JSON line per call; the first ``failures`` calls raise."""

    def __init__(self, log_path: Path, failures: int) -> None:
        self._log_path = log_path
        self._failures_left = failures
        self._lock = threading.Lock()

    def __call__(self, study_key: str, content_digest: str, instance_paths: Sequence[Path]) -> str:
        with self._lock:
            if self._failures_left > 0:
                self._failures_left -= 1
                raise ConnectionError("test hand-off receiver is down")
            job_id = f"job-{content_digest[:12]}"
            line = {
                "study_key": study_key,
                "content_digest": content_digest,
                "instances": len(instance_paths),
                "job_id": job_id,
            }
            with self._log_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(line) + "\n")
            return job_id


class _DelayedStore:
    """Store handler proxy that sleeps ``delay_s`` seconds before each C-STORE."""

    def __init__(self, store: InstanceStore, delay_s: float) -> None:
        self._store = store
        self._delay_s = delay_s

    def handle_store(self, event: StoreEvent) -> int:
        time.sleep(self._delay_s)
        return self._store.handle_store(event)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ae-title", default="ONCOHABITAT")
    parser.add_argument("--quiet-period-s", type=float, default=0.5)
    parser.add_argument("--handoff-log", type=Path, required=True)
    parser.add_argument("--fail-handoffs", type=int, default=0)
    parser.add_argument("--backoff-s", type=float, default=0.2)
    parser.add_argument("--store-delay-s", type=float, default=0.0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the test listener until SIGTERM/SIGINT; returns the exit code."""
    args = _parse(argv)
    args.root.mkdir(parents=True, exist_ok=True)
    index = StudyIndex(args.root / INDEX_FILE)
    store = InstanceStore(args.root, index)
    outbox = Outbox(
        index,
        args.root,
        _FileHandoff(args.handoff_log, args.fail_handoffs),
        base_backoff_s=args.backoff_s,
        max_backoff_s=max(args.backoff_s, 2.0),
        poll_interval_s=0.1,
    )
    completion = CompletionMonitor(
        index, quiet_period_s=args.quiet_period_s, on_complete=lambda _key, _digest: outbox.wake()
    )
    handler = _DelayedStore(store, args.store_delay_s) if args.store_delay_s > 0 else store
    scp = ListenerSCP(handler, ae_title=args.ae_title, host=args.host, port=args.port)
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    outbox.start()
    completion.start()
    scp.start()
    print(f"READY {scp.port}", flush=True)
    try:
        stop.wait()
    finally:
        scp.stop()
        completion.stop()
        outbox.stop()
        store.close()
        index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
