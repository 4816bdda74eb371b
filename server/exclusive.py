"""What one ``agentplane server`` holds for its whole life, so that a second
one fails at once, with one line, instead of half-working beside it:

* its data directory: an exclusive ``flock`` on ``<data-dir>/server.lock``
  (the second server would otherwise replace ``core.sock`` and delete it on
  exit);
* its listening addresses: the REST socket is bound here, by the supervisor,
  with SO_REUSEADDR and never SO_REUSEPORT, and handed to the facade process
  as an inherited descriptor; the gRPC address is probed the same way before
  the core binds it (gRPC sets SO_REUSEPORT by default, so a second server
  silently shared the port and half the calls reached the wrong one).

Failures are ``InUse`` with the sentence to print.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from pathlib import Path
from typing import IO

LOCK_FILE = "server.lock"
# The facade process finds its listening socket in this environment variable.
FACADE_LISTEN_FD_ENV = "AGENTPLANE_FACADE_LISTEN_FD"
LISTEN_BACKLOG = 1024


class InUse(RuntimeError):
    """Something this server must hold is held by another process, or cannot
    be had; the text says which and what to do."""


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Takes the data directory for this process (created if missing). The
    returned file holds the lock until it is closed or the process ends."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(data_dir / LOCK_FILE, "a+")  # noqa: SIM115 (held for the process's life)
    except OSError as err:
        raise InUse(f"cannot use the data directory {data_dir}: {err.strerror}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise InUse(
            f"the data directory {data_dir} is in use by another agentplane server{who}; "
            "stop it, or give this one another --data-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _addresses(address: str) -> list[tuple[int, tuple]]:  # type: ignore[type-arg]
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(
            host or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, ValueError) as err:
        raise InUse(f"cannot listen on {address}: {err}") from None
    seen: list[tuple[int, tuple]] = []  # type: ignore[type-arg]
    for family, _type, _proto, _name, sockaddr in infos:
        if (family, sockaddr) not in seen:
            seen.append((family, sockaddr))
    return seen


def _bind(family: int, sockaddr: tuple, address: str, what: str) -> socket.socket:  # type: ignore[type-arg]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # REUSEADDR lets a restarted server bind while old connections linger
        # in TIME_WAIT; it never lets two listeners share the port (Linux).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise InUse(
                f"cannot listen on {address} ({what}): the address is already in use "
                "(another agentplane server?)"
            ) from None
        raise InUse(f"cannot listen on {address} ({what}): {err.strerror}") from None
    return sock


def bind_listener(address: str, what: str) -> socket.socket:
    """A listening socket on ``address`` (HOST:PORT, the first address it
    resolves to), inheritable so a child process can serve it."""
    family, sockaddr = _addresses(address)[0]
    sock = _bind(family, sockaddr, address, what)
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


def ensure_free(address: str, what: str) -> None:
    """``InUse`` when another process listens on ``address`` (on any address
    it resolves to): checked by binding, then released for the real owner."""
    for family, sockaddr in _addresses(address):
        with contextlib.closing(_bind(family, sockaddr, address, what)):
            pass


def listen_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
