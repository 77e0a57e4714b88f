"""Adaptive polling before sleeping: a short wait costs no CPU wake-up, a long one no CPU.

A thread that sleeps (a blocking receive, a wait for an I/O completion) leaves its CPU idle, and
waking an idle CPU costs tens of microseconds where the kernel does not poll first (virtual
machines: here ``guest_halt_poll_ns`` is 0). :class:`AdaptivePoll` first polls for up to its window,
then sleeps. Like the kernel's halt polling it adapts: after a wait longer than the window it sleeps
at once the next time, until a wait is shorter than the window again, so a slow or idle source of
events costs no CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: The listener's default polling window, s (``SPIN_US``): a pushing peer's next C-STORE, or a
#: journal write and its flush, usually arrive within it (see ARCHITECTURE.md, Wake-ups).
DEFAULT_POLL_WINDOW_S = 300e-6


class AdaptivePoll:
    """Poll for up to ``window_s`` seconds before sleeping, while waits stay shorter than that.

    One instance per stream of waits (one socket, one pool of writes); not thread-safe beyond
    harmless races on its one flag.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.polling = window_s > 0

    def wait(self, poll: Callable[[], T | None], sleep: Callable[[], T]) -> T:
        """The result of ``poll()`` once it is not None (polling at most the window), else of ``sleep()``.

        ``poll`` must not block; ``sleep`` blocks until the result is there.
        """
        if self.polling:
            deadline = time.perf_counter() + self.window_s
            while True:
                result = poll()
                if result is not None:
                    return result
                if time.perf_counter() >= deadline:
                    break
            self.polling = False  # a longer wait: sleep at once next time
            return sleep()
        if self.window_s <= 0:
            return sleep()
        started = time.perf_counter()
        result = sleep()
        self.polling = time.perf_counter() - started < self.window_s
        return result
