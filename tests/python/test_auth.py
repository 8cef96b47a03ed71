"""With API tokens configured, no service method answers without one (grpcio, every method of the
contract plus reflection), health stays open, and the right token works."""

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import TOKEN


def all_methods(pb):
    """(path, client_streaming, server_streaming) of every method the gateway serves."""
    out = []
    for mod in (pb.chat_pb2, pb.session_pb2, pb.gateway_pb2):
        for service in mod.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                out.append((f"/{service.full_name}/{m.name}", m.client_streaming, m.server_streaming))
    for version in ("v1", "v1alpha"):
        out.append((f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo", True, True))
    return out


def call(channel, path, client_streaming, server_streaming, metadata=None):
    ident = lambda b: b  # noqa: E731 - raw bytes in and out
    kwargs = dict(request_serializer=ident, response_deserializer=ident)
    if client_streaming and server_streaming:
        return list(channel.stream_stream(path, **kwargs)(iter([b""]), metadata=metadata, timeout=10))
    if server_streaming:
        return list(channel.unary_stream(path, **kwargs)(b"", metadata=metadata, timeout=10))
    return channel.unary_unary(path, **kwargs)(b"", metadata=metadata, timeout=10)


def test_no_method_answers_without_a_token(pb, secured_gateway):
    methods = all_methods(pb)
    assert len(methods) >= 10
    with grpc.insecure_channel(secured_gateway) as ch:
        for path, cs, ss in methods:
            for metadata in (None, [("authorization", "Bearer not-the-token-000000")]):
                with pytest.raises(grpc.RpcError) as err:
                    call(ch, path, cs, ss, metadata)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, (path, err.value)


def test_health_is_open_and_the_token_works(pb, secured_gateway):
    with grpc.insecure_channel(secured_gateway) as ch:
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        status = pb.gateway_pb2_grpc.GatewayServiceStub(ch).GetStatus(
            pb.gateway_pb2.GetStatusRequest(), metadata=[("authorization", f"Bearer {TOKEN}")]
        )
        assert status.store.healthy
        events = list(
            pb.chat_pb2_grpc.ChatServiceStub(ch).Chat(
                pb.chat_pb2.ChatRequest(text="with a token"),
                metadata=[("authorization", f"Bearer {TOKEN}")],
                timeout=30,
            )
        )
        assert events[-1].completed.message.content == "echo: with a token"
