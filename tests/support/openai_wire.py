"""OpenAI chat-completions wire format, as the stand-in upstream speaks it.

Pure functions: tokenising, usage counting and the JSON bodies of responses,
stream chunks and errors, shaped like OpenAI's own (field for field) so the
official SDK parses them exactly as it parses the real service.

Tokens here are a deterministic stand-in for a real tokenizer: a word or a
single punctuation mark, with the whitespace before it. Joining the tokens of
a text gives the text back, so a streamed reply is exactly the non-streamed
one, and ``completion_tokens`` equals the number of streamed content chunks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s])")

SYSTEM_FINGERPRINT = "fp_accessai_standin"
OWNED_BY = "accessai-standin"


def split_tokens(text: str) -> list[str]:
    """Split ``text`` into stand-in tokens whose concatenation is exactly ``text``."""
    tokens: list[str] = _TOKEN.findall(text)
    rest = text[sum(len(token) for token in tokens) :]
    if rest:  # trailing whitespace belongs to the last token
        if tokens:
            tokens[-1] += rest
        else:
            tokens.append(rest)
    return tokens


def count_tokens(text: str) -> int:
    return len(split_tokens(text))


def message_text(message: Any) -> str:
    """The text of one chat message; content may be a string or a list of parts."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def count_prompt_tokens(messages: Sequence[Any]) -> int:
    """``prompt_tokens``: the sum of the tokens of every message's text."""
    return sum(count_tokens(message_text(message)) for message in messages)


def echo_reply(messages: Sequence[Any]) -> str:
    """The default reply: the last user message, prefixed so it is visibly an echo."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return "echo: " + message_text(message)
    return "echo: "


def usage_payload(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion_payload(
    *,
    completion_id: str,
    created: int,
    model: str,
    content: str | None,
    finish_reason: str,
    usage: dict[str, Any] | None,
    with_choice: bool = True,
) -> dict[str, Any]:
    """A non-streamed ``chat.completion`` object."""
    choices = []
    if with_choice:
        choices.append(
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        )
    payload: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    if usage is not None:
        payload["usage"] = usage
    return payload


def chunk_payload(
    *,
    completion_id: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
    include_usage_field: bool = False,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``.

    ``delta=None`` makes the final usage chunk (empty ``choices``). When the
    client asked for usage, OpenAI puts ``"usage": null`` on every other chunk.
    """
    choices: list[dict[str, Any]] = []
    if delta is not None:
        choices.append(
            {
                "index": 0,
                "delta": delta,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        )
    payload: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": choices,
    }
    if include_usage_field or usage is not None:
        payload["usage"] = usage
    return payload


# Default (type, code, message) per status, worded like OpenAI's own errors.
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key in your account settings.",
    ),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Forbidden.",
    ),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again in 1s.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: (
        "server_error",
        None,
        "The engine is currently overloaded, please try again later.",
    ),
    504: ("server_error", None, "The stand-in upstream did not answer in time."),
}


def error_payload(
    status: int,
    message: str | None = None,
    *,
    error_type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    default_type, default_code, default_message = _ERRORS.get(
        status,
        (
            "server_error" if status >= 500 else "invalid_request_error",
            None,
            f"HTTP {status}.",
        ),
    )
    return {
        "error": {
            "message": message if message is not None else default_message,
            "type": error_type if error_type is not None else default_type,
            "param": param,
            "code": code if code is not None else default_code,
        }
    }


def models_payload(models: Sequence[str], created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": model, "object": "model", "created": created, "owned_by": OWNED_BY}
            for model in models
        ],
    }
