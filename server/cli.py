"""The ``agentplane`` command: ``server`` runs the core and the facade; the
provisioning commands call the core's AdminService and print JSON."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import yaml

from server.config import DEFAULT_GRPC_ADDRESS, Settings, SettingsError, load_settings

log = logging.getLogger("agentplane")

SERVER_FLAGS = (
    ("--http-address", "REST facade address HOST:PORT (default 127.0.0.1:3000)"),
    ("--grpc-address", "gRPC core address HOST:PORT (default 127.0.0.1:3001)"),
    ("--database-url", "sqlite:///PATH or postgresql://... (default SQLite in the data dir)"),
    ("--data-dir", "data directory (default ~/.local/share/agentplane)"),
    ("--derp-config", "DERP map JSON file (tailcfg.DERPMap); default: an embedded relay"),
    ("--access-url", "public URL of the REST facade (default http://HTTP_ADDRESS)"),
    ("--core-address", "where the facade reaches the core (default unix:DATA_DIR/core.sock)"),
)


def _flags(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(args, n, None) for n in names}


def fail(message: str, code: int = 1) -> int:
    print(f"agentplane: {message}", file=sys.stderr)
    return code


# -- server ---------------------------------------------------------------


async def _serve(settings: Settings) -> int:
    from server.admin.token import ensure_admin_token
    from server.app import create_server, mark_not_serving, mark_serving
    from server.clock import SystemClock
    from server.storage.db import Database, SchemaTooNew, create_engine, migrate
    from server.tailnet.derpmap import DERPConfigError, DERPMapSource, load_derp_config

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.effective_database_url)
    try:
        migrate(engine)
    except SchemaTooNew as err:
        return fail(str(err))
    db = Database(engine)
    clock = SystemClock()
    if settings.derp_config is not None:
        try:
            derp_map = load_derp_config(settings.derp_config)
        except DERPConfigError as err:
            return fail(str(err))
        DERPMapSource(
            db, clock, access_url=settings.effective_access_url, disable_direct=False
        ).install(derp_map)
    admin_token = ensure_admin_token(settings)
    core_address = settings.effective_core_address
    if core_address.startswith("unix:"):
        with contextlib.suppress(FileNotFoundError):
            Path(core_address[5:]).unlink()
    try:
        core = create_server(
            settings,
            db,
            clock,
            admin_token=admin_token,
            listen=(settings.grpc_address, core_address),
        )
    except RuntimeError as err:
        return fail(f"cannot listen on {settings.grpc_address} or {core_address}: {err}")
    await core.server.start()
    await mark_serving(core)
    env = {**os.environ, **_settings_env(settings), "AGENTPLANE_CORE_ADDRESS": core_address}
    facade = subprocess.Popen([sys.executable, "-m", "rest_facade.serve"], env=env)
    print(
        json.dumps(
            {
                "rest": f"http://{settings.http_address}",
                "grpc": settings.grpc_address,
                "database": engine.url.render_as_string(hide_password=True),
                "data_dir": str(settings.data_dir),
                "admin_token_file": None
                if settings.admin_token
                else str(settings.admin_token_path),
            }
        ),
        file=sys.stderr,
        flush=True,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def watch_facade() -> None:
        while facade.poll() is None and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
        stop.set()

    watcher = asyncio.create_task(watch_facade())
    await stop.wait()
    await watcher
    exit_code = 0
    if facade.poll() is not None and facade.returncode not in (0, -signal.SIGTERM):
        log.error("the REST facade exited with status %s", facade.returncode)
        exit_code = 1
    # Graceful: the facade drains first (it calls the core), then the core.
    if facade.poll() is None:
        facade.terminate()
        try:
            await asyncio.to_thread(facade.wait, 15)
        except subprocess.TimeoutExpired:
            facade.kill()
    await mark_not_serving(core)
    await core.server.stop(grace=5)
    db.dispose()
    return exit_code


def _settings_env(settings: Settings) -> dict[str, str]:
    env = {}
    for name, value in vars(settings).items():
        if value is None or value == "":
            continue
        env[f"AGENTPLANE_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    return env


def cmd_server(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(
            _flags(args, tuple(f[0][2:].replace("-", "_") for f in SERVER_FLAGS))
        )
    except SettingsError as err:
        return fail(str(err))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return asyncio.run(_serve(settings))


# -- provisioning -----------------------------------------------------------


def _admin_stub(args: argparse.Namespace) -> tuple[Any, tuple[tuple[str, str], ...]]:
    from agentplane.admin.v1 import admin_pb2_grpc

    from server.admin.token import read_admin_token

    settings = load_settings({"data_dir": args.data_dir})
    address = args.grpc_address or os.environ.get("AGENTPLANE_GRPC_ADDRESS") or DEFAULT_GRPC_ADDRESS
    token = settings.admin_token or read_admin_token(settings.admin_token_path)
    if not token:
        raise SystemExit(
            fail(
                "no admin token: set AGENTPLANE_ADMIN_TOKEN or run on the server's machine "
                f"(expected {settings.admin_token_path})"
            )
        )
    channel = grpc.insecure_channel(address)
    return admin_pb2_grpc.AdminServiceStub(channel), (("authorization", f"Bearer {token}"),)


def _call(args: argparse.Namespace, method: str, request: Any) -> Any:
    from google.protobuf import json_format

    from rest_facade.errors import from_rpc_error

    stub, metadata = _admin_stub(args)
    try:
        response = getattr(stub, method)(request, metadata=metadata, timeout=30)
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            raise SystemExit(fail(f"cannot reach the agentplane core: {err.details()}")) from None
        _status, body = from_rpc_error(err)
        text = body["message"]
        if body.get("validations"):
            text += "".join(f"\n  {v['field']}: {v['detail']}" for v in body["validations"])
        elif body.get("detail"):
            text += f" ({body['detail']})"
        raise SystemExit(fail(text)) from None
    return json_format.MessageToDict(response, preserving_proto_field_name=True)


def _read_spec(path: str) -> str:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise SystemExit(fail(f"cannot read spec {path}: {err.strerror}")) from None
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise SystemExit(fail(f"spec {path} is not valid JSON or YAML: {err}")) from None
    return json.dumps(data)


def _print(obj: Any) -> int:
    print(json.dumps(obj, indent=2))
    return 0


def _build_json(build: dict[str, Any]) -> dict[str, Any]:
    return {
        "workspace_id": build["workspace_id"],
        "build_id": build["build_id"],
        "build_number": build.get("build_number", 0),
        "agents": [
            {
                "id": a["id"],
                "name": a["name"],
                "resource_id": a["resource_id"],
                "parent_id": a.get("parent_id"),
                "auth_token": a.get("auth_token"),
                "auth_instance_id": a.get("auth_instance_id"),
            }
            for a in build.get("agents", [])
        ],
    }


def cmd_users_create(args: argparse.Namespace) -> int:
    from agentplane.admin.v1 import admin_pb2

    out = _call(
        args,
        "CreateUser",
        admin_pb2.CreateUserRequest(
            username=args.username, email=args.email or "", role=args.role or ""
        ),
    )
    return _print({k: out.get(k, "") for k in ("id", "username", "email", "api_key")})


def cmd_tokens_create(args: argparse.Namespace) -> int:
    from agentplane.admin.v1 import admin_pb2

    out = _call(args, "CreateToken", admin_pb2.CreateTokenRequest(user=args.user))
    return _print({"api_key": out["api_key"]})


def cmd_workspaces_create(args: argparse.Namespace) -> int:
    from agentplane.admin.v1 import admin_pb2

    out = _call(
        args,
        "CreateWorkspace",
        admin_pb2.CreateWorkspaceRequest(
            owner=args.owner, name=args.name, spec_json=_read_spec(args.spec)
        ),
    )
    return _print(_build_json(out["build"]))


def cmd_workspaces_build(args: argparse.Namespace) -> int:
    from agentplane.admin.v1 import admin_pb2

    out = _call(
        args,
        "BuildWorkspace",
        admin_pb2.BuildWorkspaceRequest(
            owner=args.owner,
            name=args.name,
            spec_json=_read_spec(args.spec) if args.spec else "",
            transition=args.transition,
        ),
    )
    return _print(_build_json(out["build"]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentplane", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    server = sub.add_parser("server", help="run the gRPC core and the REST facade")
    for flag, help_text in SERVER_FLAGS:
        server.add_argument(flag, default=None, help=help_text)
    server.set_defaults(func=cmd_server)

    def admin_parser(parent: Any, name: str, help_text: str) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text)
        p.add_argument(
            "--grpc-address",
            default=None,
            help="core address (env AGENTPLANE_GRPC_ADDRESS; default 127.0.0.1:3001)",
        )
        p.add_argument("--data-dir", default=None, help="where the admin token file is")
        return p

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="sub", required=True)
    p = admin_parser(users, "create", "create a user (prints its first API key)")
    p.add_argument("--username", required=True)
    p.add_argument("--email", default="")
    p.add_argument("--role", choices=("member", "owner"), default="member")
    p.set_defaults(func=cmd_users_create)

    tokens = sub.add_parser("tokens", help="manage API keys").add_subparsers(
        dest="sub", required=True
    )
    p = admin_parser(tokens, "create", "mint an API key for a user")
    p.add_argument("--user", required=True)
    p.set_defaults(func=cmd_tokens_create)

    wss = sub.add_parser("workspaces", help="provision workspaces").add_subparsers(
        dest="sub", required=True
    )
    p = admin_parser(wss, "create", "create a workspace from a spec (JSON or YAML)")
    p.add_argument("--owner", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--spec", required=True)
    p.set_defaults(func=cmd_workspaces_create)
    p = admin_parser(wss, "build", "start a new build of a workspace")
    p.add_argument("--owner", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--spec", default=None)
    p.add_argument("--transition", choices=("start", "stop", "delete"), default="start")
    p.set_defaults(func=cmd_workspaces_build)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
