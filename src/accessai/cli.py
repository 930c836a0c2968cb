"""The `accessai` command: run the service, migrate the database, administer users and credits."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession

from accessai import __version__
from accessai.core.config import ConfigError, Settings, load_settings
from accessai.core.db import create_engine, create_sessionmaker
from accessai.core.errors import AppError, NotFoundError
from accessai.core.security import issue_access_token
from accessai.credits import service as credits
from accessai.observability.logging import configure_logging, get_logger
from accessai.observability.multiprocess import multiprocess_dir, prepare_for_workers
from accessai.payments import service as payments
from accessai.payments import stripe_gateway
from accessai.users import service as users

T = TypeVar("T")
log = get_logger("accessai.cli")

# How long a worker may take to answer the supervisor's liveness ping before it
# is killed and replaced (uvicorn's default is 5 s). A new worker answers only
# after it has imported the app, which takes longer than 5 s on a CPU-starved
# host (a cold Cloud Run start, a busy CI machine, no precompiled bytecode), so
# 5 s can hold every worker in a kill-and-respawn loop for minutes.
WORKER_HEALTHCHECK_TIMEOUT_SECONDS = 30

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
credits_app = typer.Typer(help="Credit balances and the ledger.", no_args_is_help=True)
app.add_typer(credits_app, name="credits")
payments_app = typer.Typer(help="Stripe payments.", no_args_is_help=True)
app.add_typer(payments_app, name="payments")


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
    worker_count = 1 if reload else (workers or settings.workers)
    own_directory = multiprocess_dir() is None
    if (directory := prepare_for_workers(worker_count)) is not None:
        log.info("metrics.multiprocess", directory=directory, workers=worker_count)
    try:
        _run_uvicorn(settings, host, port, None if reload else worker_count, reload)
    finally:
        if directory is not None and own_directory:
            shutil.rmtree(directory, ignore_errors=True)


def _run_uvicorn(
    settings: Settings, host: str | None, port: int | None, workers: int | None, reload: bool
) -> None:
    uvicorn.run(
        "accessai.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        reload=reload,
        # X-Forwarded-* are resolved inside the app (create_app), against
        # FORWARDED_ALLOW_IPS; resolving them here too would apply them twice.
        proxy_headers=False,
        log_config=None,  # our logging configuration, set in create_app
        access_log=False,  # one structured line per request comes from our middleware
        timeout_graceful_shutdown=30,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_TIMEOUT_SECONDS,
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


# --- Credits (operators) ------------------------------------------------------


def _format_movement(movement: credits.CreditMovement) -> str:
    debt = f"  debt {movement.debt_change:+d}" if movement.debt_change else ""
    return (
        f"#{movement.id}  {movement.created_at:%Y-%m-%d %H:%M:%S}  {movement.amount:+d}{debt}"
        f"  -> {movement.balance_after}  {movement.reason}"
        f"  {movement.reference or '-'}  {movement.note or ''}".rstrip()
    )


def _run_or_exit(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """``run_in_session``, turning an expected failure into a message and exit code 1."""
    try:
        return run_in_session(settings, work)
    except AppError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(code=1) from None


async def _user_id_or_fail(session: AsyncSession, email: str) -> uuid.UUID:
    user = await users.get_user_by_email(session, email)
    if user is None:
        raise NotFoundError(f"no user with email {users.normalize_email(email)}")
    return user.id


_Email = Annotated[str, typer.Argument(help="The user's email.")]
_Amount = Annotated[int, typer.Argument(min=1, help="Credits, a positive whole number.")]
_Note = Annotated[
    str,
    typer.Option(
        "--reason", help="Why, in words; stored as the ledger row's note (the user sees it)."
    ),
]
_Reference = Annotated[
    str | None,
    typer.Option(help="Makes the command idempotent: a repeat with it changes nothing."),
]


@credits_app.command("grant")
def credits_grant(
    email: _Email, amount: _Amount, reason: _Note, reference: _Reference = None
) -> None:
    """Add AMOUNT credits to a user (ledger reason admin_grant)."""
    _move_credits(email, amount, reason, reference, grant=True)


@credits_app.command("deduct")
def credits_deduct(
    email: _Email, amount: _Amount, reason: _Note, reference: _Reference = None
) -> None:
    """Remove AMOUNT credits from a user (ledger reason admin_deduct); never below 0."""
    _move_credits(email, amount, reason, reference, grant=False)


def _move_credits(
    email: str, amount: int, note: str, reference: str | None, *, grant: bool
) -> None:
    """An operator's grant or deduction, printed as the ledger row it wrote (or had written)."""
    settings = settings_or_exit()

    async def work(session: AsyncSession) -> credits.CreditMovement:
        user_id = await _user_id_or_fail(session, email)
        if grant:
            return await credits.add_credits(
                session, user_id, amount, credits.Reason.ADMIN_GRANT, reference, note=note
            )
        return await credits.deduct_credits(
            session, user_id, amount, credits.Reason.ADMIN_DEDUCT, reference, note=note
        )

    movement = _run_or_exit(settings, work)
    verb = "granted" if grant else "deducted"
    typer.echo(f"{'already ' if movement.replayed else ''}{verb}: {_format_movement(movement)}")


@credits_app.command("show")
def credits_show(
    email: _Email,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Ledger rows to show.")] = 20,
) -> None:
    """Print a user's balance, debt and latest ledger rows, newest first."""
    settings = settings_or_exit()

    async def work(session: AsyncSession) -> list[str]:
        user_id = await _user_id_or_fail(session, email)
        account = await credits.get_account(session, user_id)
        balance, debt = (account.balance, account.debt) if account is not None else (0, 0)
        page = await credits.list_transactions(session, user_id, limit=limit)
        hold = "  (on hold: spending refused until the debt is repaid)" if debt else ""
        lines = [
            f"{users.normalize_email(email)} ({user_id})",
            f"balance {balance}  debt {debt}{hold}",
        ]
        lines += [_format_movement(movement) for movement in page.items]
        if page.next_before_id is not None:
            lines.append(f"... older rows not shown (--limit {limit})")
        return lines

    for line in _run_or_exit(settings, work):
        typer.echo(line)


@credits_app.command("verify")
def credits_verify() -> None:
    """Check every balance against its ledger; exit 1 and list problems if any."""
    settings = settings_or_exit()
    mismatches = _run_or_exit(settings, credits.verify_ledger)
    for mismatch in mismatches:
        typer.echo(str(mismatch))
    if mismatches:
        typer.echo(f"ledger verification FAILED: {len(mismatches)} problem(s)", err=True)
        raise typer.Exit(code=1)
    typer.echo("ledger verified: every balance equals the sum of its ledger")


@payments_app.command("replay")
def payments_replay(
    event_file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="A Stripe event as JSON."),
    ],
) -> None:
    """Process a saved Stripe event through the webhook's code path (for recovery).

    The file is trusted as it is (no signature): use an event taken from
    Stripe itself, e.g. `stripe events retrieve evt_...` or the Dashboard.
    An event already processed is reported as a duplicate and changes nothing.
    """
    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.resolved_log_format)
    try:
        event = stripe_gateway.parse_event(event_file.read_bytes())
    except stripe_gateway.InvalidEventError as error:
        typer.echo(f"{event_file}: {error}", err=True)
        raise typer.Exit(code=2) from None

    async def work(session: AsyncSession) -> payments.EventResult:
        return await payments.handle_event(session, event)

    try:
        result = run_in_session(settings, work)
    except payments.InvalidWebhookError as error:
        typer.echo(f"{event.id}: {error.message}", err=True)
        raise typer.Exit(code=1) from None
    line = f"{result.event_id} {result.event_type}: {result.outcome}"
    if result.credits_added:
        line += f" (+{result.credits_added} credits, payment {result.payment_id})"
    if result.credits_reversed:
        line += f" (-{result.credits_reversed} credits, payment {result.payment_id})"
    typer.echo(line)
