"""Standalone listener for integration tests and benchmarks: SCP + completion + outbox, hand-off to a file.

Run ``python -m tests.support.listener_server --root DIR --port N [...]`` from the project root. It is wired exactly
like the service (:func:`oncohabitat.listener.wiring.build_parts` from :class:`ListenerSettings`), except that each
hand-off appends one JSON line ``{"study_key", "content_digest", "instances", "job_id"}`` to
``--handoff-log`` and returns ``job-<digest[:12]>``; ``--fail-handoffs K`` makes the first K
hand-offs raise ``ConnectionError`` (orchestrator down). ``--store-delay-s`` sleeps before each
store (slow disk) so tests can interrupt a push; ``--free-bytes-file`` reads the "free disk
space" from a file (tests of the disk watermark). ``--set NAME=VALUE`` sets any other
:class:`ListenerSettings` field. Prints ``READY <port>`` once serving and runs until SIGTERM/SIGINT.
A test helper, not shipped: the service's entry point is ``python -m oncohabitat.listener``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from oncohabitat.listener.cstore import StoreHandler, StoreRequest, StoreResult
from oncohabitat.listener.diskguard import statvfs_free_bytes
from oncohabitat.listener.settings import ListenerSettings
from oncohabitat.listener.spool import DatasetSpool
from oncohabitat.listener.storage import InstanceStore
from oncohabitat.listener.wiring import build_parts


class _FileHandoff:
    """Hand-off that appends a JSON line per call; the first ``failures`` calls raise."""

    def __init__(self, log_path: Path, failures: int) -> None:
        self._log_path = log_path
        self._failures_left = failures
        self._lock = threading.Lock()

    def __call__(self, study_key: str, content_digest: str, instance_paths: Sequence[Path], rerun: bool = False) -> str:
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
    """Instance sink proxy that sleeps ``delay_s`` seconds before each C-STORE is stored."""

    def __init__(self, store: InstanceStore, delay_s: float) -> None:
        self._store = store
        self._delay_s = delay_s

    def accepting(self) -> bool:
        return self._store.accepting()

    def open_spool(self, sop_class_uid: str, sop_uid: str, transfer_syntax: str) -> DatasetSpool:
        return self._store.open_spool(sop_class_uid, sop_uid, transfer_syntax)

    def refuse(self, reason: str, dimse_status: int) -> StoreResult:
        return self._store.refuse(reason, dimse_status)

    def handle_store(self, request: StoreRequest) -> StoreResult:
        time.sleep(self._delay_s)
        return self._store.handle_store(request)


def _file_probe(path: Path) -> Callable[[Path], int]:
    """Free bytes as written in ``path`` (falls back to the real value when the file is absent)."""

    def probe(root: Path) -> int:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return statvfs_free_bytes(root)

    return probe


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
    parser.add_argument("--free-bytes-file", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="any ListenerSettings field")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> ListenerSettings:
    """ListenerSettings for the test server (defaults suited to tests: no watermark, short quiet period)."""
    values: dict[str, object] = {
        "store_dir": args.root,
        "data_dir": args.root,
        "dicom_host": args.host,
        "dicom_port": args.port,
        "ae_title": args.ae_title,
        "quiet_period_s": args.quiet_period_s,
        "min_free_disk_mb": 0,
        "handoff_max_backoff_s": max(args.backoff_s, 2.0),
    }
    for item in args.set:
        name, _, value = item.partition("=")
        values[name.strip()] = value
    return ListenerSettings(**values)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the test listener until SIGTERM/SIGINT; returns the exit code."""
    args = _parse(argv)
    args.root.mkdir(parents=True, exist_ok=True)
    settings = settings_from(args)

    def wrap(store: InstanceStore) -> StoreHandler:
        return _DelayedStore(store, args.store_delay_s) if args.store_delay_s > 0 else store

    parts = build_parts(
        settings,
        _FileHandoff(args.handoff_log, args.fail_handoffs),
        disk_probe=_file_probe(args.free_bytes_file) if args.free_bytes_file else statvfs_free_bytes,
        sink_wrapper=wrap,
        outbox_backoff_s=args.backoff_s,
        poll_interval_s=0.1,
    )
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    parts.start()
    print(f"READY {parts.scp.port}", flush=True)
    try:
        stop.wait()
    finally:
        parts.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
