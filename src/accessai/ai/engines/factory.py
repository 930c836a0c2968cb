"""Build the engine that ``AI_ENGINE`` names. Called once, from the app's lifespan."""

from __future__ import annotations

from accessai.ai.engines.base import AIEngine
from accessai.core.config import Settings


def build_engine(settings: Settings) -> AIEngine:
    """The configured engine; the caller closes it with ``aclose()`` on shutdown."""
    if settings.ai_engine == "openai":
        from accessai.ai.engines.openai_compatible import OpenAICompatibleEngine

        # Settings refuse AI_ENGINE=openai without a key, so it is set here.
        assert settings.openai_api_key is not None
        return OpenAICompatibleEngine(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value(),
            model=settings.openai_model,
            timeout_seconds=settings.openai_timeout_seconds,
            max_retries=settings.openai_max_retries,
        )
    # Imported here: the offline engine loads its lexicon, the openai one its SDK.
    from accessai.ai.engines.local import LocalEngine

    return LocalEngine()
