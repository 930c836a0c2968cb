"""Runner: localstripe's app plus the stand-in's routes, on a loopback port.

Run as ``python -m tests.support.stripe_standin.server --port 0``. Once it
listens it prints one line, ``STRIPE_STANDIN_READY <base url>``, on stdout.
It stops on SIGTERM/SIGINT or when its stdin closes (so it never outlives the
test process that started it, even one killed with SIGKILL).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading

from aiohttp import web
from localstripe import resources as ls_resources  # type: ignore[import-untyped]
from localstripe import server as ls_server

from . import routes
from .events import StandinState
from .protocol import READY_PREFIX

DEFAULT_API_VERSION = "2026-10-28.endive"


def build_app(api_version: str) -> tuple[web.Application, StandinState]:
    # localstripe pickles its whole store to /tmp/localstripe.pickle on every
    # write: slow, and shared by every instance on the machine. Keep it in memory.
    ls_resources.store.dump_to_disk = lambda: None
    ls_resources.store.try_load_from_disk = lambda: None

    state = StandinState(api_version=api_version)
    state.install_mute()
    app: web.Application = ls_server.app
    app[routes.STATE] = state
    app.cleanup_ctx.append(state.http_context)
    routes.register(app)
    return app, state


def _stop_when_stdin_closes(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    def watch() -> None:
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


async def serve(host: str, port: int, api_version: str, watch_stdin: bool) -> None:
    app, state = build_app(api_version)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        state.public_base = f"http://{host}:{bound_port}"
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if watch_stdin:
            _stop_when_stdin_closes(loop, stop)
        print(f"{READY_PREFIX} {state.public_base}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-version", default=DEFAULT_API_VERSION)
    parser.add_argument("--watch-stdin", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve(args.host, args.port, args.api_version, args.watch_stdin))


if __name__ == "__main__":
    main()
