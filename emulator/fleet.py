"""A fleet of warm containers: each a process of its own with a warm Launcher, as the platforms run them."""

from __future__ import annotations

import logging
import multiprocessing
import time
from dataclasses import dataclass
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
    from handler.results import counts

    while (message := conn.recv()) is not None:
        event, now[0] = message
        started, cpu = time.monotonic(), time.process_time()
        report = launcher.invoke(event, config, platform="aws", remaining_ms=30_000)
        unproven = counts(report.outcomes)["unverifiable"]
        spent = Served(report.keep, report.result, time.monotonic() - started, time.process_time() - cpu, unproven)
        conn.send(spent)


@dataclass(frozen=True)
class Served:
    """What one invocation of a container returned, and what it cost."""

    raised: bool  # the platform keeps the event
    result: Any  # the contract's result, as the handler returned it
    seconds: float  # its wall time
    cpu_seconds: float  # the container process's CPU time (every thread) while it ran
    unproven: int  # submissions whose duplicate check could not prove the run absent


class Container:
    """A container process; `invoke` sends it one event and waits for what the invocation returned."""

    def __init__(self, config: dict[str, str], *, virtual: bool = True) -> None:
        self.conn, child = CONTEXT.Pipe()
        self.process = CONTEXT.Process(target=_serve, args=(child, config, virtual), daemon=True)
        self.process.start()

    def invoke(self, event: Any, wall: float = 0.0) -> Served:
        self.conn.send((event, wall))
        answer: Served = self.conn.recv()
        return answer

    def stop(self) -> None:
        self.conn.send(None)
        self.process.join(10)
