"""Serve an ASGI app with uvicorn on a loopback port, from a background thread.

For tests that need a real HTTP server: clients with their own transport
(the openai SDK's httpx2), and client disconnects, which only a real
connection delivers to the app. The app runs its lifespan in the server's
own thread and event loop, so sync clients can call it from a test without
blocking the server.

    with LiveServer(create_app(settings)) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=token)
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import uvicorn


class LiveServer:
    def __init__(self, app: Any = None, *, host: str = "127.0.0.1") -> None:
        self.app = app
        self.host = host
        self.port: int | None = None
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server is not running")
        return f"http://{self.host}:{self.port}"

    def bind(self) -> Self:
        """Take a free port now, so the URL is known before the app is built."""
        if self._socket is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, 0))
            sock.listen(128)
            self._socket = sock
            self.port = sock.getsockname()[1]
        return self

    def start(self, ready_timeout: float = 20.0) -> Self:
        if self.app is None:
            raise RuntimeError("set LiveServer.app before starting it")
        sock = self.bind()._socket
        assert sock is not None
        config = uvicorn.Config(
            self.app,
            log_config=None,  # keep the test process's logging as it is
            access_log=False,
            lifespan="on",
            ws="none",
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="live-server", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + ready_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the live server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            if self._socket is not None:  # bound but never started
                self._socket.close()
                self._socket = None
                self.port = None
            return
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = None
        self._socket = None
        self.port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
