"""The OpenAI stand-in, exercised through the official SDK (sync and async)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionMessageParam

from tests.support import openai_wire as wire
from tests.support.network import free_port
from tests.support.openai_fixtures import STANDIN_API_KEY
from tests.support.openai_upstream import Behaviour, OpenAIUpstream

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hello, world! How are you?"},
]
ECHO = "echo: Hello, world! How are you?"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(openai_upstream: OpenAIUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=openai_upstream.base_url,
        api_key=STANDIN_API_KEY,
        max_retries=0,
        timeout=10,
    ) as sdk:
        yield sdk


@pytest.fixture
async def aclient(openai_upstream: OpenAIUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=openai_upstream.base_url,
        api_key=STANDIN_API_KEY,
        max_retries=0,
        timeout=10,
    ) as sdk:
        yield sdk


@given(st.text())
def test_tokens_join_back_to_the_text(text: str) -> None:
    assert "".join(wire.split_tokens(text)) == text


def test_token_counts() -> None:
    assert wire.split_tokens("Hello, world!  ") == ["Hello", ",", " world", "!  "]
    assert wire.count_tokens("") == 0
    assert wire.count_prompt_tokens(MESSAGES) == 3 + 8


def test_sync_completion_echoes_with_consistent_usage(
    client: openai.OpenAI, openai_upstream: OpenAIUpstream
) -> None:
    completion = client.chat.completions.create(model="gpt-test", messages=MESSAGES, max_tokens=50)

    assert completion.object == "chat.completion"
    assert completion.model == "gpt-test"
    assert completion.choices[0].message.content == ECHO
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == wire.count_prompt_tokens(MESSAGES)
    assert completion.usage.completion_tokens == wire.count_tokens(ECHO)
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )

    sent = openai_upstream.last_request
    assert (sent.method, sent.path, sent.outcome, sent.status) == (
        "POST",
        "/v1/chat/completions",
        "completed",
        200,
    )
    assert sent.bearer_token == STANDIN_API_KEY
    assert sent.json["model"] == "gpt-test"
    assert sent.json["messages"] == MESSAGES
    assert sent.json["max_tokens"] == 50


async def test_async_stream_with_usage(
    aclient: openai.AsyncOpenAI, openai_upstream: OpenAIUpstream
) -> None:
    stream = await aclient.chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(c.choices[0].delta.content or "" for c in content_chunks) == ECHO
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == len(content_chunks)
    assert usage_chunk.usage.prompt_tokens == wire.count_prompt_tokens(MESSAGES)
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1
    assert openai_upstream.last_request.json["stream_options"] == {"include_usage": True}


async def test_async_completion(aclient: openai.AsyncOpenAI) -> None:
    completion = await aclient.chat.completions.create(model="m", messages=MESSAGES)
    assert completion.choices[0].message.content == ECHO


def test_raw_stream_is_openai_sse(openai_upstream: OpenAIUpstream) -> None:
    response = httpx.post(
        f"{openai_upstream.base_url}/chat/completions",
        json={"model": "m", "messages": MESSAGES, "stream": True},
        headers={"Authorization": f"Bearer {STANDIN_API_KEY}"},
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    events = response.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: ") for e in events[:-1])
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    # No stream_options: no usage chunk and no usage field at all.
    assert all("usage" not in p for p in payloads)
    assert payloads[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }


def test_scripted_behaviours_apply_in_order_then_echo(
    client: openai.OpenAI, openai_upstream: OpenAIUpstream
) -> None:
    openai_upstream.script(Behaviour.reply('{"a": 1}'), Behaviour.reply("not json {"))

    first = client.chat.completions.create(model="m", messages=MESSAGES)
    second = client.chat.completions.create(model="m", messages=MESSAGES)
    third = client.chat.completions.create(model="m", messages=MESSAGES)

    assert first.choices[0].message.content == '{"a": 1}'
    assert second.choices[0].message.content == "not json {"
    assert third.choices[0].message.content == ECHO
    assert openai_upstream.pending_script == 0
    assert [r.behaviour for r in openai_upstream.chat_requests][:2] == [
        Behaviour.reply('{"a": 1}'),
        Behaviour.reply("not json {"),
    ]


def test_default_behaviour(client: openai.OpenAI, openai_upstream: OpenAIUpstream) -> None:
    openai_upstream.set_default(Behaviour.reply("always"))
    replies = [
        client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
        for _ in range(2)
    ]
    assert replies == ["always", "always"]


@pytest.mark.parametrize(
    ("status", "error_class", "code"),
    [
        (500, openai.InternalServerError, None),
        (429, openai.RateLimitError, "rate_limit_exceeded"),
        (401, openai.AuthenticationError, "invalid_api_key"),
        (503, openai.InternalServerError, None),
    ],
)
def test_http_errors(
    client: openai.OpenAI,
    openai_upstream: OpenAIUpstream,
    status: int,
    error_class: type[openai.APIStatusError],
    code: str | None,
) -> None:
    openai_upstream.script(Behaviour.error(status, headers={"retry-after": "7"}))

    with pytest.raises(error_class) as caught:
        client.chat.completions.create(model="m", messages=MESSAGES)

    assert caught.value.status_code == status
    assert caught.value.code == code
    assert caught.value.response.headers["retry-after"] == "7"
    assert openai_upstream.last_request.status == status


def test_error_message_override(client: openai.OpenAI, openai_upstream: OpenAIUpstream) -> None:
    openai_upstream.script(Behaviour.error(400, "bad thing", error_code="context_length_exceeded"))
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.body == {
        "message": "bad thing",
        "type": "invalid_request_error",
        "param": None,
        "code": "context_length_exceeded",
    }


def test_wrong_api_key_is_refused(openai_upstream: OpenAIUpstream) -> None:
    with openai.OpenAI(base_url=openai_upstream.base_url, api_key="sk-wrong", max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError):
            sdk.chat.completions.create(model="m", messages=MESSAGES)
        with pytest.raises(openai.AuthenticationError):
            sdk.models.list()


def test_invalid_requests_get_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="at least one message"):
        client.chat.completions.create(model="m", messages=[])
    with pytest.raises(openai.BadRequestError, match="only allowed when 'stream' is enabled"):
        client.chat.completions.create(
            model="m", messages=MESSAGES, stream_options={"include_usage": True}
        )


def test_unknown_route_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="m", input="x")


def test_models(client: openai.OpenAI, openai_upstream: OpenAIUpstream) -> None:
    assert [m.id for m in client.models.list()] == list(openai_upstream.models)
    assert openai_upstream.last_request.path == "/v1/models"


def test_max_tokens_truncates(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="m", messages=MESSAGES, max_completion_tokens=3
    )
    assert completion.choices[0].message.content == "echo: Hello"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


def test_stream_skips_usage_when_scripted(
    client: openai.OpenAI, openai_upstream: OpenAIUpstream
) -> None:
    openai_upstream.script(Behaviour(include_usage=False))
    chunks = list(
        client.chat.completions.create(
            model="m",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_completion_without_usage(client: openai.OpenAI, openai_upstream: OpenAIUpstream) -> None:
    openai_upstream.script(Behaviour(include_usage=False))
    assert client.chat.completions.create(model="m", messages=MESSAGES).usage is None


def test_empty_choices(client: openai.OpenAI, openai_upstream: OpenAIUpstream) -> None:
    openai_upstream.script(Behaviour(empty_choices=True))
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices == []


def test_raw_body_is_sent_verbatim(client: openai.OpenAI, openai_upstream: OpenAIUpstream) -> None:
    openai_upstream.script(Behaviour(raw_body="<html>oops</html>"))
    response = client.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    assert response.http_response.text == "<html>oops</html>"


def test_hang_outlasts_client_timeout(
    client: openai.OpenAI, openai_upstream: OpenAIUpstream
) -> None:
    openai_upstream.script(Behaviour.hang(5))

    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=MESSAGES, timeout=0.3)

    # The stand-in notices the client leaving and stops waiting.
    (record,) = openai_upstream.wait_for_requests(1)
    assert record.outcome == "client_disconnected"
    assert record.status is None


def test_hang_answers_504_if_the_client_waits(
    client: openai.OpenAI, openai_upstream: OpenAIUpstream
) -> None:
    openai_upstream.script(Behaviour.hang(0.05))
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.status_code == 504


def test_first_token_delay_trips_the_read_timeout(
    client: openai.OpenAI, openai_upstream: OpenAIUpstream
) -> None:
    openai_upstream.script(Behaviour(first_token_delay_seconds=5))
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True, timeout=0.3)
    # Headers arrive at once; the wait is for the first chunk.
    with pytest.raises(openai.APITimeoutError):
        next(iter(stream))


def test_slow_tokens_still_complete(client: openai.OpenAI, openai_upstream: OpenAIUpstream) -> None:
    openai_upstream.script(Behaviour(first_token_delay_seconds=0.01, token_delay_seconds=0.001))
    chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ECHO


@pytest.mark.parametrize("after", [0, 2])
async def test_stream_dropped_after_n_chunks(
    aclient: openai.AsyncOpenAI, openai_upstream: OpenAIUpstream, after: int
) -> None:
    openai_upstream.script(Behaviour.drop_after(after))
    received: list[str] = []
    stream = await aclient.chat.completions.create(model="m", messages=MESSAGES, stream=True)

    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            if chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)

    assert received == wire.split_tokens(ECHO)[:after]
    (record,) = openai_upstream.wait_for_requests(1)
    assert record.outcome == "dropped"


def test_stream_error_event(client: openai.OpenAI, openai_upstream: OpenAIUpstream) -> None:
    openai_upstream.script(Behaviour.error_event_after(1, "model overloaded"))
    received: list[str] = []
    with pytest.raises(openai.APIError, match="model overloaded"):
        for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "echo"
    assert openai_upstream.wait_for_requests(1)[0].outcome == "error_event"


def test_non_streamed_body_dropped(client: openai.OpenAI, openai_upstream: OpenAIUpstream) -> None:
    openai_upstream.script(Behaviour(fail_after_chunks=0))
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=MESSAGES)


def test_connection_refused_on_a_free_port() -> None:
    with (
        openai.OpenAI(
            base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="k", max_retries=0
        ) as sdk,
        pytest.raises(openai.APIConnectionError),
    ):
        sdk.models.list()


def test_behaviour_validation() -> None:
    with pytest.raises(ValueError, match="delay_seconds"):
        Behaviour(delay_seconds=-1)
    with pytest.raises(ValueError, match="delay_seconds"):
        Behaviour.hang(3600)
    with pytest.raises(ValueError, match="unknown behaviour fields"):
        Behaviour.from_dict({"contnet": "typo"})
    behaviour = Behaviour.error(429, headers={"retry-after": "1"})
    assert Behaviour.from_dict(behaviour.to_dict()) == behaviour


def test_stop_aborts_in_flight_requests_and_restarts() -> None:
    upstream = OpenAIUpstream().start()
    upstream.script(Behaviour.hang(30))
    outcome: list[int] = []
    caller = threading.Thread(
        target=lambda: outcome.append(
            httpx.post(
                f"{upstream.base_url}/chat/completions",
                json={"model": "m", "messages": MESSAGES},
                timeout=30,
            ).status_code
        )
    )
    caller.start()
    deadline = time.monotonic() + 5
    while not upstream.requests and time.monotonic() < deadline:
        time.sleep(0.01)

    upstream.stop()
    caller.join(5)

    assert outcome == [500]  # uvicorn's answer to the aborted request
    assert upstream.requests[0].outcome == "dropped"
    with pytest.raises(RuntimeError):
        _ = upstream.base_url
    with upstream:  # a stopped stand-in can start again
        assert httpx.get(f"{upstream.base_url}/models").status_code == 200


def test_standalone_process_with_control_routes() -> None:
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "tests.support.openai_upstream", "--port", str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as process:
        try:
            _exercise_standalone(process, f"http://127.0.0.1:{port}")
        finally:
            process.terminate()
            try:
                process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def _exercise_standalone(process: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"{base}/v1/models", timeout=1)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)

    script = {"behaviours": [Behaviour.reply("from the script").to_dict()]}
    assert httpx.post(f"{base}/__standin/script", json=script).json()["pending_script"] == 1
    with openai.OpenAI(base_url=f"{base}/v1", api_key="any", max_retries=0) as sdk:
        reply = sdk.chat.completions.create(model="m", messages=MESSAGES)
    assert reply.choices[0].message.content == "from the script"

    recorded = httpx.get(f"{base}/__standin/requests").json()["requests"]
    assert [r["path"] for r in recorded] == ["/v1/models", "/v1/chat/completions"]
    assert recorded[1]["json"]["messages"] == MESSAGES
    bad = httpx.post(f"{base}/__standin/script", json={"behaviours": [{"x": 1}]})
    assert bad.status_code == 400
