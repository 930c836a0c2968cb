"""Serve an ASGI app with uvicorn on 127.0.0.1 inside the test's own event loop.

Real HTTP over a real socket, so stand-ins in other processes (the Stripe
stand-in delivering webhooks) can reach the app, while the test keeps
awaiting on the same loop.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

STARTUP_TIMEOUT_SECONDS = 20.0


@asynccontextmanager
async def serve_on_loopback(
    app: ASGIApp, *, lifespan: Literal["on", "off"] = "off"
) -> AsyncIterator[str]:
    """Yield ``http://127.0.0.1:<port>`` while uvicorn serves ``app``; stop it afterwards.

    ``lifespan="off"`` when the app's lifespan is already running (the
    ``app`` fixture); ``"on"`` to let uvicorn start and stop it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan=lifespan, log_config=None, access_log=False, server_header=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_TIMEOUT_SECONDS
        while not server.started:
            if task.done():
                task.result()  # raises the start-up error, if any
                raise RuntimeError("uvicorn stopped before it started serving")
            if loop.time() > deadline:
                raise RuntimeError(f"uvicorn not serving within {STARTUP_TIMEOUT_SECONDS}s")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
