"""The dashboard's files are served, and nothing in them needs a CSP exception."""

from __future__ import annotations

import re

import httpx

from accessai.web.router import STATIC_DIR


async def test_the_page_and_its_assets_are_served(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/app.js"></script>' in page.text
    for asset, kind in [
        ("/static/app.js", "javascript"),
        ("/static/api.js", "javascript"),
        ("/static/chart.js", "javascript"),
        ("/static/app.css", "text/css"),
    ]:
        response = await client.get(asset)
        assert response.status_code == 200, asset
        assert kind in response.headers["content-type"], asset


async def test_an_unknown_asset_is_a_404_in_the_api_error_shape(client: httpx.AsyncClient) -> None:
    assert (await client.get("/static/nope.js")).status_code == 404
    assert (await client.get("/nope")).json()["error"] == "not_found"


def test_the_markup_has_no_inline_script_style_or_handler() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S)
    assert scripts
    assert all(body.strip() == "" for body in scripts)
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)
    for js in STATIC_DIR.glob("*.js"):
        source = js.read_text()
        # setAttribute("style") or innerHTML would need 'unsafe-inline' or invite injection.
        assert "innerHTML" not in source, js.name
        assert '"style"' not in source, js.name
        # The token lives in memory only (comments may name the stores, code may not use them).
        assert not re.search(r"(local|session)Storage\s*[.\[]", source), js.name
