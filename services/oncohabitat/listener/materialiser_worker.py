"""Materialiser worker process: journal entries -> Part-10 files + index rows, in batches.

Started by :class:`~.materialiser.Materialiser` as ``python -m oncohabitat.listener.materialiser_worker
CONFIG_JSON READ_FD WRITE_FD``; it runs in its own process so that its work (file creation in the
kernel, SQLite, Python) never holds the listener's GIL while an association waits for a reply.

Protocol (pickled tuples over two pipes, :class:`multiprocessing.connection.Connection` framing):

* parent -> worker: ``("work", [(JournalLocation, InstanceRecord, study_uid), ...])``: each entry's
  location and the index record the listener's checks produced (the journal's own metadata holds
  only what was known before them, see :mod:`.journal_meta`); ``("stop",)`` ends the worker.
* worker -> parent: ``("ready",)`` once, when it has imported its modules and opened the index
  (the parent's start waits for it); then ``("done", [(sequence, outcome, reopened_from,
  held_in), ...])`` after each committed batch (outcomes and states as their string values,
  ``None`` when absent).

For each entry the SHA-256 the index keeps is computed here (the listener journals a CRC-32 only,
see :mod:`.journal`), the file is written at its final path (created or truncated, no rename: until its
index row exists nothing refers to it, and a crash before the journal checkpoint re-writes it from
the journal), then all rows of the batch are committed in one transaction. A failed batch is
logged and retried after ``retry_s``. Nothing here fsyncs: the parent syncs the file system before
it advances the journal checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from queue import SimpleQueue
from typing import Any

from oncohabitat.listener.index import AddResult, InstanceRecord, LatePolicy, StudyIndex
from oncohabitat.listener.journal import JournalError, JournalLocation, JournalReader
from oncohabitat.listener.journal_meta import IntakeMeta, RefusalMeta, decode_journal_meta

_LOG = logging.getLogger("oncohabitat.listener.materialiser")

#: One reported result: sequence, outcome, reopened_from, held_in.
DoneItem = tuple[int, str, str | None, str | None]
#: One entry to materialise: where it lies, its index record (SHA-256 filled in here) and Study Instance UID.
WorkItem = tuple[JournalLocation, InstanceRecord, str]


@dataclass(frozen=True)
class WorkerConfig:
    """What the worker needs (JSON on its command line): paths and index settings."""

    root: str
    index_path: str
    journal_dir: str
    late_policy: str
    synchronous: str
    batch_size: int = 256
    retry_s: float = 1.0

    def to_json(self) -> str:
        """The command-line form."""
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> WorkerConfig:
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(text))


def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` at ``path`` (parents created), replacing any previous content.

    A write error (e.g. a full disk) deletes the partial file before it is raised: the instance
    stays in the journal and its batch is retried.

    Raises:
        OSError: the file could not be written.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):  # the write error is the one to report
            path.unlink()
        raise
    os.close(fd)


def _done_item(sequence: int, result: AddResult) -> DoneItem:
    return (
        sequence,
        result.outcome.value,
        result.reopened_from.value if result.reopened_from is not None else None,
        result.held_in.value if result.held_in is not None else None,
    )


class Worker:
    """Materialises batches of journal locations (see module doc)."""

    def __init__(self, config: WorkerConfig) -> None:
        self._config = config
        self._root = Path(config.root)
        self._reader = JournalReader(Path(config.journal_dir))
        self._index = StudyIndex(
            Path(config.index_path),
            late_policy=LatePolicy(config.late_policy),
            synchronous=config.synchronous,
            secondary=True,
        )

    def materialise(self, batch: Sequence[WorkItem]) -> list[DoneItem]:
        """Write the batch's files, commit its rows; the results in batch order.

        Raises:
            OSError, sqlite3.Error, ListenerError: the batch must be retried.
        """
        items = []
        for location, record, study_uid in batch:
            entry = self._reader.read(location)
            meta = decode_journal_meta(entry.meta)
            if isinstance(meta, IntakeMeta):
                journaled_uid = meta.sop_uid
            elif isinstance(meta, RefusalMeta):
                journaled_uid = None
            else:
                journaled_uid = meta[0].sop_uid
            if journaled_uid != record.sop_uid:
                raise JournalError("journal entry is not the instance sent with its location")
            record = dataclasses.replace(record, sha256=entry.sha256)  # journaled with a CRC-32 only
            existing = self._index.get_instance(record.sop_uid)
            if existing is None:  # a re-sent batch (worker restart) must not rewrite an indexed file
                _write_file(self._root / record.path, entry.payload)
            items.append((record, study_uid))
        results = self._index.add_instances(items)
        return [_done_item(location.sequence, result) for (location, _, _), result in zip(batch, results, strict=True)]

    def close(self) -> None:
        """Release the index handle and journal files."""
        self._index.close()
        self._reader.close()


def _drain(inbox: Connection, messages: SimpleQueue[Any]) -> None:
    """Move every message from the parent into ``messages`` as it arrives; ``None`` once the pipe ends.

    The worker thus never leaves its inbox unread while it works: a parent blocked sending it a
    large backlog while the worker waits to send its reports would otherwise be a deadlock (the
    parent's receiver thread both sends work and reads reports).
    """
    try:
        while True:
            message = inbox.recv()
            messages.put(message)
            if message[0] == "stop":
                return
    except (EOFError, OSError):
        messages.put(None)


def serve(config: WorkerConfig, inbox: Connection, outbox: Connection) -> None:
    """Run until ``("stop",)`` (after finishing what was queued) or until the parent closes the pipe."""
    worker = Worker(config)
    try:
        outbox.send(("ready",))
    except (EOFError, BrokenPipeError):  # the listener is gone before we started
        worker.close()
        return
    messages: SimpleQueue[Any] = SimpleQueue()
    threading.Thread(target=_drain, args=(inbox, messages), name="worker-inbox", daemon=True).start()
    queue: list[WorkItem] = []
    stopping = False
    try:
        while queue or not stopping:
            if not queue:
                message: Any = messages.get()
                if message is None or message[0] == "stop":  # None: the listener is gone
                    return
                queue.extend(message[1])
            while not stopping and len(queue) < config.batch_size and not messages.empty():
                message = messages.get()
                if message is None:
                    return  # the listener is gone: what is not reported is still journaled
                stopping = message[0] == "stop"
                if not stopping:
                    queue.extend(message[1])
            batch, queue = queue[: config.batch_size], queue[config.batch_size :]
            while True:
                try:
                    done = worker.materialise(batch)
                    break
                except Exception as exc:  # noqa: BLE001 - retried: the entries stay durable in the journal
                    _LOG.error("materialising %d journaled instance(s) failed (retrying): %s", len(batch), exc)
                    time.sleep(config.retry_s)
            outbox.send(("done", done))
    except (EOFError, BrokenPipeError):  # the listener is gone: what is not reported is still journaled
        return
    finally:
        worker.close()


#: Scheduling niceness added to the worker: on a busy host, receiving (the reply path) goes first.
WORKER_NICENESS = 10


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``CONFIG_JSON READ_FD WRITE_FD``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        print("usage: materialiser_worker CONFIG_JSON READ_FD WRITE_FD", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = WorkerConfig.from_json(args[0])
    try:
        os.nice(WORKER_NICENESS)
    except OSError:  # not permitted here: run at the listener's priority
        pass
    inbox = Connection(int(args[1]), writable=False)
    outbox = Connection(int(args[2]), readable=False)
    serve(config, inbox, outbox)
    return 0


if __name__ == "__main__":
    sys.exit(main())
