"""All configuration in one place, read from the environment and `.env`.

Every setting has the environment variable of the same name in upper case
(``database_url`` <- ``DATABASE_URL``). Defaults are the embedded mode: a
laptop with no accounts gets SQLite, in-memory rate limits and the offline AI
engine. Production supplies the rest; a missing or invalid value stops the
service at start-up with one line naming the variable.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# A public placeholder, not a secret: it lets a laptop run with no setup and is
# refused whenever ENVIRONMENT is not "development".
DEVELOPMENT_JWT_SECRET = "accessai-development-secret-do-not-use-in-production"  # noqa: S105

GOOGLE_DISCOVERY_URL = "https://accounts.google.com/.well-known/openid-configuration"

Environment = Literal["development", "test", "production"]


class CreditPackage(BaseModel):
    """A purchasable bundle of credits. Prices are integer cents."""

    credits: int = Field(gt=0)
    price_cents: int = Field(gt=0)
    name: str


class ChatModel(BaseModel):
    """One entry of the chat price book: integer credits per 1,000 tokens.

    A request costs ``ceil((prompt_tokens * prompt_credits_per_1k +
    completion_tokens * completion_credits_per_1k) / 1000)`` credits.
    """

    model_config = ConfigDict(extra="forbid")

    prompt_credits_per_1k: int = Field(ge=0)
    completion_credits_per_1k: int = Field(ge=0)
    # The provider's name for the model; default: the public id (the key).
    upstream_model: str | None = None
    # Per-model output cap; default: CHAT_MAX_TOKENS_CAP.
    max_output_tokens: int | None = Field(default=None, gt=0)
    # Some servers only know the older "max_tokens"; OpenAI's reasoning
    # models refuse it.
    token_limit_field: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"  # noqa: S105 - a field name


DEFAULT_CHAT_MODELS: dict[str, ChatModel] = {
    "gpt-4o-mini": ChatModel(
        prompt_credits_per_1k=1, completion_credits_per_1k=4, upstream_model="gpt-4o-mini"
    ),
}


DEFAULT_PACKAGES: dict[str, CreditPackage] = {
    "starter": CreditPackage(credits=200, price_cents=900, name="Starter"),
    "pro": CreditPackage(credits=500, price_cents=1900, name="Pro"),
}


class ConfigError(Exception):
    """Configuration is missing or invalid; the message names the variable."""


def _split_csv(value: Any) -> Any:
    """Accept ``a,b,c`` or a JSON list for list settings."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            import json

            return json.loads(stripped)
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # --- Service -----------------------------------------------------------
    environment: Environment = "development"
    public_base_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    # Addresses whose X-Forwarded-* headers are trusted (uvicorn's
    # --forwarded-allow-ips). Cloud Run's front end needs "*" there, since
    # the container is reachable only through Google's proxy.
    forwarded_allow_ips: str = "127.0.0.1"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "json" for machines, "console" for people; default: console in
    # development, json everywhere else.
    log_format: Literal["json", "console"] | None = None
    max_request_body_bytes: int = Field(default=1_048_576, ge=1024)

    # --- Database ----------------------------------------------------------
    database_url: str = "sqlite+aiosqlite:///./data/accessai.db"
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_echo: bool = False
    # None: migrate on `accessai serve` only for the embedded SQLite default,
    # so production runs `accessai db upgrade` as its own step.
    migrate_on_start: bool | None = None

    # --- Redis (shared rate limits across replicas) -----------------------
    redis_url: str | None = None

    # --- Tokens ------------------------------------------------------------
    jwt_secret: SecretStr = SecretStr(DEVELOPMENT_JWT_SECRET)
    jwt_key_id: str = "primary"
    # Older keys still accepted for verification while tokens signed with
    # them expire: "kid:secret,kid2:secret2".
    jwt_previous_keys: SecretStr | None = None
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_issuer: str = "accessai"
    jwt_audience: str = "accessai-api"
    access_token_ttl_minutes: int = Field(default=60, ge=1, le=24 * 60)

    # --- Google sign-in (any OIDC provider) -------------------------------
    google_client_id: str | None = None
    google_client_secret: SecretStr | None = None
    oidc_discovery_url: str = GOOGLE_DISCOVERY_URL

    # --- Credits -----------------------------------------------------------
    signup_bonus_credits: int = Field(default=100, ge=0)

    # --- Stripe ------------------------------------------------------------
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str = "https://api.stripe.com"
    # ISO 4217 code, e.g. usd or eur; stored lower case as Stripe uses it.
    stripe_currency: str = Field(default="usd", pattern=r"^[A-Za-z]{3}$")
    credit_packages: dict[str, CreditPackage] = Field(
        default_factory=lambda: dict(DEFAULT_PACKAGES)
    )
    # Where Checkout sends the browser back; default: the dashboard.
    checkout_success_url: str | None = None
    checkout_cancel_url: str | None = None

    # --- AI ----------------------------------------------------------------
    ai_engine: Literal["local", "openai"] = "local"
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: SecretStr | None = None
    openai_model: str = "gpt-4o-mini"
    openai_timeout_seconds: float = Field(default=30.0, gt=0)
    openai_max_retries: int = Field(default=0, ge=0, le=5)
    price_summarize: int = Field(default=10, gt=0)
    price_analyze: int = Field(default=25, gt=0)
    idempotency_ttl_hours: int = Field(default=24, ge=1)
    # A reservation still pending after this long belongs to a request that
    # died mid-flight (crash, deploy); the sweep (at start-up, then every
    # AI_SWEEP_INTERVAL_SECONDS) refunds it. Must be longer than the slowest
    # possible engine call.
    ai_stale_reservation_minutes: int = Field(default=15, ge=1)
    ai_sweep_interval_seconds: float = Field(default=60.0, gt=0)

    # --- Chat (/v1/chat/completions, priced by tokens) -----------------------
    # The price book, as JSON: {"model-id": {"prompt_credits_per_1k": 1, ...}}.
    chat_models: dict[str, ChatModel] = Field(default_factory=lambda: dict(DEFAULT_CHAT_MODELS))
    # The most completion tokens one request may ask for (and be held for).
    chat_max_tokens_cap: int = Field(default=4096, gt=0)
    # Extra share added to the tokenizer's prompt count when holding credits,
    # because the provider's tokenizer may count more than ours does.
    chat_prompt_margin_percent: int = Field(default=25, ge=0, le=1000)
    # A stream is cut (and charged for what it produced) after this long.
    chat_max_duration_seconds: float = Field(default=600.0, gt=0)
    # A hold still open this long after it was taken belongs to a crashed
    # process: the sweep releases it in full.
    chat_hold_timeout_seconds: float = Field(default=900.0, gt=0)
    chat_sweep_interval_seconds: float = Field(default=60.0, gt=0)

    # --- Abuse limits --------------------------------------------------------
    # limits' notation: "20/minute", "5/second;100/hour". Off only for benchmarks.
    rate_limit_enabled: bool = True
    rate_limit_ai: str = "20/minute"
    rate_limit_auth: str = "10/minute"
    rate_limit_public: str = "120/minute"
    # Namespace of the limiter's keys in Redis, so several deployments (or
    # test runs) can share one Redis without sharing limits.
    rate_limit_key_prefix: str = Field(default="accessai", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")

    # --- Observability -------------------------------------------------------
    sentry_dsn: SecretStr | None = None
    sentry_traces_sample_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    metrics_token: SecretStr | None = None

    # --- Browser access ------------------------------------------------------
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard_origin(cls, value: list[str]) -> list[str]:
        if "*" in value:
            raise ValueError("list the allowed origins explicitly; '*' is not accepted")
        return [origin.rstrip("/") for origin in value]

    @field_validator("rate_limit_ai", "rate_limit_auth", "rate_limit_public")
    @classmethod
    def _valid_rate_limit(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate limit such as '20/minute'") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        # Accept the URLs hosting providers hand out and pick the async driver.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+asyncpg://" + value[len(prefix) :]
        if value.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + value[len("sqlite:///") :]
        if not value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("use a postgresql+asyncpg:// or sqlite+aiosqlite:/// URL")
        return value

    @field_validator("chat_models")
    @classmethod
    def _some_chat_model(cls, value: dict[str, ChatModel]) -> dict[str, ChatModel]:
        if not value:
            raise ValueError("offer at least one model")
        for name in value:
            if not name or len(name) > 128 or name != name.strip():
                raise ValueError(f"invalid model id {name!r}")
        return value

    @model_validator(mode="after")
    def _holds_outlive_requests(self) -> Settings:
        # The sweep must never release the hold of a request still running.
        if self.chat_hold_timeout_seconds < self.chat_max_duration_seconds + 60:
            raise ValueError(
                "CHAT_HOLD_TIMEOUT_SECONDS must be at least CHAT_MAX_DURATION_SECONDS + 60"
            )
        return self

    @model_validator(mode="after")
    def _refuse_development_secret(self) -> Settings:
        if self.environment != "development":
            secret = self.jwt_secret.get_secret_value()
            if secret == DEVELOPMENT_JWT_SECRET:
                raise ValueError(
                    "JWT_SECRET: the built-in development secret is refused when "
                    f"ENVIRONMENT={self.environment}; set a random value of 32+ characters"
                )
            if len(secret) < 32:
                raise ValueError("JWT_SECRET: use at least 32 characters outside development")
        return self

    @model_validator(mode="after")
    def _openai_engine_needs_a_key(self) -> Settings:
        if self.ai_engine == "openai" and not self.openai_key_set:
            raise ValueError(
                "OPENAI_API_KEY: required when AI_ENGINE=openai (servers that ignore "
                "it, like Ollama or vLLM, accept any placeholder such as 'unused')"
            )
        # The sweep must never refund a call that is still running.
        longest_call = self.openai_timeout_seconds * (self.openai_max_retries + 1)
        if self.ai_stale_reservation_minutes * 60 <= longest_call:
            raise ValueError(
                "AI_STALE_RESERVATION_MINUTES: must be longer than OPENAI_TIMEOUT_SECONDS "
                f"x (OPENAI_MAX_RETRIES + 1) = {longest_call:g} seconds"
            )
        return self

    # --- Derived values ------------------------------------------------------
    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def should_migrate_on_start(self) -> bool:
        if self.migrate_on_start is not None:
            return self.migrate_on_start
        return self.is_sqlite

    @property
    def resolved_log_format(self) -> Literal["json", "console"]:
        if self.log_format is not None:
            return self.log_format
        return "console" if self.environment == "development" else "json"

    @property
    def google_configured(self) -> bool:
        return bool(self.google_client_id and self.google_client_secret)

    @property
    def stripe_configured(self) -> bool:
        return self.stripe_secret_key is not None

    @property
    def openai_key_set(self) -> bool:
        """A non-blank OPENAI_API_KEY: what both the openai engine and chat need."""
        return self.openai_api_key is not None and bool(
            self.openai_api_key.get_secret_value().strip()
        )

    @property
    def chat_configured(self) -> bool:
        return self.openai_key_set


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, naming the environment variable, no traceback."""
    lines = []
    for problem in error.errors():
        location = "_".join(str(part) for part in problem["loc"]).upper()
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{location}: {message}" if location else message)
    return "; ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, raising ``ConfigError`` with a clear message."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigError(f"configuration error: {describe_validation_error(error)}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, for code that runs outside a request (CLI)."""
    return load_settings()
