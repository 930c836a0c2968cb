"""Security headers on every response, built with the ``secure`` library.

One strict Content-Security-Policy serves the API and the future dashboard
(static files, no inline scripts): everything from our own origin, no
plugins, no framing. The Swagger UI page (/docs) is served from local
assets with no inline script, so it runs under the same policy except for
inline styles, which Swagger UI's components set (``style-src`` gains
``'unsafe-inline'`` on /docs only; scripts stay strict).

Strict-Transport-Security is sent only when the request arrived over HTTPS,
as seen after trusted-proxy handling (``X-Forwarded-Proto`` from a proxy in
FORWARDED_ALLOW_IPS): sending it over plain HTTP has no effect, and on a
laptop it would pin ``127.0.0.1`` to HTTPS in the browser.
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

DOCS_PREFIX = "/docs"
HSTS_MAX_AGE_SECONDS = 63_072_000  # two years, the preload list's expectation

SELF = ContentSecurityPolicy.keyword("self")
NONE = ContentSecurityPolicy.keyword("none")


def content_security_policy(*, inline_styles: bool = False) -> ContentSecurityPolicy:
    styles = [SELF, ContentSecurityPolicy.keyword("unsafe-inline")] if inline_styles else [SELF]
    return (
        ContentSecurityPolicy()
        .default_src(SELF)
        .script_src(SELF)
        .style_src(*styles)
        .img_src(SELF, "data:")
        .font_src(SELF)
        .connect_src(SELF)
        .object_src(NONE)
        .base_uri(NONE)
        .frame_ancestors(NONE)
    )


def build_secure(*, https: bool, docs: bool) -> Secure:
    return Secure(
        csp=content_security_policy(inline_styles=docs),
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


def is_docs_path(path: str) -> bool:
    return path == DOCS_PREFIX or path.startswith(DOCS_PREFIX + "/")


class SecurityHeadersMiddleware:
    """Chooses one of four header sets per request: (HTTPS or not) x (docs page or not)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._variants: dict[tuple[bool, bool], ASGIApp] = {
            (https, docs): cast(
                "ASGIApp", SecureASGIMiddleware(app, secure=build_secure(https=https, docs=docs))
            )
            for https in (False, True)
            for docs in (False, True)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        variant = (scope.get("scheme") == "https", is_docs_path(scope.get("path", "")))
        await self._variants[variant](scope, receive, send)
