"""GetAnnouncementBanners / GetServiceBanner: the banners agents show in
their login message of the day.

Serves ``coder.agent.v2.Agent/GetAnnouncementBanners`` and the deprecated
``GetServiceBanner``. Banners come from ``--announcement-banners-file`` (a
JSON or YAML list of ``{enabled, message, background_color}``); without it
there are none. The legacy single banner is the first one, or a disabled
empty banner.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml
from coder.agent.v2 import agent_pb2

_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


class BannerConfigError(ValueError):
    """The banners file cannot be used; the message names the problem."""


@dataclasses.dataclass(frozen=True)
class Banner:
    enabled: bool
    message: str
    background_color: str


def load_banners(path: Path | None) -> tuple[Banner, ...]:
    if path is None:
        return ()
    try:
        raw: Any = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise BannerConfigError(f"cannot read banners file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise BannerConfigError(f"banners file {path} is not valid JSON or YAML: {err}") from None
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BannerConfigError(f"banners file {path}: expected a list of banners")
    banners = []
    for i, item in enumerate(raw):
        where = f"banners file {path}: [{i}]"
        if not isinstance(item, dict) or set(item) - {"enabled", "message", "background_color"}:
            raise BannerConfigError(
                f"{where} must be an object with enabled, message and background_color"
            )
        enabled = item.get("enabled", True)
        message = item.get("message", "")
        color = item.get("background_color", "")
        if not isinstance(enabled, bool) or not isinstance(message, str):
            raise BannerConfigError(f"{where}: enabled must be a boolean, message a string")
        if not isinstance(color, str) or (color and not _COLOR.match(color)):
            raise BannerConfigError(f"{where}: background_color must look like #rrggbb")
        banners.append(Banner(enabled=enabled, message=message, background_color=color))
    return tuple(banners)


class BannerSource:
    """The configured banners as protobuf messages, built once."""

    def __init__(self, banners: tuple[Banner, ...]) -> None:
        self._announcements = agent_pb2.GetAnnouncementBannersResponse(
            announcement_banners=[
                agent_pb2.BannerConfig(
                    enabled=b.enabled, message=b.message, background_color=b.background_color
                )
                for b in banners
            ]
        )
        first = banners[0] if banners else Banner(False, "", "")
        self._service = agent_pb2.ServiceBanner(
            enabled=first.enabled, message=first.message, background_color=first.background_color
        )

    def announcement_banners(self) -> agent_pb2.GetAnnouncementBannersResponse:
        return self._announcements

    def service_banner(self) -> agent_pb2.ServiceBanner:
        return self._service
