"""The ``agentplane`` command: ``server`` runs the core and the facade; the
provisioning commands call the core's AdminService and print JSON."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
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

from server.config import (
    DEFAULT_GRPC_ADDRESS,
    INT64_MAX,
    Settings,
    SettingsError,
    load_settings,
    parse_int64,
)

log = logging.getLogger("agentplane")

SERVER_FLAGS = (
    ("--http-address", "REST facade address HOST:PORT (default 127.0.0.1:3000)"),
    ("--grpc-address", "gRPC core address HOST:PORT (default 127.0.0.1:3001)"),
    ("--database-url", "sqlite:///PATH or postgresql://... (default SQLite in the data dir)"),
    ("--data-dir", "data directory (default ~/.local/share/agentplane)"),
    ("--derp-config", "DERP map JSON file (tailcfg.DERPMap); default: an embedded relay"),
    ("--derp-server-enable", "serve the embedded DERP relay at /derp (default true)"),
    ("--access-url", "public URL of the REST facade (default http://HTTP_ADDRESS)"),
    ("--core-address", "where the facade reaches the core (default unix:DATA_DIR/core.sock)"),
    ("--agent-logs-limit-bytes", "per-agent cap on stored log output (default 1048576)"),
    ("--workspace-agent-logs-retention", "purge old builds' agent logs after (7d; 0 = never)"),
    ("--aws-instance-identity-certs", "PEM bundle of AWS IID certificates (default: shipped)"),
    ("--aws-instance-identity-max-age", "reject AWS documents launched longer ago, s (0 = off)"),
    ("--azure-instance-identity-roots", "PEM roots for Azure attested data (default: shipped)"),
    ("--azure-instance-identity-intermediates", "PEM intermediates for Azure attested data"),
    ("--azure-instance-identity-fetch-intermediates", "fetch missing Azure issuers (allow-listed)"),
    ("--google-instance-identity-certs", "Google signing keys, JWKS or PEM (default: GCP off)"),
    ("--google-instance-identity-audience", "required aud of GCP identity tokens (default coder)"),
    ("--google-instance-identity-single-use", "accept each GCP identity token only once"),
    ("--external-auth-config", "external auth providers, JSON or YAML list of {id, type, ...}"),
    ("--external-auth-listen-timeout-seconds", "longest me/external-auth?listen wait (300)"),
    ("--announcement-banners-file", "agent banners, JSON or YAML list (default: none)"),
    ("--agent-stats-report-interval-seconds", "stats report interval told to agents (30)"),
    ("--log-format", "text (a terminal) or json (log shippers); default text"),
    ("--replica-address", "gRPC HOST:PORT other replicas reach this one at (default: gRPC)"),
    (
        "--agent-fallback-troubleshooting-url",
        "troubleshooting URL of agents whose spec sets none (Coder's default)",
    ),
)


def _flags(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(args, n, None) for n in names}


def _is_bool_setting(flag: str) -> bool:
    field = {f.name: f for f in dataclasses.fields(Settings)}[flag[2:].replace("-", "_")]
    return field.type == "bool"


def fail(message: str, code: int = 1) -> int:
    """The failure as one line on stderr (a parser's multi-line text
    included), and the exit status."""
    print(f"agentplane: {' '.join(message.split())}", file=sys.stderr)
    return code


# -- server ---------------------------------------------------------------


class StartupError(RuntimeError):
    """The server cannot start; the text is the one line to print."""


def _database_failure(url: str, err: BaseException) -> StartupError:
    orig = getattr(err, "orig", None) or err
    reason = " ".join(str(orig).split()) or type(orig).__name__
    return StartupError(f"cannot use the database {url}: {reason}")


async def _serve(settings: Settings) -> int:
    """Runs the server until SIGTERM/SIGINT; every start-up failure is one
    line on stderr and a non-zero exit, before the ready line is printed."""
    holds: list[Any] = []
    try:
        started = await _start(settings, holds)
    except StartupError as err:
        return fail(str(err))
    finally:
        # The REST socket stays open in the facade, which inherited it.
        for item in holds[1:]:
            item.close()
    return await _run(settings, started)


@dataclasses.dataclass
class _Started:
    core: Any
    db: Any
    retention: Any
    facade: subprocess.Popen[bytes]
    lock: Any


async def _start(settings: Settings, holds: list[Any]) -> _Started:
    """Everything up to the ready line. ``holds`` collects what is closed in
    this process once the facade has started (the data-dir lock first, which
    is kept; then the REST socket the facade inherited)."""
    from server.admin.token import ensure_admin_token
    from server.app import create_server, mark_serving
    from server.clock import SystemClock
    from server.exclusive import (
        FACADE_LISTEN_FD_ENV,
        InUse,
        bind_listener,
        ensure_free,
        lock_data_dir,
    )
    from server.identity.login import load_identity_trust
    from server.logs.retention import LogRetention
    from server.storage.db import Database, SchemaTooNew, create_engine, migrate
    from server.tailnet.derpmap import DERPConfigError, DERPMapSource, load_derp_config

    clock = SystemClock()
    try:
        identity = load_identity_trust(settings, clock)
    except ValueError as err:
        raise StartupError(f"instance identity trust material: {err}") from None
    try:
        # The data directory first: a second server on it stops here, before
        # it touches core.sock or anything else of the first.
        lock = lock_data_dir(settings.data_dir)
        holds.append(lock)
        rest = bind_listener(settings.http_address, "REST")
        holds.append(rest)
        ensure_free(settings.grpc_address, "gRPC")
    except InUse as err:
        raise StartupError(str(err)) from None
    url = settings.effective_database_url
    shown = _without_password(url)
    try:
        engine = create_engine(url)
    except Exception as err:  # a URL SQLAlchemy cannot take, an unwritable SQLite dir
        raise StartupError(f"cannot use the database URL {shown}: {err}") from None
    try:
        migrate(engine)
    except SchemaTooNew as err:
        raise StartupError(str(err)) from None
    except Exception as err:
        raise _database_failure(shown, err) from None
    db = Database(engine)
    try:
        if settings.derp_config is not None:
            derp_map = load_derp_config(settings.derp_config)
            DERPMapSource(
                db, clock, access_url=settings.effective_access_url, disable_direct=False
            ).install(derp_map)
        agent_status_error = _load_agent_status_config(settings, db, clock)
        if agent_status_error is not None:
            raise StartupError(agent_status_error)
        admin_token = ensure_admin_token(settings)
    except DERPConfigError as err:
        raise StartupError(str(err)) from None
    except OSError as err:
        raise StartupError(f"cannot use the data directory {settings.data_dir}: {err}") from None
    except sa_errors() as err:
        raise _database_failure(shown, err) from None
    core_address = settings.effective_core_address
    if core_address.startswith("unix:"):
        # Ours to replace: the data-directory lock says no live server uses it.
        with contextlib.suppress(FileNotFoundError):
            Path(core_address[5:]).unlink()
    try:
        core = create_server(
            settings,
            db,
            clock,
            admin_token=admin_token,
            listen=(settings.grpc_address, core_address),
            identity=identity,
        )
    except RuntimeError as err:
        raise StartupError(
            f"cannot listen on {settings.grpc_address} or {core_address}: {err}"
        ) from None
    try:
        await db.pubsub.start()
    except Exception as err:
        raise _database_failure(shown, err) from None
    await core.server.start()
    await core.start_background()
    await mark_serving(core)
    retention = LogRetention(db, clock, retention=settings.agent_logs_retention)
    retention.start()
    env = {
        **os.environ,
        **_settings_env(settings),
        "AGENTPLANE_CORE_ADDRESS": core_address,
        FACADE_LISTEN_FD_ENV: str(rest.fileno()),
    }
    facade = subprocess.Popen(
        [sys.executable, "-m", "rest_facade.serve"], env=env, pass_fds=(rest.fileno(),)
    )
    started = _Started(core=core, db=db, retention=retention, facade=facade, lock=lock)
    if not await _facade_ready(settings, facade):
        await _stop(started)
        raise StartupError(
            f"the REST facade exited during start-up with status {facade.returncode}"
        )
    print(
        json.dumps(
            {
                "rest": f"http://{settings.http_address}",
                "grpc": settings.grpc_address,
                "database": shown,
                "data_dir": str(settings.data_dir),
                "admin_token_file": None
                if settings.admin_token
                else str(settings.admin_token_path),
            }
        ),
        file=sys.stderr,
        flush=True,
    )
    return started


def _without_password(url: str) -> str:
    """The database URL as the server shows it: any password replaced."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}" if "@" in rest else url


def sa_errors() -> type[Exception]:
    import sqlalchemy as sa

    return sa.exc.SQLAlchemyError


async def _facade_ready(settings: Settings, facade: subprocess.Popen[bytes]) -> bool:
    """Waits until the facade answers its liveness route (the socket is bound
    already; connections wait in its backlog until the facade accepts), or
    exits. False when it exited."""
    import urllib.error
    import urllib.request

    url = f"http://{settings.http_address}/healthz/live"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    while facade.poll() is None:
        if await asyncio.to_thread(answers):
            return True
        await asyncio.sleep(0.05)
    return False


async def _run(settings: Settings, started: _Started) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    facade = started.facade

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
    await _stop(started)
    return exit_code


async def _stop(started: _Started) -> None:
    from server.app import drain, mark_not_serving

    facade, core, db = started.facade, started.core, started.db
    # Graceful: the facade drains first (it calls the core), then the core.
    if facade.poll() is None:
        facade.terminate()
        try:
            await asyncio.to_thread(facade.wait, 15)
        except subprocess.TimeoutExpired:
            facade.kill()
    await mark_not_serving(core)
    await started.retention.stop()
    await core.stop_background()
    await core.server.stop(grace=5)
    await drain(core)
    core.close()
    await db.pubsub.close()
    db.dispose()
    started.lock.close()


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
    from server.logconfig import configure_logging

    configure_logging(settings.log_format)
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
                f"no admin token: {settings.admin_token_path} does not exist. Run this on the "
                "server's machine with the server's --data-dir (or AGENTPLANE_DATA_DIR), or "
                "set AGENTPLANE_ADMIN_TOKEN"
            )
        )
    channel = grpc.insecure_channel(address)
    return admin_pb2_grpc.AdminServiceStub(channel), (("authorization", f"Bearer {token}"),)


def _call(args: argparse.Namespace, method: str, request: Any) -> Any:
    from google.protobuf import json_format

    stub, metadata = _admin_stub(args)
    try:
        response = getattr(stub, method)(request, metadata=metadata, timeout=30)
    except grpc.RpcError as err:
        raise _rpc_failure(err) from None
    return json_format.MessageToDict(response, preserving_proto_field_name=True)


def _rpc_failure(err: grpc.RpcError) -> SystemExit:
    """The core's error as one stderr line (plus validations), exit status 1."""
    from rest_facade.errors import from_rpc_error

    if err.code() == grpc.StatusCode.UNAVAILABLE:
        return SystemExit(fail(f"cannot reach the agentplane core: {err.details()}"))
    _status, body = from_rpc_error(err)
    text = body["message"]
    if body.get("validations"):
        text += "".join(f"\n  {v['field']}: {v['detail']}" for v in body["validations"])
    elif body.get("detail"):
        text += f" ({body['detail']})"
    return SystemExit(fail(text))


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


def _load_agent_status_config(settings: Settings, db: Any, clock: Any) -> str | None:
    """Checks the banners file and syncs the external auth providers; the
    problem as text, or None."""
    from server.agentapi.banners import BannerConfigError, load_banners
    from server.me.externalauth import (
        ExternalAuthConfigError,
        load_external_auth_config,
        sync_providers,
    )

    try:
        load_banners(settings.announcement_banners_file)
        if settings.external_auth_config is not None:
            providers = load_external_auth_config(settings.external_auth_config)
            sync_providers(db, clock, providers)
    except (BannerConfigError, ExternalAuthConfigError) as err:
        return str(err)
    return None


def cmd_workspaces_reinit(args: argparse.Namespace) -> int:
    from agentplane.admin.v1 import admin_pb2

    out = _call(
        args, "ReinitWorkspace", admin_pb2.ReinitWorkspaceRequest(owner=args.owner, name=args.name)
    )
    return _print(
        {
            "workspace_id": out["workspace_id"],
            "owner_id": out["owner_id"],
            "reason": out["reason"],
            "build_number": out.get("build_number", 0),
        }
    )


def cmd_workspaces_prebuild(args: argparse.Namespace) -> int:
    from agentplane.admin.v1 import admin_pb2

    out = _call(
        args,
        "CreatePrebuild",
        admin_pb2.CreatePrebuildRequest(name=args.name, spec_json=_read_spec(args.spec)),
    )
    return _print(_build_json(out["build"]))


def cmd_workspaces_claim(args: argparse.Namespace) -> int:
    from agentplane.admin.v1 import admin_pb2

    out = _call(
        args,
        "ClaimPrebuild",
        admin_pb2.ClaimPrebuildRequest(
            name=args.name, owner=args.owner, new_name=args.new_name or ""
        ),
    )
    return _print({**_build_json(out["build"]), "owner_id": out["owner_id"]})


def cmd_external_auth_link(args: argparse.Namespace) -> int:
    import datetime as dt

    from agentplane.admin.v1 import admin_pb2

    request = admin_pb2.LinkExternalAuthRequest(
        user=args.user,
        provider_id=args.provider,
        access_token=args.access_token,
        refresh_token=args.refresh_token or "",
        token_extra_json=args.token_extra or "",
    )
    if args.expires_at:
        try:
            expires = dt.datetime.fromisoformat(args.expires_at.replace("Z", "+00:00"))
        except ValueError:
            return fail(f"--expires-at must be an RFC 3339 time, got {args.expires_at!r}")
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=dt.UTC)
        request.expires_at.FromDatetime(expires.astimezone(dt.UTC))
    out = _call(args, "LinkExternalAuth", request)
    return _print(
        {
            "user_id": out["user_id"],
            "provider_id": out["provider_id"],
            "updated_at": out.get("updated_at"),
        }
    )


# -- instance-identity login ------------------------------------------------


def _read_credential(path: str, what: str, *, exact: bool = False) -> str:
    """A credential file's text; ``exact`` keeps every byte (the AWS document
    is verified byte for byte), otherwise surrounding whitespace is dropped."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as err:
        raise SystemExit(fail(f"cannot read {what} {path}: {err.strerror}")) from None
    except UnicodeDecodeError:
        raise SystemExit(fail(f"{what} {path} is not UTF-8 text")) from None
    return text if exact else text.strip()


def cmd_login(args: argparse.Namespace) -> int:
    """Exchanges a cloud identity credential for an agent session token."""
    from agentplane.identity.v1 import identity_pb2, identity_pb2_grpc

    name = args.agent_name or ""
    if args.cloud == "aws":
        method, request = (
            "AuthenticateAWS",
            identity_pb2.AuthenticateAWSRequest(
                document=_read_credential(args.document, "document", exact=True),
                signature=_read_credential(args.signature, "signature"),
                agent_name=name,
            ),
        )
    elif args.cloud == "azure":
        method, request = (
            "AuthenticateAzure",
            identity_pb2.AuthenticateAzureRequest(
                signature=_read_credential(args.signature, "signature"),
                encoding="pkcs7",
                agent_name=name,
            ),
        )
    else:
        method, request = (
            "AuthenticateGoogle",
            identity_pb2.AuthenticateGoogleRequest(
                json_web_token=_read_credential(args.jwt, "JWT"), agent_name=name
            ),
        )
    address = args.grpc_address or os.environ.get("AGENTPLANE_GRPC_ADDRESS") or DEFAULT_GRPC_ADDRESS
    with grpc.insecure_channel(address) as channel:
        stub = identity_pb2_grpc.InstanceIdentityServiceStub(channel)
        try:
            response = getattr(stub, method)(request, timeout=30)
        except grpc.RpcError as err:
            raise _rpc_failure(err) from None
    return _print({"session_token": response.session_token})


def cmd_logs(args: argparse.Namespace) -> int:
    """Prints an agent's logs (text or JSON lines); --follow keeps streaming
    until the agent is replaced by a newer build or you press Ctrl-C."""
    from agentplane.logs.v1 import logs_pb2, logs_pb2_grpc

    token = (
        args.token
        or os.environ.get("AGENTPLANE_SESSION_TOKEN")
        or os.environ.get("CODER_SESSION_TOKEN")
    )
    if not token:
        return fail("a user API key is needed: --token or AGENTPLANE_SESSION_TOKEN")
    address = args.grpc_address or os.environ.get("AGENTPLANE_GRPC_ADDRESS") or DEFAULT_GRPC_ADDRESS
    stub = logs_pb2_grpc.LogsServiceStub(grpc.insecure_channel(address))
    md = (("coder-session-token", token),)

    def show(log: Any) -> None:
        ts = log.created_at.ToDatetime().isoformat(timespec="milliseconds") + "Z"
        if args.format == "json":
            print(
                json.dumps(
                    {
                        "id": log.id,
                        "created_at": ts,
                        "level": log.level,
                        "output": log.output,
                        "source_id": log.source_id,
                    }
                ),
                flush=True,
            )
        else:
            print(f"{ts} {log.level.upper():<5} {log.output}", flush=True)

    try:
        if not args.follow:
            after = args.after
            while True:
                page = stub.ListWorkspaceAgentLogs(
                    logs_pb2.ListWorkspaceAgentLogsRequest(agent_id=args.agent_id, after=after),
                    metadata=md,
                    timeout=30,
                )
                for log in page.logs:
                    show(log)
                if not page.more or not page.logs:
                    return 0
                after = page.logs[-1].id
        event = logs_pb2.WatchWorkspaceAgentLogsResponse.Event
        for message in stub.WatchWorkspaceAgentLogs(
            logs_pb2.WatchWorkspaceAgentLogsRequest(agent_id=args.agent_id, after=args.after),
            metadata=md,
        ):
            for log in message.logs:
                show(log)
            if message.event == event.EVENT_LOGS_OVERFLOWED:
                print(
                    "agentplane: the agent reached its log limit; later logs were not stored.",
                    file=sys.stderr,
                    flush=True,
                )
            elif message.event == event.EVENT_AGENT_REPLACED:
                print("agentplane: a newer build replaced this agent.", file=sys.stderr)
                return 0
        return 0
    except KeyboardInterrupt:
        return 130
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            return fail(f"cannot reach the agentplane core: {err.details()}")
        from rest_facade.errors import from_rpc_error

        _status, body = from_rpc_error(err)
        return fail(body["message"] + (f" ({body['detail']})" if body.get("detail") else ""))


def _log_cursor(text: str) -> int:
    """A log id as Coder's cursor takes it (Go's ParseInt, 0 or more)."""
    value = parse_int64(text)
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {INT64_MAX}, got {text!r}")
    return value


CLOUDS = {"aws": "an AWS", "azure": "an Azure", "google": "a Google Cloud"}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentplane")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentplane",
        description="A control plane for workspace agents that speaks Coder's agent API. "
        "`agentplane server` runs it; the other commands call a running server.",
    )
    parser.add_argument(
        "--version", action="version", version=f"agentplane {_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    server = sub.add_parser("server", help="run the gRPC core and the REST facade")
    for flag, help_text in SERVER_FLAGS:
        # Boolean settings may be given bare (--x) or with a value (--x=false).
        bare = "true" if _is_bool_setting(flag) else None
        server.add_argument(
            flag, default=None, nargs="?" if bare else None, const=bare, help=help_text
        )
    server.set_defaults(func=cmd_server)

    def admin_parser(parent: Any, name: str, help_text: str) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text)
        p.add_argument(
            "--grpc-address",
            default=None,
            help="core address (env AGENTPLANE_GRPC_ADDRESS; default 127.0.0.1:3001)",
        )
        p.add_argument(
            "--data-dir",
            default=None,
            help="the server's data directory, where its admin-token file is "
            "(env AGENTPLANE_DATA_DIR; default ~/.local/share/agentplane)",
        )
        return p

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="sub", required=True)
    p = admin_parser(users, "create", "create a user (prints its first API key)")
    p.add_argument("--username", required=True, help="letters, digits and inner hyphens")
    p.add_argument("--email", default="", help="the user's email address (optional)")
    p.add_argument(
        "--role",
        choices=("member", "owner"),
        default="member",
        help="owners read every workspace's agents (default member)",
    )
    p.set_defaults(func=cmd_users_create)

    tokens = sub.add_parser("tokens", help="manage API keys").add_subparsers(
        dest="sub", required=True
    )
    p = admin_parser(tokens, "create", "mint an API key for a user")
    p.add_argument("--user", required=True, help="username or id")
    p.set_defaults(func=cmd_tokens_create)

    wss = sub.add_parser("workspaces", help="provision workspaces").add_subparsers(
        dest="sub", required=True
    )
    p = admin_parser(wss, "create", "create a workspace from a spec (JSON or YAML)")
    p.add_argument("--owner", required=True, help="the owner's username or id")
    p.add_argument("--name", required=True, help="the workspace name, unique per owner")
    p.add_argument("--spec", required=True, metavar="FILE", help="workspace spec, JSON or YAML")
    p.set_defaults(func=cmd_workspaces_create)
    p = admin_parser(wss, "build", "start a new build of a workspace")
    p.add_argument("--owner", required=True, help="the owner's username or id")
    p.add_argument("--name", required=True, help="the workspace name")
    p.add_argument(
        "--spec", default=None, metavar="FILE", help="a new spec (default: the latest build's)"
    )
    p.add_argument(
        "--transition",
        choices=("start", "stop", "delete"),
        default="start",
        help="start (default), stop, or delete the workspace",
    )
    p.set_defaults(func=cmd_workspaces_build)
    p = admin_parser(wss, "reinit", "ask a workspace's agents to reinitialize (me/reinit)")
    p.add_argument("--owner", required=True, help="the owner's username or id")
    p.add_argument("--name", required=True, help="the workspace name")
    p.set_defaults(func=cmd_workspaces_reinit)
    p = admin_parser(
        wss, "prebuild", "create a prebuilt workspace, owned by the prebuilds user until claimed"
    )
    p.add_argument("--name", required=True, help="the prebuilt workspace's name")
    p.add_argument("--spec", required=True, metavar="FILE", help="workspace spec, JSON or YAML")
    p.set_defaults(func=cmd_workspaces_prebuild)
    p = admin_parser(
        wss, "claim", "give a prebuilt workspace to a user (its agents get prebuild_claimed)"
    )
    p.add_argument("--name", required=True, help="the prebuilt workspace's name")
    p.add_argument("--owner", required=True, help="the claiming user's username or id")
    p.add_argument(
        "--new-name", default=None, help="the workspace's name for its owner (default: same)"
    )
    p.set_defaults(func=cmd_workspaces_claim)

    extauth = sub.add_parser(
        "external-auth", help="manage users' external auth tokens"
    ).add_subparsers(dest="sub", required=True)
    p = admin_parser(extauth, "link", "store a user's token for a configured provider")
    p.add_argument("--user", required=True, help="username or id")
    p.add_argument("--provider", required=True, help="provider id (from --external-auth-config)")
    p.add_argument("--access-token", required=True, help="the provider's access token")
    p.add_argument("--refresh-token", default=None, help="the provider's refresh token")
    p.add_argument("--expires-at", default=None, help="RFC 3339 expiry (default: none)")
    p.add_argument("--token-extra", default=None, help="extra token fields, a JSON object")
    p.set_defaults(func=cmd_external_auth_link)

    from server.cli_derp_map import add_derp_map_commands

    add_derp_map_commands(sub, admin_parser)

    logins = sub.add_parser(
        "login", help="exchange a cloud instance identity for an agent session token"
    ).add_subparsers(dest="cloud", required=True)
    for cloud, files in (
        ("aws", (("--document", "IMDS instance-identity/document"),
                 ("--signature", "IMDS instance-identity/signature"))),
        ("azure", (("--signature", "the attested document's base64 PKCS#7 signature"),)),
        ("google", (("--jwt", "identity token (audience=coder&format=full)"),)),
    ):  # fmt: skip
        p = logins.add_parser(cloud, help=f"log in with {CLOUDS[cloud]} instance identity")
        for flag, what in files:
            p.add_argument(flag, required=True, metavar="FILE", help=what)
        p.add_argument("--agent-name", default=None, help="agent to log in as (CODER_AGENT_NAME)")
        p.add_argument(
            "--grpc-address",
            default=None,
            help="core address (env AGENTPLANE_GRPC_ADDRESS; default 127.0.0.1:3001)",
        )
        p.set_defaults(func=cmd_login)
    p = sub.add_parser("logs", help="print (or --follow) an agent's logs")
    p.add_argument("agent_id", help="the agent's id (a UUID)")
    p.add_argument("--follow", action="store_true", help="keep streaming new logs")
    p.add_argument(
        "--after", type=_log_cursor, default=0, metavar="N", help="only logs with id > N"
    )
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text lines (default) or one JSON object per line",
    )
    p.add_argument(
        "--token",
        default=None,
        help="user API key (env AGENTPLANE_SESSION_TOKEN or CODER_SESSION_TOKEN)",
    )
    p.add_argument(
        "--grpc-address",
        default=None,
        help="core address (env AGENTPLANE_GRPC_ADDRESS; default 127.0.0.1:3001)",
    )
    p.set_defaults(func=cmd_logs)
    from agent.cli import add_agent_parser

    add_agent_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
