"""Everything that speaks Stripe: the SDK client, Checkout creation, webhook verification.

The rest of the payments package sees plain values (``CheckoutCreated``,
``WebhookEvent`` and the small object models below), never SDK objects, so
the rules in ``service.py`` read the same whatever the SDK version.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import stripe
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from accessai.core.config import Settings

ModelT = TypeVar("ModelT", bound=BaseModel)

# Stripe's own default: a signature older than five minutes is refused.
SIGNATURE_TOLERANCE_SECONDS = stripe.Webhook.DEFAULT_TOLERANCE
# Creating a Checkout Session is one short call; a user is waiting for it.
STRIPE_TIMEOUT_SECONDS = 10.0


class StripeGatewayError(Exception):
    """Stripe refused a call or could not be reached. ``str()`` is for logs only."""

    def __init__(self, message: str, *, kind: str, status: int | None, request_id: str | None):
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.request_id = request_id


class InvalidEventError(Exception):
    """A webhook body that is not verifiably from Stripe, or is not an event."""


# --- The client -------------------------------------------------------------------------


@asynccontextmanager
async def open_client(settings: Settings) -> AsyncIterator[stripe.StripeClient | None]:
    """A StripeClient for the app's lifetime, or None when STRIPE_SECRET_KEY is unset.

    httpx under the SDK's async methods runs on our event loop. Retries are
    off: the one write we make (Checkout creation) carries an idempotency
    key, and a user is waiting, so a failure is reported at once instead.
    """
    if settings.stripe_secret_key is None:
        yield None
        return
    http_client = stripe.HTTPXClient(timeout=STRIPE_TIMEOUT_SECONDS)
    try:
        yield stripe.StripeClient(
            settings.stripe_secret_key.get_secret_value(),
            base_addresses={"api": settings.stripe_api_base},
            max_network_retries=0,
            http_client=http_client,
        )
    finally:
        await http_client.close_async()  # type: ignore[no-untyped-call]


# --- Checkout ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    payment_id: str
    user_id: str
    email: str
    package: str
    product_name: str
    amount_cents: int
    currency: str
    success_url: str
    cancel_url: str


@dataclass(frozen=True, slots=True)
class CheckoutCreated:
    session_id: str
    url: str


async def create_checkout_session(
    client: stripe.StripeClient, request: CheckoutRequest
) -> CheckoutCreated:
    """Open a Checkout Session for one package, idempotent per our payment id."""
    metadata = {
        "payment_id": request.payment_id,
        "user_id": request.user_id,
        "package": request.package,
    }
    try:
        session = await client.v1.checkout.sessions.create_async(
            params={
                "mode": "payment",
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": request.currency,
                            "unit_amount": request.amount_cents,
                            "product_data": {"name": request.product_name},
                        },
                    }
                ],
                "success_url": request.success_url,
                "cancel_url": request.cancel_url,
                "client_reference_id": request.user_id,
                "customer_email": request.email,
                "metadata": metadata,
                # Copied by Stripe onto the charge: refunds can be traced back.
                "payment_intent_data": {"metadata": metadata},
            },
            options={"idempotency_key": f"checkout-{request.payment_id}"},
        )
    except stripe.StripeError as error:
        raise StripeGatewayError(
            str(error),
            kind=type(error).__name__,
            status=error.http_status,
            request_id=error.request_id,
        ) from error
    if not session.url:
        raise StripeGatewayError(
            "Checkout Session without a url", kind="NoUrl", status=None, request_id=None
        )
    return CheckoutCreated(session_id=session.id, url=session.url)


# --- Webhook events ---------------------------------------------------------------------


class _Lenient(BaseModel):
    # Stripe adds fields over time; only the ones we read are declared.
    model_config = ConfigDict(extra="ignore", frozen=True)


class EventData(_Lenient):
    object: dict[str, Any]
    previous_attributes: dict[str, Any] | None = None


class WebhookEvent(_Lenient):
    """A Stripe event: its id, type and the object it is about."""

    id: str = Field(min_length=1, max_length=255)
    object: Literal["event"]
    type: str = Field(min_length=1, max_length=128)
    created: int
    livemode: bool = False
    data: EventData


class CheckoutSessionObject(_Lenient):
    id: str
    amount_total: int | None = None
    currency: str | None = None
    payment_status: str
    payment_intent: str | None = None
    client_reference_id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class ChargeObject(_Lenient):
    id: str
    amount: int
    amount_refunded: int = 0
    currency: str
    payment_intent: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class DisputeObject(_Lenient):
    id: str
    amount: int
    currency: str
    charge: str
    payment_intent: str | None = None


def verify_event(payload: bytes, signature: str | None, secret: str) -> WebhookEvent:
    """The event in ``payload`` if Stripe signed it with ``secret`` recently, else raise.

    The signature covers the exact bytes received, so this must see the raw
    body, before any JSON parsing.
    """
    try:
        stripe.WebhookSignature.verify_header(
            payload, signature, secret, SIGNATURE_TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError as error:
        raise InvalidEventError(f"signature: {error.user_message or error}") from None
    except (UnicodeDecodeError, ValueError):
        raise InvalidEventError("signature: the body is not UTF-8 text") from None
    return parse_event(payload)


def parse_event(payload: bytes) -> WebhookEvent:
    """Read an event without checking a signature (already verified, or an operator's file)."""
    try:
        return WebhookEvent.model_validate(json.loads(payload))
    except (ValueError, PydanticValidationError):
        raise InvalidEventError("the body is not a Stripe event") from None


def event_object(event: WebhookEvent, model: type[ModelT]) -> ModelT:
    """``data.object`` read as ``model``; ``InvalidEventError`` when it does not fit."""
    try:
        return model.model_validate(event.data.object)
    except PydanticValidationError:
        raise InvalidEventError(f"{event.type}: unexpected {model.__name__} shape") from None
