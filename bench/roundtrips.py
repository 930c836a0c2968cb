"""Count what one request costs the database: statements, transactions, pings.

``python -m bench.roundtrips`` runs the app in-process (httpx over ASGI) on a
throwaway PostgreSQL database and prints, per endpoint, how many SQL
statements, BEGIN/COMMIT sent to the server (none on AUTOCOMMIT
connections), savepoints, pool checkouts and liveness pings a single request
makes. Deterministic, unlike timings, so it shows what an optimisation
removed.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from sqlalchemy import event

from bench.inprocess import CALLS, on_throwaway_database, served

COUNTED = ["POST /api/analyze", "GET /credits/balance", "GET /credits/transactions"]


async def count(url: str) -> dict[str, dict[str, int]]:
    seen: Counter[str] = Counter()
    results: dict[str, dict[str, int]] = {}
    async with served(url) as app:
        sync_engine = app.app.state.engine.sync_engine

        def on(name: str) -> Any:
            def listener(*_args: Any, **_kwargs: Any) -> None:
                seen[name] += 1

            return listener

        def on_transaction(name: str) -> Any:
            def listener(connection: Any, *_args: Any) -> None:
                # On an AUTOCOMMIT connection BEGIN and COMMIT never reach the server.
                if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
                    seen[name] += 1

            return listener

        event.listen(sync_engine, "before_cursor_execute", on("statements"))
        event.listen(sync_engine, "begin", on_transaction("begin"))
        event.listen(sync_engine, "commit", on_transaction("commit"))
        event.listen(sync_engine, "savepoint", on("savepoint"))
        event.listen(sync_engine, "release_savepoint", on("release_savepoint"))
        event.listen(sync_engine.pool, "checkout", on("checkouts"))
        ping = sync_engine.dialect.do_ping

        def counted_ping(dbapi_connection: Any) -> bool:
            seen["pings"] += 1
            return bool(ping(dbapi_connection))

        sync_engine.dialect.do_ping = counted_ping  # type: ignore[method-assign,unused-ignore]
        for name in COUNTED:
            assert name in CALLS
            await app.call(name)  # warm: prepared statements, caches
            seen.clear()
            await app.call(name)
            results[name] = dict(seen)
            # SAVEPOINT and RELEASE are already among the statements.
            results[name]["round_trips"] = (
                seen["statements"] + seen["begin"] + seen["commit"] + seen["pings"]
            )
    return results


def main() -> None:
    print(json.dumps(on_throwaway_database(count), indent=2))


if __name__ == "__main__":
    main()
