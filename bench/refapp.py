"""The reference app: what the metered path is compared against.

A bare ASGI callable (no framework, no middleware) served by uvicorn like the
real service, with two routes:

- ``POST /ceiling``: the database ceiling. The same deduct-and-record work as
  the metered path's reservation (a usage row, the balance deduction guarded
  by ``balance >= price``, the ledger row referencing the usage row) issued
  directly through an asyncpg pool as ONE statement, i.e. one round trip and
  one implicit transaction. The user comes from the ``X-User`` header.
- ``POST /engine``: the local engine's ``analyze`` on the request's text, with
  no authentication, no credits and no usage log: the unmetered twin of
  ``POST /api/analyze`` for the metering-overhead comparison.

Configured by environment: ``BENCH_PG_DSN`` (plain ``postgresql://`` DSN) and
``BENCH_POOL_SIZE``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import orjson

from accessai.ai.engines.local import LocalEngine

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PRICE = 25

# One round trip: usage row, guarded deduction, ledger row with the running balance.
DEDUCT_AND_RECORD = """
WITH usage AS (
    INSERT INTO usage_records
        (user_id, endpoint, engine, model, input_chars, credits_charged, latency_ms, outcome,
         created_at)
    VALUES ($1, 'analyze', 'ceiling', NULL, $3, $2, 0, 'pending', now())
    RETURNING id
), debit AS (
    UPDATE user_credits SET balance = balance - $2, updated_at = now()
    WHERE user_id = $1 AND balance >= $2 AND debt = 0
    RETURNING balance
)
INSERT INTO credit_transactions
    (user_id, amount, reason, reference, balance_after, debt_change, created_at)
SELECT $1, -$2, 'analyze', 'usage:' || usage.id, debit.balance, 0, now()
FROM usage, debit
RETURNING balance_after
"""


class ReferenceApp:
    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None
        self._engine: LocalEngine | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        path = scope["path"]
        if path == "/ceiling":
            user = dict(scope["headers"]).get(b"x-user", b"").decode()
            text = orjson.loads(body)["text"]
            assert self._pool is not None
            balance = await self._pool.fetchval(DEDUCT_AND_RECORD, user, PRICE, len(text))
            if balance is None:
                await _respond(send, 402, {"error": "insufficient_credits"})
            else:
                await _respond(send, 200, {"credits_charged": PRICE, "balance": balance})
        elif path == "/engine":
            assert self._engine is not None
            result = await self._engine.analyze(orjson.loads(body)["text"])
            await _respond(send, 200, {"word_count": result.word_count})
        elif path == "/ready":
            await _respond(send, 200, {"status": "ok"})
        else:
            await _respond(send, 404, {"error": "not_found"})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                size = int(os.environ.get("BENCH_POOL_SIZE", "10"))
                self._pool = await asyncpg.create_pool(
                    os.environ["BENCH_PG_DSN"], min_size=size, max_size=size
                )
                self._engine = LocalEngine()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._pool is not None:
                    await self._pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _respond(send: Send, status: int, payload: dict[str, Any]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": orjson.dumps(payload)})


app = ReferenceApp()
