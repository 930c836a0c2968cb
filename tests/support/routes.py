"""Every route an app serves, with what its dependency tree says about it.

FastAPI 0.165 keeps included routers as nested objects in ``app.routes``;
``fastapi.routing.iter_route_contexts`` resolves them into the effective
routes (full path, merged router-level dependencies). Mounted static files
and plain Starlette routes (the OpenAPI document) are listed too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel
from starlette.routing import Mount

from accessai.core.security import get_current_user
from accessai.hardening.ratelimit import RateLimitDependency

# Dependencies that authenticate a user; extend when another way is added.
USER_AUTH_DEPENDENCIES: set[Callable[..., Any]] = {get_current_user}


@dataclass(frozen=True)
class AppRoute:
    method: str
    path: str
    dependant: Dependant | None  # None: not a FastAPI route (static files, OpenAPI)
    in_schema: bool

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)


def app_routes(app: FastAPI) -> list[AppRoute]:
    found: list[AppRoute] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount):
            found.append(AppRoute("GET", f"{route.path}/{{path}}", None, in_schema=False))
            continue
        methods = set(context.methods or ())
        if "GET" in methods:
            methods.discard("HEAD")  # served by the same code
        dependant = getattr(context, "dependant", None)
        in_schema = bool(getattr(context, "include_in_schema", False))
        for method in sorted(methods):
            found.append(AppRoute(method, str(context.path), dependant, in_schema=in_schema))
    return found


def walk(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for child in dependant.dependencies:
        yield from walk(child)


def calls(route: AppRoute) -> list[Any]:
    if route.dependant is None:
        return []
    return [node.call for node in walk(route.dependant) if node.call is not None]


def requires_user(route: AppRoute) -> bool:
    return any(call in USER_AUTH_DEPENDENCIES for call in calls(route))


def rate_limits(route: AppRoute) -> set[str]:
    """``{"ai (user)", "public (ip)"}``: the limits applied before the route body."""
    return {
        f"{call.scope} ({call.key_kind})"
        for call in calls(route)
        if isinstance(call, RateLimitDependency)
    }


def input_fields(route: AppRoute) -> list[Any]:
    if route.dependant is None:
        return []
    fields: list[Any] = []
    for node in walk(route.dependant):
        fields.extend(node.path_params + node.query_params + node.header_params)
        fields.extend(node.cookie_params + node.body_params)
    return fields


def body_models(route: AppRoute) -> list[Any]:
    if route.dependant is None:
        return []
    return [
        field.field_info.annotation for node in walk(route.dependant) for field in node.body_params
    ]


def is_strict_model(annotation: Any) -> bool:
    """A request body model that refuses unknown fields."""
    return (
        isinstance(annotation, type)
        and issubclass(annotation, BaseModel)
        and annotation.model_config.get("extra") == "forbid"
    )
