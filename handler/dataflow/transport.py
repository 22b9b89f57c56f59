"""HTTP transport whose every attempt ends at its deadline, however slowly the server answers."""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_local = threading.local()
log = logging.getLogger(__name__)


class AttemptWatch:
    """What one attempt got through (connected, sent) and whether its deadline cut it off."""

    def __init__(self) -> None:
        self.connection: HTTPConnection | None = None  # set once a watched connection takes the request
        self.tcp_connected = False
        self.request_sent = False
        self.cut_off = False

    def cut(self) -> None:
        # Shutting the socket down wakes a recv() blocked in another thread; a socket timeout
        # cannot, because a server that drips one byte at a time resets it with every byte.
        self.cut_off = True
        sock = _raw_socket(getattr(self.connection, "sock", None))
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _raw_socket(sock: object) -> socket.socket | None:
    """The OS socket under any wrapping: through a proxy, urllib3's SSLTransport has no shutdown()."""
    for _ in range(4):
        if sock is None or isinstance(sock, socket.socket):
            return sock
        sock = getattr(sock, "socket", None)
    return None


def _current() -> AttemptWatch | None:
    watch: AttemptWatch | None = getattr(_local, "watch", None)
    return watch


class _WatchedConnection(HTTPConnection):
    """Tells the thread's AttemptWatch which socket to cut and how far the request got."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        watch = _current()
        if watch is not None:
            watch.tcp_connected = True
        return sock

    def connect(self) -> None:
        watch = _current()
        if watch is not None:
            watch.connection = self
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch = _current()
        if watch is not None:
            watch.connection = self
        super().request(*args, **kwargs)
        if watch is not None:
            # Only a request written in full can have run: a server never executes half a request.
            watch.request_sent = True


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class WatchedAdapter(HTTPAdapter):
    """A requests adapter whose connections report to the current thread's AttemptWatch."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # Through an HTTP(S)_PROXY too, or "was it sent?" could not be observed.
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        return manager


class Watchdog:
    """One daemon thread per container that cuts off attempts whose time is up."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._armed: dict[AttemptWatch, float] = {}
        self._thread: threading.Thread | None = None
        # When the thread will next look at the armed attempts: waking it for a later deadline is wasted.
        self._wakes_at = math.inf

    @contextmanager
    def attempt(self, seconds: float) -> Iterator[AttemptWatch]:
        """Watches the requests this thread sends inside the block; cuts them off after `seconds`."""
        watch = AttemptWatch()
        _local.watch = watch
        self._arm(watch, time.monotonic() + max(seconds, 0.0))
        try:
            yield watch
        finally:
            _local.watch = None
            with self._changed:
                self._armed.pop(watch, None)

    def _arm(self, watch: AttemptWatch, at: float) -> None:
        with self._changed:
            self._armed[watch] = at
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="attempt-watchdog", daemon=True)
                self._thread.start()
            if at < self._wakes_at:
                self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._armed:
                    self._wakes_at = math.inf
                    self._changed.wait()
                watch, at = min(self._armed.items(), key=lambda item: item[1])
                delay = at - time.monotonic()
                if delay > 0:
                    self._wakes_at = at
                    self._changed.wait(delay)
                    continue
                del self._armed[watch]
            try:
                watch.cut()
            except Exception:  # one odd socket must never end the cut-offs of the whole container
                log.exception("the attempt watchdog could not cut a connection off")


WATCHDOG = Watchdog()


def watched_session(url: str) -> tuple[requests.Session, dict[str, str]]:
    """A Session whose every attempt the watchdog bounds, and the proxies the environment names for `url`.

    Proxies are resolved once: doing it per send costs a fifth of a call.
    """
    session = requests.Session()
    adapter = WatchedAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session, get_environ_proxies(url)
