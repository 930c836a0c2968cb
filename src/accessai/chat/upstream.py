"""What chat sends to its provider, without the provider's SDK.

Kept apart from ``chat.provider`` so that the chat service, and the app,
import the ``openai`` SDK (about a second and 60 MiB per process) only when
a provider is configured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ENGINE_NAME = "openai"  # recorded in the usage log


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One chat request as the provider will receive it."""

    model: str
    messages: list[dict[str, Any]]
    limit_field: str  # "max_completion_tokens" or "max_tokens"
    max_output_tokens: int
    # temperature, top_p, stop, seed... exactly as the client sent them.
    options: dict[str, Any] = field(default_factory=dict)
