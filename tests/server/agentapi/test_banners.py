"""Announcement banners come from the configured file; none by default."""

from __future__ import annotations

import dataclasses

import pytest
from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from server.agentapi.banners import BannerConfigError, load_banners
from tests.conftest import token_md


def test_no_banners_by_default(channel, provision) -> None:
    stub = agent_pb2_grpc.AgentStub(channel)
    md = token_md(provision.workspace().agent("main").auth_token)
    assert (
        list(
            stub.GetAnnouncementBanners(
                agent_pb2.GetAnnouncementBannersRequest(), metadata=md
            ).announcement_banners
        )
        == []
    )
    legacy = stub.GetServiceBanner(agent_pb2.GetServiceBannerRequest(), metadata=md)
    assert (legacy.enabled, legacy.message, legacy.background_color) == (False, "", "")


class TestConfigured:
    @pytest.fixture
    def settings(self, settings, tmp_path):
        path = tmp_path / "banners.yaml"
        path.write_text(
            "- message: Maintenance at 18:00\n  background_color: '#ff0000'\n"
            "- {enabled: false, message: old news}\n"
        )
        return dataclasses.replace(settings, announcement_banners_file=path)

    def test_banners_from_the_file(self, channel, provision) -> None:
        stub = agent_pb2_grpc.AgentStub(channel)
        md = token_md(provision.workspace().agent("main").auth_token)
        banners = stub.GetAnnouncementBanners(
            agent_pb2.GetAnnouncementBannersRequest(), metadata=md
        ).announcement_banners
        assert [(b.enabled, b.message, b.background_color) for b in banners] == [
            (True, "Maintenance at 18:00", "#ff0000"),
            (False, "old news", ""),
        ]
        legacy = stub.GetServiceBanner(agent_pb2.GetServiceBannerRequest(), metadata=md)
        assert (legacy.enabled, legacy.message) == (True, "Maintenance at 18:00")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{a: 1}", "expected a list"),
        ("- [1]", "must be an object"),
        ("- {message: 3}", "message a string"),
        ("- {message: x, background_color: red}", "#rrggbb"),
        ("- {message: x, colour: '#000000'}", "must be an object"),
        ("[unclosed", "not valid JSON or YAML"),
    ],
)
def test_bad_files_are_refused(tmp_path, text: str, problem: str) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(text)
    with pytest.raises(BannerConfigError, match=problem):
        load_banners(path)


def test_missing_file_and_json(tmp_path) -> None:
    with pytest.raises(BannerConfigError, match="cannot read"):
        load_banners(tmp_path / "missing.json")
    path = tmp_path / "b.json"
    path.write_text('[{"enabled": true, "message": "hi", "background_color": "#00ff00"}]')
    assert load_banners(path)[0].message == "hi"
    assert load_banners(None) == ()
