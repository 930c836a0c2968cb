"""Test-side handle on a stand-in server running in a subprocess.

Configuration calls (start, stop, register_webhook, reset) are synchronous.
Lifecycle calls are coroutines: they return only after the stand-in has
delivered the event to every registered endpoint, and an endpoint served from
the test's own event loop must keep running meanwhile.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self

import httpx

from .protocol import READY_PREFIX
from .signing import webhook_headers

if TYPE_CHECKING:
    import stripe

_REPO_ROOT = Path(__file__).resolve().parents[3]
TEST_API_KEY = "sk_test_standin"


class StandinError(RuntimeError):
    """The stand-in refused a control call or failed to start."""


@dataclass(frozen=True)
class Delivery:
    """One POST of an event to one registered endpoint."""

    url: str
    status: int | None
    error: str | None
    body: str

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class StandinEvent:
    """A Stripe event as built by the stand-in, with its delivery attempts."""

    payload: bytes
    deliveries: tuple[Delivery, ...] = ()

    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.payload)
        return parsed

    @property
    def id(self) -> str:
        return str(self.json()["id"])

    @property
    def type(self) -> str:
        return str(self.json()["type"])

    @property
    def object(self) -> dict[str, Any]:
        """``data.object``: the session, charge or dispute as Stripe sends it."""
        obj: dict[str, Any] = self.json()["data"]["object"]
        return obj

    def headers(self, secret: str, timestamp: int | None = None) -> dict[str, str]:
        """Headers for posting ``payload`` yourself, signed as Stripe would."""
        return webhook_headers(self.payload, secret, timestamp)


def _event_from(body: dict[str, Any]) -> StandinEvent:
    deliveries = tuple(Delivery(**attempt) for attempt in body["deliveries"])
    return StandinEvent(payload=body["payload"].encode("utf-8"), deliveries=deliveries)


class StripeStandin:
    """A fake Stripe API (localstripe + Checkout Sessions) on 127.0.0.1.

    >>> with StripeStandin() as standin:
    ...     client = standin.stripe_client()
    """

    api_key = TEST_API_KEY

    def __init__(self, *, startup_timeout: float = 20.0, request_timeout: float = 60.0) -> None:
        self._startup_timeout = startup_timeout
        self._request_timeout = request_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._api_base: str | None = None

    # --- process ---------------------------------------------------------------

    def start(self) -> Self:
        if self._process is not None:
            raise StandinError("already started")
        import stripe  # the events carry the SDK's pinned API version

        # Kept open for the life of the process; closed in stop().
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
        command = [
            sys.executable,
            "-m",
            "tests.support.stripe_standin.server",
            "--host=127.0.0.1",
            "--port=0",
            f"--api-version={stripe.api_version}",
            "--watch-stdin",
        ]
        self._process = subprocess.Popen(
            command,
            cwd=_REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        try:
            self._api_base = self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> str:
        assert self._process is not None
        assert self._process.stdout is not None
        stdout = self._process.stdout
        deadline = time.monotonic() + self._startup_timeout
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while b"\n" not in buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StandinError(
                        f"no readiness line within {self._startup_timeout}s" + self._stderr_tail()
                    )
                if not selector.select(remaining):
                    continue
                chunk = os.read(stdout.fileno(), 4096)
                if not chunk:
                    raise StandinError("stand-in exited before it was ready" + self._stderr_tail())
                buffer += chunk
        line = buffer.split(b"\n", 1)[0].decode()
        prefix, _, base = line.partition(" ")
        if prefix != READY_PREFIX or not base.startswith("http://127.0.0.1:"):
            raise StandinError(f"unexpected readiness line {line!r}")
        return base

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return "\n--- stand-in stderr ---\n" + self._stderr.read()[-4000:].decode(errors="replace")

    def stop(self) -> None:
        """Stop the server (idempotent); SIGTERM first, SIGKILL if it hangs."""
        process, self._process, self._api_base = self._process, None, None
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- pointing the SDK at it ------------------------------------------------

    @property
    def api_base(self) -> str:
        """Base URL to give the SDK instead of https://api.stripe.com."""
        if self._api_base is None:
            raise StandinError("not started")
        return self._api_base

    def stripe_client(self, **options: Any) -> stripe.StripeClient:
        """A StripeClient aimed at the stand-in (retries off: failures show at once)."""
        import stripe

        options.setdefault("max_network_retries", 0)
        return stripe.StripeClient(
            api_key=self.api_key, base_addresses={"api": self.api_base}, **options
        )

    # --- configuration (sync) --------------------------------------------------

    def _sync(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        # verify=False: plain HTTP on loopback, and it skips building a TLS context per call.
        with httpx.Client(
            base_url=self.api_base, timeout=self._request_timeout, verify=False
        ) as http:
            response = http.request(method, path, json=body)
        _raise_for_error(response)
        return response

    def register_webhook(
        self,
        url: str,
        secret: str,
        *,
        events: list[str] | None = None,
        name: str = "default",
    ) -> None:
        """Send events (all, or only ``events``) to ``url``, signed with ``secret``.

        Uses localstripe's ``/_config/webhooks/{name}``; the same name replaces.
        """
        body: dict[str, Any] = {"url": url, "secret": secret}
        if events is not None:
            body["events"] = list(events)
        self._sync("POST", f"/_config/webhooks/{name}", body)

    def reset(self) -> None:
        """Forget every object, event and registered webhook."""
        self._sync("DELETE", "/_config/standin")

    # --- lifecycle (async) -------------------------------------------------------

    async def _control(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        # A client per call: tests may run each on its own event loop.
        async with httpx.AsyncClient(
            base_url=self.api_base, timeout=self._request_timeout, verify=False
        ) as http:
            response = await http.post(path, json=body)
        _raise_for_error(response)
        parsed: dict[str, Any] = response.json()
        return parsed

    async def _lifecycle(self, path: str, body: dict[str, Any]) -> StandinEvent:
        return _event_from(await self._control(path, body))

    async def complete_session(
        self, session_id: str, *, async_payment: bool = False, deliver: bool = True
    ) -> StandinEvent:
        """The customer pays: ``checkout.session.completed``.

        Paid by card at once (payment_status "paid", a PaymentIntent and Charge
        exist), or with ``async_payment=True`` left "unpaid" until
        :meth:`async_payment_succeeded` / :meth:`async_payment_failed`.
        ``deliver=False`` builds and returns the event without sending it.
        """
        body = {"async_payment": async_payment, "deliver": deliver}
        return await self._lifecycle(f"/_config/checkout/sessions/{session_id}/complete", body)

    async def async_payment_succeeded(
        self, session_id: str, *, deliver: bool = True
    ) -> StandinEvent:
        path = f"/_config/checkout/sessions/{session_id}/async_payment_succeeded"
        return await self._lifecycle(path, {"deliver": deliver})

    async def async_payment_failed(self, session_id: str, *, deliver: bool = True) -> StandinEvent:
        path = f"/_config/checkout/sessions/{session_id}/async_payment_failed"
        return await self._lifecycle(path, {"deliver": deliver})

    async def expire_session(self, session_id: str, *, deliver: bool = True) -> StandinEvent:
        path = f"/_config/checkout/sessions/{session_id}/expire"
        return await self._lifecycle(path, {"deliver": deliver})

    async def refund(
        self, payment: str, *, amount: int | None = None, deliver: bool = True
    ) -> StandinEvent:
        """Refund part (``amount``) or the rest of a payment: ``charge.refunded``.

        ``payment`` is a charge (ch_), PaymentIntent (pi_) or Checkout Session (cs_) id.
        """
        body: dict[str, Any] = {"deliver": deliver}
        if amount is not None:
            body["amount"] = amount
        return await self._lifecycle(f"/_config/payments/{payment}/refund", body)

    async def dispute(
        self,
        payment: str,
        *,
        amount: int | None = None,
        reason: str = "fraudulent",
        deliver: bool = True,
    ) -> StandinEvent:
        """The card holder disputes a payment: ``charge.dispute.created``."""
        body: dict[str, Any] = {"reason": reason, "deliver": deliver}
        if amount is not None:
            body["amount"] = amount
        return await self._lifecycle(f"/_config/payments/{payment}/dispute", body)

    async def send_event(
        self,
        event_type: str,
        obj: dict[str, Any],
        *,
        previous_attributes: dict[str, Any] | None = None,
        deliver: bool = True,
    ) -> StandinEvent:
        """Any event type around an object you give, e.g. an unknown type."""
        body: dict[str, Any] = {"type": event_type, "object": obj, "deliver": deliver}
        if previous_attributes is not None:
            body["previous_attributes"] = previous_attributes
        return await self._lifecycle("/_config/events", body)

    async def deliver(
        self, event: StandinEvent | str, *, times: int = 1, concurrently: bool = False
    ) -> list[Delivery]:
        """Send an already built event again (same id, same bytes, fresh signature).

        ``times=N, concurrently=True`` fires the N deliveries at once.
        """
        event_id = event if isinstance(event, str) else event.id
        body = {"times": times, "concurrently": concurrently}
        return list(
            _event_from(await self._control(f"/_config/events/{event_id}/deliver", body)).deliveries
        )


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text
    raise StandinError(
        f"{response.request.method} {response.request.url.path}: {response.status_code} {message}"
    )
