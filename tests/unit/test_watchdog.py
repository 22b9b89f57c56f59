"""The attempt watchdog wakes only when a new deadline is earlier than the one it waits for."""

from __future__ import annotations

import threading
import time

from handler.dataflow.transport import AttemptWatch, Watchdog


class CountingCondition(threading.Condition):
    """Counts notifications, and tells the test each time the watchdog goes to wait."""

    def __init__(self) -> None:
        super().__init__()
        self.notified = 0
        self.waiting = threading.Event()

    def notify(self, n: int = 1) -> None:
        self.notified += 1
        super().notify(n)

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.set()
        return super().wait(timeout)


def settled(condition: CountingCondition) -> None:
    # Waits (on an event, no sleeping) until the watchdog thread waits again after a change.
    condition.waiting.clear()
    with condition:
        condition.notify()
    assert condition.waiting.wait(10)


def test_a_later_deadline_does_not_wake_the_watchdog_thread() -> None:
    # Waking it costs a thread switch on every warm call (a quarter of a millisecond on 3.13).
    dog = Watchdog()
    condition = CountingCondition()
    dog._changed = condition  # the one seam that shows the wake-ups
    now = time.monotonic()
    dog._arm(AttemptWatch(), now + 600)
    assert condition.notified == 1
    settled(condition)
    condition.notified = 0
    dog._arm(AttemptWatch(), now + 900)
    assert condition.notified == 0
    dog._arm(AttemptWatch(), now + 300)
    assert condition.notified == 1
