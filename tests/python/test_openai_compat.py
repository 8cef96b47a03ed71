"""The OpenAI-compatible endpoint, driven by the official `openai` Python SDK."""

import openai
import pytest

from conftest import KEY


@pytest.fixture()
def client(gateway):
    return openai.OpenAI(base_url=f"http://{gateway}/v1", api_key="unused", max_retries=0, timeout=30)


def test_models_lists_configured_providers(client):
    ids = [m.id for m in client.models.list()]
    assert ids == ["anthropic/claude-sonnet-4-5"]


def test_non_streamed_answer(client):
    r = client.chat.completions.create(
        model="anthropic/claude-sonnet-4-5",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello sdk"}],
    )
    assert r.choices[0].message.content == "echo: hello sdk"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens > 0


def test_streamed_answer_with_usage(client):
    stream = client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert text == "echo: stream me please"
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == 4


def test_named_session_keeps_history(client, gateway, pb):
    import grpc

    for text in ("first", "second"):
        client.chat.completions.create(model="claude-sonnet-4-5", user="sdk-user", messages=[{"role": "user", "content": text}])
    with grpc.insecure_channel(gateway) as ch:
        sessions = pb.session_pb2_grpc.SessionServiceStub(ch)
        listed = sessions.ListSessions(pb.session_pb2.ListSessionsRequest(key_prefix="openai:sdk-user")).sessions
        assert len(listed) == 1 and listed[0].message_count == 4


def test_bad_requests_use_openai_errors(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="claude-sonnet-4-5", messages=[])
    assert "messages" in str(err.value)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "wizard", "content": "x"}])
    assert "wizard" in str(err.value)


def test_unconfigured_provider_is_named(client):
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="openai/gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 503
    assert "OPENAI_API_KEY" in str(err.value)
    assert KEY not in str(err.value)
