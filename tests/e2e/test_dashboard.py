"""The whole product demo in a real browser, through the dashboard page only.

A fresh browser signs in at the OIDC stand-in (Google's part), spends its
free credits on summaries and analyses until the page says there are not
enough, buys the starter pack on the Stripe stand-in's hosted checkout page
(which delivers the signed webhook to the app), comes back, and spends again.
The page runs under the strict Content-Security-Policy the app will send.

Set ACCESSAI_SCREENSHOTS=docs/img to refresh the README's screenshots.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Request, expect

from accessai.main import create_app
from tests.support.live_server import LiveServer
from tests.support.oidc import OIDCProvider
from tests.support.settings import make_settings
from tests.support.stripe_standin import StripeStandin

if TYPE_CHECKING:
    from tests.conftest import TestDatabase

WEBHOOK_SECRET = "whsec_test_dashboard_0123456789"
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
ARTICLE = (
    "The city council approved a new budget for public libraries on Monday. "
    "The plan adds evening hours at five branches and funds a mobile library for rural areas. "
    "Librarians welcomed the decision, saying demand for study space has grown every year. "
    "Some council members worried about the cost, but the vote passed by a wide margin."
)
REVIEW = (
    "I love this little cafe. The coffee is excellent, the staff are friendly and "
    "the pastries are wonderful. The only problem is that it gets crowded at lunch."
)

ASGIApp = Callable[..., Awaitable[None]]


def with_csp(app: ASGIApp) -> ASGIApp:
    """Wrap the app so every response carries the strict policy the page must live with."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with_csp(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"content-security-policy", STRICT_CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_csp)

    return wrapped


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = os.environ.get("ACCESSAI_SCREENSHOTS")
    folder = Path(target) if target else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def live_server() -> Iterator[LiveServer]:
    server = LiveServer().bind()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def google(live_server: LiveServer) -> Iterator[OIDCProvider]:
    with OIDCProvider(redirect_uris=[live_server.url + "/auth/callback"]) as provider:
        yield provider


@pytest.fixture
async def site(
    db: TestDatabase,
    live_server: LiveServer,
    google: OIDCProvider,
    stripe_standin: StripeStandin,
) -> str:
    """The app, configured for both stand-ins, served at its PUBLIC_BASE_URL."""
    settings = make_settings(
        database_url=db.url,
        public_base_url=live_server.url,
        google_client_id=google.client_id,
        google_client_secret=google.client_secret,
        oidc_discovery_url=google.discovery_url,
        stripe_secret_key=stripe_standin.api_key,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=stripe_standin.api_base,
    )
    live_server.app = with_csp(create_app(settings))
    live_server.start()
    stripe_standin.register_webhook(live_server.url + "/payments/webhook", WEBHOOK_SECRET)
    return live_server.url


async def _balance_is(page: Page, value: int) -> None:
    await expect(page.locator("#balance")).to_have_text(str(value))


async def _run(page: Page, action: str, expected_balance: int) -> None:
    await page.get_by_role("button", name=re.compile(f"^{action}")).click()
    await _balance_is(page, expected_balance)


async def _sign_in(page: Page, google: OIDCProvider, who: str) -> None:
    google.next_login(sub=f"google-{who}", email=f"{who}@example.com", name=who.title())
    await page.get_by_role("button", name="Sign in with Google").click()
    await expect(page.locator("#user-email")).to_have_text(f"{who}@example.com")


async def test_product_demo_in_the_browser(
    site: str, browser: Browser, google: OIDCProvider, shots: Path
) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    assert await context.cookies() == []  # a fresh browser
    page = await context.new_page()
    csp_violations: list[str] = []
    urls: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            csp_violations.append(message.text)

    def on_request(request: Request) -> None:
        urls.append(request.url)

    page.on("console", on_console)
    page.on("request", on_request)

    # Signed out.
    await page.goto(site + "/")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("prepaid credits")
    await page.screenshot(path=shots / "signed-out.png")

    # Sign in with "Google": the 100 free credits appear.
    await _sign_in(page, google, "ada")
    await _balance_is(page, 100)
    await expect(page.locator("#transactions")).to_contain_text("Welcome bonus")

    # A validation error is explained, and costs nothing.
    await page.get_by_label("Text to process").fill("too short")
    await page.get_by_role("button", name=re.compile("^Summarize")).click()
    await expect(page.locator("#ai-error")).to_contain_text("Please check the text")
    await expect(page.locator("#ai-error")).to_contain_text("10 to 2,000 characters")
    await _balance_is(page, 100)

    # Three summaries and one analysis: 100 -> 90 -> 80 -> 70 -> 45.
    await page.get_by_label("Text to process").fill(ARTICLE)
    for expected in (90, 80, 70):
        await _run(page, "Summarize", expected)
    await expect(page.locator("#ai-error")).to_be_hidden()
    await expect(page.locator("#ai-result")).to_contain_text("Summary")
    await expect(page.locator("#ai-result")).to_contain_text("balance 70")
    await page.screenshot(path=shots / "summary-result.png")

    await page.get_by_label("Text to process").fill(REVIEW)
    await _run(page, "Analyze", 45)
    await expect(page.locator("#ai-result")).to_contain_text("Sentiment")
    await expect(page.locator("#ai-result")).to_contain_text("positive")
    await expect(page.locator("#chart-summary")).to_contain_text("55 credits spent on 4 requests")
    await expect(page.locator("#usage-chart rect.bar:not(.empty)")).to_have_count(1)
    await page.screenshot(path=shots / "dashboard.png", full_page=True)

    # Spend until the page says there is not enough: 45 -> 35 -> 25 -> 15 -> 5.
    for expected in (35, 25, 15, 5):
        await _run(page, "Summarize", expected)
    await page.get_by_role("button", name=re.compile("^Summarize")).click()
    error = page.locator("#ai-error")
    await expect(error).to_contain_text("Not enough credits")
    await expect(error).to_contain_text("needs 10 credits and your balance is 5")
    await _balance_is(page, 5)
    await page.screenshot(path=shots / "insufficient-credits.png", full_page=True)

    # Buy the starter pack through the Checkout stand-in's hosted page.
    await error.get_by_role("button", name="Buy credits").click()
    await expect(page.locator("#buy-title")).to_be_focused()
    before = int(await page.locator("#balance").inner_text())
    await page.get_by_role("button", name="Buy Starter").click()
    await page.wait_for_url(re.compile(r"^(?!" + re.escape(site) + ").*"))
    await page.get_by_role("button", name=re.compile("pay", re.IGNORECASE)).click()

    # Back on the dashboard with ?checkout=success: the token lived in memory
    # only, so the page asks to sign in again, then waits for the webhook's credits.
    await page.wait_for_url(re.compile(re.escape(site) + r"/\?checkout=success"))
    await expect(page.locator("#signin-notice")).to_contain_text("Payment complete")
    await _sign_in(page, google, "ada")
    await expect(page.locator("#checkout-status")).to_contain_text("200 credits were added")
    await _balance_is(page, before + 200)
    await expect(page.locator("#transactions")).to_contain_text("Credits purchased")
    assert page.url == site + "/"  # the checkout query is gone
    await page.screenshot(path=shots / "after-purchase.png")

    # Spending resumes.
    await page.get_by_label("Text to process").fill(ARTICLE)
    await _run(page, "Summarize", before + 190)
    await expect(page.locator("#ai-error")).to_be_hidden()

    # A 429 from the rate limiter (played by the browser's network layer here):
    # the page says how long to wait and keeps the buttons off meanwhile.
    limited = json.dumps({"error": "rate_limited", "message": "Slow down.", "retry_after": 1})
    await page.route(
        "**/api/summarize",
        lambda route: route.fulfill(status=429, content_type="application/json", body=limited),
    )
    await page.get_by_role("button", name=re.compile("^Summarize")).click()
    await expect(page.locator("#ai-error")).to_contain_text("Please wait 1 second and try again")
    await expect(page.get_by_role("button", name=re.compile("^Analyze"))).to_be_disabled()
    await page.unroute("**/api/summarize")
    await expect(page.get_by_role("button", name=re.compile("^Analyze"))).to_be_enabled()
    await _balance_is(page, before + 190)

    # API keys: create, shown once, revoke.
    await page.get_by_label("Key name").fill("nightly-report")
    await page.get_by_role("button", name="Create key").click()
    new_key = page.get_by_label("New API key")
    await expect(new_key).to_have_value(re.compile(r"^aai_[A-Za-z0-9_-]{40,}$"))
    await expect(new_key).to_be_focused()
    await expect(page.locator("#keys")).to_contain_text("nightly-report")
    await page.locator(".keys-card").screenshot(path=shots / "api-keys.png")
    await page.get_by_role("button", name="Done").click()
    await expect(page.locator("#new-key")).to_be_hidden()
    assert await page.get_by_label("New API key").input_value() == ""
    await page.get_by_role("button", name="Revoke key nightly-report").click()
    await expect(page.locator("#keys-status")).to_contain_text('Key "nightly-report" revoked')
    await expect(page.locator("#keys")).to_contain_text("No API keys yet")

    # Phone width: the same dashboard, one column.
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=shots / "phone.png")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing forces sideways scrolling

    # The token never touched a URL or browser storage; the CSP blocked nothing.
    stored = await page.evaluate("localStorage.length + sessionStorage.length")
    assert stored == 0
    assert not [url for url in urls if "eyJ" in url or "access_token" in url]
    assert csp_violations == []

    # Sign out: back to the start, and a reload stays signed out.
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("button", name="Sign in with Google")).to_be_focused()
    await page.reload()
    await expect(page.get_by_role("button", name="Sign in with Google")).to_be_visible()
    await expect(page.locator("#dashboard")).to_be_hidden()
    await context.close()


async def test_sign_in_not_configured_is_explained_on_the_page(
    db: TestDatabase, live_server: LiveServer, browser: Browser
) -> None:
    live_server.app = with_csp(
        create_app(make_settings(database_url=db.url, public_base_url=live_server.url))
    )
    live_server.start()
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(live_server.url + "/")
    await page.get_by_role("button", name="Sign in with Google").click()
    await expect(page.locator("#signin-notice")).to_contain_text("not configured")
    assert page.url == live_server.url + "/"
    await expect(page.get_by_role("button", name="Sign in with Google")).to_be_enabled()
    await context.close()
