"""A cap on long-lived requests: log follows (WebSocket or SSE), reinit
streams and external-auth long-polls each hold one of the facade's threads
for as long as they are open. Without a cap a few clients could take every
thread and stop the API answering anyone; above it the facade answers 503 in
Coder's envelope and keeps a reserve of threads for ordinary requests."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from flask import Response, abort, current_app

from rest_facade.errors import error_response

EXTENSION = "agentplane.streams"


class StreamSlots:
    def __init__(self, facade_threads: int) -> None:
        reserve = min(16, max(1, facade_threads // 4))
        self.limit = max(1, facade_threads - reserve)
        self._slots = threading.BoundedSemaphore(self.limit)

    def acquire(self) -> None:
        """Takes a slot or aborts the request with 503."""
        if not self._slots.acquire(blocking=False):
            abort(
                error_response(
                    503,
                    "Too many open streams.",
                    detail=f"This server holds at most {self.limit} streaming requests; "
                    "try again later.",
                )
            )

    def release(self) -> None:
        self._slots.release()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def release_when_closed(self, response: Response) -> Response:
        """For streamed responses: the slot is freed when the server closes
        the response, whether or not the body was ever read."""
        response.call_on_close(self.release)
        return response


def stream_slots() -> StreamSlots:
    return current_app.extensions[EXTENSION]
