"""/docs in a real browser: Swagger UI renders under our Content-Security-Policy.

Debian's Chromium driven by Playwright (``executable_path``; nothing is
downloaded). The page records every ``securitypolicyviolation`` event through
an init script, which the page's own policy does not govern.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from playwright.async_api import async_playwright

from accessai.main import create_app
from tests.support.databases import services_required
from tests.support.network import free_port, wait_until
from tests.support.settings import make_settings

RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


def chromium_path() -> str:
    path = os.environ.get("ACCESSAI_CHROMIUM") or shutil.which("chromium")
    if path is None:
        message = "Chromium is not installed (apt-get install chromium)"
        if services_required():
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def live_server(tmp_path) -> Iterator[str]:
    """The app on a free loopback port, served by uvicorn in a thread."""
    settings = make_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'docs.db'}")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, timeout=30), "server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


async def test_swagger_ui_renders_without_policy_violations(live_server: str) -> None:
    executable = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page()
            await page.add_init_script(RECORD_VIOLATIONS)
            external: list[str] = []
            page.on(
                "request",
                lambda request: (
                    None if request.url.startswith(live_server) else external.append(request.url)
                ),
            )
            # Deep link: the operation opens, so responses and examples render too.
            await page.goto(f"{live_server}/docs#/health/health_health_get")
            await page.wait_for_selector(".opblock-summary-path[data-path='/health/live']")
            await page.wait_for_selector(
                "#operations-health-health_health_get.is-open .responses-table"
            )
            # "Try it out" calls the API from the page (connect-src).
            await page.click("#operations-health-health_health_get .try-out__btn")
            await page.click("#operations-health-health_health_get .execute")
            await page.wait_for_selector(
                "#operations-health-health_health_get .live-responses-table"
            )
            await asyncio.sleep(0.2)  # let any late violation event arrive
            violations = await page.evaluate("window.__cspViolations")
            css_applied = await page.evaluate(
                "getComputedStyle(document.querySelector('.opblock-summary-method')).color"
            )
        finally:
            await browser.close()
    assert violations == []
    assert external == [], "the docs page must not load anything from elsewhere"
    assert css_applied == "rgb(255, 255, 255)"  # Swagger UI's stylesheet is in effect
