"""Storing a user's external auth token (an admin's stand-in for the OAuth
flow agentplane does not run). Serves
``agentplane.admin.v1.AdminService/LinkExternalAuth`` (CLI
``agentplane external-auth link``); agents long-polling for that user's
token wake up when it commits."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

from server.admin.users import resolve_user
from server.clock import Clock
from server.errors import InvalidArgument, NotFound
from server.me.wakeups import Wakeups, external_auth_key
from server.storage import externalauthlinks
from server.storage.db import Database


@dataclasses.dataclass(frozen=True)
class Linked:
    user_id: uuid.UUID
    provider_id: str
    updated_at: dt.datetime


def link_external_auth(
    db: Database,
    clock: Clock,
    wakeups: Wakeups,
    *,
    user_ref: str,
    provider_id: str,
    access_token: str,
    refresh_token: str,
    expires_at: dt.datetime | None,
    token_extra_json: str,
) -> Linked:
    problems = []
    if not access_token:
        problems.append(("access_token", "is required"))
    extra: dict[str, Any] = {}
    if token_extra_json:
        try:
            extra = json.loads(token_extra_json)
        except ValueError:
            extra = None  # type: ignore[assignment]
        if not isinstance(extra, dict):
            problems.append(("token_extra_json", "must be a JSON object"))
    if problems:
        raise InvalidArgument("Validation failed.", validations=problems)
    now = clock.now()
    with db.session() as session:
        user = resolve_user(session, user_ref)
        conn = session.connection()
        if externalauthlinks.get_provider(conn, provider_id=provider_id) is None:
            raise NotFound(
                f"External auth provider {provider_id!r} is not configured.",
                detail="Providers come from the server's --external-auth-config file.",
            )
        externalauthlinks.upsert_link(
            conn,
            provider_id=provider_id,
            user_id=user.id,
            access_token=access_token,
            refresh_token=refresh_token,
            token_extra=extra,
            expires_at=expires_at,
            now=now,
        )
        user_id = user.id
    # After the commit: woken waiters re-read and must see the new row.
    wakeups.publish(external_auth_key(user_id, provider_id))
    return Linked(user_id=user_id, provider_id=provider_id, updated_at=now)
