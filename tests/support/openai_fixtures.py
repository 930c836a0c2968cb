"""Pytest fixtures for the OpenAI stand-in; enabled by ``pytest_plugins`` in tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.openai_upstream import OpenAIUpstream

# The stand-in refuses any other bearer token, so tests see what the client sent.
STANDIN_API_KEY = "sk-standin-test-key"


@pytest.fixture(scope="session")
def openai_upstream_server() -> Iterator[OpenAIUpstream]:
    """One stand-in for the whole session; use ``openai_upstream`` in tests."""
    with OpenAIUpstream(api_key=STANDIN_API_KEY) as server:
        yield server


@pytest.fixture
def openai_upstream(openai_upstream_server: OpenAIUpstream) -> Iterator[OpenAIUpstream]:
    """The shared stand-in with an empty script and request log."""
    openai_upstream_server.reset()
    yield openai_upstream_server
    openai_upstream_server.reset()
