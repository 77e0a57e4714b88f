"""Progress reporting hook shared by the generators (the CLI plugs a rich progress bar into it)."""

from __future__ import annotations

from collections.abc import Callable

#: Called after each DICOM file is written with ``(files_done, files_total)`` of the current job.
ProgressCallback = Callable[[int, int], None]


def report(progress: ProgressCallback | None, done: int, total: int) -> None:
    """Forward ``(done, total)`` to ``progress`` when one is given."""
    if progress is not None:
        progress(done, total)
