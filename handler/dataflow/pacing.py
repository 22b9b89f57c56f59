"""A client-side rate limit: one token bucket per container, shared by every request it sends."""

from __future__ import annotations

import threading

from handler.clocks import Clocks
from handler.errors import RequestError


class RateLimit:
    """At most `rate` requests a second from this container, submissions and lookups together.

    Each request takes a token; a request that finds none reserves the next and sleeps until it is
    due, so concurrent workers are spaced evenly rather than retried. The bucket holds one token:
    no burst above the rate, which a gateway's own bucket would answer with 429. It lives as long as
    the warm container, so consecutive invocations share it too.
    """

    def __init__(self, rate: float, clocks: Clocks) -> None:
        self.rate = rate
        self.clocks = clocks
        self._lock = threading.Lock()
        self._tokens = 1.0
        self._at = clocks.monotonic()

    def wait(self, deadline: float | None) -> None:
        """Waits for this request's turn; raises (nothing sent, retryable) when it would come past `deadline`."""
        with self._lock:
            now = self.clocks.monotonic()
            self._tokens = min(1.0, self._tokens + (now - self._at) * self.rate)
            self._at = now
            delay = max(0.0, (1.0 - self._tokens) / self.rate)
            if deadline is not None and now + delay > deadline:
                raise RequestError(
                    "rate-limit",
                    f"DATAFLOW_RATE_LIMIT ({self.rate:g}/s) leaves no turn for this request before the deadline",
                    kind="retryable",
                )
            self._tokens -= 1.0
        if delay > 0:
            self.clocks.sleep(delay)
