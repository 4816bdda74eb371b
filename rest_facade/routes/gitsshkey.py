"""``GET /api/v2/workspaceagents/me/gitsshkey`` <-> MeService/GetGitSSHKey."""

from __future__ import annotations

from typing import Any

from agentplane.me.v1 import me_pb2
from flask import Blueprint

from rest_facade import core
from rest_facade.coderjson import respond
from rest_facade.parse import session_token

bp = Blueprint("gitsshkey", __name__)


@bp.get("/workspaceagents/me/gitsshkey")
def get_git_ssh_key() -> Any:
    resp = core().call(core().me.GetGitSSHKey, me_pb2.GetGitSSHKeyRequest(), token=session_token())
    return respond({"private_key": resp.private_key, "public_key": resp.public_key})
