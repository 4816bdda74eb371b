"""``agentplane derp-map set --file FILE``: replace the deployment's DERP
map through ``AdminService/SetDERPMap``; every replica's followers
(``StreamDERPMaps``) get it within 5 s."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cmd_derp_map_set(args: argparse.Namespace) -> int:
    from agentplane.admin.v1 import admin_pb2

    from server.cli import _call, _print, fail

    try:
        text = Path(args.file).read_text()
    except (OSError, UnicodeDecodeError) as err:
        return fail(f"cannot read DERP map {args.file}: {getattr(err, 'strerror', err)}")
    out = _call(args, "SetDERPMap", admin_pb2.SetDERPMapRequest(derp_map_json=text))
    return _print({"region_ids": [int(r) for r in out.get("region_ids", [])]})


def add_derp_map_commands(
    sub: Any, admin_parser: Callable[[Any, str, str], argparse.ArgumentParser]
) -> None:
    commands = sub.add_parser("derp-map", help="manage the DERP map").add_subparsers(
        dest="sub", required=True
    )
    p = admin_parser(commands, "set", "replace the DERP map (every replica, within 5 s)")
    p.add_argument("--file", required=True, metavar="FILE", help="tailcfg.DERPMap JSON")
    p.set_defaults(func=cmd_derp_map_set)
