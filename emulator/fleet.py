"""A fleet of warm containers: each a process of its own with a warm Launcher, as the platforms run them."""

from __future__ import annotations

import logging
import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

# A fork server starts each container from a clean process that has the handler imported already,
# so a cold container costs milliseconds; forking a process that runs emulator threads is unsafe.
CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["handler.launcher", "emulator.fleet"])


def _serve(conn: Connection, config: dict[str, str], virtual: bool) -> None:
    """One container: its own warm Launcher, serving invocations until told to stop.

    With `virtual`, the wall clock is the one each invocation brings and nothing sleeps (the soak);
    otherwise the container runs on real time (the burst simulation, whose rate limit really waits).
    """
    from handler.clocks import Clocks
    from handler.launcher import Launcher
    from handler.wiring import Wiring

    logging.getLogger("handler").setLevel(logging.CRITICAL)
    now = [0.0]
    clocks = Clocks(wall=lambda: now[0], sleep=lambda _: None) if virtual else Clocks()
    launcher = Launcher(Wiring(clocks))
    while (message := conn.recv()) is not None:
        event, now[0] = message
        started = time.monotonic()
        report = launcher.invoke(event, config, platform="aws", remaining_ms=30_000)
        conn.send((report.keep, report.result, time.monotonic() - started))


class Container:
    """A container process; `invoke` sends it one event and waits for what the invocation returned."""

    def __init__(self, config: dict[str, str], *, virtual: bool = True) -> None:
        self.conn, child = CONTEXT.Pipe()
        self.process = CONTEXT.Process(target=_serve, args=(child, config, virtual), daemon=True)
        self.process.start()

    def invoke(self, event: Any, wall: float = 0.0) -> tuple[bool, dict[str, Any], float]:
        """(raised: the platform keeps the event, the result, the invocation's seconds)."""
        self.conn.send((event, wall))
        answer: tuple[bool, dict[str, Any], float] = self.conn.recv()
        return answer

    def stop(self) -> None:
        self.conn.send(None)
        self.process.join(10)
