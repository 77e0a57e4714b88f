"""Bounded collection of one C-STORE data set as its fragments arrive.

The spool starts with the Part-10 prefix (preamble + file meta) and appends each fragment: in memory
up to ``memory_limit`` bytes, then in a temporary file below ``spool_dir``. Beyond ``max_bytes`` it
drops what it holds and only counts (``overflowed``): the association stays in step with the peer
and the instance is refused afterwards. The SHA-256 is computed on the way once the data goes to a
file (never read back), for in-memory data only when asked (:meth:`DatasetSpool.sha256`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from io import BytesIO
from pathlib import Path
from typing import IO

#: Suffix of every temporary file the listener writes (removed at start-up if left by a crash).
TEMP_SUFFIX = ".tmp"


class DatasetSpool:
    """Part-10 bytes of one instance being received (see module doc; sizes in bytes).

    ``prefix``: preamble, ``DICM`` and file meta group; ``spool_dir`` is created if missing;
    ``max_bytes`` counts the bytes after the prefix.
    """

    def __init__(self, prefix: bytes, spool_dir: Path, *, memory_limit: int, max_bytes: int) -> None:
        self.prefix_length = len(prefix)
        self._spool_dir = spool_dir
        self._memory_limit = memory_limit
        self._max_bytes = max_bytes
        self._chunks: list[bytes] = [prefix]
        self._hash: hashlib._Hash | None = None  # incremental, once the data is in a file
        self._file: IO[bytes] | None = None
        self.path: Path | None = None
        self.dataset_bytes = 0
        self.overflowed = False

    @property
    def in_memory(self) -> bool:
        """True while the data is held in memory (no temporary file)."""
        return self._file is None

    @property
    def size(self) -> int:
        """Part-10 size in bytes (prefix + data set) received so far."""
        return self.prefix_length + self.dataset_bytes

    def append(self, data: bytes | memoryview) -> None:
        """Add a fragment; past ``max_bytes`` the data is dropped and :attr:`overflowed` set.

        Raises:
            OSError: the temporary file cannot be written (the spool is discarded).
        """
        self.dataset_bytes += len(data)
        if self.dataset_bytes > self._max_bytes and not self.overflowed:
            self.discard()
            self.overflowed = True
        if self.overflowed:
            return
        if self._file is None and self.size <= self._memory_limit:
            self._chunks.append(bytes(data))
            return
        try:
            if self._file is None:
                self._spill()
            assert self._file is not None and self._hash is not None
            self._hash.update(data)
            self._file.write(data)
        except OSError:
            self.discard()
            raise

    def _spill(self) -> None:
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        self.path = self._spool_dir / f"{uuid.uuid4().hex}{TEMP_SUFFIX}"
        self._file = open(self.path, "xb")
        self._hash = hashlib.sha256()
        for chunk in self._chunks:
            self._hash.update(chunk)
            self._file.write(chunk)
        self._chunks = []

    def sha256(self) -> str:
        """Hex SHA-256 of the Part-10 bytes received (valid unless :attr:`overflowed`)."""
        if self._hash is not None:
            return self._hash.hexdigest()
        return hashlib.sha256(self.getvalue()).hexdigest()

    def getvalue(self) -> bytes:
        """All Part-10 bytes (in-memory spools only)."""
        if self._file is not None:
            raise ValueError("spool is on disk; use open_body()")
        data = b"".join(self._chunks)
        self._chunks = [data]
        return data

    def open_body(self) -> IO[bytes]:
        """A binary stream positioned at the start of the data set (after the prefix)."""
        if self._file is None:
            stream: IO[bytes] = BytesIO(self.getvalue())
        else:
            self._file.flush()
            stream = open(self._file.name, "rb")
        stream.seek(self.prefix_length)
        return stream

    def finish_file(self, fsync: bool) -> Path:
        """Close the temporary file (fsync first when asked) and return its path (disk spools only)."""
        if self._file is None or self.path is None:
            raise ValueError("spool is in memory")
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        path, self.path = self.path, None
        return path

    def discard(self) -> None:
        """Drop the data (and delete the temporary file, if any)."""
        self._chunks = []
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.path = None
