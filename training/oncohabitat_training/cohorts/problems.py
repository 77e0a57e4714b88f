"""Cohort-file problems: each names its row, its column and (when known) the patient id.

Rows are numbered as a person reads the file: for a CSV table the line number (the header is row 1, the first
patient row 2); for a YAML cohort the patient entry's position in ``patients`` (1 = first). ``row`` 0 and
column ``""`` mean the whole file (unreadable file, bad declarations).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CohortProblem:
    """One problem of a cohort file."""

    row: int
    column: str
    patient_id: str | None
    message: str

    def __str__(self) -> str:
        where = "file" if self.row == 0 else f"row {self.row}"
        if self.column:
            where += f", column {self.column}"
        if self.patient_id:
            where += f" (patient {self.patient_id})"
        return f"{where}: {self.message}"


class CohortFileError(Exception):
    """A cohort file with problems; ``problems`` lists every one (row order)."""

    def __init__(self, problems: Sequence[CohortProblem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.row, p.column)))
        count = len(self.problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"the cohort file has {count} problem{'s' if count != 1 else ''}:\n{lines}")
