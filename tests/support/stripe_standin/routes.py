"""HTTP routes the stand-in adds to localstripe's aiohttp app.

* ``/v1/checkout/sessions`` and ``/v1/disputes``: the Stripe API, parsed with
  localstripe's own form decoding (``line_items[0][price_data][unit_amount]``).
* ``/_config/...``: the test-side control API. localstripe leaves ``/_config/``
  unauthenticated for exactly this kind of test-only endpoint.
"""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web
from localstripe import server as ls_server  # type: ignore[import-untyped]
from localstripe.errors import UserError  # type: ignore[import-untyped]
from localstripe.resources import Event  # type: ignore[import-untyped]

from .events import StandinState, describe
from .resources import (
    CheckoutSession,
    Dispute,
    dispute_charge,
    refund_charge,
    resolve_charge,
)

STATE = web.AppKey("stripe_standin_state", StandinState)


def register(app: web.Application) -> None:
    api = ls_server
    app.router.add_post("/v1/checkout/sessions", create_session)
    app.router.add_get(
        "/v1/checkout/sessions",
        api.api_list_all(CheckoutSession, "/v1/checkout/sessions"),
    )
    app.router.add_get("/v1/checkout/sessions/{id}", api.api_retrieve(CheckoutSession, None))
    app.router.add_get("/v1/checkout/sessions/{id}/line_items", session_line_items)
    app.router.add_get("/v1/disputes", api.api_list_all(Dispute, "/v1/disputes"))
    app.router.add_get("/v1/disputes/{id}", api.api_retrieve(Dispute, None))

    control = "/_config/checkout/sessions/{id}"
    app.router.add_post(control + "/complete", complete_session)
    app.router.add_post(control + "/async_payment_succeeded", async_payment_succeeded)
    app.router.add_post(control + "/async_payment_failed", async_payment_failed)
    app.router.add_post(control + "/expire", expire_session)
    app.router.add_post("/_config/payments/{id}/refund", refund)
    app.router.add_post("/_config/payments/{id}/dispute", dispute)
    app.router.add_post("/_config/events", custom_event)
    app.router.add_post("/_config/events/{id}/deliver", redeliver)
    app.router.add_delete("/_config/standin", reset)
    app.router.add_get("/_config/checkout/pay/{id}", hosted_page)
    app.router.add_post("/_config/checkout/pay/{id}", hosted_pay)


async def _body(request: web.Request) -> dict[str, Any]:
    data = await ls_server.get_post_data(request)
    return dict(data or {})


def _flag(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def _json(body: dict[str, Any]) -> web.Response:
    response: web.Response = ls_server.json_response(body)
    return response


# --- Stripe API ---------------------------------------------------------------


async def create_session(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await _body(request)
    expand = data.pop("expand", None)
    key = request.headers.get("Idempotency-Key")
    if key and key in state.idempotent_sessions:
        # Stripe replays the first response for a reused key, or refuses new params.
        params, first_response = state.idempotent_sessions[key]
        if params != data:
            message = (
                "Keys for idempotent requests can only be used with the same "
                "parameters they were first used with."
            )
            error = {"error": {"type": "idempotency_error", "message": message}}
            response: web.Response = ls_server.json_response(error, status=400)
            return response
        return _json(first_response)
    session = CheckoutSession(state.public_base, **data)
    body: dict[str, Any] = session._export(expand=expand)
    if key:
        state.idempotent_sessions[key] = (data, body)
    return _json(body)


async def session_line_items(request: web.Request) -> web.Response:
    session = CheckoutSession._api_retrieve(request.match_info["id"])
    return _json(session._line_items_list())


# --- control API ----------------------------------------------------------------


async def complete_session(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await _body(request)
    session = CheckoutSession._api_retrieve(request.match_info["id"])
    with state.quietly():
        session._complete(async_payment=_flag(data, "async_payment", False))
    event = await state.emit(
        "checkout.session.completed", session, deliver=_flag(data, "deliver", True)
    )
    return _json(event)


async def _settle(request: web.Request, *, succeeded: bool) -> web.Response:
    state = request.app[STATE]
    data = await _body(request)
    session = CheckoutSession._api_retrieve(request.match_info["id"])
    with state.quietly():
        session._settle_async_payment(succeeded=succeeded)
    outcome = "succeeded" if succeeded else "failed"
    event = await state.emit(
        f"checkout.session.async_payment_{outcome}",
        session,
        deliver=_flag(data, "deliver", True),
    )
    return _json(event)


async def async_payment_succeeded(request: web.Request) -> web.Response:
    return await _settle(request, succeeded=True)


async def async_payment_failed(request: web.Request) -> web.Response:
    return await _settle(request, succeeded=False)


async def expire_session(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await _body(request)
    session = CheckoutSession._api_retrieve(request.match_info["id"])
    session._expire()
    event = await state.emit(
        "checkout.session.expired", session, deliver=_flag(data, "deliver", True)
    )
    return _json(event)


async def refund(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await _body(request)
    charge = resolve_charge(request.match_info["id"])
    with state.quietly():
        previous = refund_charge(charge, data.get("amount"))
    event = await state.emit(
        "charge.refunded",
        charge,
        previous_attributes=previous,
        deliver=_flag(data, "deliver", True),
    )
    return _json(event)


async def dispute(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await _body(request)
    charge = resolve_charge(request.match_info["id"])
    created = dispute_charge(charge, data.get("amount"), data.get("reason", "fraudulent"))
    event = await state.emit(
        "charge.dispute.created", created, deliver=_flag(data, "deliver", True)
    )
    return _json(event)


async def custom_event(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await _body(request)
    event_type, obj = data.get("type"), data.get("object")
    if not isinstance(event_type, str) or not isinstance(obj, dict):
        raise UserError(400, "Expected JSON with 'type' (string) and 'object' (object).")
    previous = data.get("previous_attributes")
    if previous is not None and not isinstance(previous, dict):
        raise UserError(400, "'previous_attributes' must be an object.")
    event = await state.emit(
        event_type,
        obj,
        previous_attributes=previous,
        deliver=_flag(data, "deliver", True),
    )
    return _json(event)


async def redeliver(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await _body(request)
    Event._api_retrieve(request.match_info["id"])  # 404 for unknown ids
    stored = state.payloads.get(request.match_info["id"])
    if stored is None:
        raise UserError(400, "Only events the stand-in built can be redelivered.")
    times = data.get("times", 1)
    if type(times) is not int or not 1 <= times <= 100:
        raise UserError(400, "times must be an integer from 1 to 100.")
    event_type, payload = stored
    attempts = await state.deliver(
        event_type,
        payload,
        times=times,
        concurrently=_flag(data, "concurrently", False),
    )
    return _json(describe(payload, attempts))


async def reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.Response(status=204)


# --- hosted Checkout page (for browser tests) ------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Stripe stand-in checkout</title></head>
<body>
<h1>Test checkout</h1>
<p id="status">Session {id} is {status}.</p>
<ul>{items}</ul>
<p>Total: <span id="total">{total}</span> {currency}</p>
{actions}
</body></html>
"""


async def hosted_page(request: web.Request) -> web.Response:
    session = CheckoutSession._api_retrieve(request.match_info["id"])
    items = "".join(
        f"<li>{item['quantity']} &times; {html.escape(item['description'])}</li>"
        for item in session._line_items
    )
    actions = ""
    if session.status == "open":
        cancel = ""
        if session.cancel_url:
            cancel = f'<a id="cancel" href="{html.escape(session.cancel_url)}">Cancel</a>'
        actions = f'<form method="post"><button id="pay" type="submit">Pay</button></form>{cancel}'
    page = _PAGE.format(
        id=html.escape(session.id),
        status=html.escape(session.status),
        items=items,
        total=session.amount_total,
        currency=html.escape(session.currency.upper()),
        actions=actions,
    )
    return web.Response(text=page, content_type="text/html")


async def hosted_pay(request: web.Request) -> web.Response:
    """Pay like a customer would: complete, deliver the webhook, go to success_url."""
    state = request.app[STATE]
    session = CheckoutSession._api_retrieve(request.match_info["id"])
    with state.quietly():
        session._complete(async_payment=False)
    await state.emit("checkout.session.completed", session)
    # Stripe fills this template variable in success_url on redirect.
    target = session.success_url.replace("{CHECKOUT_SESSION_ID}", session.id)
    raise web.HTTPSeeOther(location=target)
