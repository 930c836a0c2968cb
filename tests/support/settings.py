"""Settings for tests: explicit values only, never the developer's environment or .env."""

from __future__ import annotations

from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from accessai.core.config import Settings

TEST_JWT_SECRET = "test-jwt-secret-with-enough-length-0123456789"


class IsolatedSettings(Settings):
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "jwt_secret": TEST_JWT_SECRET,
        "log_format": "json",
        "public_base_url": "http://testserver",
    }
    values.update(overrides)
    return IsolatedSettings(**values)
