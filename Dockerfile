# syntax=docker/dockerfile:1
#
# AccessAI container image.
#
#   docker build -t accessai .
#   docker run -p 8080:8080 -e JWT_SECRET=... accessai
#
# Two stages: the builder resolves the locked dependencies with uv and installs
# the project non-editable into /app/.venv; the runtime stage gets only that
# venv (the package carries its Alembic migrations and web files inside it), so
# no uv, no compiler, no source tree and no build cache ship in the image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

# Pinned uv; bump together with the uv that writes uv.lock.
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /uvx /bin/

# Compile bytecode once at build time (faster cold starts on Cloud Run), copy
# rather than hard-link out of the cache mount, and use the image's Python so
# the venv's interpreter path is the same in the runtime stage.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=0 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /src

# Dependencies first, from the lock file alone, so that a code change does not
# invalidate this (slow) layer.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --frozen --no-dev --no-editable --no-install-project

# Then the project itself, installed as a regular (non-editable) package.
COPY pyproject.toml uv.lock README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.0.0-dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="AccessAI" \
      org.opencontainers.image.description="Sell AI features on prepaid credits: Google sign-in, credit ledger, Stripe Checkout, metered AI endpoints." \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# A fixed, unprivileged uid/gid (numeric USER below, so runtimes that enforce
# runAsNonRoot can verify it). /app/data is writable for the embedded SQLite
# default; production points DATABASE_URL at PostgreSQL instead.
RUN groupadd --system --gid 10001 accessai \
 && useradd --system --uid 10001 --gid accessai --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin accessai \
 && mkdir -p /app/data \
 && chown accessai:accessai /app/data

COPY --from=builder /app/.venv /app/.venv

# ENVIRONMENT defaults to production so a forgotten setting fails closed (the
# app refuses the development JWT secret outside development).
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENVIRONMENT=production \
    PORT=8080

WORKDIR /app
USER 10001:10001
EXPOSE 8080

# Liveness only (no database round trip), with the image's own Python because
# slim images have no curl. Cloud Run ignores HEALTHCHECK; Docker and Compose
# use it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('PORT', '8080'), timeout=4)"]

# Exec form: the server is PID 1 and receives SIGTERM directly, so uvicorn
# drains in-flight requests before the container stops. `accessai serve` reads
# PORT (set by Cloud Run) when --port is not given.
CMD ["accessai", "serve", "--host", "0.0.0.0"]
