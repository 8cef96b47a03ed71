"""Drives the gateway from Python grpcio with stubs generated from proto/ (a client in another language)."""

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from conftest import KEY


@pytest.fixture()
def channel(gateway):
    with grpc.insecure_channel(gateway) as ch:
        yield ch


def chat(pb, channel, text, **session):
    stub = pb.chat_pb2_grpc.ChatServiceStub(channel)
    return list(stub.Chat(pb.chat_pb2.ChatRequest(text=text, **session), timeout=30))


def test_streamed_chat_events_in_order(pb, channel):
    events = chat(pb, channel, "hello from python")
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "started"
    assert kinds[-1] == "completed"
    assert kinds.count("delta") >= 2, kinds
    assert "usage" in kinds
    text = "".join(e.delta.text for e in events if e.WhichOneof("event") == "delta")
    done = events[-1].completed.message
    assert text == "echo: hello from python" == done.content
    assert done.role == pb.types_pb2.ROLE_ASSISTANT
    assert done.status == pb.types_pb2.MESSAGE_STATUS_COMPLETE
    assert done.usage.output_tokens > 0
    started = events[0].started
    assert started.session_created and started.provider == "anthropic"

    # The follow-up lands in the same session; the history has both turns, paged one at a time.
    chat(pb, channel, "again", session_id=started.session_id)
    sessions = pb.session_pb2_grpc.SessionServiceStub(channel)
    token, contents = "", []
    while True:
        page = sessions.GetHistory(
            pb.session_pb2.GetHistoryRequest(session_id=started.session_id, page_size=1, page_token=token)
        )
        contents += [m.content for m in page.messages]
        token = page.next_page_token
        if not token:
            break
    assert contents == ["hello from python", "echo: hello from python", "again", "echo: again"]


def test_not_found_and_invalid_argument(pb, channel):
    with pytest.raises(grpc.RpcError) as err:
        chat(pb, channel, "hi", session_id="00000000-0000-0000-0000-000000000000")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    sessions = pb.session_pb2_grpc.SessionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        sessions.GetHistory(pb.session_pb2.GetHistoryRequest(session_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    with pytest.raises(grpc.RpcError) as err:
        chat(pb, channel, "")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    with pytest.raises(grpc.RpcError) as err:
        chat(pb, channel, "hi", provider="openai")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "OPENAI_API_KEY" in err.value.details()


def test_mid_stream_failure_sends_error_event_then_status(pb, channel):
    stub = pb.chat_pb2_grpc.ChatServiceStub(channel)
    seen = []
    with pytest.raises(grpc.RpcError) as err:
        for event in stub.Chat(pb.chat_pb2.ChatRequest(text="#sse_error", session_key="py:errors"), timeout=30):
            seen.append(event)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert seen[-1].WhichOneof("event") == "error"
    assert seen[-1].error.code == "UNAVAILABLE"
    assert KEY not in seen[-1].error.message
    partial = seen[-1].error.partial
    assert partial.status == pb.types_pb2.MESSAGE_STATUS_INTERRUPTED and partial.content


def test_session_keys_reset_and_delete(pb, channel):
    chat(pb, channel, "one", session_key="py:alice")
    chat(pb, channel, "two", session_key="py:alice")
    sessions = pb.session_pb2_grpc.SessionServiceStub(channel)
    listed = sessions.ListSessions(pb.session_pb2.ListSessionsRequest(key_prefix="py:alice")).sessions
    assert len(listed) == 1 and listed[0].message_count == 4 and listed[0].title == "one"

    reset = sessions.ResetSession(pb.session_pb2.ResetSessionRequest(session_id=listed[0].id))
    assert reset.deleted_messages == 4 and reset.session.id == listed[0].id
    sessions.DeleteSession(pb.session_pb2.DeleteSessionRequest(session_id=listed[0].id))
    with pytest.raises(grpc.RpcError) as err:
        sessions.GetSession(pb.session_pb2.GetSessionRequest(session_id=listed[0].id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_status_health_and_reflection(pb, channel):
    status = pb.gateway_pb2_grpc.GatewayServiceStub(channel).GetStatus(pb.gateway_pb2.GetStatusRequest())
    assert status.store.healthy and status.store.backend == "sqlite"
    assert {p.name: p.configured for p in status.providers} == {"anthropic": True, "openai": False}

    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    # Every service of the contract reports its health.
    for service in ("ChatService", "SessionService", "GatewayService", "AccessService"):
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=f"openclanker.v1.{service}")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING, service

    # grpcio-reflection speaks v1alpha; the gateway serves both v1alpha and v1 (grpcurl, buf curl).
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in responses[0].list_services_response.service}
    assert {
        "openclanker.v1.ChatService",
        "openclanker.v1.SessionService",
        "openclanker.v1.GatewayService",
        "grpc.health.v1.Health",
    } <= names
