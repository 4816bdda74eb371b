"""A real HTTP server for the facade (werkzeug's threaded server on port 0)
against the live core, for clients that hold a connection open: long-polls
and Server-Sent Events need real sockets, not the Flask test client."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from werkzeug.serving import make_server

from rest_facade import create_app
from rest_facade.core import CoreClient
from server.config import Settings


@contextlib.contextmanager
def live_facade(settings: Settings, core_address: str) -> Iterator[str]:
    """Yields the facade's base URL (``http://127.0.0.1:<port>``)."""
    client = CoreClient(core_address)
    app = create_app(settings, client=client)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="facade")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        client.close()


def wait_until(condition: Callable[[], bool], *, timeout: float = 10.0, what: str = "") -> None:
    """Polls a condition until it holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.01)
