"""The LLM provider behind chat: any OpenAI-compatible API, through the official SDK.

The client is created once in the app's lifespan (``ChatProvider.from_settings``)
and closed at shutdown. Retries are off: a retried request could be billed by
the provider twice while we charge once, and the caller decides anyway.

Every provider failure becomes one of the AI engines' errors, with a message
fit for an API client: the provider's HTTP status at most, never its own
error text (it may quote our key) or a stack trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import openai
from openai import AsyncOpenAI, AsyncStream, omit
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam

from accessai.ai.engines import provider_errors
from accessai.chat.upstream import UpstreamRequest
from accessai.core.config import Settings


class ChatProvider:
    def __init__(self, client: AsyncOpenAI, *, timeout_seconds: float) -> None:
        self._client = client
        self.timeout_seconds = timeout_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatProvider | None:
        """The provider, or None when OPENAI_API_KEY is not set."""
        if not settings.chat_configured:
            return None
        assert settings.openai_api_key is not None
        client = AsyncOpenAI(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value(),
            timeout=settings.openai_timeout_seconds,
            max_retries=0,
        )
        return cls(client, timeout_seconds=settings.openai_timeout_seconds)

    async def aclose(self) -> None:
        await self._client.close()

    async def complete(self, request: UpstreamRequest) -> ChatCompletion:
        with self.errors():
            completion: ChatCompletion = await self._client.chat.completions.create(
                **self._arguments(request), stream=False
            )
            return completion

    async def open_stream(self, request: UpstreamRequest) -> AsyncStream[ChatCompletionChunk]:
        """Returns once the provider has answered with its headers (or raises)."""
        with self.errors():
            stream: AsyncStream[ChatCompletionChunk] = await self._client.chat.completions.create(
                **self._arguments(request),
                stream=True,
                # Usage on the last chunk: what makes the charge exact.
                stream_options={"include_usage": True},
            )
            return stream

    def _arguments(self, request: UpstreamRequest) -> dict[str, Any]:
        limit = request.max_output_tokens
        uses_max_tokens = request.limit_field == "max_tokens"
        return {
            "model": request.model,
            "messages": cast("list[ChatCompletionMessageParam]", request.messages),
            "max_tokens": limit if uses_max_tokens else omit,
            "max_completion_tokens": omit if uses_max_tokens else limit,
            **request.options,
        }

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn SDK and transport failures, and bodies that are not JSON, into engine errors.

        Around a request and around each step of a stream alike.
        """
        try:
            yield
        except (openai.OpenAIError, ValueError) as exc:
            raise provider_errors.translate(
                exc, timeout_seconds=self.timeout_seconds, feature="chat"
            ) from exc
