"""The Stripe SDK client: opened in the lifespan when STRIPE_SECRET_KEY is set.

One ``StripeClient`` per process, async HTTP through httpx, pointed at
STRIPE_API_BASE so tests reach a local stand-in. No automatic retries: the
caller decides (Stripe retries webhooks itself; a health check must not
hang). Reach it through ``StripeDep`` (``None`` when not configured) and use
the ``*_async`` methods, e.g. ``await client.v1.balance.retrieve_async()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import stripe
from fastapi import Depends, Request

from accessai.core.config import Settings

STRIPE_TIMEOUT_SECONDS = 20.0


@asynccontextmanager
async def open_stripe_client(settings: Settings) -> AsyncIterator[stripe.StripeClient | None]:
    if settings.stripe_secret_key is None:
        yield None
        return
    http_client = stripe.HTTPXClient(timeout=STRIPE_TIMEOUT_SECONDS)
    try:
        yield stripe.StripeClient(
            settings.stripe_secret_key.get_secret_value(),
            base_addresses={"api": settings.stripe_api_base.rstrip("/")},
            http_client=http_client,
            max_network_retries=0,
        )
    finally:
        await http_client.close_async()  # type: ignore[no-untyped-call]


def get_stripe_client(request: Request) -> stripe.StripeClient | None:
    client: stripe.StripeClient | None = getattr(request.app.state, "stripe_client", None)
    return client


StripeDep = Annotated[stripe.StripeClient | None, Depends(get_stripe_client)]
