"""A Stripe stand-in for tests: localstripe plus Checkout Sessions and webhooks.

Point the official SDK at it and drive payments through their lifecycle::

    standin = StripeStandin().start()
    client = stripe.StripeClient(
        api_key=standin.api_key, base_addresses={"api": standin.api_base}
    )
    session = client.v1.checkout.sessions.create(params={...})
    standin.register_webhook("http://127.0.0.1:8000/payments/webhook", "whsec_test")
    event = await standin.complete_session(session.id)  # delivered and signed
    await standin.refund(session.id, amount=500)        # charge.refunded
    standin.stop()

See README.md beside this file.
"""

from .client import Delivery, StandinError, StandinEvent, StripeStandin
from .signing import sign_payload, webhook_headers

__all__ = [
    "Delivery",
    "StandinError",
    "StandinEvent",
    "StripeStandin",
    "sign_payload",
    "webhook_headers",
]
