"""What an agent's view is built from — its apps, scripts, log sources and
metadata definitions — read together and cached per agent revision.

Every agent call reads the agent row anyway; when its ``revision`` matches
the cached one the children are reused instead of re-read (four queries
saved on the hottest read path). Writers keep this honest by calling
``agents.bump_revision`` in the same transaction as their write, so readers
on every replica see the new revision and reload.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from server.storage import apps as app_store
from server.storage import logs as log_store
from server.storage import metadata as metadata_store
from server.storage import scripts as script_store

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class AgentChildren:
    apps: tuple[Any, ...]
    scripts: tuple[Any, ...]
    log_sources: tuple[Any, ...]
    metadata: tuple[Any, ...]


def load_agent_children(conn: sa.Connection, *, agent_id: uuid.UUID) -> AgentChildren:
    return AgentChildren(
        apps=tuple(app_store.list_apps_by_agent_ids(conn, agent_ids=[agent_id])),
        scripts=tuple(script_store.list_scripts_by_agent_id(conn, agent_id=agent_id)),
        log_sources=tuple(log_store.list_log_sources_by_agent_ids(conn, agent_ids=[agent_id])),
        metadata=tuple(metadata_store.list_metadata_by_agent_id(conn, agent_id=agent_id)),
    )


class AgentViewCache:
    """Bounded LRU of AgentChildren keyed by agent id, valid for one revision,
    plus values derived from them (e.g. the protobuf messages built from the
    apps), memoised with the same lifetime."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[uuid.UUID, _Entry] = OrderedDict()

    def _entry(self, conn: sa.Connection, agent: Any) -> _Entry:
        with self._lock:
            hit = self._entries.get(agent.id)
            if hit is not None and hit.revision == agent.revision:
                self._entries.move_to_end(agent.id)
                return hit
        entry = _Entry(agent.revision, load_agent_children(conn, agent_id=agent.id))
        with self._lock:
            self._entries[agent.id] = entry
            self._entries.move_to_end(agent.id)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return entry

    def children(self, conn: sa.Connection, agent: Any) -> AgentChildren:
        return self._entry(conn, agent).children

    def derived(
        self, conn: sa.Connection, agent: Any, name: str, build: Callable[[AgentChildren], T]
    ) -> T:
        """build(children), computed once per agent revision."""
        entry = self._entry(conn, agent)
        try:
            return entry.derived[name]
        except KeyError:
            value = entry.derived[name] = build(entry.children)
            return value


@dataclasses.dataclass
class _Entry:
    revision: int
    children: AgentChildren
    derived: dict[str, Any] = dataclasses.field(default_factory=dict)
