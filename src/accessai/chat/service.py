"""Chat completions billed by tokens: plan, hold, call the provider, settle.

1. **Plan**: find the model's price, count the prompt with the tokenizer,
   fix the completion limit (the client's ``max_tokens``, or the cap) and
   compute the most the request can cost:
   ``cost(prompt * (1 + margin), max_tokens)``.
2. **Hold** that amount (``holds.take_hold``): 402 when the balance cannot.
3. **Call** the provider with the same completion limit, so it cannot
   produce more than was held.
4. **Settle** (``holds.settle_hold``): charge the actual cost, release the
   rest, log the call. Settlement runs in ``finally`` under a shielded
   cancel scope, so a client disconnect or a cancelled task still settles.

What is charged (the same rule for streams and plain answers):

- the provider reported usage: exactly that usage, priced;
- no usage, but output was produced (a stream the client left, that broke
  or that never reported usage): the tokenizer's count of the prompt and of
  the text produced;
- no output at all (the provider failed before its first token, or the
  client left before it): nothing.

A charge never exceeds the hold: should the provider report more than was
held (its tokenizer counted the prompt higher than ours plus the margin),
the hold is charged and the difference logged (``chat.charge_capped``).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accessai.ai.engines.base import EngineResponseError, EngineTimeoutError
from accessai.ai.usage import failure_outcome, milliseconds
from accessai.chat import holds
from accessai.chat.errors import ChatNotConfiguredError, app_error_body
from accessai.chat.pricing import ModelPrice, PriceBook
from accessai.chat.schemas import ChatCompletionRequest
from accessai.chat.tokenizer import Tokenizer
from accessai.chat.upstream import ENGINE_NAME, UpstreamRequest
from accessai.core.config import Settings
from accessai.core.errors import AppError, BadRequestError
from accessai.credits.service import AccountOnHoldError, InsufficientCreditsError
from accessai.observability import metrics
from accessai.observability.logging import get_logger

if TYPE_CHECKING:  # the SDK is imported only when a provider is configured
    from openai import AsyncStream
    from openai.types import CompletionUsage
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    from accessai.chat.provider import ChatProvider

log = get_logger("accessai.chat")

# The endpoint/operation label of chat calls in the business metrics.
CHAT_METRIC_ENDPOINT = "chat"
# Ends of a call that are not the provider failing.
_NOT_ENGINE_FAILURES = frozenset({"success", "client_aborted", "cancelled"})

T = TypeVar("T")

DONE_EVENT = b"data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


@dataclass(frozen=True, slots=True)
class ChatPlan:
    """Everything decided about a request before any credit moves."""

    price: ModelPrice
    upstream: UpstreamRequest
    prompt_tokens: int  # the tokenizer's count, charged when the provider reports none
    hold_amount: int
    input_chars: int
    wants_usage: bool  # forward the final usage chunk of a stream


@dataclass(slots=True)
class Outcome:
    """How a call ended, filled in as it goes; settled once."""

    started: float
    request_id: str | None
    streamed: bool
    status: str = "engine_error"
    usage: CompletionUsage | None = None
    text: list[str] = field(default_factory=list)
    first_token_at: float | None = None

    @property
    def produced(self) -> bool:
        return self.first_token_at is not None

    def saw_text(self, text: str | None) -> None:
        if text:
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            self.text.append(text)


class ChatService:
    """Created once in the lifespan; holds no per-request state."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        statements: async_sessionmaker[AsyncSession] | None = None,
        provider: ChatProvider | None,
        tokenizer: Tokenizer | None,
    ) -> None:
        self.prices = PriceBook.from_settings(settings)
        self.provider = provider
        self.tokenizer = tokenizer
        self.sessionmaker = sessionmaker
        # One-statement work (taking a hold); see core.db.create_statement_sessionmaker.
        self.statements = statements or sessionmaker
        self.prompt_margin_percent = settings.chat_prompt_margin_percent
        self.max_duration_seconds = settings.chat_max_duration_seconds

    # --- Planning ----------------------------------------------------------------

    async def plan(self, request: ChatCompletionRequest) -> ChatPlan:
        if self.provider is None or self.tokenizer is None:
            raise ChatNotConfiguredError()
        price = self.prices.get(request.model)
        limit = request.requested_max_tokens
        if limit is None:
            limit = price.max_output_tokens  # pass the cap upstream: it bounds the hold
        elif limit > price.max_output_tokens:
            raise BadRequestError(
                f"max_tokens is too large: {limit}. This server allows at most "
                f"{price.max_output_tokens} completion tokens for model '{price.model}'."
            )
        counted = [message.counted() for message in request.messages]
        # Off the event loop: a long prompt takes milliseconds to encode.
        prompt_tokens = await anyio.to_thread.run_sync(self.tokenizer.count_messages, counted)
        prompt_bound = math.ceil(prompt_tokens * (100 + self.prompt_margin_percent) / 100)
        upstream = UpstreamRequest(
            model=price.upstream_model,
            messages=[m.model_dump(exclude_none=True) for m in request.messages],
            limit_field=price.token_limit_field,
            max_output_tokens=limit,
            options=request.sampling_options(),
        )
        return ChatPlan(
            price=price,
            upstream=upstream,
            prompt_tokens=prompt_tokens,
            hold_amount=price.cost(prompt_bound, limit),
            input_chars=sum(len(m.content) for m in counted),
            wants_usage=request.wants_usage,
        )

    # --- Plain answers -------------------------------------------------------------

    async def complete(
        self, user_id: uuid.UUID, plan: ChatPlan, request_id: str | None
    ) -> dict[str, Any]:
        """The provider's completion in OpenAI's shape, plus what it cost."""
        assert self.provider is not None
        outcome = Outcome(started=time.perf_counter(), request_id=request_id, streamed=False)
        hold = await self._take_hold(user_id, plan, outcome)
        charged = 0
        try:
            completion = await self._within_deadline(self.provider.complete(plan.upstream))
            if not completion.choices:
                raise EngineResponseError("The AI provider returned no choices.")
            outcome.usage = completion.usage
            for choice in completion.choices:
                outcome.saw_text(choice.message.content)
                outcome.saw_text(choice.message.refusal)
            outcome.status = "success"
        except BaseException as error:
            outcome.status = failure_outcome(error)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                charged = await self._settle(hold, plan, outcome)
        return self._completion_body(completion, plan, outcome, charged)

    def _completion_body(
        self, completion: ChatCompletion, plan: ChatPlan, outcome: Outcome, charged: int
    ) -> dict[str, Any]:
        body = completion.to_dict(mode="json", warnings=False)
        body["model"] = plan.price.model
        if reported_usage(completion.usage) is None:  # ours, counted with the tokenizer
            prompt, output = plan.prompt_tokens, self._count_output(outcome)
            body["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": output,
                "total_tokens": prompt + output,
            }
        body["accessai"] = {"credits_charged": charged}
        return body

    # --- Streams -------------------------------------------------------------------

    async def start_stream(
        self, user_id: uuid.UUID, plan: ChatPlan, request_id: str | None
    ) -> ChatStream:
        """Hold, then open the provider's stream; a failure here settles at 0 and raises.

        Errors before the provider's headers are ordinary HTTP errors; from
        here on the caller must drive ``ChatStream`` and call ``finish``.
        """
        assert self.provider is not None
        outcome = Outcome(started=time.perf_counter(), request_id=request_id, streamed=True)
        hold = await self._take_hold(user_id, plan, outcome)
        try:
            upstream = await self._within_deadline(self.provider.open_stream(plan.upstream))
        except BaseException as error:
            outcome.status = failure_outcome(error)
            with anyio.CancelScope(shield=True):
                await self._settle(hold, plan, outcome)
            raise
        return ChatStream(self, hold, plan, outcome, upstream)

    # --- Holds -----------------------------------------------------------------------

    async def _take_hold(self, user_id: uuid.UUID, plan: ChatPlan, outcome: Outcome) -> holds.Hold:
        try:
            return await holds.take_hold(
                self.statements,
                user_id=user_id,
                amount=plan.hold_amount,
                model=plan.price.model,
                request_id=outcome.request_id,
            )
        except (InsufficientCreditsError, AccountOnHoldError) as refusal:
            outcome.status = refusal.code
            try:
                await holds.record_refusal(
                    self.sessionmaker, user_id, self._usage_entry(plan, outcome, None)
                )
            except Exception:
                log.exception("chat.usage_log_failed")  # the 402 matters more than its log row
            self._log_call(plan, outcome, charged=0)
            raise

    async def _within_deadline(self, call: Awaitable[T]) -> T:
        """No provider call outlives CHAT_MAX_DURATION_SECONDS (nor, so, its hold)."""
        try:
            with anyio.fail_after(self.max_duration_seconds):
                return await call
        except TimeoutError:
            raise EngineTimeoutError(
                f"The AI provider did not answer within {self.max_duration_seconds:g} seconds."
            ) from None

    async def _settle(self, hold: holds.Hold, plan: ChatPlan, outcome: Outcome) -> int:
        """Charge what the outcome says and release the rest; never raises.

        If it fails (the database is down), the hold stays open and the
        sweep releases it in full later: the user is not charged.
        """
        try:
            tokens = await self._charged_tokens(plan, outcome)
            cost = plan.price.cost(*tokens) if tokens is not None else 0
            charged = min(cost, hold.amount)
            if cost > hold.amount:
                log.warning("chat.charge_capped", hold_id=str(hold.id), cost=cost, held=hold.amount)
            settlement = await holds.settle_hold(
                self.sessionmaker,
                hold,
                charged=charged,
                usage=self._usage_entry(plan, outcome, tokens),
            )
        except Exception:
            log.exception("chat.settle_failed", hold_id=str(hold.id))
            return 0
        self._log_call(plan, outcome, charged=settlement.charged)
        return settlement.charged

    async def _charged_tokens(self, plan: ChatPlan, outcome: Outcome) -> tuple[int, int] | None:
        """(prompt, completion) tokens to charge, or None when nothing is charged."""
        reported = reported_usage(outcome.usage)
        if reported is not None:
            return reported
        if not outcome.produced:
            return None
        output = await anyio.to_thread.run_sync(self._count_output, outcome)
        return plan.prompt_tokens, output

    def _count_output(self, outcome: Outcome) -> int:
        assert self.tokenizer is not None
        return self.tokenizer.count("".join(outcome.text))

    def _usage_entry(
        self, plan: ChatPlan, outcome: Outcome, tokens: tuple[int, int] | None
    ) -> holds.UsageEntry:
        now = time.perf_counter()
        return holds.UsageEntry(
            model=plan.price.model,
            engine=ENGINE_NAME,
            input_chars=plan.input_chars,
            prompt_tokens=tokens[0] if tokens is not None else None,
            completion_tokens=tokens[1] if tokens is not None else None,
            latency_ms=milliseconds(now - outcome.started),
            time_to_first_token_ms=(
                milliseconds(outcome.first_token_at - outcome.started)
                if outcome.streamed and outcome.first_token_at is not None
                else None
            ),
            outcome=outcome.status,
            request_id=outcome.request_id,
        )

    def _log_call(self, plan: ChatPlan, outcome: Outcome, *, charged: int) -> None:
        """Every chat call ends here once: its log line and its metrics."""
        if outcome.status == InsufficientCreditsError.code:
            metrics.record_insufficient_credits(CHAT_METRIC_ENDPOINT)
        elif outcome.status != AccountOnHoldError.code:  # the provider was called
            metrics.observe_ai_engine(
                ENGINE_NAME, CHAT_METRIC_ENDPOINT, time.perf_counter() - outcome.started
            )
            if outcome.status not in _NOT_ENGINE_FAILURES:
                metrics.record_ai_engine_failure(ENGINE_NAME, CHAT_METRIC_ENDPOINT, outcome.status)
        if charged > 0:
            metrics.record_credits_spent(CHAT_METRIC_ENDPOINT, charged)
        log.info(
            "chat.completed",
            model=plan.price.model,
            outcome=outcome.status,
            credits_charged=charged,
            held=plan.hold_amount,
            latency_ms=milliseconds(time.perf_counter() - outcome.started),
        )


class ChatStream:
    """One provider stream being relayed: its events, then exactly one settlement.

    ``next_event()`` returns the next Server-Sent Event to send (OpenAI's
    chunk format, ending with ``data: [DONE]``, or an in-stream error event
    when the provider fails mid-answer), or None when there is nothing more.
    ``finish()`` must be called once, whatever happened, and shielded.
    """

    def __init__(
        self,
        service: ChatService,
        hold: holds.Hold,
        plan: ChatPlan,
        outcome: Outcome,
        upstream: AsyncStream[ChatCompletionChunk],
    ) -> None:
        self._service = service
        self._hold = hold
        self._plan = plan
        self._outcome = outcome
        self._upstream = upstream
        self._ended = False
        self._finish_reason: str | None = None
        self._finished = False
        self._pending: deque[bytes] = deque()
        self._last_chunk: dict[str, Any] = {}

    @property
    def deadline(self) -> float:
        """Seconds left before the stream must be cut (CHAT_MAX_DURATION_SECONDS)."""
        elapsed = time.perf_counter() - self._outcome.started
        return max(0.0, self._service.max_duration_seconds - elapsed)

    async def next_event(self) -> bytes | None:
        provider = self._service.provider
        assert provider is not None  # a stream exists only when a provider is configured
        while not self._pending and not self._ended:
            try:
                with provider.errors():
                    chunk = await self._upstream.__anext__()
            except StopAsyncIteration:
                self._ended = True
                if self._finish_reason is None and self._outcome.usage is None:
                    return self._fail(
                        EngineResponseError(
                            "The AI provider's stream ended before the answer was complete."
                        )
                    )
                self._outcome.status = "success"
                if self._plan.wants_usage and reported_usage(self._outcome.usage) is None:
                    self._pending.append(sse(self._counted_usage_chunk()))
                self._pending.append(DONE_EVENT)
                break
            except AppError as error:  # the provider failed mid-stream, translated
                self._ended = True
                return self._fail(error)
            payload = self._relay(chunk)
            if payload is not None:
                return sse(payload)
        return self._pending.popleft() if self._pending else None

    def cut_at_deadline(self) -> bytes:
        """The stream ran out of time: the error event to end it with."""
        self._ended = True
        return self._fail(
            EngineResponseError(
                "The answer took longer than this server allows "
                f"({self._service.max_duration_seconds:g} seconds) and was cut."
            ),
            status="deadline_exceeded",
        )

    async def finish(self, *, interrupted: str | None = None) -> int:
        """Close the provider's stream and settle; returns the credits charged.

        ``interrupted``: why relaying stopped early (``client_aborted`` when the
        client left, ``cancelled`` when the server stopped the request).
        """
        if self._finished:
            raise RuntimeError("a chat stream is settled once")
        self._finished = True
        if interrupted is not None and not self._ended:
            self._outcome.status = interrupted
        try:
            await self._upstream.close()  # stops the provider generating (and billing us)
        except Exception:
            log.debug("chat.upstream_close_failed", exc_info=True)
        return await self._service._settle(self._hold, self._plan, self._outcome)

    def _relay(self, chunk: ChatCompletionChunk) -> dict[str, Any] | None:
        if chunk.usage is not None:
            self._outcome.usage = chunk.usage
        for choice in chunk.choices:
            self._outcome.saw_text(choice.delta.content)
            self._outcome.saw_text(choice.delta.refusal)
            if choice.finish_reason is not None:
                self._finish_reason = choice.finish_reason
        payload = chunk.to_dict(mode="json", warnings=False)
        payload["model"] = self._plan.price.model
        self._last_chunk = payload
        if not self._plan.wants_usage:
            payload.pop("usage", None)
            if not chunk.choices:
                return None  # the usage chunk the client did not ask for
        return payload

    def _counted_usage_chunk(self) -> dict[str, Any]:
        """The usage chunk the client asked for, when the provider sent none: our count."""
        prompt = self._plan.prompt_tokens
        output = self._service._count_output(self._outcome)
        return {
            "id": self._last_chunk.get("id", ""),
            "object": "chat.completion.chunk",
            "created": self._last_chunk.get("created", int(time.time())),
            "model": self._plan.price.model,
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": output,
                "total_tokens": prompt + output,
            },
        }

    def _fail(self, error: AppError, *, status: str | None = None) -> bytes:
        self._outcome.status = status or error.code
        return sse(app_error_body(error))


def reported_usage(usage: CompletionUsage | None) -> tuple[int, int] | None:
    """(prompt, completion) tokens as the provider reported them, if it did so sanely."""
    prompt = getattr(usage, "prompt_tokens", None)
    output = getattr(usage, "completion_tokens", None)
    if _is_count(prompt) and _is_count(output):
        return prompt, output
    return None


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
