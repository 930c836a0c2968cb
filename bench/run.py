"""The benchmark run: start everything on loopback, drive bounded load, write results.

``uv run --group bench python -m bench [--quick] [--workers N]``. Steps:

1. A throwaway PostgreSQL database (CREATE here, DROP at the end), migrated
   with ``accessai db upgrade``; bench users with tokens; one user with 1,000
   ledger rows and one with 1,000,000, bulk-loaded with ``generate_series``
   keeping ``balance == sum(ledger)`` (checked again at the end).
2. The fast OpenAI-compatible stand-in upstream (zero delay) in its own process.
3. For 1 worker and N workers: the real service (``accessai serve``) and the
   reference app (bench/refapp.py), then the throughput scenarios.
4. On 1 worker: metering overhead at concurrency 1, history reads, chat.
5. JSON + PNG under bench/results/, and the table in docs/PERFORMANCE.md.

Every load runs in a separate process (bench/loadgen.py), for a fixed time at
a fixed concurrency, against 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published

from bench import loadgen, report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ADMIN_DSN = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
ANALYZE_TEXT = (
    "The new release is fast and reliable. Users love the simple dashboard, "
    "but the setup took a while and the documentation could be clearer."
)
TOP_UP = 1_000_000_000  # far more than any run spends at 25 credits a request
CHAT_MODEL = "bench-model"
UPSTREAM_MODEL = "standin-model"
UPSTREAM_KEY = "sk-bench-local"


@dataclass(frozen=True)
class Options:
    quick: bool
    workers: int
    duration: float
    concurrency: int
    hot_concurrency: int
    history_rows: int
    write_doc: bool
    output: Path


@dataclass(frozen=True)
class Seeded:
    dsn: str  # plain postgresql:// for asyncpg
    url: str  # postgresql+asyncpg:// for the service
    tokens: list[str]  # one per metered user
    user_ids: list[str]
    hot_token: str
    history_tokens: dict[str, str]  # "small"/"large" -> token


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    """Poll ``url`` until it answers at all (any HTTP status); fail if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback only
                return
        except urllib.error.HTTPError:
            return  # an error status still means the server is answering
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout} s")


@contextlib.contextmanager
def started(
    args: list[str], env: dict[str, str], ready_url: str, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process in its own session, stopped (SIGTERM, then SIGKILL) on exit."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_ready(ready_url, process)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def process_group_rss_mib(pgid: int) -> float:
    """Resident memory of every process in a group (a server and its workers), in MiB."""
    total_kib = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # fields after "(comm)": state, ppid, pgrp, ...
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            total_kib += int(match.group(1))
    return round(total_kib / 1024, 1)


def load(spec: dict[str, Any]) -> dict[str, Any]:
    """One scenario from a separate process (bench.loadgen); returns its summary."""
    completed = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "bench.loadgen", json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=spec["duration"] + 60,
    )
    return dict(json.loads(completed.stdout))


# --- Database ---------------------------------------------------------------------


async def create_database() -> str:
    name = f"accessai_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"


async def drop_database(dsn: str) -> None:
    name = dsn.rsplit("/", 1)[1]
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def migrate(url: str) -> None:
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run(  # noqa: S603
        [str(Path(sys.executable).parent / "accessai"), "db", "upgrade"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


async def seed(dsn: str, url: str, users: int, history_rows: int) -> Seeded:
    """Users through the app's own services (signup bonus, token), then bulk SQL."""
    from accessai.core.config import Settings
    from accessai.core.db import create_engine, create_sessionmaker
    from accessai.core.security import issue_access_token
    from accessai.users import service as users_service

    settings = Settings(database_url=url)
    engine = create_engine(url)
    tokens: dict[str, str] = {}
    ids: dict[str, str] = {}
    emails = [f"bench{i}@example.test" for i in range(users)] + [
        "hot@example.test",
        "history-small@example.test",
        "history-large@example.test",
    ]
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            for email in emails:
                user, _ = await users_service.get_or_create_user_by_email(
                    session, email=email, signup_bonus=settings.signup_bonus_credits
                )
                tokens[email] = issue_access_token(settings, user).token
                ids[email] = str(user.id)
    finally:
        await engine.dispose()

    connection = await asyncpg.connect(dsn)
    try:
        spenders = [ids[e] for e in emails[:users]] + [ids["hot@example.test"]]
        async with connection.transaction():
            # A top-up row per spender keeps balance == sum(ledger).
            await connection.execute(
                """
                INSERT INTO credit_transactions
                    (user_id, amount, reason, reference, balance_after, debt_change, created_at)
                SELECT user_id, $2, 'admin_grant', 'bench_top_up', balance + $2, 0, now()
                FROM user_credits WHERE user_id = ANY($1::uuid[])
                """,
                spenders,
                TOP_UP,
            )
            await connection.execute(
                "UPDATE user_credits SET balance = balance + $2 WHERE user_id = ANY($1::uuid[])",
                spenders,
                TOP_UP,
            )
        for label, rows in (("small", 1_000), ("large", history_rows)):
            await bulk_history(connection, ids[f"history-{label}@example.test"], rows)
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return Seeded(
        dsn=dsn,
        url=url,
        tokens=[tokens[e] for e in emails[:users]],
        user_ids=[ids[e] for e in emails[:users]],
        hot_token=tokens["hot@example.test"],
        history_tokens={
            "small": tokens["history-small@example.test"],
            "large": tokens["history-large@example.test"],
        },
    )


async def bulk_history(connection: asyncpg.Connection, user_id: str, rows: int) -> None:
    """Grow the user's ledger to ``rows`` rows of +1 credit, with running balances."""
    async with connection.transaction():
        balance = await connection.fetchval(
            "SELECT balance FROM user_credits WHERE user_id = $1 FOR UPDATE", user_id
        )
        existing = await connection.fetchval(
            "SELECT count(*) FROM credit_transactions WHERE user_id = $1", user_id
        )
        extra = rows - existing
        await connection.execute(
            """
            INSERT INTO credit_transactions
                (user_id, amount, reason, reference, balance_after, debt_change, created_at)
            SELECT $1, 1, 'admin_grant', NULL, $2 + g, 0, now() - interval '1 second' * ($3 - g)
            FROM generate_series(1, $3::int) AS g
            """,
            user_id,
            balance,
            extra,
        )
        await connection.execute(
            "UPDATE user_credits SET balance = balance + $2 WHERE user_id = $1", user_id, extra
        )


async def ledger_check(dsn: str) -> dict[str, Any]:
    """balance == sum(ledger) for every account, and no reservation left pending."""
    connection = await asyncpg.connect(dsn)
    try:
        mismatched = await connection.fetchval(
            """
            SELECT count(*) FROM user_credits c
            LEFT JOIN (SELECT user_id, sum(amount) AS total FROM credit_transactions
                       GROUP BY user_id) t USING (user_id)
            WHERE c.balance <> coalesce(t.total, 0)
            """
        )
        pending = await connection.fetchval(
            "SELECT count(*) FROM usage_records WHERE outcome = 'pending' AND engine <> 'ceiling'"
        )
        version = await connection.fetchval("SELECT current_setting('server_version')")
        rows = await connection.fetchval("SELECT count(*) FROM credit_transactions")
    finally:
        await connection.close()
    return {
        "accounts_with_balance_not_sum_of_ledger": mismatched,
        "pending_reservations": pending,
        "ledger_rows": rows,
        "postgresql": version,
    }


# --- Scenarios -----------------------------------------------------------------------


def engine_in_process(samples: int) -> dict[str, Any]:
    """The local engine's analyze called directly (no HTTP, no event loop)."""
    from accessai.ai.engines.local import LocalEngine

    engine = LocalEngine()
    for _ in range(20):
        engine.analyze_sync(ANALYZE_TEXT)
    latencies = []
    for _ in range(samples):
        started = time.perf_counter()
        engine.analyze_sync(ANALYZE_TEXT)
        latencies.append((time.perf_counter() - started) * 1000)
    summary = loadgen.summarize(latencies, 0, sum(latencies) / 1000)
    summary["concurrency"] = 1
    return summary


def service_env(seeded: Seeded, port: int, upstream_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "ENVIRONMENT": "development",
        "DATABASE_URL": seeded.url,
        "MIGRATE_ON_START": "false",
        "REDIS_URL": REDIS_URL,
        "RATE_LIMIT_AI": "10000000/minute",
        "RATE_LIMIT_PUBLIC": "10000000/minute",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
        "CHAT_MODELS": json.dumps(
            {
                CHAT_MODEL: {
                    "prompt_credits_per_1k": 1,
                    "completion_credits_per_1k": 1,
                    "upstream_model": UPSTREAM_MODEL,
                }
            }
        ),
    }


def run_all(options: Options) -> dict[str, Any]:
    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    log_dir = options.output / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    scenarios: dict[str, dict[str, Any]] = {}
    memory: dict[str, dict[str, float]] = {}
    dsn = asyncio.run(create_database())
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    print(f"database {dsn}", file=sys.stderr)
    try:
        migrate(url)
        began = time.perf_counter()
        seeded = asyncio.run(seed(dsn, url, max(options.concurrency, 1), options.history_rows))
        seed_seconds = round(time.perf_counter() - began, 1)
        print(f"seeded in {seed_seconds} s", file=sys.stderr)
        d = options.duration
        c = options.concurrency
        upstream_port = free_port()
        upstream_url = f"http://127.0.0.1:{upstream_port}"
        with started(
            [
                sys.executable,
                "-m",
                "tests.support.openai_upstream",
                "--port",
                str(upstream_port),
                "--model",
                UPSTREAM_MODEL,
                "--api-key",
                UPSTREAM_KEY,
            ],
            dict(os.environ),
            f"{upstream_url}/v1/models",
            log_dir / "upstream.log",
        ):
            for workers in sorted({1, options.workers}):
                tag = f"{workers}w"
                port, ref_port = free_port(), free_port()
                base = f"http://127.0.0.1:{port}"
                ref = f"http://127.0.0.1:{ref_port}"
                env = service_env(seeded, port, upstream_port)
                cli = str(Path(sys.executable).parent / "accessai")
                ref_env = {**os.environ, "BENCH_PG_DSN": dsn, "BENCH_POOL_SIZE": "10"}
                ref_args = [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "bench.refapp:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(ref_port),
                    "--workers",
                    str(workers),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ]
                with (
                    started(
                        [cli, "serve", "--workers", str(workers)],
                        env,
                        f"{base}/health/live",
                        log_dir / f"service-{tag}.log",
                    ) as service,
                    started(
                        ref_args, ref_env, f"{ref}/ready", log_dir / f"refapp-{tag}.log"
                    ) as refapp,
                ):
                    auth = [{"Authorization": f"Bearer {t}"} for t in seeded.tokens]
                    body = {"text": ANALYZE_TEXT}
                    plan: list[tuple[str, dict[str, Any]]] = [
                        (f"baseline@{tag}", {"url": f"{base}/health/live", "concurrency": c}),
                        (
                            f"ceiling@{tag}",
                            {
                                "url": f"{ref}/ceiling",
                                "method": "POST",
                                "json": body,
                                "headers": [{"X-User": u} for u in seeded.user_ids],
                                "concurrency": c,
                            },
                        ),
                        (
                            f"metered@{tag}",
                            {
                                "url": f"{base}/api/analyze",
                                "method": "POST",
                                "json": body,
                                "headers": auth,
                                "concurrency": c,
                            },
                        ),
                        (
                            f"hot_user@{tag}",
                            {
                                "url": f"{base}/api/analyze",
                                "method": "POST",
                                "json": body,
                                "headers": [{"Authorization": f"Bearer {seeded.hot_token}"}],
                                "concurrency": options.hot_concurrency,
                            },
                        ),
                    ]
                    if workers == 1:
                        plan += single_worker_plan(options, seeded, base, ref, upstream_url)
                    for name, spec in plan:
                        spec["duration"] = d / 2 if spec.pop("half", False) else d
                        scenarios[name] = load(spec)
                        row = scenarios[name]
                        print(
                            f"{name:32} {row['rps']:>9} rps  p50 {row['p50_ms']:>8} ms  "
                            f"p99 {row['p99_ms']:>8} ms  errors {row['errors']}",
                            file=sys.stderr,
                        )
                    # After the load, so every worker has run every scenario.
                    memory[tag] = {
                        "service_rss_mib": process_group_rss_mib(service.pid),
                        "refapp_rss_mib": process_group_rss_mib(refapp.pid),
                    }
        check = asyncio.run(ledger_check(dsn))
    finally:
        asyncio.run(drop_database(dsn))
    info = report.machine()
    info["postgresql"] = check.pop("postgresql")
    redis = urllib.parse.urlsplit(REDIS_URL)
    info["redis"] = report.redis_version(redis.hostname or "127.0.0.1", redis.port or 6379)
    result: dict[str, Any] = {
        "started_at": started_at,
        "mode": "quick" if options.quick else "full",
        "duration_s": options.duration,
        "workers": sorted({1, options.workers}),
        "concurrency": options.concurrency,
        "hot_user_concurrency": options.hot_concurrency,
        "history_rows": {"small": 1_000, "large": options.history_rows},
        "seed_seconds": seed_seconds,
        "machine": info,
        "ledger_check": check,
        "engine_in_process": engine_in_process(300 if options.quick else 2000),
        "scenarios": scenarios,
        "memory": memory,
    }
    result["scenarios"] = scenarios = report.merge_halves(scenarios)
    result["derived"] = report.derive(scenarios)
    if check["accounts_with_balance_not_sum_of_ledger"]:
        result["derived"]["targets"]["ledger_consistent"] = {
            "value": check["accounts_with_balance_not_sum_of_ledger"],
            "target": 0,
            "met": False,
        }
    return result


def single_worker_plan(
    options: Options, seeded: Seeded, base: str, ref: str, upstream_url: str
) -> list[tuple[str, dict[str, Any]]]:
    """Comparisons that need a quiet, single process: overhead, history, chat."""
    body = {"text": ANALYZE_TEXT}
    auth = [{"Authorization": f"Bearer {t}"} for t in seeded.tokens]
    chat_body = {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": "Say hello in five words."}],
        "max_tokens": 16,
    }
    direct_body = {**chat_body, "model": UPSTREAM_MODEL}
    plan: list[tuple[str, dict[str, Any]]] = [
        (
            "overhead_unmetered",
            {"url": f"{ref}/engine", "method": "POST", "json": body, "concurrency": 1},
        ),
        (
            "overhead_metered",
            {
                "url": f"{base}/api/analyze",
                "method": "POST",
                "json": body,
                "headers": auth[:1],
                "concurrency": 1,
            },
        ),
    ]
    history_c = 8
    # Small and large alternate as A B B A, each half as long, and the halves
    # are merged (report.merge_halves): drift of a shared machine during the
    # run then weighs on both sides instead of only on the one measured last.
    for read, path in (("balance", "credits/balance"), ("transactions", "credits/transactions")):
        for half, label in enumerate(("small", "large", "large", "small")):
            headers = [{"Authorization": f"Bearer {seeded.history_tokens[label]}"}]
            plan.append(
                (
                    f"history_{read}_{label}#{half // 2 + 1}",
                    {
                        "url": f"{base}/{path}?limit=20"
                        if read == "transactions"
                        else f"{base}/{path}",
                        "headers": headers,
                        "concurrency": history_c,
                        "half": True,
                    },
                )
            )
    chat_c = 16
    plan.append(
        (
            "chat_direct_upstream",
            {
                "url": f"{upstream_url}/v1/chat/completions",
                "method": "POST",
                "json": direct_body,
                "headers": [{"Authorization": f"Bearer {UPSTREAM_KEY}"}],
                "concurrency": chat_c,
            },
        )
    )
    plan.append(
        (
            "chat_via_service",
            {
                "url": f"{base}/v1/chat/completions",
                "method": "POST",
                "json": chat_body,
                "headers": auth,
                "concurrency": chat_c,
            },
        )
    )
    return plan


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s scenarios, 50,000 history rows")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 2, help="the N of N workers"
    )
    parser.add_argument("--duration", type=float, help="seconds per scenario (default 8, quick 2)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--hot-concurrency", type=int, default=64)
    parser.add_argument("--history-rows", type=int, help="large history (default 1,000,000)")
    parser.add_argument("--no-doc", action="store_true", help="leave docs/PERFORMANCE.md alone")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    return Options(
        quick=args.quick,
        workers=args.workers,
        duration=args.duration or (2.0 if args.quick else 8.0),
        concurrency=args.concurrency,
        hot_concurrency=args.hot_concurrency,
        history_rows=args.history_rows or (50_000 if args.quick else 1_000_000),
        write_doc=not args.no_doc,
        output=args.output,
    )


def main(argv: list[str] | None = None) -> None:
    options = parse(argv)
    options.output.mkdir(parents=True, exist_ok=True)
    result = run_all(options)
    stem = "quick" if options.quick else "latest"
    json_path = options.output / f"{stem}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    report.chart(result, options.output / f"{stem}.png")
    if options.write_doc:
        report.update_performance_doc(
            ROOT / "docs" / "PERFORMANCE.md", report.markdown_table(result)
        )
    print(json.dumps(result["derived"], indent=2))
    print(f"wrote {json_path}", file=sys.stderr)
