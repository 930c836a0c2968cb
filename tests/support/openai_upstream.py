"""A loopback stand-in for an OpenAI-compatible LLM provider.

Tests drive AccessAI's ``openai`` engine (and chat streaming, and the
benchmarks) through the official ``openai`` SDK against this real HTTP server
on 127.0.0.1, instead of patching our own code. It serves:

- ``POST /v1/chat/completions``: non-streamed, or ``stream: true`` as SSE in
  OpenAI's chunk format ending with ``data: [DONE]``; with
  ``stream_options.include_usage`` a last chunk carries the usage and empty
  ``choices``. ``max_tokens``/``max_completion_tokens`` truncate the reply
  (``finish_reason: "length"``), as the real service does.
- ``GET /v1/models``.

By default a request is answered with ``"echo: " + <last user message>`` and
consistent usage (see ``openai_wire``). ``script()`` queues a ``Behaviour``
per upcoming chat request (a given content, an HTTP error, a hang, a stream
that breaks, slow tokens...); every request is recorded for assertions.

In-process use (the server runs in a background thread with its own event
loop, so sync and async clients both work)::

    with OpenAIUpstream() as upstream:
        upstream.script(Behaviour.reply('{"a": 1}'), Behaviour.error(500))
        client = openai.OpenAI(base_url=upstream.base_url, api_key="sk-test")
        ...
        assert upstream.last_request.json["model"] == "m"

Standalone (for benchmarks)::

    python -m tests.support.openai_upstream --port 8090 --token-delay 0.01

A standalone server is scripted over HTTP with the ``/__standin/...`` control
routes (``script``, ``default``, ``reset``, ``requests``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import asdict, dataclass, field, fields
from types import TracebackType
from typing import Any, Literal, Self

import uvicorn

from tests.support import openai_wire as wire

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

FailureMode = Literal["drop", "error_event"]
Outcome = Literal["pending", "completed", "client_disconnected", "dropped", "error_event"]

# Every scripted wait is bounded so a mistaken test cannot hang the suite.
MAX_WAIT_SECONDS = 30.0
CONTROL_PREFIX = "/__standin"
DEFAULT_MODELS = ("standin-model",)


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How the stand-in answers one chat-completions request.

    All waits end early when the client disconnects or the server stops.
    """

    # Reply text; ``None`` echoes the last user message.
    content: str | None = None
    # A status other than 200 answers with OpenAI's error body.
    status: int = 200
    error_message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Sent verbatim as the (application/json) body of a 200 answer.
    raw_body: str | None = None
    # A completion with ``choices: []``.
    empty_choices: bool = False
    finish_reason: str | None = None
    # False: no usage, even when a stream asked for it.
    include_usage: bool = True
    # Before the response headers.
    delay_seconds: float = 0.0
    # Streams: after the headers, before the first chunk. Non-streamed
    # answers wait first_token + token_delay * (tokens - 1) before the headers.
    first_token_delay_seconds: float = 0.0
    token_delay_seconds: float = 0.0
    # Streams: break after this many content chunks. Non-streamed answers:
    # any value drops the connection halfway through the body.
    fail_after_chunks: int | None = None
    # "drop" closes the connection; "error_event" sends OpenAI's in-stream
    # ``data: {"error": ...}`` event and ends the body without ``[DONE]``.
    failure: FailureMode = "drop"

    def __post_init__(self) -> None:
        if not 200 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status, got {self.status}")
        for name in (
            "delay_seconds",
            "first_token_delay_seconds",
            "token_delay_seconds",
        ):
            value = getattr(self, name)
            if not 0 <= value <= MAX_WAIT_SECONDS:
                raise ValueError(f"{name} must be within [0, {MAX_WAIT_SECONDS}], got {value}")
        if self.fail_after_chunks is not None and self.fail_after_chunks < 0:
            raise ValueError("fail_after_chunks must be >= 0")
        if self.failure not in ("drop", "error_event"):
            raise ValueError(f"unknown failure mode {self.failure!r}")

    @classmethod
    def reply(cls, content: str, **options: Any) -> Behaviour:
        """Answer with ``content`` (a JSON document, malformed text, anything)."""
        return cls(content=content, **options)

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        error_type: str | None = None,
        error_code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Behaviour:
        """Answer with an HTTP error in OpenAI's shape (500, 429, 401...)."""
        return cls(
            status=status,
            error_message=message,
            error_type=error_type,
            error_code=error_code,
            headers=dict(headers or {}),
        )

    @classmethod
    def hang(cls, seconds: float) -> Behaviour:
        """Say nothing for ``seconds`` (or until the client gives up), then 504."""
        return cls(delay_seconds=seconds, status=504)

    @classmethod
    def drop_after(cls, chunks: int, **options: Any) -> Behaviour:
        """Stream ``chunks`` content chunks, then close the connection."""
        return cls(fail_after_chunks=chunks, failure="drop", **options)

    @classmethod
    def error_event_after(cls, chunks: int, message: str | None = None) -> Behaviour:
        """Stream ``chunks`` content chunks, then an in-stream error event."""
        return cls(fail_after_chunks=chunks, failure="error_event", error_message=message)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["headers"] = dict(self.headers)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Behaviour:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown behaviour fields: {sorted(unknown)}")
        return cls(**data)


@dataclass(slots=True)
class RecordedRequest:
    """One request the stand-in received (control routes are not recorded)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    json: Any = None  # the parsed body, or None when it was not JSON
    behaviour: Behaviour | None = None
    status: int | None = None
    outcome: Outcome = "pending"
    # Set once the stand-in has finished with the request, whatever the outcome.
    done: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def bearer_token(self) -> str | None:
        value = self.header("authorization") or ""
        scheme, _, token = value.partition(" ")
        return token if scheme.lower() == "bearer" and token else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "json": self.json,
            "status": self.status,
            "outcome": self.outcome,
        }


class _DeliberateDrop(Exception):
    """Raised inside the app to make uvicorn close the connection mid-response."""


class _HideDeliberateDrops(logging.Filter):
    # uvicorn logs every exception escaping the app; ours are on purpose.
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _DeliberateDrop))


_drop_filter = _HideDeliberateDrops()
logging.getLogger("uvicorn.error").addFilter(_drop_filter)  # idempotent for one instance


class _Cycle:
    """Per-request state shared with the disconnect watcher."""

    def __init__(self, record: RecordedRequest) -> None:
        self.record = record
        self.gone = asyncio.Event()
        self.stopping = False

    async def pause(self, seconds: float) -> None:
        """Sleep, but give up at once if the client left or the server is stopping."""
        if not self.gone.is_set() and seconds > 0:
            try:
                await asyncio.wait_for(self.gone.wait(), timeout=seconds)
            except TimeoutError:
                pass
        self.check()

    def check(self) -> None:
        if self.stopping:
            raise _DeliberateDrop("server stopping")
        if self.gone.is_set():
            raise _ClientGone


class _ClientGone(Exception):
    pass


class OpenAIUpstream:
    """The stand-in server: lifecycle, scripting and the request log."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Iterable[str] = DEFAULT_MODELS,
        api_key: str | None = None,
        default: Behaviour | None = None,
    ) -> None:
        """``api_key``: when set, /v1 requests without ``Bearer <api_key>`` get 401."""
        self.host = host
        self.models = tuple(models)
        self.api_key = api_key
        self._requested_port = port
        self._port: int | None = None
        self._lock = threading.Lock()
        self._script: deque[Behaviour] = deque()
        self._default = default or Behaviour()
        self._requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._cycles: set[_Cycle] = set()  # touched only on the server's loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- addresses ---------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the stand-in is not running")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to give the SDK as ``base_url``."""
        return f"{self.url}/v1"

    # -- lifecycle ---------------------------------------------------------

    def start(self, ready_timeout: float = 10.0) -> Self:
        """Serve from a background thread; returns once it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the stand-in is already running")
        sock = self._bind()
        server = uvicorn.Server(self._config())
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name="openai-upstream",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + ready_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the OpenAI stand-in did not start")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Abort in-flight requests, stop serving and join the thread."""
        server, thread, loop = self._server, self._thread, self._loop
        if server is None or thread is None:
            return
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._abort_cycles)
            except RuntimeError:  # the loop has already closed
                pass
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        self._server = self._thread = self._loop = None
        self._port = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until SIGINT/SIGTERM (standalone mode)."""
        sock = self._bind()
        self._server = uvicorn.Server(self._config(log_level="info"))
        print(f"openai-upstream listening, base_url={self.base_url}", flush=True)
        self._server.run(sockets=[sock])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(128)
        self._port = sock.getsockname()[1]
        return sock

    def _config(self, log_level: str | None = None) -> uvicorn.Config:
        # log_config=None: do not reconfigure the test process's logging.
        return uvicorn.Config(
            self._app,
            log_config=None,
            log_level=log_level,
            access_log=False,
            lifespan="on",
            interface="asgi3",  # a bound method is not detected as ASGI 3
            ws="none",
            timeout_graceful_shutdown=2,
        )

    def _abort_cycles(self) -> None:
        for cycle in self._cycles:
            cycle.stopping = True
            cycle.gone.set()

    # -- scripting and the request log -------------------------------------

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next chat requests, one each, in order.

        When the queue is empty, requests get the default behaviour. SDK
        retries are requests too: with ``max_retries=2`` one 500 is followed
        by two more attempts that take the next behaviours.
        """
        with self._lock:
            self._script.extend(behaviours)

    def set_default(self, behaviour: Behaviour | None) -> None:
        """The behaviour for requests when nothing is scripted (None: echo)."""
        with self._lock:
            self._default = behaviour or Behaviour()

    def reset(self) -> None:
        """Forget scripted behaviours, the default and recorded requests."""
        with self._lock:
            self._script.clear()
            self._default = Behaviour()
            self._requests.clear()

    @property
    def pending_script(self) -> int:
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/chat/completions"]

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self._requests:
                raise AssertionError("the OpenAI stand-in has received no request")
            return self._requests[-1]

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Wait until ``count`` requests have arrived and been fully handled."""
        deadline = time.monotonic() + timeout
        while True:
            requests = self.requests
            if len(requests) >= count and all(r.done.is_set() for r in requests[:count]):
                return requests
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} finished requests, got {len(requests)} "
                    f"({sum(r.done.is_set() for r in requests)} finished)"
                )
            time.sleep(0.005)

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            return self._script.popleft() if self._script else self._default

    # -- the ASGI application ----------------------------------------------

    async def _app(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        record = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            body=body,
            json=_parse_json(body),
        )
        if record.path.startswith(CONTROL_PREFIX):
            await self._control(record, send)
            return
        with self._lock:
            self._requests.append(record)
        cycle = _Cycle(record)
        self._cycles.add(cycle)
        watcher = asyncio.create_task(_watch_disconnect(receive, cycle.gone))
        try:
            await self._route(cycle, send)
            if record.outcome == "pending":
                record.outcome = "completed"
        except _ClientGone:
            record.outcome = "client_disconnected"
        except _DeliberateDrop:
            record.outcome = "dropped"
            raise
        finally:
            watcher.cancel()
            self._cycles.discard(cycle)
            record.done.set()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._loop = asyncio.get_running_loop()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, cycle: _Cycle, send: Send) -> None:
        record = cycle.record
        known = {"/v1/chat/completions": "POST", "/v1/models": "GET"}
        if record.path not in known:
            await self._error(cycle, send, 404, f"Invalid URL ({record.method} {record.path})")
            return
        if record.method != known[record.path]:
            await self._error(cycle, send, 405, f"Method not allowed ({record.method})")
            return
        if self.api_key is not None and record.bearer_token != self.api_key:
            await self._error(cycle, send, 401)
            return
        if record.path == "/v1/models":
            await _send_json(send, 200, wire.models_payload(self.models, int(time.time())))
            record.status = 200
            return
        await self._chat(cycle, send)

    async def _error(
        self,
        cycle: _Cycle,
        send: Send,
        status: int,
        message: str | None = None,
        behaviour: Behaviour | None = None,
    ) -> None:
        b = behaviour or Behaviour()
        payload = wire.error_payload(
            status,
            message or b.error_message,
            error_type=b.error_type,
            code=b.error_code,
        )
        cycle.check()
        await _send_json(send, status, payload, b.headers)
        cycle.record.status = status

    async def _chat(self, cycle: _Cycle, send: Send) -> None:
        request = cycle.record.json
        problem = _invalid_chat_request(request)
        if problem is not None:
            await self._error(cycle, send, 400, problem)
            return
        assert isinstance(request, dict)
        behaviour = self._next_behaviour()
        cycle.record.behaviour = behaviour
        await cycle.pause(behaviour.delay_seconds)
        if behaviour.status != 200:
            await self._error(cycle, send, behaviour.status, behaviour=behaviour)
            return
        reply = _Reply.build(request, behaviour, next(self._ids))
        if request.get("stream") is True:
            await self._stream(cycle, send, reply, behaviour)
        else:
            await self._complete(cycle, send, reply, behaviour)

    async def _complete(
        self, cycle: _Cycle, send: Send, reply: _Reply, behaviour: Behaviour
    ) -> None:
        generation = behaviour.first_token_delay_seconds + behaviour.token_delay_seconds * max(
            0, len(reply.tokens) - 1
        )
        await cycle.pause(min(generation, MAX_WAIT_SECONDS))
        if behaviour.raw_body is not None:
            body = behaviour.raw_body.encode()
        else:
            body = _dumps(
                wire.completion_payload(
                    completion_id=reply.completion_id,
                    created=reply.created,
                    model=reply.model,
                    content=reply.content,
                    finish_reason=reply.finish_reason,
                    usage=reply.usage if behaviour.include_usage else None,
                    with_choice=not behaviour.empty_choices,
                )
            )
        headers = _headers("application/json", behaviour.headers, len(body))
        cycle.check()
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        cycle.record.status = 200
        if behaviour.fail_after_chunks is not None:
            # Content-Length promises the whole body; half of it then a close.
            await send(
                {
                    "type": "http.response.body",
                    "body": body[: len(body) // 2],
                    "more_body": True,
                }
            )
            raise _DeliberateDrop("non-streamed body cut short")
        await send({"type": "http.response.body", "body": body})

    async def _stream(self, cycle: _Cycle, send: Send, reply: _Reply, behaviour: Behaviour) -> None:
        options = cycle.record.json.get("stream_options") or {}
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True

        def chunk(delta: dict[str, Any] | None, finish: str | None = None) -> bytes:
            return _sse(
                wire.chunk_payload(
                    completion_id=reply.completion_id,
                    created=reply.created,
                    model=reply.model,
                    delta=delta,
                    finish_reason=finish,
                    usage=reply.usage if delta is None else None,
                    include_usage_field=wants_usage,
                )
            )

        async def emit(data: bytes) -> None:
            cycle.check()
            await send({"type": "http.response.body", "body": data, "more_body": True})

        async def fail() -> None:
            if behaviour.failure == "drop":
                raise _DeliberateDrop("stream cut short")
            message = behaviour.error_message or "The stand-in upstream failed mid-stream."
            await emit(_sse(wire.error_payload(500, message)))
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            cycle.record.outcome = "error_event"

        headers = _headers("text/event-stream; charset=utf-8", behaviour.headers)
        headers.append((b"cache-control", b"no-cache"))
        cycle.check()
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        cycle.record.status = 200
        await cycle.pause(behaviour.first_token_delay_seconds)
        if not behaviour.empty_choices:
            await emit(chunk({"role": "assistant", "content": "", "refusal": None}))
            for index, token in enumerate(reply.tokens):
                if behaviour.fail_after_chunks == index:
                    await fail()
                    return
                if index:
                    await cycle.pause(behaviour.token_delay_seconds)
                await emit(chunk({"content": token}))
            if behaviour.fail_after_chunks is not None:  # asked for more chunks than exist
                await fail()
                return
            await emit(chunk({}, reply.finish_reason))
        if wants_usage and behaviour.include_usage:
            await emit(chunk(None))
        await emit(b"data: [DONE]\n\n")
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    # -- control routes for a standalone server ----------------------------

    async def _control(self, record: RecordedRequest, send: Send) -> None:
        action = record.path.removeprefix(CONTROL_PREFIX)
        data = record.json if isinstance(record.json, dict) else {}
        try:
            if action == "/script" and record.method == "POST":
                self.script(*(Behaviour.from_dict(b) for b in data.get("behaviours", [])))
            elif action == "/default" and record.method == "POST":
                raw = data.get("behaviour")
                self.set_default(Behaviour.from_dict(raw) if raw else None)
            elif action == "/reset" and record.method == "POST":
                self.reset()
            elif action == "/requests" and record.method == "GET":
                await _send_json(send, 200, {"requests": [r.to_dict() for r in self.requests]})
                return
            else:
                await _send_json(send, 404, {"error": f"unknown control route {action}"})
                return
        except (TypeError, ValueError) as exc:
            await _send_json(send, 400, {"error": str(exc)})
            return
        await _send_json(send, 200, {"ok": True, "pending_script": self.pending_script})


@dataclass(frozen=True, slots=True)
class _Reply:
    """What a successful answer says, shared by the streamed and plain forms."""

    completion_id: str
    created: int
    model: str
    tokens: list[str]
    finish_reason: str
    usage: dict[str, Any]

    @property
    def content(self) -> str:
        return "".join(self.tokens)

    @classmethod
    def build(cls, request: dict[str, Any], behaviour: Behaviour, number: int) -> _Reply:
        messages = request["messages"]
        text = behaviour.content if behaviour.content is not None else wire.echo_reply(messages)
        tokens = wire.split_tokens(text)
        finish = "stop"
        limit = request.get("max_completion_tokens") or request.get("max_tokens")
        if isinstance(limit, int) and 0 < limit < len(tokens):
            tokens, finish = tokens[:limit], "length"
        return cls(
            completion_id=f"chatcmpl-standin{number:08d}",
            created=int(time.time()),
            model=request["model"],
            tokens=tokens,
            finish_reason=behaviour.finish_reason or finish,
            usage=wire.usage_payload(wire.count_prompt_tokens(messages), len(tokens)),
        )


def _invalid_chat_request(request: Any) -> str | None:
    """The 400 message OpenAI would give for a malformed request, if any."""
    if not isinstance(request, dict):
        return "We could not parse the JSON body of your request."
    if not isinstance(request.get("model"), str) or not request["model"]:
        return "you must provide a model parameter"
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must contain at least one message."
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        return "Each message must be an object with a 'role'."
    if "stream_options" in request and request.get("stream") is not True:
        return "The 'stream_options' parameter is only allowed when 'stream' is enabled."
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _sse(payload: Any) -> bytes:
    return b"data: " + _dumps(payload) + b"\n\n"


def _headers(
    content_type: str, extra: Mapping[str, str], length: int | None = None
) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", content_type.encode())]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items())
    return headers


async def _send_json(
    send: Send, status: int, payload: Any, extra: Mapping[str, str] | None = None
) -> None:
    body = _dumps(payload)
    headers = _headers("application/json", extra or {}, len(body))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible stand-in upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--model", action="append", help="a model id for /v1/models")
    parser.add_argument("--api-key", help="require this bearer token")
    parser.add_argument("--content", help="reply with this text instead of the echo")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before headers")
    parser.add_argument("--first-token-delay", type=float, default=0.0)
    parser.add_argument("--token-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    default = Behaviour(
        content=args.content,
        delay_seconds=args.delay,
        first_token_delay_seconds=args.first_token_delay,
        token_delay_seconds=args.token_delay,
    )
    OpenAIUpstream(
        host=args.host,
        port=args.port,
        models=args.model or DEFAULT_MODELS,
        api_key=args.api_key,
        default=default,
    ).serve_forever()


if __name__ == "__main__":
    main()
