"""Payments over HTTP: packages, Checkout, the Stripe webhook, history."""

from __future__ import annotations

from typing import Annotated

import stripe
from fastapi import APIRouter, Depends, Header, Request

from accessai.core.db import SessionDep
from accessai.core.security import CurrentUser, SettingsDep
from accessai.hardening.ratelimit import public_rate_limit
from accessai.payments import service
from accessai.payments.schemas import (
    CheckoutIn,
    CheckoutOut,
    LedgerRowOut,
    PackageOut,
    PackagesOut,
    PaymentHistoryOut,
    PaymentOut,
    WebhookAck,
)

router = APIRouter(prefix="/payments", tags=["payments"])


async def get_stripe_client(request: Request, settings: SettingsDep) -> stripe.StripeClient:
    """The app's StripeClient (``app.state.stripe_client``), or 503 ``payments_not_configured``."""
    service.require_configured(settings)
    client: stripe.StripeClient | None = getattr(request.app.state, "stripe_client", None)
    if client is None:
        raise service.PaymentsNotConfiguredError(["STRIPE_SECRET_KEY"])
    return client


StripeClientDep = Annotated[stripe.StripeClient, Depends(get_stripe_client)]


@router.get("/packages", response_model=PackagesOut, dependencies=[Depends(public_rate_limit)])
async def packages(settings: SettingsDep) -> PackagesOut:
    """The credit packages on sale (public)."""
    currency = settings.stripe_currency.lower()
    return PackagesOut(
        packages=[
            PackageOut(
                id=package_id,
                name=package.name,
                credits=package.credits,
                price_cents=package.price_cents,
                currency=currency,
            )
            for package_id, package in service.list_packages(settings)
        ]
    )


@router.post("/checkout", response_model=CheckoutOut)
async def checkout(
    body: CheckoutIn,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    client: StripeClientDep,
) -> CheckoutOut:
    """Start buying a package: returns the Stripe Checkout page to send the browser to."""
    payment = await service.create_payment(session, settings, user, body.package)
    # Committed before Stripe hears of it: a crash after Stripe created the
    # session leaves our row (its id is the idempotency key and in the
    # session's metadata), never a Stripe session we have no record of.
    await session.commit()
    try:
        created = await service.open_checkout(session, client, settings, payment, user)
    except service.PaymentProviderError:
        await session.commit()  # keep the payment marked failed
        raise
    return CheckoutOut(checkout_url=created.url, session_id=created.session_id)


@router.post("/webhook", response_model=WebhookAck)
async def stripe_webhook(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    stripe_signature: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> WebhookAck:
    """Stripe's events. No user: the Stripe-Signature header over the raw body is the auth."""
    event = service.verify_webhook(settings, await request.body(), stripe_signature)
    result = await service.handle_event(session, event)
    # The effect and the inbox row commit (SessionDep) before this 200 is sent.
    return WebhookAck(outcome=result.outcome)


@router.get("/history", response_model=PaymentHistoryOut)
async def history(user: CurrentUser, session: SessionDep) -> PaymentHistoryOut:
    """The caller's last 10 payments and the ledger rows payments caused."""
    payments, ledger = await service.payment_history(session, user.id)
    return PaymentHistoryOut(
        payments=[PaymentOut.model_validate(payment) for payment in payments],
        ledger=[LedgerRowOut.model_validate(row) for row in ledger],
    )
