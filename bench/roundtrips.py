"""Count what one request costs the database: statements, transactions, pings.

``python -m bench.roundtrips`` runs the app in-process (httpx over ASGI) on a
throwaway PostgreSQL database and prints, per endpoint, how many SQL
statements, BEGIN/COMMIT sent to the server (none on AUTOCOMMIT
connections), savepoints, pool checkouts and liveness pings a single request
makes. Deterministic, unlike timings, so it shows what an optimisation
removed.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import event

from bench.run import ANALYZE_TEXT, create_database, drop_database, migrate


async def count(url: str) -> dict[str, dict[str, int]]:
    from accessai.core.config import Settings
    from accessai.core.db import create_engine, create_sessionmaker
    from accessai.core.security import issue_access_token
    from accessai.main import create_app
    from accessai.users import service as users_service

    settings = Settings(database_url=url, log_level="WARNING", rate_limit_ai="10000000/minute")
    engine = create_engine(url)
    async with create_sessionmaker(engine)() as session, session.begin():
        user, _ = await users_service.get_or_create_user_by_email(
            session, email="count@example.test", signup_bonus=1000
        )
        token = issue_access_token(settings, user).token
    await engine.dispose()

    app = create_app(settings)
    seen: Counter[str] = Counter()
    results: dict[str, dict[str, int]] = {}
    async with LifespanManager(app):
        sync_engine = app.state.engine.sync_engine

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
            return ping(dbapi_connection)

        sync_engine.dialect.do_ping = counted_ping  # type: ignore[method-assign]
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            calls = {
                "POST /api/analyze": ("POST", "/api/analyze", {"text": ANALYZE_TEXT}),
                "GET /credits/balance": ("GET", "/credits/balance", None),
                "GET /credits/transactions": ("GET", "/credits/transactions", None),
            }
            for name, (method, path, body) in calls.items():
                await client.request(method, path, json=body, headers=headers)  # warm
                seen.clear()
                response = await client.request(method, path, json=body, headers=headers)
                response.raise_for_status()
                results[name] = dict(seen)
                # SAVEPOINT and RELEASE are already among the statements.
                results[name]["round_trips"] = (
                    seen["statements"] + seen["begin"] + seen["commit"] + seen["pings"]
                )
    return results


def main() -> None:
    dsn = asyncio.run(create_database())
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        migrate(url)
        print(json.dumps(asyncio.run(count(url)), indent=2))
    finally:
        asyncio.run(drop_database(dsn))


if __name__ == "__main__":
    main()
