"""ListListeningPorts: the TCP ports listening inside the workspace, as a user
may forward them (REST ``GET /workspaceagents/{id}/listening-ports``).

The agent lists every LISTEN socket; the core drops what Coder drops
(``coderd/workspaceagents.go``): ports below 9, the ports of the agent's own
apps (an explicit port in an app's URL) and Coder's ignored ports.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from typing import Any

from agentplane.agenttunnel.v1 import agent_conn_pb2 as cpb
from agentplane.agenttunnel.v1 import agent_tunnel_pb2 as tpb

from server.storage.db import Database
from server.tunnel.dialer import AgentDialer, Operation

# codersdk.WorkspaceAgentMinimumListeningPort
MINIMUM_LISTENING_PORT = 9
# codersdk.WorkspaceAgentIgnoredListeningPorts: common non-HTTP services.
IGNORED_LISTENING_PORTS = frozenset(
    (
        *range(0, 9),
        20, 21, 22, 23, 25, 53, 110, 143, 179, 389, 465, 587, 636,
        989, 990, 993, 995, 3306, 3389, 5432, 27017, 27018, 27019, 28017,
    )
)  # fmt: skip


def app_ports(urls: Iterable[str]) -> set[int]:
    """Ports named explicitly in app URLs (Coder skips URLs it cannot parse
    and ports outside 1..65535)."""
    ports = set()
    for url in urls:
        if not url:
            continue
        try:
            port = urllib.parse.urlsplit(url).port
        except ValueError:
            continue
        if port is not None and 1 <= port <= 65535:
            ports.add(port)
    return ports


def visible_ports(ports: Iterable[Any], hidden: set[int]) -> list[Any]:
    return [
        p
        for p in ports
        if p.port >= MINIMUM_LISTENING_PORT
        and p.port not in hidden
        and p.port not in IGNORED_LISTENING_PORTS
    ]


async def list_listening_ports(
    db: Database, dialer: AgentDialer, *, user: Any, agent_id_text: str
) -> cpb.ListListeningPortsResponse:
    conn = dialer.dial(user=user, agent_id_text=agent_id_text)
    answer = await conn.call(
        Operation.LISTENING_PORTS, list_listening_ports=tpb.ListListeningPortsCall()
    )
    with db.read() as read:
        apps = db.agent_views.children(read, conn.found.agent).apps
    hidden = app_ports(app.url for app in apps)
    return cpb.ListListeningPortsResponse(ports=visible_ports(answer.listening_ports.ports, hidden))
