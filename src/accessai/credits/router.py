"""The signed-in user's own balance and ledger. No route takes a user id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from accessai.core.db import SessionDep
from accessai.core.security import CurrentUser
from accessai.credits import service
from accessai.credits.cursor import MAX_CURSOR_LENGTH, decode_cursor, encode_cursor
from accessai.credits.schemas import BalanceOut, TransactionOut, TransactionPageOut

router = APIRouter(prefix="/credits", tags=["credits"])

RECENT_TRANSACTIONS = 10


@router.get("/balance")
async def read_balance(user: CurrentUser, session: SessionDep) -> BalanceOut:
    """The current balance, any debt, and the latest ledger rows."""
    account = await service.get_account(session, user.id)
    page = await service.list_transactions(session, user.id, limit=RECENT_TRANSACTIONS)
    balance = account.balance if account is not None else 0
    debt = account.debt if account is not None else 0
    return BalanceOut(
        balance=balance,
        debt=debt,
        on_hold=debt > 0,
        transactions=[TransactionOut.of(movement) for movement in page.items],
    )


@router.get("/transactions")
async def read_transactions(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Rows per page.")] = 20,
    cursor: Annotated[
        str | None,
        Query(max_length=MAX_CURSOR_LENGTH, description="next_cursor of the previous page."),
    ] = None,
    reason: Annotated[
        str | None,
        Query(pattern=service.REASON_PATTERN.pattern, description="Only rows with this reason."),
    ] = None,
) -> TransactionPageOut:
    """The full ledger, newest first, one page at a time."""
    before_id = decode_cursor(cursor) if cursor is not None else None
    page = await service.list_transactions(
        session, user.id, limit=limit, before_id=before_id, reason=reason
    )
    return TransactionPageOut(
        items=[TransactionOut.of(movement) for movement in page.items],
        next_cursor=(
            encode_cursor(page.next_before_id) if page.next_before_id is not None else None
        ),
    )
