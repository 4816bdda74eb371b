"""Spec validation names every bad field; a good spec parses fully."""

from __future__ import annotations

import json

import pytest

from server.admin.spec import DEFAULT_DISPLAY_APPS, parse_spec
from server.errors import InvalidArgument
from tests.conftest import DEFAULT_SPEC


def _fields(spec: object) -> list[str]:
    with pytest.raises(InvalidArgument) as info:
        parse_spec(json.dumps(spec))
    return [field for field, _ in info.value.validations]


def test_default_spec_parses() -> None:
    spec = parse_spec(json.dumps(DEFAULT_SPEC))
    agent = spec.resources[0].agents[0]
    assert agent.name == "main"
    assert agent.display_apps == DEFAULT_DISPLAY_APPS
    assert [a.slug for a in agent.apps] == ["code-server", "docs"]
    assert agent.apps[0].healthcheck is not None and agent.apps[0].healthcheck.threshold == 6
    assert agent.children[0].name == "child"


def test_not_json() -> None:
    with pytest.raises(InvalidArgument, match="Invalid workspace spec"):
        parse_spec("{nope")


@pytest.mark.parametrize(
    ("agent", "field"),
    [
        ({"name": ""}, "resources[0].agents[0].name"),
        ({"name": "bad name!"}, "resources[0].agents[0].name"),
        ({"name": "a", "auth": "kerberos"}, "resources[0].agents[0].auth"),
        ({"name": "a", "auth": "aws-instance-identity"}, "resources[0].agents[0].instance_id"),
        ({"name": "a", "instance_id": "i-1"}, "resources[0].agents[0].instance_id"),
        ({"name": "a", "apps": [{"slug": "Bad_Slug"}]}, "resources[0].agents[0].apps[0].slug"),
        (
            {"name": "a", "apps": [{"slug": "x", "healthcheck": {"url": "u", "interval": 0}}]},
            "resources[0].agents[0].apps[0].healthcheck.interval",
        ),
        ({"name": "a", "apps": [{"slug": "x"}, {"slug": "x"}]}, "resources[0].agents[0].apps[1]"),
        (
            {"name": "a", "apps": [{"slug": "x", "sharing_level": "world"}]},
            "resources[0].agents[0].apps[0].sharing_level",
        ),
        (
            {"name": "a", "scripts": [{"display_name": "s"}]},
            "resources[0].agents[0].scripts[0].script",
        ),
        (
            {"name": "a", "metadata": [{"key": "k" * 200, "script": "x"}]},
            "resources[0].agents[0].metadata[0].key",
        ),
        (
            {"name": "a", "connection_timeout_seconds": -1},
            "resources[0].agents[0].connection_timeout_seconds",
        ),
        (
            {"name": "a", "display_apps": ["vscode", "emacs"]},
            "resources[0].agents[0].display_apps[1]",
        ),
        ({"name": "a", "env": {"X": 1}}, "resources[0].agents[0].env.X"),
        ({"name": "a", "colour": "red"}, "resources[0].agents[0].colour"),
        (
            {
                "name": "a",
                "children": [{"name": "c", "auth": "aws-instance-identity", "instance_id": "i"}],
            },
            "resources[0].agents[0].children[0].auth",
        ),
    ],
)
def test_bad_field_is_named(agent: dict, field: str) -> None:
    assert field in _fields({"resources": [{"name": "r", "agents": [agent]}]})


def test_duplicate_agent_names_across_resources() -> None:
    spec = {
        "resources": [
            {"name": "a", "agents": [{"name": "x"}]},
            {"name": "b", "agents": [{"name": "x"}]},
        ]
    }
    assert "agents[1]" in _fields(spec)


def test_every_problem_is_reported_at_once() -> None:
    spec = {"resources": [{"name": "", "agents": [{"name": "", "apps": [{"slug": ""}]}]}]}
    fields = _fields(spec)
    assert {
        "resources[0].name",
        "resources[0].agents[0].name",
        "resources[0].agents[0].apps[0].slug",
    } <= set(fields)


def test_blocking_behavior_marks_start_scripts() -> None:
    spec = parse_spec(
        json.dumps(
            {
                "resources": [
                    {
                        "name": "r",
                        "agents": [
                            {
                                "name": "a",
                                "startup_script_behavior": "blocking",
                                "scripts": [
                                    {"display_name": "s", "script": "x", "run_on_start": True},
                                    {"display_name": "t", "script": "y", "run_on_stop": True},
                                ],
                            }
                        ],
                    }
                ]
            }
        )
    )
    scripts = spec.resources[0].agents[0].scripts
    assert [s.start_blocks_login for s in scripts] == [True, False]
