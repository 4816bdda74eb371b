"""The core registers the standard health service and reflection."""

from __future__ import annotations

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from server.app import SERVICE_NAMES


def test_health_reports_serving(channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for name in ("", *SERVICE_NAMES):
        resp = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_every_service(channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert set(SERVICE_NAMES) <= names
    assert "coder.agent.v2.Agent" in names and "coder.tailnet.v2.Tailnet" in names
    assert "grpc.health.v1.Health" in names


def test_reflection_v1_answers_like_v1alpha(channel) -> None:
    """Newer clients (grpcurl) ask grpc.reflection.v1 first: it lists the
    same services and describes files, including its own."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.Default()
    request_cls = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest")
    )
    response_cls = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse")
    )
    call = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=request_cls.SerializeToString,
        response_deserializer=response_cls.FromString,
    )
    replies = list(
        call(
            iter(
                [
                    request_cls(list_services=""),
                    request_cls(file_containing_symbol="coder.agent.v2.Agent"),
                    request_cls(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
                ]
            ),
            timeout=5,
        )
    )
    names = {s.name for s in replies[0].list_services_response.service}
    assert set(SERVICE_NAMES) <= names
    assert {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= (
        names
    )
    packages = []
    for reply in replies[1:]:
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in reply.file_descriptor_response.file_descriptor_proto
        ]
        packages.append(files[0].package)
    assert packages == ["coder.agent.v2", "grpc.reflection.v1"]
