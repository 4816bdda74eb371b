"""External auth for agents: the workspace owner's token for a git host (or
any configured provider), so the agent can hand it to git.

Serves ``agentplane.me.v1.MeService/GetExternalAuth`` (REST
``GET me/external-auth`` and the legacy ``GET me/gitauth``), and owns the
provider configuration (``--external-auth-config``: a JSON or YAML list of
``{id, type, display_name, regex}``, synced into the database at startup).

agentplane has no OAuth flow of its own: tokens are stored by an admin
(``agentplane external-auth link``). A stored token is usable until its
expiry; there is no refresh or validation against the provider.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import yaml
from agentplane.me.v1 import me_pb2

from server.agentapi.gotext import quote
from server.clock import Clock, as_utc
from server.errors import InvalidArgument, NotFound, Timeout
from server.me.wakeups import Wakeups, external_auth_key
from server.storage import externalauthlinks
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database

# Coder's listen loop re-reads every second; wake-ups make a same-replica
# token visible at once, this bounds how late another replica's is seen.
LISTEN_POLL_SECONDS = 1.0
# Coder's built-in URL patterns for the common git hosts, used when a
# configured provider of that type gives none.
DEFAULT_REGEX = {
    "github": r"^(https?://)?github\.com(/.*)?$",
    "gitlab": r"^(https?://)?gitlab\.com(/.*)?$",
    "bitbucket-cloud": r"^(https?://)?bitbucket\.org(/.*)?$",
    "azure-devops": r"^(https?://)?dev\.azure\.com(/.*)?$",
}
_ID = re.compile(r"^[a-zA-Z0-9_.-]{1,255}$")


class ExternalAuthConfigError(ValueError):
    """The external auth config cannot be used; the message says why."""


def load_external_auth_config(path: Path) -> list[dict[str, str]]:
    """Reads and validates the provider list (JSON is YAML too)."""
    try:
        raw: Any = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise ExternalAuthConfigError(
            f"cannot read external auth config {path}: {err.strerror}"
        ) from None
    except yaml.YAMLError as err:
        raise ExternalAuthConfigError(
            f"external auth config {path} is not valid JSON or YAML: {err}"
        ) from None
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ExternalAuthConfigError(f"external auth config {path}: expected a list of providers")
    providers: list[dict[str, str]] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"external auth config {path}: [{i}]"
        if not isinstance(item, dict):
            raise ExternalAuthConfigError(f"{where} must be an object")
        unknown = set(item) - {"id", "type", "display_name", "regex"}
        if unknown:
            raise ExternalAuthConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        values = {k: item.get(k) for k in ("id", "type", "display_name", "regex")}
        for key, value in values.items():
            if value is not None and not isinstance(value, str):
                raise ExternalAuthConfigError(f"{where}.{key} must be a string")
        provider_type = (values["type"] or "").strip()
        provider_id = (values["id"] or provider_type).strip()
        if not provider_type:
            raise ExternalAuthConfigError(f"{where}.type is required")
        if not _ID.match(provider_id):
            raise ExternalAuthConfigError(
                f"{where}.id must be 1-255 letters, digits, '.', '_' or '-'"
            )
        if provider_id in seen:
            raise ExternalAuthConfigError(f"{where}.id {provider_id!r} is configured twice")
        seen.add(provider_id)
        regex = values["regex"] or DEFAULT_REGEX.get(provider_type, "")
        if regex:
            try:
                re.compile(regex)
            except re.error as err:
                raise ExternalAuthConfigError(f"{where}.regex does not compile: {err}") from None
        providers.append(
            {
                "id": provider_id,
                "type": provider_type,
                "display_name": values["display_name"] or provider_id,
                "regex": regex,
            }
        )
    return providers


def sync_providers(db: Database, clock: Clock, providers: list[dict[str, str]]) -> None:
    with db.engine.begin() as conn:
        externalauthlinks.replace_providers(conn, providers=providers, now=clock.now())


def _pick_provider(providers: list[Any], *, match: str, provider_id: str) -> Any:
    chosen = None
    for provider in providers:
        if provider.id == provider_id:
            return provider
        if not match or not provider.regex:
            continue
        if re.search(provider.regex, match):
            # As in Coder, a later matching provider wins over an earlier one.
            chosen = provider
    return chosen


def _not_found(providers: list[Any], match: str) -> NotFound:
    detail = "External auth provider not found."
    if providers:
        regexes = ",".join(f"{p.id}={quote(p.regex)}" for p in providers if p.regex)
        detail = (
            "The configured external auth provider have regex filters that do not match "
            f"the url. Provider url regex: {regexes}"
        )
    return NotFound(
        f"No matching external auth provider found in Coder for the url {quote(match)}.",
        detail=detail,
    )


def _credentials(provider_type: str, link: Any) -> me_pb2.GetExternalAuthResponse:
    token = link.access_token
    # Git credentials per host, as Coder hands them out.
    if provider_type == "gitlab":
        username, password = "oauth2", token
    elif provider_type in ("bitbucket-cloud", "bitbucket-server", "bitbucket"):
        username, password = "x-token-auth", token
    else:
        username, password = token, ""
    extra = link.token_extra or {}
    return me_pb2.GetExternalAuthResponse(
        access_token=token,
        token_extra_json=json.dumps(extra) if extra else "",
        type=provider_type,
        username=username,
        password=password,
    )


def _usable(link: Any, clock: Clock) -> bool:
    expires_at = as_utc(link.expires_at)
    return expires_at is None or expires_at > clock.now()


def _same_token(a: Any, b: Any) -> bool:
    return (
        a.access_token == b.access_token
        and a.refresh_token == b.refresh_token
        and as_utc(a.expires_at) == as_utc(b.expires_at)
    )


async def get_external_auth(
    db: Database,
    clock: Clock,
    wakeups: Wakeups,
    *,
    caller: AgentInWorkspace,
    request: me_pb2.GetExternalAuthRequest,
    access_url: str,
    listen_timeout: float,
) -> me_pb2.GetExternalAuthResponse:
    match, provider_id = request.match, request.id
    if not match and not provider_id:
        raise InvalidArgument("'url' or 'id' must be provided!")
    if match and provider_id:
        raise InvalidArgument("'url' and 'id' cannot be provided together!")
    owner_id = caller.workspace.owner_id
    with db.read() as conn:
        providers = externalauthlinks.list_providers(conn)
        provider = _pick_provider(providers, match=match, provider_id=provider_id)
        if provider is None:
            raise _not_found(providers, match)
        link = externalauthlinks.get_link(conn, provider_id=provider.id, user_id=owner_id)
    sign_in = me_pb2.GetExternalAuthResponse(url=f"{access_url}/external-auth/{provider.id}")
    if link is not None and _usable(link, clock):
        return _credentials(provider.type, link)
    if not request.listen:
        return sign_in
    # Wait for a token other than the unusable one seen now (Coder skips an
    # unchanged token rather than re-validating it).
    previous = link
    loop = asyncio.get_running_loop()
    deadline = loop.time() + listen_timeout
    with wakeups.subscribe(external_auth_key(owner_id, provider.id)) as sub:
        while True:
            with db.read() as conn:
                link = externalauthlinks.get_link(conn, provider_id=provider.id, user_id=owner_id)
            if (
                link is not None
                and _usable(link, clock)
                and (previous is None or not _same_token(link, previous))
            ):
                return _credentials(provider.type, link)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Timeout(
                    "Timed out waiting for an external auth token.",
                    detail=(
                        f"No usable token for provider {quote(provider.id)} was stored within "
                        f"{listen_timeout:g} seconds; sign in at {sign_in.url} and retry."
                    ),
                )
            await sub.wait(min(LISTEN_POLL_SECONDS, remaining))
