"""docs/SECURITY-CHECKLIST.md lists every route, and the code agrees with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import Depends, FastAPI

from accessai.core.security import CurrentUser
from accessai.hardening.ratelimit import auth_rate_limit
from accessai.main import create_app
from accessai.observability.metrics_route import require_metrics_token
from tests.support.routes import (
    AppRoute,
    app_routes,
    body_models,
    calls,
    input_fields,
    is_strict_model,
    rate_limits,
    requires_user,
)
from tests.support.settings import make_settings

CHECKLIST = Path(__file__).resolve().parents[1] / "docs" / "SECURITY-CHECKLIST.md"
COLUMNS = ["method", "path", "auth", "input", "errors safe", "logged", "rate limit", "notes"]

# Path prefix -> the limit every route under it must carry.
REQUIRED_LIMITS = {"/auth/": "auth (ip)", "/api/": "ai (user)", "/v1/chat/": "ai (user)"}


def checklist_rows() -> dict[tuple[str, str], dict[str, str]]:
    lines = CHECKLIST.read_text().splitlines()
    header = "| " + " | ".join(COLUMNS) + " |"
    start = lines.index(header)  # ValueError: the table's columns changed
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == len(COLUMNS), f"wrong number of cells: {line}"
        row = dict(zip(COLUMNS, cells, strict=True))
        key = (row["method"], row["path"])
        assert key not in rows, f"listed twice: {key}"
        rows[key] = row
    return rows


@pytest.fixture(scope="module")
def app() -> FastAPI:
    # Building the app needs no database; no lifespan is run.
    return create_app(make_settings(database_url="sqlite+aiosqlite:///:memory:"))


@pytest.fixture(scope="module")
def routes(app: FastAPI) -> dict[tuple[str, str], AppRoute]:
    found = app_routes(app)
    return {route.key: route for route in found}


def test_every_route_is_listed_and_every_row_exists(routes) -> None:
    rows = checklist_rows()
    missing = sorted(set(routes) - set(rows))
    stale = sorted(set(rows) - set(routes))
    assert not missing, f"add these routes to {CHECKLIST.name}: {missing}"
    assert not stale, f"{CHECKLIST.name} lists routes the app does not serve: {stale}"


def test_the_enumeration_sees_included_routers_and_mounts(routes) -> None:
    # /health comes from an included router, /docs/assets from a mount.
    assert ("GET", "/health") in routes
    assert ("GET", "/docs/assets/{path}") in routes
    assert ("GET", "/openapi.json") in routes


def test_rows_agree_with_the_code(routes) -> None:
    problems: list[str] = []
    for key, row in checklist_rows().items():
        route = routes.get(key)
        if route is None:
            continue  # reported by the listing test
        name = f"{key[0]} {key[1]}"

        auth = row["auth"]
        if (auth == "user") != requires_user(route):
            problems.append(
                f"{name}: auth says {auth!r}, CurrentUser in dependencies: {requires_user(route)}"
            )
        if auth == "metrics-token" and require_metrics_token not in calls(route):
            problems.append(
                f"{name}: auth says metrics-token, but require_metrics_token is missing"
            )

        listed = (
            set()
            if row["rate limit"] == "none"
            else {part.strip() for part in row["rate limit"].split(",")}
        )
        actual = rate_limits(route)
        if listed != actual:
            problems.append(
                f"{name}: rate limit says {sorted(listed)}, dependencies apply {sorted(actual)}"
            )
        for prefix, required in REQUIRED_LIMITS.items():
            if key[1].startswith(prefix) and required not in actual:
                problems.append(f"{name}: routes under {prefix} must be limited with {required}")
        if auth == "none" and not actual and not row["notes"].startswith("exempt:"):
            problems.append(f"{name}: unauthenticated and unlimited without an 'exempt:' reason")

        fields = input_fields(route)
        models = body_models(route)
        match row["input"]:
            case "none":
                if fields:
                    problems.append(
                        f"{name}: input says none, route takes {[f.name for f in fields]}"
                    )
            case "validated":
                if not fields:
                    problems.append(f"{name}: input says validated, route takes no parameters")
                loose = [model for model in models if not is_strict_model(model)]
                if loose:
                    problems.append(f"{name}: body models must set extra='forbid': {loose}")
            case "raw":
                if models:
                    problems.append(f"{name}: input says raw, but the route parses a body model")
            case other:
                problems.append(f"{name}: unknown input value {other!r}")

        for column in ("errors safe", "logged"):
            if row[column] != "yes":
                problems.append(f"{name}: {column!r} must be 'yes' (fix the route, then the row)")
    assert not problems, "\n".join(problems)


def test_the_audit_reads_routes_correctly() -> None:
    """What the checks read from a route: its user dependency, limits and inputs."""
    probe = FastAPI()

    async def secret(user: CurrentUser) -> None:
        return None

    async def public(item_id: int) -> None:
        return None

    probe.add_api_route("/api/probe", secret, methods=["POST"])
    probe.add_api_route(
        "/api/items/{item_id}", public, methods=["GET"], dependencies=[Depends(auth_rate_limit)]
    )
    found = {route.path: route for route in app_routes(probe)}
    secret_route, public_route = found["/api/probe"], found["/api/items/{item_id}"]
    assert requires_user(secret_route)
    assert rate_limits(secret_route) == set()
    assert input_fields(secret_route) == []
    assert not requires_user(public_route)
    assert rate_limits(public_route) == {"auth (ip)"}
    assert [field.name for field in input_fields(public_route)] == ["item_id"]
