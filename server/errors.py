"""Domain errors and their one mapping onto gRPC statuses.

Concern code raises these deep down; the servicer edge turns them into a gRPC
status with rich details (``google.rpc.ErrorInfo`` carrying Coder's ``detail``
and ``google.rpc.BadRequest`` carrying Coder's ``validations``). The REST
facade maps that status to HTTP once (``rest_facade/errors.py``), so the chain
is domain -> gRPC -> HTTP with a single table at each step.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

log = logging.getLogger(__name__)

ERROR_DOMAIN = "agentplane"
# ErrorInfo.metadata key that carries Coder's free-text `detail`.
DETAIL_KEY = "detail"


class DomainError(Exception):
    """Base of every error a caller is meant to see."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    reason: str = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        detail: str = "",
        validations: Sequence[tuple[str, str]] = (),
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.validations = tuple(validations)
        if reason is not None:
            self.reason = reason


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class Conflict(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "CONFLICT"


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class LimitExceeded(DomainError):
    """A size or volume limit (body too large, log cap reached)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "LIMIT_EXCEEDED"


class Timeout(DomainError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "TIMEOUT"


class Unimplemented(DomainError):
    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "UNIMPLEMENTED"


class Internal(DomainError):
    code = grpc.StatusCode.INTERNAL
    reason = "INTERNAL"


class Unavailable(DomainError):
    """The server cannot take the call now (shutting down, the database busy);
    retry elsewhere or later."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


# Coder's generic 404 for both "missing" and "not yours" (never 403).
RESOURCE_NOT_FOUND = "Resource not found or you do not have access to this resource"


def resource_not_found() -> NotFound:
    return NotFound(RESOURCE_NOT_FOUND)


def to_status(err: DomainError) -> grpc.Status:
    details = []
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=ERROR_DOMAIN)
    if err.detail:
        info.metadata[DETAIL_KEY] = err.detail
    packed = any_pb2.Any()
    packed.Pack(info)
    details.append(packed)
    if err.validations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in err.validations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        details.append(packed)
    return rpc_status.to_status(
        status_pb2.Status(code=err.code.value[0], message=err.message, details=details)
    )


def internal_status(exc: BaseException) -> grpc.Status:
    return rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INTERNAL, message="An internal error occurred.")
    )


DATABASE_BUSY = (
    "agentplane's database is busy: what this call writes stayed locked by another "
    "transaction. Try again."
)


def database_busy(exc: BaseException) -> bool:
    """A statement gave up waiting for a lock (SQLite's busy timeout,
    PostgreSQL's lock_timeout): nothing was written, and a retry may pass."""
    orig = getattr(exc, "orig", None)  # the driver's error, wrapped by SQLAlchemy
    if orig is None:
        return False
    if getattr(orig, "sqlstate", None) == "55P03":  # PostgreSQL lock_not_available
        return True
    return type(orig).__module__ == "sqlite3" and str(orig).endswith("is locked")


def _unexpected_status(exc: Exception, method: Callable[..., Any]) -> grpc.Status:
    """The status for an exception that is not a DomainError (called while
    it is being handled)."""
    from server.metrics.series import DATABASE_ERRORS

    if database_busy(exc):
        DATABASE_ERRORS.labels("busy").inc()
        log.warning("%s: %s", method.__qualname__, getattr(exc, "orig", exc))
        return to_status(Unavailable(DATABASE_BUSY))
    if getattr(exc, "orig", None) is not None:
        DATABASE_ERRORS.labels("other").inc()
    log.exception("unhandled error in %s", method.__qualname__)
    return internal_status(exc)


def maps_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps an aio servicer method so it fails only through ``context.abort``.

    Domain errors become their status; a lock wait that timed out becomes
    UNAVAILABLE (the database is busy; retry); anything else is logged and
    becomes INTERNAL without leaking the exception text.
    """

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream_wrapper(self: Any, request: Any, context: Any) -> Any:
            try:
                async for item in method(self, request, context):
                    yield item
            except DomainError as err:
                await context.abort_with_status(to_status(err))
            except Exception as exc:
                if isinstance(exc, grpc.aio.AbortError):
                    raise
                await context.abort_with_status(_unexpected_status(exc, method))

        return stream_wrapper

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: Any) -> Any:
        try:
            return await method(self, request, context)
        except DomainError as err:
            await context.abort_with_status(to_status(err))
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            await context.abort_with_status(_unexpected_status(exc, method))

    return wrapper


def map_servicer_errors(cls: type) -> type:
    """Class decorator: applies :func:`maps_errors` to every RPC defined on cls."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_") or not callable(member):
            continue
        if inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member):
            setattr(cls, name, maps_errors(member))
    return cls


def unimplemented_rpcs(cls: type, service: Any) -> type:
    """Gives cls an async UNIMPLEMENTED handler for every RPC of ``service``
    (a ServiceDescriptor) it does not define itself, so the whole service is
    declared now and later issues fill it in."""
    for method in service.methods:
        if method.name in vars(cls):
            continue

        async def handler(self: Any, request: Any, context: Any, _name: str = method.name) -> Any:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{service.full_name}/{_name} is not implemented by agentplane yet.",
            )

        handler.__name__ = method.name
        setattr(cls, method.name, handler)
    return cls
