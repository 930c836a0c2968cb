"""structlog set up once for the whole process.

Our own events and those of the standard library (uvicorn, SQLAlchemy,
alembic) go through the same processors, so every line has the same shape:
JSON in production, readable colours in a development terminal. Request
fields (request_id, user_id, route) are bound through contextvars by the
request middleware and appear on every line logged while handling it.
"""

from __future__ import annotations

import logging
import logging.config
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal

import structlog
from structlog.typing import EventDict, Processor

# Keys whose values must never reach a log line, wherever they appear.
SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "access_token",
        "api_key",
        "token",
        "id_token",
        "refresh_token",
        "password",
        "secret",
        "client_secret",
        "jwt_secret",
        "stripe_signature",
        "stripe-signature",
        "cookie",
        "set-cookie",
        "code",
        "body",
        "request_body",
        "x-api-key",
        "idempotency-key",
    }
)
REDACTED = "[redacted]"

# Credentials recognisable by their shape, wherever they appear in a string
# (an exception message, a URL, a repr): bearer tokens, JWTs, Stripe keys
# and webhook secrets, Stripe-Signature values.
_SECRET_PATTERNS = re.compile(
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]+"
    r"|eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"
    r"|\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]+"
    r"|\bwhsec_[A-Za-z0-9+/=]+"
    r"|\bt=\d+,v1=[0-9a-f]+(?:,v\d=[0-9a-f]+)*"
)


def redact_text(text: str) -> str:
    return _SECRET_PATTERNS.sub(REDACTED, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            key: REDACTED if str(key).lower() in SENSITIVE_KEYS else _redact_value(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


def redact_sensitive(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """Replace the values of sensitive keys, also inside nested mappings, and credential shapes."""
    redacted: EventDict = _redact_value(event_dict)
    return redacted


def add_process_id(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """Name the process on every line: with WORKERS > 1 several workers share one
    stdout, and the pid ties a request to the worker that served it (and to
    uvicorn's "Child process [pid] died")."""
    event_dict.setdefault("pid", os.getpid())
    return event_dict


def _drop_color_message(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    # uvicorn adds a duplicate of the message with ANSI colours.
    event_dict.pop("color_message", None)
    return event_dict


class _CurrentStdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is now, so redirection (tests, tools) is honoured."""

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(
    level: str = "INFO", fmt: Literal["json", "console"] = "json", *, stream: Any = None
) -> None:
    """Route structlog and standard-library logging through one renderer."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_color_message,
    ]
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        # Tracebacks become text before redaction, so it covers them too.
        shared.extend([add_process_id, structlog.processors.format_exc_info])
    else:
        renderer = structlog.dev.ConsoleRenderer()
    shared.append(redact_sensitive)

    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _CurrentStdoutHandler()
    )
    handler.setFormatter(formatter)

    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log is replaced by our request line; its error log and
    # everyone else's propagate to the root handler above.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy", "alembic"):
        named = logging.getLogger(name)
        named.handlers[:] = []
        named.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def bind_request_context(**values: Any) -> None:
    structlog.contextvars.bind_contextvars(**values)


def request_context() -> MutableMapping[str, Any]:
    return structlog.contextvars.get_contextvars()
