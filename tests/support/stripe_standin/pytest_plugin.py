"""pytest fixtures: one stand-in process per test session, reset for each test.

Enable with ``pytest_plugins = ["tests.support.stripe_standin.pytest_plugin"]``
in the top-level conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .client import StripeStandin


@pytest.fixture(scope="session")
def stripe_standin_server() -> Iterator[StripeStandin]:
    with StripeStandin() as standin:
        yield standin


@pytest.fixture
def stripe_standin(stripe_standin_server: StripeStandin) -> StripeStandin:
    """The shared stand-in, emptied of objects, events and webhooks."""
    stripe_standin_server.reset()
    return stripe_standin_server
