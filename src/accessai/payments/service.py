"""Buying credits: Checkout, the Stripe webhook's effects, and payment history.

Credits are added only for what Stripe's signed webhook reports, matched to a
payment row by the Checkout Session id we stored when we created it, with the
amount and currency compared to what we asked for. Every event's effect and
its inbox row (``stripe_events``) commit in one transaction, so an event is
applied at most once however often Stripe delivers it.

Refunds and disputes take credits back in proportion to the money returned,
rounded down (in the customer's favour): ``credits * returned_cents //
amount_cents``, computed on the cumulative amount so a series of partial
refunds ends at exactly the full package. What the balance cannot cover
becomes account debt (``credits.take_back_credits``) and is noted on the
payment as ``shortfall_credits``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

import stripe
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.core.config import CreditPackage, Settings
from accessai.core.db import newest_first, utcnow
from accessai.core.errors import (
    BadRequestError,
    ServiceUnavailableError,
    UpstreamError,
    ValidationError,
)
from accessai.credits import service as credits
from accessai.credits.models import CreditTransaction
from accessai.observability import metrics
from accessai.observability.logging import get_logger
from accessai.payments import stripe_gateway
from accessai.payments.models import (
    CREDITED_STATUSES,
    OPEN_STATUSES,
    Payment,
    PaymentStatus,
    StripeEvent,
)
from accessai.payments.stripe_gateway import (
    ChargeObject,
    CheckoutCreated,
    CheckoutSessionObject,
    DisputeObject,
    WebhookEvent,
)
from accessai.users.models import User

log = get_logger("accessai.payments")

HISTORY_PAYMENTS = 10
HISTORY_LEDGER_ROWS = 20
PAYMENT_REASONS = (
    credits.Reason.STRIPE_PAYMENT,
    credits.Reason.STRIPE_REFUND,
    credits.Reason.STRIPE_DISPUTE,
    credits.Reason.DEBT_RECOVERY,
)


# --- Errors ----------------------------------------------------------------------------


class UnknownPackageError(ValidationError):
    code = "unknown_package"


class PaymentsNotConfiguredError(ServiceUnavailableError):
    code = "payments_not_configured"

    def __init__(self, missing: list[str]) -> None:
        super().__init__(
            "Payments need STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET; "
            f"not set: {', '.join(missing)}.",
            extra={"missing": missing},
        )


class PaymentProviderError(UpstreamError):
    code = "payment_provider_error"

    def __init__(self) -> None:
        # Stripe's own message stays in our logs: it can name our account's settings.
        super().__init__("The payment provider could not start checkout. Try again shortly.")


class InvalidWebhookError(BadRequestError):
    code = "invalid_webhook"


# --- Configuration ---------------------------------------------------------------------


def missing_configuration(settings: Settings) -> list[str]:
    """The Stripe variables still unset; payments need both."""
    missing = []
    if settings.stripe_secret_key is None:
        missing.append("STRIPE_SECRET_KEY")
    if settings.stripe_webhook_secret is None:
        missing.append("STRIPE_WEBHOOK_SECRET")
    return missing


def require_configured(settings: Settings) -> None:
    """Raise 503 ``payments_not_configured`` unless both Stripe secrets are set.

    Checkout refuses to start without the webhook secret too: a session we
    could not hear back about would take money without ever adding credits.
    """
    missing = missing_configuration(settings)
    if missing:
        raise PaymentsNotConfiguredError(missing)


def checkout_urls(settings: Settings) -> tuple[str, str]:
    """Where Checkout returns the browser: the settings, or the dashboard by default."""
    base = settings.public_base_url.rstrip("/")
    success = settings.checkout_success_url or (
        base + "/?checkout=success&session_id={CHECKOUT_SESSION_ID}"
    )
    cancel = settings.checkout_cancel_url or base + "/?checkout=cancelled"
    return success, cancel


def list_packages(settings: Settings) -> list[tuple[str, CreditPackage]]:
    """Packages cheapest first."""
    return sorted(settings.credit_packages.items(), key=lambda item: item[1].price_cents)


# --- Checkout --------------------------------------------------------------------------


async def create_payment(
    session: AsyncSession, settings: Settings, user: User, package_id: str
) -> Payment:
    """Record the payment we are about to ask Stripe for (status ``creating``)."""
    package = settings.credit_packages.get(package_id)
    if package is None:
        raise UnknownPackageError(
            "Unknown package.", extra={"packages": sorted(settings.credit_packages)}
        )
    payment = Payment(
        id=uuid.uuid4(),
        user_id=user.id,
        package=package_id,
        credits=package.credits,
        amount_cents=package.price_cents,
        currency=settings.stripe_currency.lower(),
        status=PaymentStatus.CREATING,
    )
    session.add(payment)
    await session.flush()
    return payment


async def open_checkout(
    session: AsyncSession,
    client: stripe.StripeClient,
    settings: Settings,
    payment: Payment,
    user: User,
) -> CheckoutCreated:
    """Create the Checkout Session for ``payment`` and remember its id.

    On failure the payment is marked ``failed`` (flushed) and
    ``PaymentProviderError`` is raised; the caller decides whether to keep it.
    """
    package = settings.credit_packages[payment.package]
    success_url, cancel_url = checkout_urls(settings)
    request = stripe_gateway.CheckoutRequest(
        payment_id=str(payment.id),
        user_id=str(user.id),
        email=user.email,
        package=payment.package,
        product_name=f"{package.name}: {payment.credits} credits",
        amount_cents=payment.amount_cents,
        currency=payment.currency,
        success_url=success_url,
        cancel_url=cancel_url,
    )
    try:
        created = await stripe_gateway.create_checkout_session(client, request)
    except stripe_gateway.StripeGatewayError as error:
        payment.status = PaymentStatus.FAILED
        await session.flush()
        log.error(
            "payments.checkout_failed",
            payment_id=str(payment.id),
            stripe_error=error.kind,
            stripe_status=error.status,
            stripe_request_id=error.request_id,
            detail=str(error),
        )
        raise PaymentProviderError() from None
    payment.stripe_session_id = created.session_id
    payment.status = PaymentStatus.PENDING
    await session.flush()
    log.info(
        "payments.checkout_created",
        payment_id=str(payment.id),
        package=payment.package,
        stripe_session_id=created.session_id,
    )
    return created


# --- History ---------------------------------------------------------------------------


async def payment_history(
    session: AsyncSession, user_id: uuid.UUID
) -> tuple[list[Payment], list[CreditTransaction]]:
    """The user's latest payments and the ledger rows payments caused, newest first."""
    payments = await session.scalars(
        select(Payment)
        .where(Payment.user_id == user_id)
        .order_by(Payment.created_at.desc(), Payment.id)
        .limit(HISTORY_PAYMENTS)
    )
    ledger = await session.scalars(
        newest_first(
            session,
            select(CreditTransaction),
            CreditTransaction.id,
            CreditTransaction.user_id,
            user_id,
        )
        .where(CreditTransaction.reason.in_([str(reason) for reason in PAYMENT_REASONS]))
        .limit(HISTORY_LEDGER_ROWS)
    )
    return list(payments), list(ledger)


# --- Webhook events --------------------------------------------------------------------


def verify_webhook(settings: Settings, payload: bytes, signature: str | None) -> WebhookEvent:
    """The event Stripe sent, or 400 ``invalid_webhook`` (and nothing else happens)."""
    require_configured(settings)
    assert settings.stripe_webhook_secret is not None
    try:
        return stripe_gateway.verify_event(
            payload, signature, settings.stripe_webhook_secret.get_secret_value()
        )
    except stripe_gateway.InvalidEventError as error:
        log.warning("payments.webhook_rejected", reason=str(error), size=len(payload))
        # Unverified, so its claimed type is not trusted as a label.
        metrics.record_webhook_event("unverified", "invalid_signature")
        raise InvalidWebhookError("Not a validly signed Stripe event.") from None


class Outcome(StrEnum):
    """What an event did. One per event, recorded in the inbox and the logs."""

    CREDITED = "credited"
    ALREADY_CREDITED = "already_credited"
    PROCESSING = "processing"
    PAYMENT_FAILED = "payment_failed"
    EXPIRED = "expired"
    REVERSED = "reversed"  # credits taken back (from the balance, or as debt)
    RECORDED = "recorded"  # refund/dispute noted; nothing (more) to take back now
    STALE = "stale"  # the payment has moved on; the event changes nothing
    UNKNOWN_SESSION = "unknown_session"
    UNKNOWN_PAYMENT = "unknown_payment"
    AMOUNT_MISMATCH = "amount_mismatch"
    IGNORED = "ignored"  # an event type we do not handle
    DUPLICATE = "duplicate"  # already processed: a redelivery


@dataclass(frozen=True, slots=True)
class EventResult:
    event_id: str
    event_type: str
    outcome: Outcome
    payment_id: uuid.UUID | None = None
    # Set when the event added credits (outcome CREDITED).
    package: str | None = None
    credits_added: int = 0
    credits_reversed: int = 0


@dataclass(frozen=True, slots=True)
class _Handled:
    outcome: Outcome
    payment: Payment | None = None
    credits_added: int = 0
    credits_reversed: int = 0


async def handle_event(session: AsyncSession, event: WebhookEvent) -> EventResult:
    """Apply ``event`` once: inbox row and effect in the caller's transaction.

    A second delivery of the same event id fails the inbox insert (on
    PostgreSQL a concurrent one waits for the first to commit, then fails)
    and is answered as a duplicate without touching anything else.
    """
    try:
        async with session.begin_nested():
            await session.execute(
                insert(StripeEvent).values(
                    id=event.id, type=event.type, outcome="processing", received_at=utcnow()
                )
            )
    except IntegrityError:
        return _observe(EventResult(event.id, event.type, Outcome.DUPLICATE))

    handler = _HANDLERS.get(event.type)
    if handler is None:
        handled = _Handled(Outcome.IGNORED)
    else:
        try:
            handled = await handler(session, event)
        except stripe_gateway.InvalidEventError as error:
            # Signed by Stripe yet not the shape we expect (API version change?):
            # refuse it, so Stripe retries after we have fixed the parsing.
            log.error("payments.webhook_unreadable", event_id=event.id, event_type=event.type)
            raise InvalidWebhookError(str(error)) from None

    payment_id = handled.payment.id if handled.payment is not None else None
    await session.execute(
        update(StripeEvent)
        .where(StripeEvent.id == event.id)
        .values(outcome=handled.outcome, payment_id=payment_id)
    )
    credited = handled.outcome == Outcome.CREDITED and handled.payment is not None
    return _observe(
        EventResult(
            event_id=event.id,
            event_type=event.type,
            outcome=handled.outcome,
            payment_id=payment_id,
            package=handled.payment.package if credited and handled.payment else None,
            credits_added=handled.credits_added,
            credits_reversed=handled.credits_reversed,
        )
    )


def _observe(result: EventResult) -> EventResult:
    """The one place every event's (type, outcome) is known: logs and metrics.

    Counted when the effect is flushed, just before the request's commit; a
    failed commit (rare, and Stripe redelivers) can count an event twice.
    """
    metrics.record_webhook_event(result.event_type, str(result.outcome))
    if result.credits_added > 0 and result.package is not None:
        metrics.record_credit_purchase(result.package, result.credits_added)
    log.info(
        "payments.webhook_event",
        event_id=result.event_id,
        event_type=result.event_type,
        outcome=str(result.outcome),
        payment_id=str(result.payment_id) if result.payment_id else None,
        package=result.package,
        credits_added=result.credits_added or None,
        credits_reversed=result.credits_reversed or None,
    )
    return result


# --- Event handlers --------------------------------------------------------------------


async def _on_session_completed(session: AsyncSession, event: WebhookEvent) -> _Handled:
    obj = stripe_gateway.event_object(event, CheckoutSessionObject)
    payment = await _checkout_payment(session, event, obj, unknown_is_error=True)
    if payment is None:
        return _Handled(Outcome.UNKNOWN_SESSION)
    if not _charged_as_agreed(payment, obj.amount_total, obj.currency):
        return _mismatch(event, payment, obj.amount_total, obj.currency)
    if obj.payment_status == "paid":
        return await _credit(session, payment, obj.payment_intent)
    if obj.payment_status == "unpaid":
        # Submitted with a delayed method (bank debit...): wait for async_payment_*.
        if payment.status not in OPEN_STATUSES:
            return _Handled(Outcome.STALE, payment)
        payment.status = PaymentStatus.PROCESSING
        payment.stripe_payment_intent_id = obj.payment_intent
        await session.flush()
        return _Handled(Outcome.PROCESSING, payment)
    log.warning(
        "payments.unexpected_payment_status",
        event_id=event.id,
        payment_id=str(payment.id),
        payment_status=obj.payment_status,
    )
    return _Handled(Outcome.STALE, payment)


async def _on_async_payment_succeeded(session: AsyncSession, event: WebhookEvent) -> _Handled:
    obj = stripe_gateway.event_object(event, CheckoutSessionObject)
    payment = await _checkout_payment(session, event, obj, unknown_is_error=True)
    if payment is None:
        return _Handled(Outcome.UNKNOWN_SESSION)
    if not _charged_as_agreed(payment, obj.amount_total, obj.currency):
        return _mismatch(event, payment, obj.amount_total, obj.currency)
    return await _credit(session, payment, obj.payment_intent)


async def _on_async_payment_failed(session: AsyncSession, event: WebhookEvent) -> _Handled:
    return await _close_unpaid(session, event, PaymentStatus.FAILED, Outcome.PAYMENT_FAILED)


async def _on_session_expired(session: AsyncSession, event: WebhookEvent) -> _Handled:
    return await _close_unpaid(session, event, PaymentStatus.EXPIRED, Outcome.EXPIRED)


async def _on_charge_refunded(session: AsyncSession, event: WebhookEvent) -> _Handled:
    charge = stripe_gateway.event_object(event, ChargeObject)
    payment = await _charged_payment(session, charge.payment_intent, charge.metadata)
    if payment is None:
        return _unknown_payment(event, charge.payment_intent)
    if not _charged_as_agreed(payment, charge.amount, charge.currency):
        return _mismatch(event, payment, charge.amount, charge.currency)
    # Cumulative and never lowered, so a late or repeated event cannot undo a later one.
    payment.refunded_cents = max(payment.refunded_cents, min(charge.amount_refunded, charge.amount))
    return await _reverse(session, payment, credits.Reason.STRIPE_REFUND)


async def _on_dispute_created(session: AsyncSession, event: WebhookEvent) -> _Handled:
    dispute = stripe_gateway.event_object(event, DisputeObject)
    payment = await _charged_payment(session, dispute.payment_intent, {})
    if payment is None:
        return _unknown_payment(event, dispute.payment_intent)
    if dispute.currency.lower() != payment.currency:
        return _mismatch(event, payment, dispute.amount, dispute.currency)
    payment.disputed_cents = max(payment.disputed_cents, min(dispute.amount, payment.amount_cents))
    return await _reverse(session, payment, credits.Reason.STRIPE_DISPUTE)


_HANDLERS: dict[str, Callable[[AsyncSession, WebhookEvent], Awaitable[_Handled]]] = {
    "checkout.session.completed": _on_session_completed,
    "checkout.session.async_payment_succeeded": _on_async_payment_succeeded,
    "checkout.session.async_payment_failed": _on_async_payment_failed,
    "checkout.session.expired": _on_session_expired,
    "charge.refunded": _on_charge_refunded,
    "charge.dispute.created": _on_dispute_created,
}
# --- Effects ---------------------------------------------------------------------------


async def _credit(session: AsyncSession, payment: Payment, payment_intent: str | None) -> _Handled:
    """Mark the payment paid and add its credits, once per Checkout Session."""
    if payment.status in CREDITED_STATUSES:
        return _Handled(Outcome.ALREADY_CREDITED, payment)
    if payment.status not in OPEN_STATUSES:
        # Money taken for a payment we had closed (expired, failed, under review).
        log.error("payments.paid_after_close", payment_id=str(payment.id), status=payment.status)
        return _Handled(Outcome.STALE, payment)
    assert payment.stripe_session_id is not None  # matched by it
    payment.status = PaymentStatus.PAID
    payment.paid_at = utcnow()
    if payment_intent is not None:
        payment.stripe_payment_intent_id = payment_intent
    await session.flush()
    # The session id as reference: the ledger itself refuses a second credit
    # for this session, whichever event (completed, async_payment_succeeded) comes.
    movement = await credits.add_credits(
        session,
        payment.user_id,
        payment.credits,
        credits.Reason.STRIPE_PAYMENT,
        reference=payment.stripe_session_id,
    )
    if movement.replayed:
        return _Handled(Outcome.ALREADY_CREDITED, payment)
    # A refund or dispute reported before the payment itself is applied now.
    reversed_now = (await _reverse(session, payment, _reversal_reason(payment))).credits_reversed
    return _Handled(Outcome.CREDITED, payment, payment.credits, reversed_now)


async def _reverse(session: AsyncSession, payment: Payment, reason: str) -> _Handled:
    """Take back what the refunded and disputed money paid for and is not yet taken."""
    if payment.status not in CREDITED_STATUSES:
        # Not credited (yet): the amounts are kept and applied when it is.
        await session.flush()
        return _Handled(Outcome.RECORDED, payment)
    returned = min(payment.amount_cents, payment.refunded_cents + payment.disputed_cents)
    # Rounded down: a partial refund never takes more than its share.
    target = payment.credits * returned // payment.amount_cents
    due = target - payment.credits_reversed
    if due > 0:
        back = await credits.take_back_credits(
            session, payment.user_id, due, reason, reference=f"reversal:{payment.id}:{target}"
        )
        payment.credits_reversed = target
        payment.shortfall_credits += back.shortfall
        if back.shortfall:
            log.warning(
                "payments.shortfall",
                payment_id=str(payment.id),
                user_id=str(payment.user_id),
                reason=reason,
                taken=back.taken,
                shortfall=back.shortfall,
            )
    payment.status = _status_after_reversal(payment)
    await session.flush()
    return _Handled(Outcome.REVERSED if due > 0 else Outcome.RECORDED, payment, 0, max(due, 0))


def _status_after_reversal(payment: Payment) -> PaymentStatus:
    if payment.refunded_cents >= payment.amount_cents:
        return PaymentStatus.REFUNDED
    if payment.disputed_cents > 0:
        return PaymentStatus.DISPUTED
    if payment.refunded_cents > 0:
        return PaymentStatus.PARTIALLY_REFUNDED
    return PaymentStatus.PAID


def _reversal_reason(payment: Payment) -> str:
    if payment.disputed_cents > 0:
        return credits.Reason.STRIPE_DISPUTE
    return credits.Reason.STRIPE_REFUND


async def _close_unpaid(
    session: AsyncSession, event: WebhookEvent, status: PaymentStatus, outcome: Outcome
) -> _Handled:
    obj = stripe_gateway.event_object(event, CheckoutSessionObject)
    payment = await _checkout_payment(session, event, obj, unknown_is_error=False)
    if payment is None:
        return _Handled(Outcome.UNKNOWN_SESSION)
    if payment.status not in OPEN_STATUSES:
        return _Handled(Outcome.STALE, payment)
    payment.status = status
    await session.flush()
    return _Handled(outcome, payment)


def _mismatch(
    event: WebhookEvent, payment: Payment, amount: int | None, currency: str | None
) -> _Handled:
    """Stripe reports another amount or currency than we asked for: no credits, report it."""
    # An error log: Sentry reports it, an operator looks at the payment.
    log.error(
        "payments.amount_mismatch",
        event_id=event.id,
        event_type=event.type,
        payment_id=str(payment.id),
        expected_amount=payment.amount_cents,
        expected_currency=payment.currency,
        reported_amount=amount,
        reported_currency=currency,
    )
    if payment.status in OPEN_STATUSES:
        payment.status = PaymentStatus.NEEDS_REVIEW
    return _Handled(Outcome.AMOUNT_MISMATCH, payment)


def _unknown_payment(event: WebhookEvent, payment_intent: str | None) -> _Handled:
    log.warning(
        "payments.unknown_payment",
        event_id=event.id,
        event_type=event.type,
        stripe_payment_intent_id=payment_intent,
    )
    return _Handled(Outcome.UNKNOWN_PAYMENT)


def _charged_as_agreed(payment: Payment, amount: int | None, currency: str | None) -> bool:
    """Does Stripe report the amount and currency we asked for?"""
    return amount == payment.amount_cents and (currency or "").lower() == payment.currency


# --- Finding the payment an event is about ----------------------------------------------


async def _checkout_payment(
    session: AsyncSession,
    event: WebhookEvent,
    obj: CheckoutSessionObject,
    *,
    unknown_is_error: bool,
) -> Payment | None:
    """Our payment for this Checkout Session id (locked), never found by metadata."""
    payment = await session.scalar(
        select(Payment)
        .where(Payment.stripe_session_id == obj.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if payment is None:
        report = log.error if unknown_is_error else log.warning
        report(
            "payments.unknown_session",
            event_id=event.id,
            event_type=event.type,
            stripe_session_id=obj.id,
            client_reference_id=obj.client_reference_id,
            metadata_payment_id=obj.metadata.get("payment_id"),
        )
    return payment


async def _charged_payment(
    session: AsyncSession, payment_intent: str | None, metadata: dict[str, str]
) -> Payment | None:
    """The payment behind a charge: by PaymentIntent, else by the id in its metadata.

    The metadata route only finds a payment whose PaymentIntent is not yet
    known (the refund arrived before the completion); the effect is then
    only to record the refund, and the amount is still compared.
    """
    if payment_intent is not None:
        payment = await session.scalar(
            select(Payment)
            .where(Payment.stripe_payment_intent_id == payment_intent)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if payment is not None:
            return payment
    try:
        payment_id = uuid.UUID(metadata.get("payment_id", ""))
    except ValueError:
        return None
    return await session.scalar(
        select(Payment)
        .where(Payment.id == payment_id, Payment.stripe_payment_intent_id.is_(None))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
