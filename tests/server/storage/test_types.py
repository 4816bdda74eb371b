"""The text rule (server/storage/types.py): NUL is stored as U+274C in every
string and JSON column, the same on SQLite and PostgreSQL, whatever writes
it — and no call that carries a NUL fails or logs a traceback.

Before the rule, PostgreSQL refused every one of these with a 500 (its text
types cannot hold NUL) while SQLite stored them: each test here ran against
both backends and failed on PostgreSQL."""

from __future__ import annotations

import copy
import json
import logging
import uuid

import grpc
import pytest
import sqlalchemy as sa
from agentplane.admin.v1 import admin_pb2
from agentplane.logs.v1 import logs_pb2, logs_pb2_grpc
from agentplane.me.v1 import me_pb2, me_pb2_grpc
from coder.agent.v2 import agent_pb2, agent_pb2_grpc
from sqlmodel import select

from server.me.externalauth import sync_providers
from server.storage.agents import WorkspaceAgent
from server.storage.appstatus import WorkspaceAppStatus
from server.storage.connectionlogs import ConnectionLog
from server.storage.externalauth import ExternalAuthLink
from server.storage.models import metadata_obj
from server.storage.resourcemonitors import WorkspaceAgentVolumeResourceMonitor
from server.storage.stats import WorkspaceAgentStat
from server.storage.types import NulFreeJSON, NulFreeText, json_without_nul, without_nul
from server.storage.users import User
from tests.conftest import ADMIN_METADATA, DEFAULT_SPEC, token_md

NUL = "\x00"
X = "\u274c"


@pytest.fixture
def no_tracebacks(caplog):
    """Fails the test if the core or the facade logged an error (the
    unexpected-error path logs a traceback carrying the statement)."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


def test_every_string_and_json_column_follows_the_rule() -> None:
    plain = [
        f"{table.name}.{column.name}"
        for table in metadata_obj.sorted_tables
        for column in table.columns
        if isinstance(column.type, sa.String | sa.JSON)
        or (
            isinstance(column.type, sa.types.TypeDecorator)
            and not isinstance(column.type, NulFreeText | NulFreeJSON)
        )
    ]
    assert plain == []


def test_the_rule() -> None:
    assert without_nul("a\x00b\x00") == "a❌b❌"
    assert without_nul("plain") == "plain"
    assert json_without_nul({"k\x00": ["v\x00", 1, None, {"n": "\x00"}], "b": True}) == {
        "k❌": ["v❌", 1, None, {"n": "❌"}],
        "b": True,
    }


def test_orm_core_and_lookups_store_and_match_the_same(db, clock) -> None:
    now = clock.now()
    with db.session() as s:
        s.add(User(username="nul", email=f"a{NUL}@b", created_at=now, updated_at=now))
    users = User.__table__
    with db.write() as conn:
        conn.execute(users.update().where(users.c.username == "nul").values(role=f"m{NUL}"))
    with db.read() as conn:
        row = conn.execute(sa.select(users).where(users.c.email == f"a{NUL}@b")).one()
    assert (row.email, row.role) == (f"a{X}@b", f"m{X}")


def _spec(text: str) -> dict:
    spec = copy.deepcopy(DEFAULT_SPEC)
    resource = spec["resources"][0]
    resource["type"] = f"t{text}"
    agent = resource["agents"][0]
    agent.update(
        directory=f"/home/{text}",
        env={f"K{text}": f"v{text}"},
        troubleshooting_url=f"https://x/{text}",
        motd_file=f"/etc/motd{text}",
        resources_monitoring={"volumes": [{"path": f"/v{text}", "enabled": True}]},
    )
    agent["apps"][0].update(
        display_name=f"Code{text}", command=f"c{text}", tooltip=f"t{text}", group=f"g{text}"
    )
    agent["scripts"][0].update(script=f"echo {text}", log_path=f"/l{text}")
    agent["metadata"][0].update(display_name=f"Load{text}", script=f"cat {text}")
    return spec


def _manifest(channel, token: str) -> agent_pb2.Manifest:
    return agent_pb2_grpc.AgentStub(channel).GetManifest(
        agent_pb2.GetManifestRequest(), metadata=token_md(token), timeout=30
    )


def _assert_spec_stored(m: agent_pb2.Manifest) -> None:
    assert m.directory == f"/home/{X}"
    assert dict(m.environment_variables) == {f"K{X}": f"v{X}"}
    assert m.motd_path == f"/etc/motd{X}"
    code = next(a for a in m.apps if a.slug == "code-server")
    assert (code.display_name, code.command) == (f"Code{X}", f"c{X}")
    assert m.scripts[0].script == f"echo {X}" and m.scripts[0].log_path == f"/l{X}"
    assert m.metadata[0].display_name == f"Load{X}" and m.metadata[0].script == f"cat {X}"


def test_workspace_spec_text_is_stored_by_the_rule(
    db, channel, provision, rest, no_tracebacks
) -> None:
    user = provision.user()
    ws = provision.workspace(_spec(NUL), owner=user)
    _assert_spec_stored(_manifest(channel, ws.agent("main").auth_token))
    agent = rest.get(
        f"/api/v2/workspaceagents/{ws.agent('main').id}",
        headers={"Coder-Session-Token": ws.api_key},
    ).get_json()
    assert agent["troubleshooting_url"] == f"https://x/{X}"
    assert agent["directory"] == f"/home/{X}"
    with db.session() as s:
        volumes = s.exec(select(WorkspaceAgentVolumeResourceMonitor)).all()
    assert [v.path for v in volumes] == [f"/v{X}"]
    # A new build from a spec with NUL, too.
    build = provision.stub.BuildWorkspace(
        admin_pb2.BuildWorkspaceRequest(
            owner=ws.username, name="ws", spec_json=json.dumps(_spec(NUL))
        ),
        metadata=ADMIN_METADATA,
    ).build
    main = next(a for a in build.agents if a.name == "main")
    _assert_spec_stored(_manifest(channel, main.auth_token))


def test_admin_text_and_lookups(db, provision, no_tracebacks) -> None:
    user = provision.stub.CreateUser(
        admin_pb2.CreateUserRequest(username="nul-mail", email=f"a{NUL}@example.com"),
        metadata=ADMIN_METADATA,
    )
    with db.session() as s:
        assert s.get(User, uuid.UUID(user.id)).email == f"a{X}@example.com"
    # Looking things up by a name with NUL finds nothing, on both backends.
    for call, request in (
        (provision.stub.CreateToken, admin_pb2.CreateTokenRequest(user=f"nul{NUL}")),
        (
            provision.stub.BuildWorkspace,
            admin_pb2.BuildWorkspaceRequest(owner="nul-mail", name=f"ws{NUL}"),
        ),
        (
            provision.stub.ReinitWorkspace,
            admin_pb2.ReinitWorkspaceRequest(owner=f"nul{NUL}", name="ws"),
        ),
        (
            provision.stub.LinkExternalAuth,
            admin_pb2.LinkExternalAuthRequest(
                user="nul-mail", provider_id=f"gh{NUL}", access_token="t"
            ),
        ),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call(request, metadata=ADMIN_METADATA, timeout=30)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value.details()


def test_agent_reports_with_nul(db, core, channel, provision, no_tracebacks) -> None:
    ws = provision.workspace()
    main = ws.agent("main")
    stub = agent_pb2_grpc.AgentStub(channel)
    md = token_md(main.auth_token)
    stub.UpdateStartup(
        agent_pb2.UpdateStartupRequest(
            startup=agent_pb2.Startup(version="v2.13.0", expanded_directory=f"/h{NUL}")
        ),
        metadata=md,
    )
    _State = agent_pb2.UpdateAppStatusRequest.AppStatusState
    stub.UpdateAppStatus(
        agent_pb2.UpdateAppStatusRequest(
            slug="code-server", state=_State.WORKING, message=f"m{NUL}", uri=f"https://u/{NUL}"
        ),
        metadata=md,
    )
    connection = agent_pb2.Connection(
        id=uuid.uuid4().bytes,
        action=agent_pb2.Connection.Action.DISCONNECT,
        type=agent_pb2.Connection.Type.SSH,
        ip="10.0.0.1",
        status_code=0,
    )
    connection.timestamp.GetCurrentTime()
    connection.reason = f"bye{NUL}"
    stub.ReportConnection(agent_pb2.ReportConnectionRequest(connection=connection), metadata=md)
    stub.UpdateStats(
        agent_pb2.UpdateStatsRequest(
            stats=agent_pb2.Stats(
                connections_by_proto={f"ssh{NUL}": 1}, session_counts={f"vs{NUL}": 2}
            )
        ),
        metadata=md,
    )
    core.core.reports.flush()
    with db.session() as s:
        agent = s.get(WorkspaceAgent, uuid.UUID(main.id))
        status = s.exec(select(WorkspaceAppStatus)).one()
        conn_log = s.exec(select(ConnectionLog)).one()
        stat = s.exec(select(WorkspaceAgentStat)).one()
    assert agent.expanded_directory == f"/h{X}"
    # The message is sanitised for the UI first (control characters dropped, as Coder does).
    assert (status.message, status.uri) == ("m", f"https://u/{X}")
    assert conn_log.disconnect_reason == f"bye{X}"
    assert stat.connections_by_proto == {f"ssh{X}": 1}
    assert stat.session_counts == {f"vs{X}": 2}


def test_log_source_and_external_auth(db, clock, channel, provision, no_tracebacks) -> None:
    sync_providers(
        db, clock, [{"id": "github", "type": "github", "display_name": "GitHub", "regex": ""}]
    )
    ws = provision.workspace()
    token = ws.agent("main").auth_token
    source = logs_pb2_grpc.LogsServiceStub(channel).PostLogSource(
        logs_pb2.PostLogSourceRequest(
            id=str(uuid.uuid4()), display_name=f"Src{NUL}", icon=f"/i{NUL}"
        ),
        metadata=token_md(token),
    )
    assert (source.source.display_name, source.source.icon) == (f"Src{X}", f"/i{X}")
    provision.stub.LinkExternalAuth(
        admin_pb2.LinkExternalAuthRequest(
            user=ws.username,
            provider_id="github",
            access_token=f"tok{NUL}",
            refresh_token=f"r{NUL}",
            token_extra_json='{"k\\u0000": "v\\u0000"}',
        ),
        metadata=ADMIN_METADATA,
    )
    with db.session() as s:
        link = s.exec(select(ExternalAuthLink)).one()
    assert (link.access_token, link.refresh_token) == (f"tok{X}", f"r{X}")
    assert link.token_extra == {f"k{X}": f"v{X}"}
    me = me_pb2_grpc.MeServiceStub(channel)
    got = me.GetExternalAuth(
        me_pb2.GetExternalAuthRequest(id="github"), metadata=token_md(token), timeout=30
    )
    assert got.access_token == f"tok{X}"
    with pytest.raises(grpc.RpcError) as err:
        me.GetExternalAuth(
            me_pb2.GetExternalAuthRequest(id=f"github{NUL}"), metadata=token_md(token), timeout=30
        )
    assert err.value.code() != grpc.StatusCode.INTERNAL, err.value.details()


def test_rest_routes_with_nul(rest, provision, no_tracebacks) -> None:
    ws = provision.workspace()
    agent_md = {"Coder-Session-Token": ws.agent("main").auth_token}
    resp = rest.patch(
        "/api/v2/workspaceagents/me/app-status",
        json={"app_slug": "code-server", "state": "working", "message": "m\x00", "uri": "u\x00"},
        headers=agent_md,
    )
    assert resp.status_code == 200, resp.get_json()
    resp = rest.post(
        "/api/v2/workspaceagents/me/log-source",
        json={"id": str(uuid.uuid4()), "display_name": "S\x00", "icon": "i\x00"},
        headers=agent_md,
    )
    assert resp.status_code == 201 and resp.get_json()["display_name"] == f"S{X}"
    resp = rest.get("/api/v2/workspaceagents/me/external-auth?id=x%00", headers=agent_md)
    assert resp.status_code < 500, resp.get_json()
    resp = rest.patch(
        "/api/v2/workspaceagents/me/logs",
        json={"logs": [{"output": "l\x00", "level": "info"}]},
        headers=agent_md,
    )
    assert resp.status_code == 200
    agent = rest.get(
        f"/api/v2/workspaceagents/{ws.agent('main').id}",
        headers={"Coder-Session-Token": ws.api_key},
    ).get_json()
    statuses = next(a for a in agent["apps"] if a["slug"] == "code-server")["statuses"]
    assert (statuses[0]["message"], statuses[0]["uri"]) == ("m", f"u{X}")
