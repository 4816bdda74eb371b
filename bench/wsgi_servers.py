"""The facade's HTTP front against the WSGI servers it could have been: the
same bare Flask handler on each, measured in one run. The front reads whole
requests on an event loop before a thread runs the view, so slow or idle
clients hold no thread; gunicorn's gthread worker (the facade's server
before) is the production server to beat; werkzeug and waitress are for
reference (neither is for this: werkzeug's server is a development server,
waitress cannot upgrade connections)."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.harness import ROOT, free_port, http_getter, report, run_for, wait_http

SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))

RUNNERS = {
    "agentplane front (asyncio + h11, Flask on 64 threads)": "front",
    "gunicorn gthread (WebSockets: yes)": "gunicorn_gthread",
    "gunicorn sync (WebSockets: 1 per worker)": "gunicorn_sync",
    "werkzeug threaded dev server (WebSockets: yes, not for production)": "werkzeug",
    "waitress (WebSockets: no)": "waitress",
}

SERVE = r"""
import sys
from bench.bare_flask import create_bare_app
kind, addr = sys.argv[1], sys.argv[2]
app = create_bare_app(2000)
host, port = addr.rsplit(":", 1)
if kind == "front":
    from rest_facade.serve import serve_wsgi
    serve_wsgi(app, addr)
elif kind.startswith("gunicorn"):
    from gunicorn.app.base import BaseApplication
    class G(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", addr)
            self.cfg.set("worker_class", "gthread" if kind == "gunicorn_gthread" else "sync")
            self.cfg.set("threads", 64 if kind == "gunicorn_gthread" else 1)
            self.cfg.set("workers", 1)
            self.cfg.set("loglevel", "warning")
        def load(self):
            return app
    G().run()
elif kind == "werkzeug":
    from werkzeug.serving import run_simple
    run_simple(host, int(port), app, threaded=True)
else:
    import waitress
    waitress.serve(app, host=host, port=int(port), threads=8, _quiet=True)
"""


def main() -> None:
    rows = []
    for label, kind in RUNNERS.items():
        addr = f"127.0.0.1:{free_port()}"
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, kind, addr],
            cwd=ROOT,
            stderr=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_http(f"http://{addr}/healthz")
            rows.append((label, run_for(SECONDS, 4, http_getter(addr, "/bare", {}))))
        finally:
            proc.terminate()
            proc.wait(10)
    report(
        "Bare Flask handler on each WSGI server (4 keep-alive clients)",
        rows,
        "agentplane front (asyncio + h11, Flask on 64 threads)",
    )


if __name__ == "__main__":
    main()
