"""A settable UTC clock for stores and runners that take an injectable ``clock``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class FakeClock:
    """Settable UTC clock, starting at 2024-05-01T12:00:00Z."""

    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += timedelta(seconds=seconds)
