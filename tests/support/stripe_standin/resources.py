"""Checkout Sessions and Disputes, added to localstripe as resource classes.

They subclass localstripe's ``StripeObject``, so they live in its store,
render through its ``_export`` (which also resolves ``expand[]``) and can be
expanded from other objects by id prefix. Anything public on an instance is
part of the JSON Stripe would return, so helpers stay underscore-prefixed.
"""

from __future__ import annotations

import re
from typing import Any

from localstripe.errors import UserError  # type: ignore[import-untyped]
from localstripe.resources import (  # type: ignore[import-untyped]
    Charge,
    PaymentIntent,
    PaymentMethod,
    Refund,
    StripeObject,
    random_id,
    try_convert_to_int,
)

SESSION_TTL_SECONDS = 24 * 60 * 60
DISPUTE_RESPONSE_SECONDS = 7 * 24 * 60 * 60

# Stripe's test card that always succeeds; the stand-in pays with it.
_TEST_CARD = {
    "number": "4242424242424242",
    "exp_month": 12,
    "exp_year": 2034,
    "cvc": "123",
}

DISPUTE_REASONS = frozenset(
    {
        "bank_cannot_process",
        "check_returned",
        "credit_not_processed",
        "customer_initiated",
        "debit_not_authorized",
        "duplicate",
        "fraudulent",
        "general",
        "incorrect_account_details",
        "insufficient_funds",
        "product_not_received",
        "product_unacceptable",
        "subscription_canceled",
        "unrecognized",
    }
)

# Accepted because a real integration may send them, but they change nothing here.
_IGNORED_SESSION_PARAMS = frozenset(
    {"payment_method_types", "locale", "allow_promotion_codes", "submit_type"}
)


def param_error(param: str, message: str) -> Exception:
    """A 400 shaped like Stripe's, so the SDK raises InvalidRequestError."""
    error: Exception = UserError(400, message, {"param": param})
    return error


def _require_int(value: Any, param: str, *, minimum: int) -> int:
    number = try_convert_to_int(value)
    if type(number) is not int or number < minimum:
        raise param_error(param, f"Invalid integer: {value!r} (minimum {minimum})")
    return number


def _require_str(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value:
        raise param_error(param, f"Missing required param: {param}.")
    return value


def _parse_metadata(raw: Any, param: str = "metadata") -> dict[str, str]:
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, dict):
        raise param_error(param, "Invalid object")
    if len(raw) > 50:
        raise param_error(param, "Metadata can have at most 50 keys.")
    for key, value in raw.items():
        if len(key) > 40 or not isinstance(value, str) or len(value) > 500:
            raise param_error(f"{param}[{key}]", "Invalid metadata entry.")
    return dict(raw)


def _parse_line_item(raw: Any, index: int) -> dict[str, Any]:
    where = f"line_items[{index}]"
    if not isinstance(raw, dict):
        raise param_error(where, "Invalid object")
    if "price" in raw:
        raise param_error(
            f"{where}[price]",
            "The Stripe stand-in supports line_items[].price_data only, not Price ids.",
        )
    unknown = set(raw) - {"price_data", "quantity"}
    if unknown:
        raise param_error(f"{where}[{min(unknown)}]", "Received unknown parameter.")
    price_data = raw.get("price_data")
    if not isinstance(price_data, dict):
        raise param_error(f"{where}[price_data]", "Missing required param.")
    currency = _require_str(price_data.get("currency"), f"{where}[price_data][currency]")
    if not re.fullmatch(r"[a-z]{3}", currency):
        raise param_error(f"{where}[price_data][currency]", "Invalid currency.")
    unit_amount = _require_int(
        price_data.get("unit_amount"), f"{where}[price_data][unit_amount]", minimum=0
    )
    product_data = price_data.get("product_data")
    if not isinstance(product_data, dict):
        raise param_error(f"{where}[price_data][product_data]", "Missing required param.")
    name = _require_str(product_data.get("name"), f"{where}[price_data][product_data][name]")
    quantity = _require_int(raw.get("quantity"), f"{where}[quantity]", minimum=1)
    return {
        "id": "li_" + random_id(24),
        "object": "item",
        "amount_discount": 0,
        "amount_subtotal": unit_amount * quantity,
        "amount_tax": 0,
        "amount_total": unit_amount * quantity,
        "currency": currency,
        "description": name,
        "price": {
            "object": "price",
            "currency": currency,
            "unit_amount": unit_amount,
            "product_data": {"name": name},
            "type": "one_time",
        },
        "quantity": quantity,
    }


def _pay(intent: Any) -> None:
    """Confirm a PaymentIntent with the test card; its Charge mirrors the intent."""
    intent._confirm(on_failure_now=intent._report_failure)
    charge = intent.latest_charge
    # Stripe copies the intent's metadata onto its charges; localstripe does not.
    charge.metadata = dict(intent.metadata)
    charge.disputed = False


class CheckoutSession(StripeObject):  # type: ignore[misc]
    object = "checkout.session"
    _id_prefix = "cs_test_"

    def __init__(
        self,
        public_base: str,
        mode: Any = None,
        line_items: Any = None,
        success_url: Any = None,
        cancel_url: Any = None,
        client_reference_id: Any = None,
        customer_email: Any = None,
        customer: Any = None,
        metadata: Any = None,
        payment_intent_data: Any = None,
        **kwargs: Any,
    ) -> None:
        unknown = set(kwargs) - _IGNORED_SESSION_PARAMS
        if unknown:
            name = min(unknown)
            raise param_error(name, f"Received unknown parameter: {name}")
        if mode != "payment":
            raise param_error("mode", "The Stripe stand-in supports mode=payment only.")
        if not isinstance(line_items, list) or not line_items:
            raise param_error("line_items", "Missing required param: line_items.")
        items = [_parse_line_item(raw, i) for i, raw in enumerate(line_items)]
        currencies = {item["currency"] for item in items}
        if len(currencies) != 1:
            raise param_error("line_items", "All line items must use the same currency.")
        _require_str(success_url, "success_url")
        if cancel_url is not None:
            _require_str(cancel_url, "cancel_url")
        if client_reference_id is not None:
            _require_str(client_reference_id, "client_reference_id")
            if len(client_reference_id) > 200:
                raise param_error("client_reference_id", "At most 200 characters.")
        if customer_email is not None:
            _require_str(customer_email, "customer_email")
        if customer is not None and customer_email is not None:
            raise param_error(
                "customer_email",
                "You may only specify one of these parameters: customer, customer_email.",
            )
        session_metadata = _parse_metadata(metadata)
        intent_metadata: dict[str, str] = {}
        if payment_intent_data is not None:
            if not isinstance(payment_intent_data, dict) or set(payment_intent_data) - {"metadata"}:
                raise param_error(
                    "payment_intent_data",
                    "Only payment_intent_data[metadata] is supported.",
                )
            intent_metadata = _parse_metadata(
                payment_intent_data.get("metadata"), "payment_intent_data[metadata]"
            )

        # All validation happens before this point: the constructor stores the object.
        super().__init__(id=self._id_prefix + random_id(58))

        total = sum(item["amount_total"] for item in items)
        self._line_items = items
        self._intent_metadata = intent_metadata
        self.amount_subtotal = total
        self.amount_total = total
        self.cancel_url = cancel_url
        self.client_reference_id = client_reference_id
        self.currency = currencies.pop()
        self.customer = customer
        self.customer_details: dict[str, Any] | None = None
        self.customer_email = customer_email
        self.expires_at = self.created + SESSION_TTL_SECONDS
        self.metadata = session_metadata
        self.mode = mode
        self.payment_intent = None
        self.payment_method_types = ["card"]
        self.payment_status = "unpaid"
        self.status = "open"
        self.success_url = success_url
        self.total_details = {
            "amount_discount": 0,
            "amount_shipping": 0,
            "amount_tax": 0,
        }
        self.ui_mode = "hosted"
        self.url = f"{public_base}/_config/checkout/pay/{self.id}"

    def _line_items_list(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [dict(item) for item in self._line_items],
            "has_more": False,
            "url": f"/v1/checkout/sessions/{self.id}/line_items",
        }

    def _complete(self, *, async_payment: bool) -> None:
        """The customer submitted the form: paid now, or pending an async method."""
        if self.status != "open":
            raise UserError(400, f"Checkout Session {self.id} is {self.status}, not open.")
        self.status = "complete"
        self.customer_details = {
            "email": self.customer_email or "customer@example.com",
            "name": "Test Customer",
            "phone": None,
            "address": None,
            "tax_exempt": "none",
            "tax_ids": [],
        }
        if self.amount_total == 0:
            self.payment_status = "no_payment_required"
            return
        method = PaymentMethod(type="card", card=dict(_TEST_CARD))
        intent = PaymentIntent(
            amount=self.amount_total,
            currency=self.currency,
            payment_method=method.id,
            metadata=dict(self._intent_metadata),
        )
        self.payment_intent = intent.id
        if async_payment:
            return  # stays "unpaid" until async_payment_succeeded/failed
        _pay(intent)
        self.payment_status = "paid"

    def _settle_async_payment(self, *, succeeded: bool) -> None:
        intent = self._pending_intent()
        if succeeded:
            _pay(intent)
            self.payment_status = "paid"
        else:
            # Stripe leaves the intent waiting for another payment method.
            intent.payment_method = None

    def _pending_intent(self) -> Any:
        if self.status == "complete" and self.payment_status == "unpaid" and self.payment_intent:
            intent = PaymentIntent._api_retrieve(self.payment_intent)
            if intent.status == "requires_confirmation":
                return intent
        raise UserError(400, f"Checkout Session {self.id} has no pending async payment.")

    def _expire(self) -> None:
        if self.status != "open":
            raise UserError(400, f"Checkout Session {self.id} is {self.status}, not open.")
        self.status = "expired"


class Dispute(StripeObject):  # type: ignore[misc]
    object = "dispute"
    _id_prefix = "dp_"

    def __init__(self, charge: Any, amount: int, reason: str) -> None:
        super().__init__(id=self._id_prefix + random_id(24))
        self.amount = amount
        self.balance_transactions: list[Any] = []
        self.charge = charge.id
        self.currency = charge.currency
        self.evidence_details = {
            "due_by": self.created + DISPUTE_RESPONSE_SECONDS,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        }
        self.is_charge_refundable = False
        self.metadata: dict[str, str] = {}
        self.payment_intent = charge.payment_intent
        self.reason = reason
        self.status = "needs_response"


def resolve_charge(reference: str) -> Any:
    """The charge behind a charge, PaymentIntent or Checkout Session id."""
    if reference.startswith("ch_"):
        return Charge._api_retrieve(reference)
    if reference.startswith("cs_"):
        session = CheckoutSession._api_retrieve(reference)
        if not session.payment_intent:
            raise UserError(400, f"Checkout Session {reference} has no payment yet.")
        reference = session.payment_intent
    if not reference.startswith("pi_"):
        raise UserError(400, f"Expected a ch_, pi_ or cs_ id, got {reference!r}.")
    intent = PaymentIntent._api_retrieve(reference)
    if intent.latest_charge is None:
        raise UserError(400, f"PaymentIntent {reference} has no charge yet.")
    return intent.latest_charge


def refund_charge(charge: Any, amount: Any) -> dict[str, Any]:
    """Refund ``amount`` (default: what is left); return Stripe's previous_attributes."""
    remaining = charge.amount - charge.amount_refunded
    value = remaining if amount is None else _require_int(amount, "amount", minimum=1)
    if remaining <= 0:
        raise UserError(400, f"Charge {charge.id} has already been refunded.")
    if value > remaining:
        raise param_error(
            "amount",
            f"Refund amount {value} is greater than unrefunded amount {remaining}.",
        )
    previous: dict[str, Any] = {"amount_refunded": charge.amount_refunded}
    was_refunded = charge.refunded
    Refund(charge=charge.id, amount=value)
    if charge.refunded != was_refunded:
        previous["refunded"] = was_refunded
    return previous


def dispute_charge(charge: Any, amount: Any, reason: Any) -> Dispute:
    value = charge.amount if amount is None else _require_int(amount, "amount", minimum=1)
    if value > charge.amount:
        raise param_error("amount", "A dispute cannot exceed the charge amount.")
    if reason not in DISPUTE_REASONS:
        raise param_error("reason", f"Unknown dispute reason {reason!r}.")
    if getattr(charge, "disputed", False):
        raise UserError(400, f"Charge {charge.id} is already disputed.")
    charge.disputed = True
    return Dispute(charge, value, reason)
