"""The `accessai` command: run the service, migrate the database, administer users."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession

from accessai import __version__
from accessai.core.config import ConfigError, Settings, load_settings
from accessai.core.db import create_engine, create_sessionmaker
from accessai.core.security import issue_access_token
from accessai.observability.logging import configure_logging
from accessai.observability.multiprocess import multiprocess_dir, reset_multiprocess_dir
from accessai.users import service as users

T = TypeVar("T")

app = typer.Typer(
    name="accessai",
    help="AccessAI: sell AI features on prepaid credits.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
users_app = typer.Typer(help="Users and their access tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")


def settings_or_exit() -> Settings:
    """Settings from the environment; a bad value exits with one line naming it."""
    try:
        return load_settings()
    except ConfigError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(code=2) from None


def run_in_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one committed transaction, as a request would."""

    async def main() -> T:
        engine = create_engine(settings.database_url)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _version(value: bool) -> None:
    if value:
        typer.echo(f"accessai {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """AccessAI: sell AI features on prepaid credits."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind [default: HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: PORT or 8000]")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes [default: WORKERS or 1]")
    ] = None,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Run the HTTP service (migrating first on the embedded SQLite default)."""
    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.resolved_log_format)
    if settings.should_migrate_on_start:
        from accessai.core.migrations import upgrade

        upgrade(settings.database_url)
    if (directory := multiprocess_dir()) is not None:
        # Samples of a previous run's workers would be summed with ours.
        reset_multiprocess_dir(directory)
    uvicorn.run(
        "accessai.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=None if reload else (workers or settings.workers),
        reload=reload,
        # X-Forwarded-* are resolved inside the app (create_app), against
        # FORWARDED_ALLOW_IPS; resolving them here too would apply them twice.
        proxy_headers=False,
        log_config=None,  # our logging configuration, set in create_app
        access_log=False,  # one structured line per request comes from our middleware
        timeout_graceful_shutdown=30,
        # A worker answers the supervisor's health pings only once its imports
        # are done; on a busy 2-core machine (or a throttled container) that
        # takes longer than uvicorn's 5 s default, and the worker would be
        # killed and respawned forever.
        timeout_worker_healthcheck=60,
        server_header=False,
    )


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations up to REVISION (default: the latest)."""
    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.resolved_log_format)
    from accessai.core.migrations import upgrade

    upgrade(settings.database_url, revision)
    typer.echo(f"database upgraded to {revision}")


@users_app.command("token")
def users_token(
    email: Annotated[str, typer.Argument(help="The user's email; created when missing.")],
    name: Annotated[str | None, typer.Option(help="Display name for a new user.")] = None,
) -> None:
    """Print an access token for EMAIL, creating the user when missing (local use)."""
    settings = settings_or_exit()

    async def work(session: AsyncSession) -> str:
        user, created = await users.get_or_create_user_by_email(
            session, email=email, name=name, signup_bonus=settings.signup_bonus_credits
        )
        if created:
            typer.echo(f"created user {user.email} ({user.id})", err=True)
        return issue_access_token(settings, user).token

    typer.echo(run_in_session(settings, work))


@users_app.command("list")
def users_list(
    limit: Annotated[int, typer.Option(min=1, help="How many users to show.")] = 100,
) -> None:
    """List users, oldest first."""
    settings = settings_or_exit()

    async def work(session: AsyncSession) -> list[str]:
        rows = await users.list_users(session, limit=limit)
        return [f"{u.id}  {u.email}  {u.name or '-'}  {u.created_at:%Y-%m-%d %H:%M}" for u in rows]

    for line in run_in_session(settings, work):
        typer.echo(line)
