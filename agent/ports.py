"""Listening ports, as Coder's agent lists them (``agent/ports_supported.go``):
the TCP and TCP6 sockets in LISTEN state from /proc/net, with the name of the
process owning each (when this user may see it), one entry per port, cached
for a second. Filtering what users see is the server's job.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from agentplane.agenttunnel.v1 import agent_tunnel_pb2 as tpb

CACHE_SECONDS = 1.0
_LISTEN = "0A"


def _listening_sockets(proc: Path) -> list[tuple[int, str]]:
    """(port, socket inode) of LISTEN sockets in /proc/net/tcp and tcp6."""
    found = []
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            try:
                port = int(fields[1].rpartition(":")[2], 16)
            except ValueError:
                continue
            found.append((port, fields[9]))
    return found


def _process_names(proc: Path, inodes: set[str]) -> dict[str, str]:
    """Socket inode -> the name of a process holding it."""
    names: dict[str, str] = {}
    if not inodes:
        return names
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = os.listdir(pid_dir / "fd")
        except OSError:
            continue  # gone, or not ours to read
        for fd in fds:
            try:
                target = os.readlink(pid_dir / "fd" / fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                inode = target[8:-1]
                if inode not in names:
                    try:
                        names[inode] = (pid_dir / "comm").read_text().strip()
                    except OSError:
                        names[inode] = ""
        if len(names) == len(inodes):
            break
    return names


class ListeningPorts:
    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._proc = proc
        self._cached: list[tpb.ListeningPort] = []
        self._at = -CACHE_SECONDS

    def list(self) -> list[tpb.ListeningPort]:
        """Blocking (reads /proc); run it on a worker thread."""
        now = time.monotonic()
        if now - self._at < CACHE_SECONDS:
            return list(self._cached)
        sockets = _listening_sockets(self._proc)
        names = _process_names(self._proc, {inode for _, inode in sockets if inode != "0"})
        seen: set[int] = set()
        ports = []
        for port, inode in sorted(sockets):
            if port in seen:
                continue
            seen.add(port)
            ports.append(
                tpb.ListeningPort(process_name=names.get(inode, ""), network="tcp", port=port)
            )
        self._cached, self._at = ports, now
        return list(ports)
