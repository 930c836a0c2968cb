"""The container's entry command, run directly on this machine.

The image runs ``accessai serve --host 0.0.0.0`` with PORT from the
environment, after ``accessai db upgrade`` has run as its own step (the Cloud
Run migrate job, the Compose ``migrate`` service). Here the same console script
of this virtualenv runs the same way with production settings against a
throwaway PostgreSQL database and the local Redis, and is stopped with SIGTERM
sent to the top process, as ``docker stop`` and Cloud Run do to PID 1.

Only loopback is used; every server is killed (with its workers) whatever
happens.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import select, text

from accessai.auth.models import ApiKey
from accessai.core.config import Settings
from accessai.core.db import create_sessionmaker
from accessai.core.migrations import alembic_config
from tests.factories import auth_headers, create_user
from tests.support.databases import (
    REDIS_TEST_URL,
    engine_for,
    postgres_available,
    services_required,
    temporary_database,
)
from tests.support.network import free_port
from tests.support.settings import TEST_JWT_SECRET, make_settings

# The venv's console script, the same entry point the image's CMD names.
ACCESSAI = Path(sys.executable).with_name("accessai")

# Bounds on waiting, not expectations: a worker imports the whole app before
# it serves, which takes seconds on a busy 2-core machine.
STARTUP_TIMEOUT_SECONDS = 90.0
MIGRATE_TIMEOUT_SECONDS = 120.0
# Above the server's own 30 s graceful-shutdown limit.
EXIT_TIMEOUT_SECONDS = 60.0
HTTP_TIMEOUT_SECONDS = 30.0

LogLine = dict[str, Any]

DRAINING = "Waiting for connections to close."


# --------------------------------------------------------------------------
# The database and the migrate step
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def production_database(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A fresh PostgreSQL database, migrated by `accessai db upgrade` as a process.

    One per module: the servers here only read it.
    """
    if not await postgres_available():
        message = "PostgreSQL is not reachable (set ACCESSAI_TEST_POSTGRES_URL)"
        if services_required():
            pytest.fail(message)
        pytest.skip(message)
    tmp_path = tmp_path_factory.mktemp("serve")
    async with temporary_database("postgresql", tmp_path) as url:
        migrate = await asyncio.create_subprocess_exec(
            str(ACCESSAI),
            "db",
            "upgrade",
            env=server_env(database_url=url, port=8080, workers=1),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(migrate.communicate(), MIGRATE_TIMEOUT_SECONDS)
        except TimeoutError:
            migrate.kill()
            await migrate.wait()
            raise
        assert migrate.returncode == 0, (stderr + stdout).decode()
        assert "database upgraded to head" in stdout.decode()

        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        engine = engine_for(url)
        try:
            async with engine.connect() as connection:
                version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        finally:
            await engine.dispose()
        assert version == head
        yield url


# --------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------


def server_env(*, database_url: str, port: int, workers: int) -> dict[str, str]:
    """Production-like settings, and nothing of the developer's own configuration."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(
        ENVIRONMENT="production",
        JWT_SECRET=TEST_JWT_SECRET,
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_TEST_URL,
        PORT=str(port),
        WORKERS=str(workers),
        MIGRATE_ON_START="false",
        LOG_FORMAT="json",
    )
    return env


class ServerProcess:
    """`accessai serve` in its own process group, its output collected line by line."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.port = int(env["PORT"])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [str(ACCESSAI), "serve", "--host", "127.0.0.1"],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # workers share the group: one killpg stops all
        )
        self._readers = [
            threading.Thread(target=self._collect, args=(self.process.stdout, self._stdout)),
            threading.Thread(target=self._collect, args=(self.process.stderr, self._stderr)),
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _collect(self, stream: Any, sink: list[str]) -> None:
        for raw in iter(stream.readline, b""):
            with self._changed:
                sink.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def log_lines(self) -> list[LogLine]:
        """Every stdout line, each of which must be one JSON object."""
        with self._changed:
            raw_lines = list(self._stdout)
        parsed = []
        for raw in raw_lines:
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                pytest.fail(f"not a JSON log line: {raw!r}")
            assert isinstance(line, dict), raw
            parsed.append(line)
        return parsed

    def stderr(self) -> str:
        with self._changed:
            return "\n".join(self._stderr)

    def wait_for_log(
        self, what: str, matches: Callable[[list[LogLine]], bool], timeout: float
    ) -> list[LogLine]:
        """Wait until the log so far satisfies ``matches``; fail when the server exits first."""

        def ready() -> bool:
            return matches(self.log_lines()) or self.process.poll() is not None

        with self._changed:
            self._changed.wait_for(ready, timeout=timeout)
        lines = self.log_lines()
        if not matches(lines):
            pytest.fail(f"server log never showed {what}\n{self.tail()}")
        return lines

    def tail(self) -> str:
        """The end of the output, for failure messages."""
        with self._changed:
            stdout, stderr = self._stdout[-40:], self._stderr[-40:]
        return "\n".join([f"exit code: {self.process.poll()}", *stdout, "--- stderr:", *stderr])

    def wait_until_serving(self, workers: int) -> None:
        """Every worker has finished its startup, and the port answers."""
        self.wait_for_log(
            f"{workers} workers started",
            lambda lines: len(worker_pids(lines)) >= workers,
            STARTUP_TIMEOUT_SECONDS,
        )
        response = httpx.get(f"{self.base_url}/health/live", timeout=HTTP_TIMEOUT_SECONDS)
        assert response.status_code == 200

    def terminate(self) -> int:
        """SIGTERM to the top process only, as a container runtime sends it; its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.wait_exit()

    def wait_exit(self) -> int:
        """The exit code, once all output has been collected."""
        code = self.process.wait(timeout=EXIT_TIMEOUT_SECONDS)
        for reader in self._readers:
            reader.join(timeout=EXIT_TIMEOUT_SECONDS)
        return code

    def kill(self) -> None:
        """Whatever happened, leave no server or worker behind."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=EXIT_TIMEOUT_SECONDS)
        for reader in self._readers:
            reader.join(timeout=EXIT_TIMEOUT_SECONDS)


@pytest.fixture
def start_server(
    production_database: str, tmp_path: Path
) -> Iterator[Callable[[int], ServerProcess]]:
    servers: list[ServerProcess] = []

    def start(workers: int) -> ServerProcess:
        env = server_env(database_url=production_database, port=free_port(), workers=workers)
        # An empty working directory: no .env is read, as in the image's /app.
        server = ServerProcess(env, cwd=tmp_path)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.kill()


# --------------------------------------------------------------------------
# Reading the log
# --------------------------------------------------------------------------


def events(lines: list[LogLine], event: str) -> list[LogLine]:
    return [line for line in lines if line.get("event") == event]


def draining(lines: list[LogLine]) -> list[LogLine]:
    """uvicorn's line for a worker that waits for open connections before stopping."""
    return [line for line in lines if str(line.get("event")).startswith(DRAINING)]


def worker_pids(lines: list[LogLine]) -> set[int]:
    """The processes whose application finished starting (one per worker)."""
    return {int(line["pid"]) for line in events(lines, "app.started")}


def parent_pid(pid: int) -> int:
    # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ")".
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def connection_refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT_SECONDS):
            return False
    except ConnectionRefusedError:
        return True


def exit_code_after_sigterm(workers: int) -> int:
    """With workers, the supervisor exits 0 once they have stopped. A single
    server re-raises the SIGTERM it handled once it has drained (uvicorn's
    choice, so callers see how it ended): directly on a machine that ends the
    process by the signal; as a container's PID 1 the kernel ignores it and
    the exit code is 0."""
    return 0 if workers > 1 else -signal.SIGTERM


# --------------------------------------------------------------------------
# Serving, and stopping when idle
# --------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2], ids=lambda n: f"workers={n}")
def test_serve_answers_health_with_json_logs_and_stops_on_sigterm(
    start_server: Callable[[int], ServerProcess], workers: int
) -> None:
    server = start_server(workers)
    server.wait_until_serving(workers)

    health = httpx.get(f"{server.base_url}/health", timeout=HTTP_TIMEOUT_SECONDS)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    live = httpx.get(f"{server.base_url}/health/live", timeout=HTTP_TIMEOUT_SECONDS)
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}

    lines = server.wait_for_log(
        "both health requests",
        lambda lines: len(events(lines, "request.completed")) >= 3,  # readiness probe + 2
        HTTP_TIMEOUT_SECONDS,
    )
    pids = worker_pids(lines)
    assert len(pids) == workers
    if workers > 1:
        # Real worker processes, each a child of the process the runtime started.
        assert server.pid not in pids
        assert {parent_pid(pid) for pid in pids} == {server.pid}
    else:
        assert pids == {server.pid}

    by_id = {line.get("request_id"): line for line in events(lines, "request.completed")}
    for response, route in ((health, "/health"), (live, "/health/live")):
        line = by_id[response.headers["x-request-id"]]
        assert line["route"] == route
        assert line["status"] == 200
        assert line["pid"] in pids
    for line in lines:
        assert {"event", "level", "timestamp", "pid"} <= line.keys(), line

    assert server.terminate() == exit_code_after_sigterm(workers)
    lines = server.log_lines()
    stopped = events(lines, "app.stopped")
    assert {line["pid"] for line in stopped} == pids, "every worker ran its lifespan shutdown"
    assert all(line["level"] in {"debug", "info"} for line in lines), [
        line for line in lines if line["level"] not in {"debug", "info"}
    ]
    assert "Traceback" not in server.stderr()
    assert connection_refused(server.port)


# --------------------------------------------------------------------------
# SIGTERM while a request is in flight
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def bearer_token(production_database: str) -> str:
    """A signed-up user's access token, valid for the servers started here."""
    engine = engine_for(production_database)
    try:
        async with create_sessionmaker(engine)() as session:
            user = await create_user(session, email=f"drain-{uuid.uuid4().hex[:8]}@example.com")
    finally:
        await engine.dispose()
    settings = make_settings(environment="production", database_url=production_database)
    return auth_headers(settings, user)["Authorization"]


async def _api_key_names(database_url: str) -> list[str]:
    engine = engine_for(database_url)
    try:
        async with engine.connect() as connection:
            return list(await connection.scalars(select(ApiKey.name)))
    finally:
        await engine.dispose()


def api_key_names(database_url: str) -> list[str]:
    """What the database holds, read from this (synchronous) test with its own loop."""
    return asyncio.run(_api_key_names(database_url))


def read_head(sock: socket.socket) -> bytes:
    """One response head (status line and headers), byte by byte so nothing after it is taken."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise ConnectionError(f"connection closed after {head!r}")
        head += byte
    return head


@pytest.mark.parametrize("workers", [1, 2], ids=lambda n: f"workers={n}")
def test_sigterm_lets_an_in_flight_request_finish(
    production_database: str,
    bearer_token: str,
    start_server: Callable[[int], ServerProcess],
    workers: int,
) -> None:
    server = start_server(workers)
    server.wait_until_serving(workers)

    # A real write: creating an API key for a signed-up user. The body is held
    # back by one byte until the server has begun shutting down.
    name = f"created while draining ({workers} workers)"
    body = json.dumps({"name": name}).encode()
    request_id = f"in-flight-{uuid.uuid4().hex}"
    with socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT_SECONDS) as sock:
        sock.sendall(
            (
                "POST /api-keys HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\n"
                f"Authorization: {bearer_token}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"X-Request-ID: {request_id}\r\n"
                "Expect: 100-continue\r\n"
                "\r\n"
            ).encode()
        )
        # uvicorn answers 100 Continue only when the app asks for the body:
        # from here on the request is inside the app, waiting for us.
        assert read_head(sock).startswith(b"HTTP/1.1 100 ")
        sock.sendall(body[:-1])

        server.process.send_signal(signal.SIGTERM)
        lines = server.wait_for_log(
            "a worker waiting for its open connection",
            lambda lines: bool(draining(lines)),
            EXIT_TIMEOUT_SECONDS,
        )
        (waiting,) = draining(lines)
        if workers == 1:
            # A single server closes its listening socket first: a load balancer
            # gets a refusal it can retry elsewhere. (With workers, uvicorn's
            # supervisor keeps its copy of the socket until it exits, so the
            # kernel still accepts connections that nobody will serve.)
            assert connection_refused(server.port)

        sock.sendall(body[-1:])
        response = http.client.HTTPResponse(sock)
        response.begin()
        payload = response.read()  # raises IncompleteRead on a cut-off body

    assert response.status == 201, f"{payload!r}\n{server.tail()}"
    assert response.getheader("x-request-id") == request_id
    created = json.loads(payload)
    assert created["name"] == name
    assert created["key"].startswith(created["prefix"])

    assert server.wait_exit() == exit_code_after_sigterm(workers)
    assert name in api_key_names(production_database), "the write was committed"
    lines = server.log_lines()
    (completed,) = [line for line in lines if line.get("request_id") == request_id]
    assert completed["event"] == "request.completed"
    assert completed["route"] == "/api-keys"
    assert completed["status"] == 201
    assert completed["pid"] == waiting["pid"]
    # Logged while the worker was draining, and before its application stopped.
    (stopped,) = [line for line in events(lines, "app.stopped") if line["pid"] == waiting["pid"]]
    assert lines.index(waiting) < lines.index(completed) < lines.index(stopped)
    assert "Traceback" not in server.stderr()
    assert connection_refused(server.port)
