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


class Tunnelled:
    """What urllib3 puts on a connection through an HTTPS proxy: an SSLTransport, with no shutdown()."""

    def __init__(self, inner: object) -> None:
        self.socket = inner


class Connection:
    def __init__(self, sock: object) -> None:
        self.sock = sock


def test_a_tunnelled_connection_is_cut_at_its_os_socket() -> None:
    import socket

    left, right = socket.socketpair()
    with left, right:
        watch = AttemptWatch()
        watch.connection = Connection(Tunnelled(left))  # type: ignore[assignment]
        watch.cut()
        assert left.recv(1) == b""  # shut down: a blocked recv() in another thread would wake now


class Flagged(AttemptWatch):
    """Tells the test when the watchdog cut it off; `explode` makes the cut fail as SSLTransport's did."""

    def __init__(self, explode: bool = False) -> None:
        super().__init__()
        self.explode = explode
        self.done = threading.Event()

    def cut(self) -> None:
        self.cut_off = True
        self.done.set()
        if self.explode:
            raise AttributeError("'SSLTransport' object has no attribute 'shutdown'")


def test_a_connection_that_cannot_be_cut_leaves_the_watchdog_running() -> None:
    dog = Watchdog()
    broken, later = Flagged(explode=True), Flagged()
    dog._arm(broken, time.monotonic())  # due at once
    assert broken.done.wait(10)
    dog._arm(later, time.monotonic())  # the next attempt of the warm container, due at once too
    assert later.done.wait(10)
    assert dog._thread is not None and dog._thread.is_alive()
