"""Runs the facade under gunicorn's threaded worker (``python -m rest_facade.serve``).

Gunicorn's gthread worker is a production server that also carries
WebSockets (flask-sock hijacks the socket); see the README for the
measurement behind the choice. Settings come from AGENTPLANE_* like the core.

Under ``agentplane server`` the facade never binds: the supervisor binds the
REST address (so a taken port fails the server before it says it is ready)
and passes the listening socket down as an inherited descriptor, named in
``AGENTPLANE_FACADE_LISTEN_FD``; gunicorn serves it as ``fd://N``.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.app.base import BaseApplication

from server.config import Settings, load_settings


class FacadeServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Built in the worker, after the fork, so each process opens its own
        # gRPC channel (gRPC does not survive fork).
        from rest_facade import create_app

        return create_app(self._settings)


# Set by the supervisor (server/exclusive.py FACADE_LISTEN_FD_ENV).
LISTEN_FD_ENV = "AGENTPLANE_FACADE_LISTEN_FD"


def gunicorn_options(settings: Settings, listen_fd: int | None = None) -> dict[str, Any]:
    return {
        "bind": f"fd://{listen_fd}" if listen_fd is not None else settings.http_address,
        "worker_class": "gthread",
        "workers": 1,
        "threads": settings.facade_threads,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
    }


def main() -> None:
    settings = load_settings()
    raw_fd = os.environ.get(LISTEN_FD_ENV)
    listen_fd = int(raw_fd) if raw_fd else None
    FacadeServer(settings, gunicorn_options(settings, listen_fd)).run()


if __name__ == "__main__":
    main()
