import pytest

from accessai.core.config import DEVELOPMENT_JWT_SECRET, ConfigError, load_settings


def test_defaults_are_the_embedded_mode(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    settings = load_settings()
    assert settings.environment == "development"
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.redis_url is None
    assert settings.ai_engine == "local"
    assert settings.should_migrate_on_start


@pytest.mark.parametrize("environment", ["test", "production"])
def test_development_secret_is_refused_outside_development(
    monkeypatch: pytest.MonkeyPatch, tmp_path, environment: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENVIRONMENT", environment)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "JWT_SECRET" in message
    assert "\n" not in message
    assert DEVELOPMENT_JWT_SECRET not in message


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PORT", "not-a-port")
    with pytest.raises(ConfigError, match=r"^configuration error: PORT: "):
        load_settings()


def test_missing_required_secret_in_production_names_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_SECRET", "short")
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load_settings()


def test_env_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "AI_ENGINE=openai\nOPENAI_API_KEY=sk-from-env-file\n"
        "CORS_ORIGINS=https://a.example, https://b.example/\n"
    )
    settings = load_settings()
    assert settings.ai_engine == "openai"
    assert settings.cors_origins == ["https://a.example", "https://b.example"]


def test_wildcard_cors_origin_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CORS_ORIGINS", "*")
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        load_settings()


def test_hosting_provider_database_urls_get_the_async_driver(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.example:5432/app")
    assert load_settings().database_url == "postgresql+asyncpg://u:p@db.example:5432/app"
