"""Building Stripe events and delivering them to registered webhook endpoints.

Events are localstripe ``Event`` objects (stored, so ``GET /v1/events/{id}``
works), dressed with the fields current Stripe events carry. Endpoints and
their secrets come from localstripe's own registry (``/_config/webhooks/{id}``).
Delivery itself is ours: localstripe fires webhooks in the background after a
one-second sleep and reports nothing, while tests need to know when a delivery
finished, what the endpoint answered, and to repeat it on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
from localstripe import resources as ls_resources  # type: ignore[import-untyped]
from localstripe import webhooks as ls_webhooks

from .signing import webhook_headers

DELIVERY_TIMEOUT_SECONDS = 30


class Snapshot:
    """Lets localstripe's ``Event`` wrap a ready-made object dict."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self._obj = obj

    def _export(self, expand: object = None) -> dict[str, Any]:
        return copy.deepcopy(self._obj)


@dataclass(frozen=True)
class Attempt:
    url: str
    status: int | None
    error: str | None
    body: str


@dataclass
class StandinState:
    """Everything the stand-in adds to localstripe's in-memory world."""

    api_version: str
    public_base: str = ""
    payloads: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    idempotent_sessions: dict[str, tuple[dict[str, Any], dict[str, Any]]] = field(
        default_factory=dict
    )
    http: aiohttp.ClientSession | None = None
    _muted: int = 0

    def reset(self) -> None:
        ls_resources.store.clear()
        ls_webhooks._webhooks.clear()
        self.payloads.clear()
        self.idempotent_sessions.clear()

    # localstripe announces some of its own objects (payment_intent.succeeded...)
    # from a background task a second later. Objects the stand-in creates
    # internally stay quiet, so an endpoint receives exactly the events a test
    # asked for, when it asked.
    def install_mute(self) -> None:
        original = ls_resources.schedule_webhook

        def schedule(event: Any) -> None:
            if self._muted == 0:
                original(event)

        ls_resources.schedule_webhook = schedule

    @contextlib.contextmanager
    def quietly(self) -> Iterator[None]:
        self._muted += 1
        try:
            yield
        finally:
            self._muted -= 1

    async def http_context(self, app: object) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self.http = session
            yield
            self.http = None

    def record(
        self,
        event_type: str,
        obj: Any,
        previous_attributes: dict[str, Any] | None = None,
    ) -> tuple[str, bytes]:
        """Create and store an event; return its id and its exact payload bytes."""
        source = obj if hasattr(obj, "_export") else Snapshot(obj)
        event = ls_resources.Event(event_type, source)
        event.api_version = self.api_version
        event.pending_webhooks = len(_endpoints_for(event_type))
        event.request = {"id": None, "idempotency_key": None}
        if previous_attributes:
            event.data["previous_attributes"] = previous_attributes
        # Stripe sends pretty-printed JSON; keep the bytes so redeliveries match.
        payload = json.dumps(event._export(), indent=2, sort_keys=True).encode("utf-8")
        self.payloads[event.id] = (event_type, payload)
        return event.id, payload

    async def deliver(
        self,
        event_type: str,
        payload: bytes,
        *,
        times: int = 1,
        concurrently: bool = False,
    ) -> list[Attempt]:
        """POST the payload to every matching endpoint ``times`` times, freshly signed."""
        assert self.http is not None, "delivery needs the running app"
        http = self.http

        async def attempt(url: str, secret: str) -> Attempt:
            try:
                headers = webhook_headers(payload, secret)
                async with http.post(url, data=payload, headers=headers) as response:
                    body = (await response.text())[:2000]
                    return Attempt(url, response.status, None, body)
            except (TimeoutError, aiohttp.ClientError) as exc:
                return Attempt(url, None, repr(exc), "")

        jobs = [target for target in _endpoints_for(event_type) for _ in range(times)]
        if concurrently:
            return list(await asyncio.gather(*(attempt(*job) for job in jobs)))
        return [await attempt(*job) for job in jobs]

    async def emit(
        self,
        event_type: str,
        obj: Any,
        *,
        previous_attributes: dict[str, Any] | None = None,
        deliver: bool = True,
    ) -> dict[str, Any]:
        """Record an event, deliver it if asked, and describe both for the caller."""
        _, payload = self.record(event_type, obj, previous_attributes)
        attempts = await self.deliver(event_type, payload) if deliver else []
        return describe(payload, attempts)


def describe(payload: bytes, attempts: list[Attempt]) -> dict[str, Any]:
    return {
        "payload": payload.decode("utf-8"),
        "deliveries": [asdict(a) for a in attempts],
    }


def _endpoints_for(event_type: str) -> list[tuple[str, str]]:
    return [
        (hook.url, hook.secret)
        for hook in list(ls_webhooks._webhooks.values())
        if hook.events is None or event_type in hook.events
    ]
