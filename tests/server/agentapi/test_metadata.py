"""BatchUpdateMetadata: Coder's 2048-byte cuts with its error texts, the
6144 key-byte cap (accepted keys stored, then the error), unknown keys
ignored, and the server's collection time."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc
import pytest
from coder.agent.v2 import agent_pb2, agent_pb2_grpc
from sqlmodel import select

from server.clock import as_utc
from server.storage.metadata import WorkspaceAgentMetadatum
from tests.conftest import DEFAULT_SPEC, token_md

Result = agent_pb2.WorkspaceAgentMetadata.Result


def _spec_with_keys(keys: list[str]) -> dict:
    return {
        "resources": [
            {
                "name": "dev",
                "agents": [
                    {
                        "name": "main",
                        "metadata": [{"key": k, "script": "true"} for k in keys],
                    }
                ],
            }
        ]
    }


def _values(db, agent_id: str, core=None) -> dict[str, WorkspaceAgentMetadatum]:
    if core is not None:
        # Values are written behind the call; flush what the core buffered.
        core.core.reports.flush()
    with db.session() as s:
        rows = s.exec(
            select(WorkspaceAgentMetadatum).where(
                WorkspaceAgentMetadatum.workspace_agent_id == uuid.UUID(agent_id)
            )
        )
        return {r.key: r for r in rows}


def _send(channel, token: str, items: list[tuple[str, str, str]]):
    return agent_pb2_grpc.AgentStub(channel).BatchUpdateMetadata(
        agent_pb2.BatchUpdateMetadataRequest(
            metadata=[
                agent_pb2.Metadata(key=k, result=Result(value=v, error=e, age=3))
                for k, v, e in items
            ]
        ),
        metadata=token_md(token),
    )


def test_values_stored_with_server_time_unknown_ignored(
    db, clock, core, channel, provision
) -> None:
    main = provision.workspace(DEFAULT_SPEC).agent("main")
    clock.advance(seconds=10)
    item = agent_pb2.Metadata(key="load", result=Result(value="0.5 0.4 0.3", error=""))
    item.result.collected_at.FromDatetime(dt.datetime(2001, 1, 1, tzinfo=dt.UTC))
    agent_pb2_grpc.AgentStub(channel).BatchUpdateMetadata(
        agent_pb2.BatchUpdateMetadataRequest(
            metadata=[item, agent_pb2.Metadata(key="undefined", result=Result(value="x"))]
        ),
        metadata=token_md(main.auth_token),
    )
    values = _values(db, main.id, core)
    assert set(values) == {"load"}
    assert values["load"].value == "0.5 0.4 0.3" and values["load"].error == ""
    assert as_utc(values["load"].collected_at) == clock.now()


def test_long_value_and_error_are_cut_with_coder_texts(db, core, channel, provision) -> None:
    main = provision.workspace(_spec_with_keys(["v", "e", "both", "multi"])).agent("main")
    _send(
        channel,
        main.auth_token,
        [
            ("v", "a" * 3000, "kept?"),
            ("e", "ok", "b" * 2049),
            ("both", "c" * 2049, "d" * 2500),
            # 1366 three-byte characters = 4098 bytes; the cut drops the split one.
            ("multi", "\u20ac" * 1366, ""),
        ],
    )
    values = _values(db, main.id, core)
    assert values["v"].value == "a" * 2048
    assert values["v"].error == "value of 3000 bytes exceeded 2048 bytes"
    assert values["e"].value == "ok"
    assert values["e"].error == "error of 2049 bytes exceeded 2048 bytes"
    assert values["both"].value == "c" * 2048
    assert values["both"].error == "error of 2500 bytes exceeded 2048 bytes"
    assert values["multi"].value == "\u20ac" * 682
    assert values["multi"].error == "value of 4098 bytes exceeded 2048 bytes"


def test_key_byte_cap_stores_the_accepted_keys_then_fails(db, core, channel, provision) -> None:
    keys = [f"{i:02d}" + "k" * 125 for i in range(50)]  # 127 bytes each (the max)
    main = provision.workspace(_spec_with_keys(keys)).agent("main")
    with pytest.raises(grpc.RpcError) as info:
        _send(channel, main.auth_token, [(k, f"v{i}", "") for i, k in enumerate(keys)])
    # 48 keys fit in 6144 bytes (6096); the 49th brings the total to 6223.
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.details() == "metadata keys of 6223 bytes exceeded 6144 bytes"
    values = _values(db, main.id, core)
    assert [values[k].value for k in keys[:48]] == [f"v{i}" for i in range(48)]
    assert values[keys[48]].value == "" and values[keys[49]].value == ""


def test_exactly_at_the_cap_is_accepted(db, core, channel, provision) -> None:
    keys = [f"{i:02d}" + "k" * 125 for i in range(48)] + ["x" * 48]  # 6096 + 48 = 6144
    main = provision.workspace(_spec_with_keys(keys)).agent("main")
    _send(channel, main.auth_token, [(k, "v", "") for k in keys])
    assert all(v.value == "v" for v in _values(db, main.id, core).values())
