"""Opaque page cursors for the ledger: a versioned, base64url-encoded row id.

Clients must treat a cursor as a token; encoding it keeps us free to change
what it holds, and decoding validates it so garbage is a 422, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import re

from accessai.core.errors import ValidationError

_PAYLOAD = re.compile(r"^v1:([1-9][0-9]{0,18})$")
MAX_CURSOR_LENGTH = 64


class InvalidCursorError(ValidationError):
    def __init__(self) -> None:
        super().__init__(
            "cursor: not a cursor returned by this endpoint",
            extra={"details": [{"field": "query.cursor", "message": "invalid cursor"}]},
        )


def encode_cursor(before_id: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{before_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The row id a cursor points before, or ``InvalidCursorError``."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise InvalidCursorError()
    try:
        payload = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursorError() from None
    match = _PAYLOAD.match(payload)
    if match is None:
        raise InvalidCursorError()
    return int(match.group(1))
