"""The HTTP side of a chat stream: Server-Sent Events with exactly one settlement.

Starlette's ``StreamingResponse`` is not used because billing needs three
things it does not promise on every server: to notice a client that left
at once (so the provider's stream is closed and stops producing), to cut
a stream at its deadline, and to settle in every case, including when the
request's task is cancelled. Settlement therefore runs in ``finally``
inside a shielded cancel scope.
"""

from __future__ import annotations

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from accessai.chat.service import ChatStream
from accessai.observability.logging import get_logger

log = get_logger("accessai.chat.streaming")

SSE_HEADERS = {
    "cache-control": "no-cache",
    # Tell nginx-style proxies not to buffer the events.
    "x-accel-buffering": "no",
}


class ChatStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(self, stream: ChatStream) -> None:
        # Not Response.__init__: it would announce a Content-Length of 0.
        self.status_code = 200
        self.background = None
        self.init_headers(SSE_HEADERS)
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        interrupted: str | None = "cancelled"
        try:
            async with anyio.create_task_group() as group:

                async def watch_for_disconnect() -> None:
                    nonlocal interrupted
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    interrupted = "client_aborted"
                    group.cancel_scope.cancel()

                group.start_soon(watch_for_disconnect)
                await self._relay(send)
                interrupted = None
                group.cancel_scope.cancel()
        except OSError:  # servers on ASGI spec 2.4 raise on sending to a gone client
            interrupted = "client_aborted"
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.finish(interrupted=interrupted)

    async def _relay(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        with anyio.move_on_after(self.stream.deadline) as deadline:
            while (event := await self.stream.next_event()) is not None:
                await send({"type": "http.response.body", "body": event, "more_body": True})
        if deadline.cancelled_caught:
            event = self.stream.cut_at_deadline()
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
