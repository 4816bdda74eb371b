"""Queries over the external auth tables (defined in ``externalauth``):
syncing the configured providers and reading/writing users' links."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from server.storage.externalauth import ExternalAuthLink, ExternalAuthProvider
from server.storage.types import NulFreeJSON

_PROVIDERS = ExternalAuthProvider.__table__
_LINKS = ExternalAuthLink.__table__

_ALL_PROVIDERS = sa.select(_PROVIDERS).order_by(_PROVIDERS.c.display_order, _PROVIDERS.c.id)
_PROVIDER = sa.select(_PROVIDERS).where(_PROVIDERS.c.id == sa.bindparam("provider_id"))
_LINK = sa.select(_LINKS).where(
    _LINKS.c.provider_id == sa.bindparam("provider_id"),
    _LINKS.c.user_id == sa.bindparam("user_id"),
)
_UPDATE_LINK = (
    sa.update(_LINKS)
    .where(
        _LINKS.c.provider_id == sa.bindparam("b_provider_id"),
        _LINKS.c.user_id == sa.bindparam("b_user_id"),
    )
    .values(
        access_token=sa.bindparam("access_token"),
        refresh_token=sa.bindparam("refresh_token"),
        token_extra=sa.bindparam("token_extra", type_=NulFreeJSON),
        expires_at=sa.bindparam("expires_at"),
        updated_at=sa.bindparam("now"),
    )
)


def list_providers(conn: sa.Connection) -> list[Any]:
    """Providers in configuration order (the order `match` tries them in)."""
    return list(conn.execute(_ALL_PROVIDERS))


def get_provider(conn: sa.Connection, *, provider_id: str) -> Any:
    return conn.execute(_PROVIDER, {"provider_id": provider_id}).first()


def replace_providers(
    conn: sa.Connection, *, providers: Sequence[dict[str, Any]], now: dt.datetime
) -> None:
    """Makes the table exactly ``providers`` (dicts of id, type, display_name,
    regex), in order. Providers no longer configured are removed with their
    links; the ones kept keep their links."""
    wanted = [p["id"] for p in providers]
    if wanted:
        conn.execute(sa.delete(_PROVIDERS).where(_PROVIDERS.c.id.not_in(wanted)))
    else:
        conn.execute(sa.delete(_PROVIDERS))
    existing = {row.id for row in conn.execute(sa.select(_PROVIDERS.c.id))}
    for order, p in enumerate(providers):
        values = {
            "type": p["type"],
            "display_name": p["display_name"],
            "regex": p["regex"],
            "display_order": order,
        }
        if p["id"] in existing:
            conn.execute(sa.update(_PROVIDERS).where(_PROVIDERS.c.id == p["id"]).values(**values))
        else:
            conn.execute(_PROVIDERS.insert().values(id=p["id"], created_at=now, **values))


def get_link(conn: sa.Connection, *, provider_id: str, user_id: uuid.UUID) -> Any:
    return conn.execute(_LINK, {"provider_id": provider_id, "user_id": user_id}).first()


def upsert_link(
    conn: sa.Connection,
    *,
    provider_id: str,
    user_id: uuid.UUID,
    access_token: str,
    refresh_token: str,
    token_extra: dict[str, Any],
    expires_at: dt.datetime | None,
    now: dt.datetime,
) -> None:
    params = {
        "b_provider_id": provider_id,
        "b_user_id": user_id,
        "access_token": access_token,
        "refresh_token": refresh_token,
        "token_extra": token_extra,
        "expires_at": expires_at,
        "now": now,
    }
    if conn.execute(_UPDATE_LINK, params).rowcount:
        return
    conn.execute(
        _LINKS.insert(),
        {
            "provider_id": provider_id,
            "user_id": user_id,
            "access_token": access_token,
            "refresh_token": refresh_token,
            "token_extra": token_extra,
            "expires_at": expires_at,
            "created_at": now,
            "updated_at": now,
        },
    )
