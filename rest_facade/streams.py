"""A cap on long-lived requests: log follows (WebSocket or SSE), reinit
streams and external-auth long-polls each hold one of the facade's threads
for as long as they are open. Without a cap a few clients could take every
thread and stop the API answering anyone; above it the facade answers 503 in
Coder's envelope and keeps a reserve of threads for ordinary requests. One
session (token) may hold at most half of the slots, so a single client —
buggy or hostile — cannot take them all from everyone else (429 past it)."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator

from flask import Response, abort, current_app

from rest_facade.errors import error_response
from rest_facade.parse import session_token

EXTENSION = "agentplane.streams"


class StreamSlots:
    def __init__(self, facade_threads: int) -> None:
        reserve = min(16, max(1, facade_threads // 4))
        self.limit = max(1, facade_threads - reserve)
        self.per_session = max(1, self.limit // 2)
        self._slots = threading.BoundedSemaphore(self.limit)
        self._lock = threading.Lock()
        self._by_session: dict[str, int] = {}

    def acquire(self) -> Callable[[], None]:
        """Takes a slot for the current request's session, or aborts it (503
        when the server is full, 429 when this session holds its share).
        Returns the function that gives the slot back (call it once)."""
        token = session_token() or ""
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            held = self._by_session.get(key, 0)
            if held >= self.per_session:
                abort(
                    error_response(
                        429,
                        "Too many open streams for this session.",
                        detail=f"One session holds at most {self.per_session} streaming "
                        "requests at a time; close one first.",
                    )
                )
            self._by_session[key] = held + 1
        if not self._slots.acquire(blocking=False):
            self._forget(key)
            abort(
                error_response(
                    503,
                    "Too many open streams.",
                    detail=f"This server holds at most {self.limit} streaming requests; "
                    "try again later.",
                )
            )
        once = threading.Lock()

        def release() -> None:
            # Exactly once, whoever calls first (end of stream, response close).
            if not once.acquire(blocking=False):
                return
            self._slots.release()
            self._forget(key)

        return release

    def _forget(self, key: str) -> None:
        with self._lock:
            left = self._by_session.get(key, 1) - 1
            if left > 0:
                self._by_session[key] = left
            else:
                self._by_session.pop(key, None)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        release = self.acquire()
        try:
            yield
        finally:
            release()

    def streamed(self, build: Callable[[Callable[[], None]], Response]) -> Response:
        """A streamed response holding a slot: ``build(release)`` makes it
        (and may give the slot back earlier itself, e.g. when a hijacked
        WebSocket ends). The slot is freed when the server closes the
        response, whether or not the body was ever read, or at once if
        building it fails."""
        release = self.acquire()
        try:
            response = build(release)
        except BaseException:
            release()
            raise
        response.call_on_close(release)
        return response


def stream_slots() -> StreamSlots:
    return current_app.extensions[EXTENSION]
