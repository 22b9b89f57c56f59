"""Time sources, injectable so that tests never sleep: wall clock, monotonic clock, sleeper, jitter."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Final

from handler.records import Record


class Clocks(Record):
    """Wall clock for signing and event times, monotonic for deadlines, and the sleeper of backoffs."""

    __slots__ = ("wall", "monotonic", "sleep", "jitter")

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.wall: Final = wall
        self.monotonic: Final = monotonic
        self.sleep: Final = sleep
        self.jitter: Final = jitter
