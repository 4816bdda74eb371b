"""One access-log line and the RPC series per call.

``ObservingInterceptor`` wraps every RPC of the core: it counts the call by
method and status code, times it, tracks open streams, and logs method,
code, duration, caller kind and request id (the facade passes its own as
``x-request-id``) — never a token, a message or a body.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import grpc

from server.auth import caller_kind, request_id
from server.metrics.series import CoreMetrics

access_log = logging.getLogger("agentplane.access")

_METHOD = re.compile(r"^/([^/]+)/([^/]+)$")


def _split(method: str) -> tuple[str, str]:
    match = _METHOD.match(method)
    return (match.group(1), match.group(2)) if match else ("unknown", method)


class ObservingInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: CoreMetrics) -> None:
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        service, method = _split(details.method)
        kind = caller_kind(details.invocation_metadata)
        rid = request_id(details.invocation_metadata)
        observe = _Observation(self.metrics, service, method, kind, rid)
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=observe.unary(handler.unary_unary))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=observe.unary(handler.stream_unary))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=observe.stream(handler.unary_stream))
        return handler._replace(stream_stream=observe.stream(handler.stream_stream))


class _Observation:
    def __init__(
        self, metrics: CoreMetrics, service: str, method: str, kind: str, rid: str
    ) -> None:
        self.m = metrics
        self.service = service
        self.method = method
        self.kind = kind
        self.rid = rid

    def unary(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def observed(request: Any, context: Any) -> Any:
            start = time.perf_counter()
            failed = True
            try:
                result = await behavior(request, context)
                failed = False
                return result
            finally:
                self._done(context, start, failed)

        return observed

    def stream(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        gauge = self.m.streams.labels(self.service, self.method)
        if inspect.isasyncgenfunction(behavior):

            async def observed_gen(request: Any, context: Any) -> Any:
                start = time.perf_counter()
                failed = True
                gauge.inc()
                try:
                    async for item in behavior(request, context):
                        yield item
                    failed = False
                finally:
                    gauge.dec()
                    self._done(context, start, failed)

            return observed_gen

        async def observed(request: Any, context: Any) -> Any:
            start = time.perf_counter()
            failed = True
            gauge.inc()
            try:
                result = await behavior(request, context)
                failed = False
                return result
            finally:
                gauge.dec()
                self._done(context, start, failed)

        return observed

    def _done(self, context: Any, start: float, failed: bool) -> None:
        seconds = time.perf_counter() - start
        code = context.code()
        if code is None:
            if context.cancelled():
                code = grpc.StatusCode.CANCELLED
            else:
                code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
        name = code.name
        self.m.rpcs.labels(self.service, self.method, name).inc()
        self.m.rpc_seconds.labels(self.service, self.method).observe(seconds)
        access_log.info(
            "rpc %s/%s %s %.1fms caller=%s request_id=%s",
            self.service,
            self.method,
            name,
            seconds * 1000,
            self.kind,
            self.rid or "-",
            extra={
                "rpc_service": self.service,
                "rpc_method": self.method,
                "code": name,
                "duration_ms": round(seconds * 1000, 3),
                "caller": self.kind,
                "request_id": self.rid or None,
            },
        )
