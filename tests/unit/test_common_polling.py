"""AdaptivePoll: poll before sleeping while waits are short; sleep at once after a long one."""

from __future__ import annotations

import time

from oncohabitat.common.polling import AdaptivePoll


class Source:
    """Events that are there after ``ready_after`` polls; records whether the waiter slept."""

    def __init__(self, ready_after: int, sleep_s: float = 0.0) -> None:
        self.ready_after = ready_after
        self.sleep_s = sleep_s
        self.polls = 0
        self.slept = False

    def poll(self) -> str | None:
        self.polls += 1
        return "polled" if self.polls > self.ready_after else None

    def sleep(self) -> str:
        self.slept = True
        time.sleep(self.sleep_s)
        return "slept"


def test_a_quick_event_is_polled_for_and_a_late_one_is_slept_for_then_slept_for_at_once() -> None:
    polling = AdaptivePoll(0.05)
    quick = Source(ready_after=3)
    assert polling.wait(quick.poll, quick.sleep) == "polled" and not quick.slept
    late = Source(ready_after=10**9)
    started = time.perf_counter()
    assert polling.wait(late.poll, late.sleep) == "slept" and late.slept
    assert time.perf_counter() - started >= 0.05  # polled for the whole window first
    after_long = Source(ready_after=0, sleep_s=0.1)  # there at once, but the waiter does not look
    assert polling.wait(after_long.poll, after_long.sleep) == "slept" and after_long.polls == 0
    assert polling.polling is False  # that sleep was longer than the window
    short = Source(ready_after=0)
    assert polling.wait(short.poll, short.sleep) == "slept" and short.polls == 0
    assert polling.polling is True  # a short wait: poll again next time
    again = Source(ready_after=0)
    assert polling.wait(again.poll, again.sleep) == "polled" and not again.slept


def test_a_zero_window_never_polls() -> None:
    polling = AdaptivePoll(0.0)
    source = Source(ready_after=0)
    for _ in range(3):
        assert polling.wait(source.poll, source.sleep) == "slept"
    assert source.polls == 0
