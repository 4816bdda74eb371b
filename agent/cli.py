"""``agentplane agent``: runs the reference agent (``agent/agent.py``).

Flags and their environment twins (Coder's agent reads the same
``CODER_AGENT_*`` variables):

* ``--url HOST:PORT[,HOST:PORT...]`` / ``CODER_AGENT_URL``: the core's gRPC
  address; several are tried in turn when one cannot be reached;
* ``--token`` / ``CODER_AGENT_TOKEN``: the agent token;
* ``--pty-idle-timeout`` / ``CODER_AGENT_PTY_IDLE_TIMEOUT``: how long a
  terminal lives with no client (``5m``; ``90s``, ``1h``, plain seconds);
* ``--log-dir`` / ``CODER_AGENT_LOG_DIR``: where script log files go;
* ``CODER_AGENT_SUBSYSTEM``: comma-separated subsystems (envbox, envbuilder,
  exectrace) reported in ``UpdateStartup``.

Exit status: 0 after a shutdown on SIGTERM/SIGINT; 1 when the server refuses
the token (one line on stderr says so); 2 for bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Go-style durations (``5m``, ``1h30m``, ``90s``) or plain seconds."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"not a duration like 5m, 90s or 300: {text!r}") from None
        value = sum(float(n) * _UNIT[u] for n, u in parts)
    if value <= 0:
        raise ValueError(f"must be positive: {text!r}")
    return value


def add_agent_parser(sub: Any) -> None:
    """Registers ``agentplane agent`` on the top-level subparsers."""
    p = sub.add_parser("agent", help="run the reference workspace agent")
    p.add_argument(
        "--url", default=None, help="core gRPC address(es) HOST:PORT[,...] (CODER_AGENT_URL)"
    )
    p.add_argument("--token", default=None, help="the agent token (CODER_AGENT_TOKEN)")
    p.add_argument(
        "--pty-idle-timeout",
        default=None,
        help="close a terminal with no client after this long (5m; CODER_AGENT_PTY_IDLE_TIMEOUT)",
    )
    p.add_argument("--log-dir", default=None, help="script log files (CODER_AGENT_LOG_DIR)")
    p.add_argument("--verbose", action="store_true", help="log what the agent does on stderr")
    p.set_defaults(func=cmd_agent)


def _fail(message: str, code: int) -> int:
    print(f"agentplane agent: {message}", file=sys.stderr, flush=True)
    return code


def cmd_agent(args: argparse.Namespace) -> int:
    from agent.agent import Agent, install_signal_handlers
    from agent.link import TokenRefused

    urls_text = args.url or os.environ.get("CODER_AGENT_URL", "")
    urls = [u.strip() for u in urls_text.split(",") if u.strip()]
    token = args.token or os.environ.get("CODER_AGENT_TOKEN", "")
    if not urls:
        return _fail("no server address: pass --url HOST:PORT or set CODER_AGENT_URL", 2)
    if not token:
        return _fail("no agent token: pass --token or set CODER_AGENT_TOKEN", 2)
    try:
        idle = parse_duration(
            args.pty_idle_timeout or os.environ.get("CODER_AGENT_PTY_IDLE_TIMEOUT") or "5m"
        )
    except ValueError as err:
        return _fail(f"--pty-idle-timeout: {err}", 2)
    log_dir = args.log_dir or os.environ.get("CODER_AGENT_LOG_DIR")
    subsystems = tuple(
        s.strip().lower()
        for s in os.environ.get("CODER_AGENT_SUBSYSTEM", "").split(",")
        if s.strip()
    )
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def main() -> int:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        agent = Agent(
            urls=urls,
            token=token,
            pty_idle_timeout=idle,
            subsystems=subsystems,
            log_dir=Path(log_dir) if log_dir else None,
        )
        code = await agent.run(stop)
        if isinstance(agent.failure, TokenRefused):
            _fail(
                f"the server refused the agent token ({agent.link.refusal}); "
                "the workspace may have been rebuilt or deleted",
                1,
            )
        elif agent.failure is not None:
            _fail(f"stopped after an unexpected error: {agent.failure!r}", 1)
        return code

    return asyncio.run(main())
