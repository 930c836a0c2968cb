"""GET /credits/balance and GET /credits/transactions."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.core.config import Settings
from accessai.credits import service as credits
from accessai.credits.cursor import decode_cursor, encode_cursor
from tests.conftest import TestDatabase as Database
from tests.credits.support import counting_statements
from tests.factories import auth_headers, create_user


async def spend_times(session: AsyncSession, user_id: uuid.UUID, times: int, cost: int = 1) -> None:
    for i in range(times):
        await credits.deduct_credits(session, user_id, cost, "summarize", f"req-{i}")
    await session.commit()


async def all_pages(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = await client.get("/credits/transactions", params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination never ended")


async def test_balance_shows_the_balance_and_the_last_10_rows(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    user = await create_user(session, credits=100)
    await spend_times(session, user.id, 12, cost=2)
    response = await client.get("/credits/balance", headers=auth_headers(settings, user))
    assert response.status_code == 200
    body = response.json()
    assert (body["balance"], body["debt"], body["on_hold"]) == (76, 0, False)
    rows = body["transactions"]
    assert len(rows) == 10
    assert [row["reference"] for row in rows] == [f"req-{i}" for i in range(11, 1, -1)]
    assert rows[0] == {
        "id": rows[0]["id"],
        "amount": -2,
        "debt_change": 0,
        "reason": "summarize",
        "reference": "req-11",
        "note": None,
        "balance_after": 76,
        "created_at": rows[0]["created_at"],
    }
    assert [row["id"] for row in rows] == sorted((row["id"] for row in rows), reverse=True)


async def test_balance_of_a_new_user_is_the_signup_bonus(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    user = await create_user(session, credits=100)
    body = (await client.get("/credits/balance", headers=auth_headers(settings, user))).json()
    assert body["balance"] == 100
    assert [(r["amount"], r["reason"]) for r in body["transactions"]] == [(100, "signup_bonus")]


async def test_balance_shows_debt_and_hold(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    user = await create_user(session, credits=10)
    await credits.take_back_credits(session, user.id, 25, "stripe_refund", "re_1")
    await session.commit()
    body = (await client.get("/credits/balance", headers=auth_headers(settings, user))).json()
    assert (body["balance"], body["debt"], body["on_hold"]) == (0, 15, True)
    assert (body["transactions"][0]["amount"], body["transactions"][0]["debt_change"]) == (-10, 15)


@pytest.mark.parametrize("path", ["/credits/balance", "/credits/transactions"])
async def test_credit_routes_need_a_signed_in_user(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    response = await client.get(path, headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401


async def test_pages_cover_the_history_exactly_once_newest_first(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    user = await create_user(session, credits=100)
    await spend_times(session, user.id, 22)  # 23 rows with the bonus
    headers = auth_headers(settings, user)
    first = (await client.get("/credits/transactions?limit=5", headers=headers)).json()
    assert len(first["items"]) == 5
    assert first["next_cursor"] is not None
    items = await all_pages(client, headers, limit=5)
    ids = [item["id"] for item in items]
    assert len(ids) == 23
    assert ids == sorted(set(ids), reverse=True)
    assert items[-1]["reason"] == "signup_bonus"


async def test_a_full_last_page_has_no_next_cursor(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    user = await create_user(session, credits=100)
    await spend_times(session, user.id, 19)  # exactly 20 rows
    headers = auth_headers(settings, user)
    first = (await client.get("/credits/transactions?limit=10", headers=headers)).json()
    second = (
        await client.get(
            "/credits/transactions",
            params={"limit": 10, "cursor": first["next_cursor"]},
            headers=headers,
        )
    ).json()
    assert (len(first["items"]), len(second["items"])) == (10, 10)
    assert second["next_cursor"] is None
    default = (await client.get("/credits/transactions", headers=headers)).json()
    assert (len(default["items"]), default["next_cursor"]) == (20, None)  # default limit 20


async def test_rows_arriving_between_pages_cause_no_gap_and_no_duplicate(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    user = await create_user(session, credits=1000)
    await spend_times(session, user.id, 24)
    headers = auth_headers(settings, user)
    expected = [item["id"] for item in await all_pages(client, headers, limit=100)]

    seen: list[int] = []
    cursor = None
    for page_number in range(100):
        params: dict[str, Any] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/credits/transactions", params=params, headers=headers)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # Spending goes on while the user reads the history.
        await credits.deduct_credits(session, user.id, 1, "analyze", f"late-{page_number}")
        await session.commit()
    # The first page was the newest at that moment; later rows belong before it.
    assert seen == expected


async def test_filter_by_reason(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    user = await create_user(session, credits=100)
    for i in range(7):
        await credits.deduct_credits(session, user.id, 1, "summarize")
        await credits.deduct_credits(session, user.id, 2, "analyze")
        if i % 3 == 0:
            await credits.add_credits(session, user.id, 5, "admin_grant", note=f"gift {i}")
    await session.commit()
    headers = auth_headers(settings, user)
    analyze = await all_pages(client, headers, limit=3, reason="analyze")
    assert [(r["amount"], r["reason"]) for r in analyze] == [(-2, "analyze")] * 7
    grants = await all_pages(client, headers, reason="admin_grant")
    assert [r["note"] for r in grants] == ["gift 6", "gift 3", "gift 0"]
    none = await all_pages(client, headers, reason="chat")
    assert none == []


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "query",
    [
        {"cursor": "garbage!"},
        {"cursor": "abc"},
        {"cursor": ""},
        {"cursor": b64("v1:0")},
        {"cursor": b64("v1:-5")},
        {"cursor": b64("v1:12abc")},
        {"cursor": b64("v2:12")},
        {"cursor": b64("12")},
        {"cursor": b64("v1:" + "9" * 30)},
        {"cursor": base64.urlsafe_b64encode(b"\xff\xfe\x00").decode()},
        {"cursor": "A" * 65},
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"reason": "DROP TABLE"},
        {"reason": "x" * 65},
    ],
)
async def test_bad_page_parameters_are_422(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, query: dict[str, Any]
) -> None:
    user = await create_user(session, credits=100)
    response = await client.get(
        "/credits/transactions", params=query, headers=auth_headers(settings, user)
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"


def test_cursor_round_trip_and_opacity() -> None:
    for row_id in [1, 42, 2**63 - 1]:
        cursor = encode_cursor(row_id)
        assert decode_cursor(cursor) == row_id
        assert str(row_id) not in cursor  # not a bare id a client might compute


async def test_one_user_never_sees_another_users_credits(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    alice = await create_user(session, email="alice@example.com", credits=100)
    bob = await create_user(session, email="bob@example.com", credits=40)
    await spend_times(session, alice.id, 8)
    await credits.deduct_credits(session, bob.id, 5, "analyze", "bob-only")
    await session.commit()
    as_alice, as_bob = auth_headers(settings, alice), auth_headers(settings, bob)

    alice_balance = (await client.get("/credits/balance", headers=as_alice)).json()
    bob_balance = (await client.get("/credits/balance", headers=as_bob)).json()
    assert (alice_balance["balance"], bob_balance["balance"]) == (92, 35)
    assert {r["reference"] for r in bob_balance["transactions"]} == {"signup_bonus", "bob-only"}

    alice_ids = {r["id"] for r in await all_pages(client, as_alice, limit=3)}
    bob_ids = {r["id"] for r in await all_pages(client, as_bob, limit=3)}
    assert len(alice_ids) == 9
    assert len(bob_ids) == 2
    assert not alice_ids & bob_ids

    # A cursor from Alice's pages, replayed by Bob, pages through Bob's rows only.
    alice_page = (await client.get("/credits/transactions?limit=2", headers=as_alice)).json()
    bob_with_alice_cursor = (
        await client.get(
            "/credits/transactions",
            params={"cursor": alice_page["next_cursor"]},
            headers=as_bob,
        )
    ).json()
    assert {r["id"] for r in bob_with_alice_cursor["items"]} <= bob_ids
    # Nothing in the routes takes a user id: a query parameter naming Alice is ignored.
    sneaky = await client.get("/credits/balance", params={"user_id": str(alice.id)}, headers=as_bob)
    assert sneaky.json()["balance"] == 35


async def test_a_page_is_one_index_range_scan(db: Database, session: AsyncSession) -> None:
    """Constant time per page: the query reads the (user_id[, reason], id) index
    from the cursor downwards and stops at the limit, with no sort."""
    user_id = (await create_user(session, credits=100)).id
    await spend_times(session, user_id, 30)
    for reason, index in [
        (None, "ix_credit_transactions_user_id_id"),
        ("summarize", "ix_credit_transactions_user_id_reason_id"),
    ]:
        async with counting_statements(db.engine) as seen:
            await credits.list_transactions(
                session, user_id, limit=5, before_id=10**9, reason=reason
            )
        ((statement, parameters),) = [s for s in seen if "credit_transactions" in s[0]]
        plan = await explain(session, db.kind, statement, parameters)
        if db.kind == "postgresql" and reason is not None:
            # PostgreSQL picks between the two indexes by statistics (the
            # reason index once the reason is selective); both are range scans.
            assert "Index Scan Backward using ix_credit_transactions_user_id" in plan, plan
        else:
            assert index in plan, plan
        if db.kind == "postgresql":
            assert "Sort" not in plan, plan
            assert "Limit" in plan, plan
        else:
            assert "TEMP B-TREE" not in plan, plan


async def test_a_heavy_users_page_does_not_walk_the_primary_key(
    db: Database, session: AsyncSession
) -> None:
    """A user who owns most rows, followed by writes of others: PostgreSQL's
    statistics make a backward primary-key scan with a user filter look
    cheapest for ``user_id = :u ORDER BY id DESC``, and that scan reads and
    drops every newer row of other users. The page must stay on the index."""
    if db.kind != "postgresql":
        pytest.skip("a PostgreSQL planner choice")
    heavy = (await create_user(session, credits=1)).id
    light = (await create_user(session, credits=1)).id
    connection = await session.connection()
    for user_id, rows in ((heavy, 20_000), (light, 1_000)):
        await connection.exec_driver_sql(
            "INSERT INTO credit_transactions"
            " (user_id, amount, reason, balance_after, debt_change, created_at)"
            " SELECT $1, 0, 'bulk', 1, 1, now() FROM generate_series(1, $2)",
            (user_id, rows),
        )
    await connection.exec_driver_sql("ANALYZE credit_transactions")
    await session.commit()
    async with counting_statements(db.engine) as seen:
        await credits.list_transactions(session, heavy, limit=20)
    ((statement, parameters),) = [s for s in seen if "credit_transactions" in s[0]]
    plan = await explain(session, db.kind, statement, parameters, allow_seqscan=True)
    assert "ix_credit_transactions_user_id_id" in plan, plan
    assert "pk_credit_transactions" not in plan, plan


async def explain(
    session: AsyncSession, kind: str, statement: str, params: Any, *, allow_seqscan: bool = False
) -> str:
    connection = await session.connection()
    if kind == "postgresql":
        if not allow_seqscan:
            # Small test tables would make a sequential scan cheapest; forbid
            # it to see the plan a large ledger gets.
            await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        result = await connection.exec_driver_sql("EXPLAIN " + statement, params)
        lines = [row[0] for row in result]
    else:
        result = await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
        lines = [str(row[-1]) for row in result]
    await session.rollback()
    return "\n".join(lines)
