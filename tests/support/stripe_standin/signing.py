"""Stripe's documented webhook signature scheme, shared by the stand-in and tests.

Stripe signs ``f"{t}.{payload}"`` with HMAC-SHA256 keyed by the endpoint's
signing secret and sends ``Stripe-Signature: t=<unix time>,v1=<hex digest>``.
Tests use this directly to craft stale or tampered deliveries.
"""

from __future__ import annotations

import hashlib
import hmac
import time


def sign_payload(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Return a ``Stripe-Signature`` header value for ``payload``.

    ``timestamp`` defaults to now; pass an old one to make a stale signature.
    """
    t = int(time.time()) if timestamp is None else timestamp
    signed = str(t).encode("ascii") + b"." + payload
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def webhook_headers(payload: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Stripe sends with a webhook delivery."""
    return {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": sign_payload(payload, secret, timestamp),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }
