"""The local OpenID Connect provider standing in for Google, shared by the sign-in tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.databases import services_required
from tests.support.oidc import OIDCProvider, OIDCProviderError

CALLBACK_URL = "http://testserver/auth/callback"


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OIDCProvider]:
    provider = OIDCProvider(redirect_uris=[CALLBACK_URL])
    try:
        provider.start()
    except OIDCProviderError as error:
        message = f"the OIDC stand-in cannot start (run `npm ci`): {error}"
        if services_required():
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def google(oidc_provider: OIDCProvider) -> OIDCProvider:
    """The provider with no queued logins, codes or request log left by another test."""
    if not oidc_provider.running:  # a test that failed inside down() may leave it stopped
        oidc_provider.start()
    oidc_provider.reset()
    return oidc_provider
