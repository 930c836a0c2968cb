"""The Stripe stand-in, exercised through the official ``stripe`` SDK.

Webhooks go to a small aiohttp receiver on a loopback port that verifies
every delivery with ``stripe.Webhook.construct_event``, as the app will.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import stripe
from aiohttp import web

from tests.support.stripe_standin import (
    StandinError,
    StandinEvent,
    StripeStandin,
    sign_payload,
)

SECRET = "whsec_standin_test_secret"


def session_params(**overrides: Any) -> Any:
    """Checkout params as our backend sends them (Any: the SDK types them as a TypedDict)."""
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 500,
                    "product_data": {"name": "500 credits"},
                },
                "quantity": 2,
            }
        ],
        "success_url": "http://127.0.0.1:9/done?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://127.0.0.1:9/cancelled",
        "client_reference_id": "user-42",
        "customer_email": "buyer@example.com",
        "metadata": {"user_id": "42", "pack": "small"},
    }
    params.update(overrides)
    return params


@dataclass
class Received:
    body: bytes
    signature: str | None
    event: stripe.Event | None
    error: str | None


@dataclass
class WebhookReceiver:
    """Records deliveries; answers 200 when the signature verifies, else 400.

    With ``hold_until`` set, it answers nothing until that many requests are
    in flight at once, which only happens when deliveries are concurrent.
    """

    url: str = ""
    received: list[Received] = field(default_factory=list)
    hold_until: int = 0
    _all_arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        signature = request.headers.get("Stripe-Signature")
        try:
            event = stripe.Webhook.construct_event(body, signature, SECRET)
        except (stripe.SignatureVerificationError, ValueError) as exc:
            self.received.append(Received(body, signature, None, str(exc)))
            return web.json_response({"error": "bad signature"}, status=400)
        self.received.append(Received(body, signature, event, None))
        if self.hold_until:
            if len(self.received) >= self.hold_until:
                self._all_arrived.set()
            try:
                await asyncio.wait_for(self._all_arrived.wait(), timeout=10)
            except TimeoutError:
                return web.json_response({"error": "deliveries were not concurrent"}, status=409)
        return web.json_response({"received": event.id})

    @property
    def events(self) -> list[stripe.Event]:
        return [r.event for r in self.received if r.event is not None]


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    recorder = WebhookReceiver()
    app = web.Application()
    app.router.add_post("/webhook", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        recorder.url = f"http://127.0.0.1:{port}/webhook"
        yield recorder
    finally:
        await runner.cleanup()


@pytest.fixture
def client(stripe_standin: StripeStandin) -> stripe.StripeClient:
    return stripe_standin.stripe_client()


@pytest.fixture
def hooked(stripe_standin: StripeStandin, receiver: WebhookReceiver) -> StripeStandin:
    """The stand-in with the receiver registered for every event."""
    stripe_standin.register_webhook(receiver.url, SECRET)
    return stripe_standin


def assert_event_envelope(event: StandinEvent, event_type: str) -> dict[str, Any]:
    body = event.json()
    assert body["id"].startswith("evt_")
    assert body["object"] == "event"
    assert body["type"] == event_type
    assert body["livemode"] is False
    assert body["api_version"] == stripe.api_version
    assert isinstance(body["created"], int)
    assert abs(body["created"] - time.time()) < 3600
    return body


def paid_session(client: stripe.StripeClient, **overrides: Any) -> stripe.checkout.Session:
    return client.v1.checkout.sessions.create(params=session_params(**overrides))


# --- Checkout Sessions through the SDK --------------------------------------------------


async def test_create_and_retrieve_session_with_the_sdk(
    client: stripe.StripeClient,
) -> None:
    created = paid_session(client)

    assert created.id.startswith("cs_test_")
    assert created.object == "checkout.session"
    assert created.status == "open"
    assert created.payment_status == "unpaid"
    assert created.amount_total == 1000
    assert created.currency == "usd"
    assert created.mode == "payment"
    assert created.client_reference_id == "user-42"
    assert created.customer_email == "buyer@example.com"
    assert created.metadata is not None
    assert created.metadata.to_dict() == {"user_id": "42", "pack": "small"}
    assert created.payment_intent is None
    assert created.url is not None
    assert created.id in created.url
    assert created.success_url == "http://127.0.0.1:9/done?session={CHECKOUT_SESSION_ID}"

    fetched = client.v1.checkout.sessions.retrieve(created.id)
    assert fetched.to_dict() == created.to_dict()

    items = client.v1.checkout.sessions.line_items.list(created.id)
    assert [(i.description, i.quantity, i.amount_total) for i in items.data] == [
        ("500 credits", 2, 1000)
    ]


async def test_async_sdk_calls_work_too(client: stripe.StripeClient) -> None:
    created = await client.v1.checkout.sessions.create_async(params=session_params())
    fetched = await client.v1.checkout.sessions.retrieve_async(created.id)
    assert fetched.id == created.id
    assert fetched.amount_total == 1000


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"mode": "subscription"}, "mode"),
        ({"line_items": None}, "line_items"),
        (
            {"line_items": [{"price": "price_123", "quantity": 1}]},
            "line_items[0][price]",
        ),
        (
            {
                "line_items": [
                    {
                        "price_data": {
                            "currency": "usd",
                            "unit_amount": 100,
                            "product_data": {"name": "x"},
                        },
                        "quantity": 0,
                    }
                ]
            },
            "line_items[0][quantity]",
        ),
        ({"success_url": None}, "success_url"),
        ({"shipping_options": [{"shipping_rate": "shr_1"}]}, "shipping_options"),
    ],
)
async def test_invalid_session_params_are_rejected_like_stripe(
    client: stripe.StripeClient, overrides: dict[str, Any], param: str
) -> None:
    params: Any = {k: v for k, v in session_params(**overrides).items() if v is not None}
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.checkout.sessions.create(params=params)
    assert raised.value.http_status == 400
    assert raised.value.param == param


async def test_unknown_session_is_not_found(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.checkout.sessions.retrieve("cs_test_missing")
    assert raised.value.http_status == 404


async def test_idempotency_key_replays_the_first_session(
    client: stripe.StripeClient,
) -> None:
    options: Any = {"idempotency_key": "checkout-user-42-1"}
    first = client.v1.checkout.sessions.create(params=session_params(), options=options)
    again = client.v1.checkout.sessions.create(params=session_params(), options=options)
    assert again.id == first.id

    with pytest.raises(stripe.IdempotencyError):
        client.v1.checkout.sessions.create(
            params=session_params(client_reference_id="someone-else"), options=options
        )


# --- completing a session and its webhook ----------------------------------------------


async def test_completed_session_is_delivered_signed_and_verifies(
    hooked: StripeStandin, receiver: WebhookReceiver, client: stripe.StripeClient
) -> None:
    session = paid_session(client)

    event = await hooked.complete_session(session.id)

    assert [d.status for d in event.deliveries] == [200]
    body = assert_event_envelope(event, "checkout.session.completed")
    completed = body["data"]["object"]
    assert completed["id"] == session.id
    assert completed["status"] == "complete"
    assert completed["payment_status"] == "paid"
    assert completed["payment_intent"].startswith("pi_")
    assert completed["amount_total"] == 1000
    assert completed["metadata"] == {"user_id": "42", "pack": "small"}
    assert completed["client_reference_id"] == "user-42"

    [received] = receiver.events
    assert received.id == event.id
    assert received.type == "checkout.session.completed"
    assert received.data.object.id == session.id

    fetched = client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["payment_intent"]}
    )
    assert fetched.status == "complete"
    assert fetched.payment_status == "paid"
    intent = fetched.payment_intent
    assert isinstance(intent, stripe.PaymentIntent)
    assert intent.id == completed["payment_intent"]
    assert intent.status == "succeeded"
    assert intent.amount == 1000


async def test_payment_intent_metadata_reaches_the_charge(
    stripe_standin: StripeStandin, client: stripe.StripeClient
) -> None:
    session = paid_session(client, payment_intent_data={"metadata": {"user_id": "42"}})
    await stripe_standin.complete_session(session.id)
    event = await stripe_standin.refund(session.id, deliver=False)
    assert event.object["metadata"] == {"user_id": "42"}


async def test_session_cannot_be_completed_twice(
    stripe_standin: StripeStandin, client: stripe.StripeClient
) -> None:
    session = paid_session(client)
    await stripe_standin.complete_session(session.id)
    with pytest.raises(StandinError, match="not open"):
        await stripe_standin.complete_session(session.id)


async def test_async_payment_succeeds_later(
    hooked: StripeStandin, receiver: WebhookReceiver, client: stripe.StripeClient
) -> None:
    session = paid_session(client)

    completed = await hooked.complete_session(session.id, async_payment=True)
    assert completed.object["status"] == "complete"
    assert completed.object["payment_status"] == "unpaid"

    succeeded = await hooked.async_payment_succeeded(session.id)
    assert_event_envelope(succeeded, "checkout.session.async_payment_succeeded")
    assert succeeded.object["payment_status"] == "paid"
    assert [e.type for e in receiver.events] == [
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
    ]
    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"


async def test_async_payment_fails_later(
    hooked: StripeStandin, receiver: WebhookReceiver, client: stripe.StripeClient
) -> None:
    session = paid_session(client)
    await hooked.complete_session(session.id, async_payment=True)

    failed = await hooked.async_payment_failed(session.id)

    assert_event_envelope(failed, "checkout.session.async_payment_failed")
    assert failed.object["payment_status"] == "unpaid"
    assert receiver.events[-1].type == "checkout.session.async_payment_failed"
    with pytest.raises(StandinError, match="no pending async payment"):
        await hooked.async_payment_succeeded(session.id)
    with pytest.raises(StandinError, match=r"no payment yet|no charge yet"):
        await hooked.refund(session.id)


async def test_expired_session(
    hooked: StripeStandin, receiver: WebhookReceiver, client: stripe.StripeClient
) -> None:
    session = paid_session(client)

    expired = await hooked.expire_session(session.id)

    assert_event_envelope(expired, "checkout.session.expired")
    assert expired.object["status"] == "expired"
    assert expired.object["payment_status"] == "unpaid"
    assert [e.type for e in receiver.events] == ["checkout.session.expired"]
    with pytest.raises(StandinError, match="not open"):
        await hooked.complete_session(session.id)


# --- refunds and disputes ---------------------------------------------------------------


async def test_partial_then_full_refund_events(
    hooked: StripeStandin, receiver: WebhookReceiver, client: stripe.StripeClient
) -> None:
    session = paid_session(client)
    completed = await hooked.complete_session(session.id)
    payment_intent = completed.object["payment_intent"]

    partial = await hooked.refund(session.id, amount=300)

    body = assert_event_envelope(partial, "charge.refunded")
    charge = body["data"]["object"]
    assert charge["id"].startswith("ch_")
    assert charge["object"] == "charge"
    assert charge["amount"] == 1000
    assert charge["amount_refunded"] == 300
    assert charge["refunded"] is False
    assert charge["currency"] == "usd"
    assert charge["payment_intent"] == payment_intent
    assert body["data"]["previous_attributes"] == {"amount_refunded": 0}

    full = await hooked.refund(charge["id"])

    assert full.object["amount_refunded"] == 1000
    assert full.object["refunded"] is True
    assert full.json()["data"]["previous_attributes"] == {
        "amount_refunded": 300,
        "refunded": False,
    }
    assert [d.status for d in partial.deliveries + full.deliveries] == [200, 200]
    assert [e.type for e in receiver.events] == [
        "checkout.session.completed",
        "charge.refunded",
        "charge.refunded",
    ]
    assert client.v1.charges.retrieve(charge["id"]).amount_refunded == 1000

    with pytest.raises(StandinError, match="already been refunded"):
        await hooked.refund(payment_intent)


async def test_refund_cannot_exceed_what_is_left(
    stripe_standin: StripeStandin, client: stripe.StripeClient
) -> None:
    session = paid_session(client)
    await stripe_standin.complete_session(session.id)
    with pytest.raises(StandinError, match="greater than unrefunded"):
        await stripe_standin.refund(session.id, amount=1001)


async def test_dispute_event(
    hooked: StripeStandin, receiver: WebhookReceiver, client: stripe.StripeClient
) -> None:
    session = paid_session(client)
    completed = await hooked.complete_session(session.id)

    event = await hooked.dispute(session.id, reason="product_not_received")

    body = assert_event_envelope(event, "charge.dispute.created")
    dispute = body["data"]["object"]
    assert dispute["id"].startswith("dp_")
    assert dispute["object"] == "dispute"
    assert dispute["amount"] == 1000
    assert dispute["charge"].startswith("ch_")
    assert dispute["payment_intent"] == completed.object["payment_intent"]
    assert dispute["currency"] == "usd"
    assert dispute["reason"] == "product_not_received"
    assert dispute["status"] == "needs_response"
    assert receiver.events[-1].type == "charge.dispute.created"
    assert receiver.events[-1].data.object.id == dispute["id"]
    assert client.v1.disputes.retrieve(dispute["id"]).charge == dispute["charge"]
    assert client.v1.charges.retrieve(dispute["charge"]).disputed is True


# --- signatures -----------------------------------------------------------------------


async def test_tampered_payload_fails_verification(
    hooked: StripeStandin, receiver: WebhookReceiver, client: stripe.StripeClient
) -> None:
    session = paid_session(client)
    event = await hooked.complete_session(session.id, deliver=False)
    headers = event.headers(SECRET)
    tampered = event.payload.replace(b'"amount_total": 1000', b'"amount_total": 99999')
    assert tampered != event.payload

    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(tampered, headers["Stripe-Signature"], SECRET)
    assert stripe.Webhook.construct_event(event.payload, headers["Stripe-Signature"], SECRET)

    async with httpx.AsyncClient() as http:
        response = await http.post(receiver.url, content=tampered, headers=headers)
    assert response.status_code == 400
    assert receiver.events == []


async def test_stale_and_wrongly_keyed_signatures_fail(
    stripe_standin: StripeStandin, client: stripe.StripeClient
) -> None:
    event = await stripe_standin.complete_session(paid_session(client).id, deliver=False)
    hour_ago = int(time.time()) - 3600

    stale = sign_payload(event.payload, SECRET, timestamp=hour_ago)
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stripe.Webhook.construct_event(event.payload, stale, SECRET)

    wrong_key = sign_payload(event.payload, "whsec_someone_else")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(event.payload, wrong_key, SECRET)


async def test_sign_payload_follows_the_documented_scheme() -> None:
    header = sign_payload(b'{"id": "evt_1"}', "whsec_abc", timestamp=1700000000)
    # Expected value from `openssl dgst -sha256 -hmac whsec_abc` over '1700000000.{"id": "evt_1"}'.
    assert header == (
        "t=1700000000,v1=523602a5261d3fb92a9f1da088d07b1901216560c5e61e432a856f9183a5e390"
    )
    stripe.WebhookSignature.verify_header('{"id": "evt_1"}', header, "whsec_abc", tolerance=None)


# --- delivery control -------------------------------------------------------------------


async def test_same_event_delivered_twice(
    hooked: StripeStandin, receiver: WebhookReceiver, client: stripe.StripeClient
) -> None:
    event = await hooked.complete_session(paid_session(client).id)

    again = await hooked.deliver(event)

    assert [d.status for d in again] == [200]
    assert [r.body for r in receiver.received] == [event.payload, event.payload]
    assert [e.id for e in receiver.events] == [event.id, event.id]


async def test_one_event_delivered_concurrently(
    hooked: StripeStandin, receiver: WebhookReceiver, client: stripe.StripeClient
) -> None:
    event = await hooked.complete_session(paid_session(client).id, deliver=False)
    receiver.hold_until = 5

    deliveries = await hooked.deliver(event, times=5, concurrently=True)

    assert [d.status for d in deliveries] == [200] * 5
    assert {e.id for e in receiver.events} == {event.id}
    assert len(receiver.events) == 5


async def test_event_built_without_sending_can_be_replayed_from_a_file(
    hooked: StripeStandin,
    receiver: WebhookReceiver,
    client: stripe.StripeClient,
    tmp_path: Path,
) -> None:
    event = await hooked.complete_session(paid_session(client).id, deliver=False)
    assert event.deliveries == ()
    assert receiver.received == []

    saved = tmp_path / "event.json"
    saved.write_bytes(event.payload)
    payload = saved.read_bytes()
    async with httpx.AsyncClient() as http:
        response = await http.post(receiver.url, content=payload, headers=event.headers(SECRET))

    assert response.status_code == 200
    assert [e.id for e in receiver.events] == [event.id]
    assert client.v1.events.retrieve(event.id).type == "checkout.session.completed"


async def test_webhook_filtered_by_event_type(
    stripe_standin: StripeStandin,
    receiver: WebhookReceiver,
    client: stripe.StripeClient,
) -> None:
    stripe_standin.register_webhook(receiver.url, SECRET, events=["charge.refunded"])
    session = paid_session(client)

    completed = await stripe_standin.complete_session(session.id)
    refunded = await stripe_standin.refund(session.id)

    assert completed.deliveries == ()
    assert [d.status for d in refunded.deliveries] == [200]
    assert [e.type for e in receiver.events] == ["charge.refunded"]


async def test_custom_event_type(hooked: StripeStandin, receiver: WebhookReceiver) -> None:
    obj = {"id": "cus_123", "object": "customer", "email": "x@example.com"}

    event = await hooked.send_event(
        "customer.updated", obj, previous_attributes={"email": "y@example.com"}
    )

    body = assert_event_envelope(event, "customer.updated")
    assert body["data"] == {
        "object": obj,
        "previous_attributes": {"email": "y@example.com"},
    }
    assert [e.type for e in receiver.events] == ["customer.updated"]


async def test_unreachable_endpoint_is_reported(
    stripe_standin: StripeStandin, client: stripe.StripeClient
) -> None:
    stripe_standin.register_webhook("http://127.0.0.1:9/nothing-listens", SECRET)
    event = await stripe_standin.complete_session(paid_session(client).id)
    [delivery] = event.deliveries
    assert delivery.status is None
    assert not delivery.ok
    assert delivery.error


# --- hosted checkout page -----------------------------------------------------------------


async def test_hosted_page_pays_and_redirects_to_success_url(
    hooked: StripeStandin, receiver: WebhookReceiver, client: stripe.StripeClient
) -> None:
    session = paid_session(client)
    assert session.url is not None

    async with httpx.AsyncClient() as browser:
        page = await browser.get(session.url)
        assert page.status_code == 200
        assert "500 credits" in page.text
        assert ">1000<" in page.text
        paid = await browser.post(session.url)

    assert paid.status_code == 303
    assert paid.headers["location"] == f"http://127.0.0.1:9/done?session={session.id}"
    assert [e.type for e in receiver.events] == ["checkout.session.completed"]
    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"


# --- process lifecycle ----------------------------------------------------------------------


def test_start_and_stop_own_process() -> None:
    standin = StripeStandin().start()
    base = standin.api_base
    assert httpx.get(f"{base}/v1/balance", headers={"Authorization": "Bearer sk_test_x"}).is_success

    standin.stop()
    standin.stop()  # idempotent

    with pytest.raises(StandinError):
        _ = standin.api_base
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/v1/balance")


def test_requests_without_a_secret_key_are_refused(
    stripe_standin: StripeStandin,
) -> None:
    response = httpx.get(f"{stripe_standin.api_base}/v1/checkout/sessions/cs_test_x")
    assert response.status_code == 401
    assert json.loads(response.text)["error"]["type"] == "invalid_request_error"
