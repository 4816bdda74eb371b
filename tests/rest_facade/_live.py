"""The facade on its real HTTP front (port 0) against the live core, for
clients that hold a connection open: long polls, Server-Sent Events and
WebSockets need real sockets, not the Flask test client."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from rest_facade.serve import running_front
from server.config import Settings


@contextlib.contextmanager
def live_facade(settings: Settings, core_address: str) -> Iterator[str]:
    """Yields the facade's base URL (``http://127.0.0.1:<port>``)."""
    with running_front(settings, core_address) as front:
        yield front.url


def wait_until(condition: Callable[[], bool], *, timeout: float = 10.0, what: str = "") -> None:
    """Polls a condition until it holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.01)
