"""Security headers on every response, built with the ``secure`` library.

One strict Content-Security-Policy for everything we serve, the API, the
Swagger UI page and the future dashboard (static files, no inline scripts):
scripts, styles and connections from our own origin only, images also as
``data:`` URIs, no plugins, no ``<base>``, no framing. The docs page meets it
because it is self-hosted with no inline script (hardening/docs.py);
Swagger UI 5 sets its styles through the DOM, which ``style-src 'self'``
allows (checked in a real browser: tests/hardening/test_docs_browser.py).
``form-action`` is left open so a form may post to a route that redirects
to Stripe Checkout.

Strict-Transport-Security is sent only when the request arrived over HTTPS,
as seen after trusted-proxy handling (``X-Forwarded-Proto`` from a proxy in
FORWARDED_ALLOW_IPS): over plain HTTP it has no effect, and on a laptop it
would pin ``127.0.0.1`` to HTTPS in the browser.
"""

from __future__ import annotations

from typing import cast

from secure import (
    ContentSecurityPolicy,
    CrossOriginOpenerPolicy,
    PermissionsPolicy,
    ReferrerPolicy,
    Secure,
    StrictTransportSecurity,
    XContentTypeOptions,
    XFrameOptions,
)
from secure.middleware import SecureASGIMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

HSTS_MAX_AGE_SECONDS = 63_072_000  # two years, what the preload list expects

SELF = ContentSecurityPolicy.keyword("self")
NONE = ContentSecurityPolicy.keyword("none")


def content_security_policy() -> ContentSecurityPolicy:
    return (
        ContentSecurityPolicy()
        .default_src(SELF)
        .script_src(SELF)
        .style_src(SELF)
        .img_src(SELF, "data:")
        .font_src(SELF)
        .connect_src(SELF)
        .object_src(NONE)
        .base_uri(NONE)
        .frame_ancestors(NONE)
    )


def build_secure(*, https: bool) -> Secure:
    return Secure(
        csp=content_security_policy(),
        hsts=(
            StrictTransportSecurity().max_age(HSTS_MAX_AGE_SECONDS).include_subdomains()
            if https
            else None
        ),
        xfo=XFrameOptions().deny(),
        xcto=XContentTypeOptions(),
        referrer=ReferrerPolicy().no_referrer(),
        coop=CrossOriginOpenerPolicy().same_origin(),
        permissions=PermissionsPolicy().value("camera=(), microphone=(), geolocation=()"),
    )


class SecurityHeadersMiddleware:
    """Applies the header set for the request's scheme (HSTS only over HTTPS)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._plain = cast("ASGIApp", SecureASGIMiddleware(app, secure=build_secure(https=False)))
        self._https = cast("ASGIApp", SecureASGIMiddleware(app, secure=build_secure(https=True)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        secured = self._https if scope.get("scheme") == "https" else self._plain
        await secured(scope, receive, send)
