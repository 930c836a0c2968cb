"""Metered AI requests: reserve credits, run the engine, settle or refund.

Each request is three short transactions, with no transaction (and no
database connection) held while the engine runs:

1. **Reserve**: claim the Idempotency-Key (if any), insert a ``pending``
   usage row and deduct the price with the reference ``usage:<id>``
   (``credits.spend_with_record``: one statement on PostgreSQL). Commit.
   Not enough credits: nothing is written but a refused usage row, and
   ``InsufficientCreditsError`` (402) propagates; an account on hold raises
   ``AccountOnHoldError`` (402) the same way.
2. **Run** the engine.
3. **Settle**: on success mark the usage row ``success`` and store the
   response on the idempotency key. On any failure (an engine error or
   timeout, a malformed result, cancellation, a bug) refund the price with
   its own ledger row (reason ``ai_refund``, reference ``usage:<id>:refund``),
   mark the usage row with the failure and release the key. Commit.

This is the one exception to "services flush, never commit": the service
gets the session *factories* and runs each step in ``async with
factory.begin()``. Without an Idempotency-Key, reserve and settle are one
statement each on PostgreSQL, so they run on the statement sessions
(``core.db.create_statement_sessionmaker``: no BEGIN/COMMIT round trips);
with a key each step writes the key too, in a transaction.

No transaction stays open across the engine call: it would keep the
user's balance row locked on PostgreSQL (serialising their requests) and
the database-wide write lock on SQLite (``BEGIN IMMEDIATE``) for as long as
the engine takes.

A process that dies between steps 1 and 3 leaves a ``pending`` reservation;
``release_stale_reservations`` (at start-up, then every
AI_SWEEP_INTERVAL_SECONDS) refunds those older than
``AI_STALE_RESERVATION_MINUTES``. Step 3 and the sweep both settle through a
conditional update on ``outcome = 'pending'``, and the refund's ledger
reference is unique per user, so a reservation is settled once and refunded
at most once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import pydantic
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accessai.ai import idempotency, usage
from accessai.ai.engines.base import (
    AIEngine,
    AnalysisResult,
    EngineResponseError,
    EngineTimeoutError,
    EngineUsage,
    SummaryResult,
)
from accessai.ai.schemas import AnalysisOut, SentimentOut
from accessai.core.config import Settings
from accessai.core.db import utcnow
from accessai.core.errors import AppError
from accessai.credits import service as credits
from accessai.observability import metrics
from accessai.observability.logging import get_logger

log = get_logger("accessai.ai")

Endpoint = Literal["summarize", "analyze"]
REFUND_REASON = "ai_refund"
SWEEP_BATCH = 200

# Strong references to refunds running as their own tasks, so none is collected mid-way.
_refunds_in_flight: set[asyncio.Task[None]] = set()


# The ledger reference of a reservation; {id} is the usage row's id.
RESERVATION_REFERENCE = "usage:{id}"


def refund_reference(usage_id: int) -> str:
    return f"usage:{usage_id}:refund"


@dataclass(frozen=True, slots=True)
class AIResponse:
    """What the endpoint answers: the JSON body and the credit headers' values."""

    body: dict[str, Any]
    credits_charged: int
    balance: int
    status_code: int = 200
    # True when the body is the stored response of an earlier request with the same key.
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class _Reservation:
    usage_id: int
    claim: idempotency.Claim | None


@dataclass(frozen=True, slots=True)
class _Outcome:
    """An engine result checked and turned into response fields (no credit fields yet)."""

    fields: dict[str, Any]
    model: str
    tokens: EngineUsage


class AIService:
    """One request's view of the AI features. Built per request by a dependency."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        engine: AIEngine,
        settings: Settings,
        *,
        statements: async_sessionmaker[AsyncSession] | None = None,
        request_id: str | None = None,
    ) -> None:
        self._sessions = sessions
        # For the steps that are one statement on PostgreSQL; see the module docstring.
        self._statements = statements or sessions
        self._engine = engine
        self._settings = settings
        self._request_id = request_id

    async def summarize(
        self, user_id: uuid.UUID, text: str, *, idempotency_key: str | None = None
    ) -> AIResponse:
        return await self._metered(user_id, "summarize", text, idempotency_key)

    async def analyze(
        self, user_id: uuid.UUID, text: str, *, idempotency_key: str | None = None
    ) -> AIResponse:
        return await self._metered(user_id, "analyze", text, idempotency_key)

    def price(self, endpoint: Endpoint) -> int:
        if endpoint == "summarize":
            return self._settings.price_summarize
        return self._settings.price_analyze

    # --- The flow -----------------------------------------------------------------

    async def _metered(
        self, user_id: uuid.UUID, endpoint: Endpoint, text: str, key: str | None
    ) -> AIResponse:
        price = self.price(endpoint)
        request_hash = idempotency.fingerprint(endpoint, {"text": text}) if key else None
        reserved = await self._reserve(user_id, endpoint, text, price, key, request_hash)
        if isinstance(reserved, AIResponse):
            return reserved

        started = time.perf_counter()
        try:
            outcome = await self._run(endpoint, text)
        except BaseException as error:
            latency = usage.milliseconds(time.perf_counter() - started)
            # A task of its own, shielded: a cancelled request (shutdown, client
            # gone) still gets its refund written instead of leaving it to the sweep.
            refund = asyncio.create_task(
                self._refund(user_id, endpoint, price, reserved, error, latency)
            )
            _refunds_in_flight.add(refund)
            refund.add_done_callback(_log_failed_refund)
            with contextlib.suppress(Exception):  # logged by the callback
                await asyncio.shield(refund)
            raise
        return await self._settle(user_id, endpoint, price, reserved, outcome, started)

    async def _reserve(
        self,
        user_id: uuid.UUID,
        endpoint: Endpoint,
        text: str,
        price: int,
        key: str | None,
        request_hash: str | None,
    ) -> _Reservation | AIResponse:
        """Step 1: claim the key, open the usage row and deduct the price, in one commit."""
        sessions = self._statements if key is None else self._sessions
        try:
            async with sessions.begin() as session:
                claim: idempotency.Claim | None = None
                if key is not None and request_hash is not None:
                    claimed = await idempotency.claim(
                        session,
                        user_id=user_id,
                        key=key,
                        endpoint=endpoint,
                        request_hash=request_hash,
                        ttl=timedelta(hours=self._settings.idempotency_ttl_hours),
                    )
                    if isinstance(claimed, idempotency.StoredResponse):
                        log.info("ai.idempotent_replay", endpoint=endpoint)
                        return _replay(claimed)
                    claim = claimed
                usage_id = await reserve(
                    session,
                    user_id=user_id,
                    endpoint=endpoint,
                    engine=self._engine,
                    input_chars=len(text),
                    price=price,
                    request_id=self._request_id,
                )
                if claim is not None:
                    await idempotency.attach_usage(session, claim, usage_id)
        except (credits.InsufficientCreditsError, credits.AccountOnHoldError) as refusal:
            if isinstance(refusal, credits.InsufficientCreditsError):
                metrics.record_insufficient_credits(endpoint)
            await self._log_refusal(user_id, endpoint, text, refusal.code)
            raise
        return _Reservation(usage_id=usage_id, claim=claim)

    async def _run(self, endpoint: Endpoint, text: str) -> _Outcome:
        """Step 2: the engine call (the one place it happens) and the check of its result."""
        result: SummaryResult | AnalysisResult
        # Timed and, on failure, counted by kind (a garbage answer included).
        with metrics.ai_engine_call(self._engine.name, endpoint):
            if endpoint == "summarize":
                result = await self._engine.summarize(text)
            else:
                result = await self._engine.analyze(text)
            return _checked(endpoint, result)

    async def _settle(
        self,
        user_id: uuid.UUID,
        endpoint: Endpoint,
        price: int,
        reserved: _Reservation,
        outcome: _Outcome,
        started: float,
    ) -> AIResponse:
        """Step 3 on success: keep the charge, log the usage, store the response."""
        latency = usage.milliseconds(time.perf_counter() - started)
        sessions = self._statements if reserved.claim is None else self._sessions
        async with sessions.begin() as session:
            balance = await usage.settle_reading_balance(
                session,
                reserved.usage_id,
                outcome=usage.SUCCESS,
                credits_charged=price,
                latency_ms=latency,
                model=outcome.model,
                tokens=outcome.tokens,
            )
            if balance is not None:
                body = _render(outcome, self._engine.name, price, balance)
                if reserved.claim is not None:
                    await idempotency.complete(session, reserved.claim, 200, body)
            elif reserved.claim is not None:
                await idempotency.release(session, reserved.claim)
        if balance is None:
            # The sweep judged this request dead and refunded it already.
            log.warning("ai.settled_after_sweep", endpoint=endpoint, usage_id=reserved.usage_id)
            raise EngineTimeoutError(
                "The request took too long and its reservation was released; nothing was charged."
            )
        metrics.record_credits_spent(endpoint, price)  # committed above
        log.info(
            "ai.request_settled",
            endpoint=endpoint,
            engine=self._engine.name,
            usage_id=reserved.usage_id,
            credits=price,
            latency_ms=latency,
        )
        return AIResponse(body=body, credits_charged=price, balance=balance)

    async def _refund(
        self,
        user_id: uuid.UUID,
        endpoint: Endpoint,
        price: int,
        reserved: _Reservation,
        error: BaseException,
        latency: int,
    ) -> None:
        """Step 3 on failure: give the reservation back and record why."""
        outcome = usage.failure_outcome(error)
        async with self._sessions.begin() as session:
            settled = await usage.settle_unpaid(
                session, reserved.usage_id, outcome=outcome, latency_ms=latency
            )
            if settled:
                # Only the winner of the conditional settle writes this reference.
                await credits.add_credits(
                    session,
                    user_id,
                    price,
                    REFUND_REASON,
                    reference=refund_reference(reserved.usage_id),
                    fresh_reference=True,
                )
            if reserved.claim is not None:
                await idempotency.release(session, reserved.claim)
            if isinstance(error, AppError):
                # The client sees this error: say nothing was charged and what is left.
                error.headers = {
                    **error.headers,
                    "X-Credits-Charged": "0",
                    "X-Credits-Remaining": str(await credits.get_balance(session, user_id)),
                }
        log.warning(
            "ai.request_refunded",
            endpoint=endpoint,
            engine=self._engine.name,
            usage_id=reserved.usage_id,
            outcome=outcome,
            credits=price,
            latency_ms=latency,
        )

    async def _log_refusal(
        self, user_id: uuid.UUID, endpoint: Endpoint, text: str, outcome: str
    ) -> None:
        try:
            async with self._statements.begin() as session:
                await usage.record_refusal(
                    session,
                    user_id=user_id,
                    endpoint=endpoint,
                    engine=self._engine.name,
                    model=self._engine.model,
                    input_chars=len(text),
                    outcome=outcome,
                    request_id=self._request_id,
                )
        except SQLAlchemyError as error:
            # The refusal itself stands; only its log line in the database is lost.
            log.warning("ai.refusal_not_logged", endpoint=endpoint, error=repr(error))


async def reserve(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    endpoint: str,
    engine: AIEngine,
    input_chars: int,
    price: int,
    request_id: str | None,
) -> int:
    """Deduct ``price`` with a ``pending`` usage row that names it; the row's id.

    Raises ``InsufficientCreditsError`` or ``AccountOnHoldError`` and writes
    nothing when the account cannot pay.
    """
    spent = await credits.spend_with_record(
        session,
        user_id,
        price,
        endpoint,
        record=usage.USAGE_TABLE,
        values=usage.pending_row(
            user_id=user_id,
            endpoint=endpoint,
            engine=engine.name,
            model=engine.model,
            input_chars=input_chars,
            reserved=price,
            request_id=request_id,
        ),
        reference=RESERVATION_REFERENCE,
    )
    return int(spent.record_id)


# --- Recovery after a crash -------------------------------------------------------


async def release_stale_reservations(
    sessions: async_sessionmaker[AsyncSession],
    *,
    older_than: timedelta,
    idempotency_ttl: timedelta,
) -> int:
    """Refund reservations left ``pending`` by requests that died; returns how many.

    Run at start-up and every AI_SWEEP_INTERVAL_SECONDS. ``older_than`` must
    exceed the slowest engine call, so a request still running on another
    replica is never refunded under it (and if one is, its own settle step
    loses the conditional update and answers with an error instead of
    charging). Also purges expired keys.
    """
    cutoff = utcnow() - older_than
    refunded = 0
    while True:
        async with sessions.begin() as session:
            stale = await usage.find_pending(session, created_before=cutoff, limit=SWEEP_BATCH)
        for reservation in stale:
            async with sessions.begin() as session:
                if await usage.settle_unpaid(
                    session, reservation.usage_id, outcome=usage.ABANDONED
                ):
                    if reservation.credits > 0:
                        await credits.add_credits(
                            session,
                            reservation.user_id,
                            reservation.credits,
                            REFUND_REASON,
                            reference=refund_reference(reservation.usage_id),
                        )
                    refunded += 1
                await idempotency.release_for_usage(session, reservation.usage_id)
        if len(stale) < SWEEP_BATCH:
            break
    async with sessions.begin() as session:
        purged = await idempotency.purge_expired(session, created_before=utcnow() - idempotency_ttl)
    if refunded or purged:
        log.info("ai.sweep_done", refunded=refunded, expired_keys_purged=purged)
    return refunded


# --- Helpers ------------------------------------------------------------------------


def _checked(endpoint: Endpoint, result: object) -> _Outcome:
    """Turn an engine result into response fields, or ``EngineResponseError`` for garbage."""
    try:
        if endpoint == "summarize" and isinstance(result, SummaryResult):
            summary = result.summary.strip() if isinstance(result.summary, str) else ""
            if not summary:
                raise EngineResponseError("The AI engine returned an empty summary.")
            return _Outcome({"summary": summary}, _model_name(result.model), result.usage)
        if endpoint == "analyze" and isinstance(result, AnalysisResult):
            sentiment = SentimentOut(label=result.sentiment_label, score=result.sentiment_score)
            fields = {
                "word_count": result.word_count,
                "sentence_count": result.sentence_count,
                "reading_time_seconds": result.reading_time_seconds,
                "sentiment": sentiment.model_dump(),
                "keywords": list(result.keywords),
            }
            # Validate the shape now, before any credits are settled on it.
            AnalysisOut(engine="-", model="-", credits_charged=0, balance=0, **fields)
            return _Outcome(fields, _model_name(result.model), result.usage)
    except pydantic.ValidationError:
        raise EngineResponseError("The AI engine returned a malformed result.") from None
    raise EngineResponseError("The AI engine returned a result of the wrong kind.")


def _render(outcome: _Outcome, engine: str, charged: int, balance: int) -> dict[str, Any]:
    """The answer's body: the fields ``_checked`` validated, after the charge fields."""
    return {
        "engine": engine,
        "model": outcome.model,
        "credits_charged": charged,
        "balance": balance,
        **outcome.fields,
    }


def _replay(stored: idempotency.StoredResponse) -> AIResponse:
    body = stored.body
    return AIResponse(
        body=body,
        credits_charged=int(body.get("credits_charged", 0)),
        balance=int(body.get("balance", 0)),
        status_code=stored.status_code,
        replayed=True,
    )


def _model_name(model: object) -> str:
    return model if isinstance(model, str) and model else "unknown"


def _log_failed_refund(task: asyncio.Task[None]) -> None:
    _refunds_in_flight.discard(task)
    if not task.cancelled() and (error := task.exception()) is not None:
        # The reservation stays pending; the sweep refunds it.
        log.error("ai.refund_failed", error=repr(error))
