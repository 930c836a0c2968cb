"""CPU per request, in-process, and where it goes.

``python -m bench.cpu`` runs the app in this process (httpx over ASGI) on a
throwaway PostgreSQL database, with Redis, JSON logging at INFO and the
local engine, sends each call of ``bench.inprocess.CALLS`` one at a time,
and prints the CPU time per request: of the event-loop thread and of the
whole process (which adds the engine's worker thread). Being CPU time, not
wall time, it moves less with other load on the machine; compare a figure
with ``GET /health/live`` of the same run.

``--profile DIR`` also records ``POST /api/analyze`` with pyinstrument and
writes ``DIR/analyze.html`` and ``DIR/analyze.txt``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from bench.inprocess import CALLS, on_throwaway_database, served

WARM_UP = 30


async def measure(url: str, requests: int, profile: Any | None) -> dict[str, Any]:
    """CPU per request of every call; ``profile``, a pyinstrument Profiler, records analyze."""
    results: dict[str, Any] = {}
    async with served(url, log_level="INFO", log_format="json") as app:
        for name in CALLS:
            for _ in range(WARM_UP):
                await app.call(name)
            thread, process, wall = time.thread_time(), time.process_time(), time.perf_counter()
            for _ in range(requests):
                await app.call(name)
            results[name] = {
                "loop_thread_cpu_ms": round((time.thread_time() - thread) * 1000 / requests, 3),
                "process_cpu_ms": round((time.process_time() - process) * 1000 / requests, 3),
                "wall_ms": round((time.perf_counter() - wall) * 1000 / requests, 3),
            }
        baseline = results["GET /health/live"]["loop_thread_cpu_ms"]
        for row in results.values():
            row["loop_thread_vs_health_live"] = round(row["loop_thread_cpu_ms"] / baseline, 2)
        if profile is not None:
            profile.start()
            for _ in range(requests):
                await app.call("POST /api/analyze")
            profile.stop()
    return {"requests_each": requests, "calls": results}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu", description="CPU per request.")
    parser.add_argument("--requests", type=int, default=300, help="per call, after a warm-up")
    parser.add_argument("--profile", type=Path, help="write a pyinstrument profile here")
    args = parser.parse_args()
    profiler = None
    if args.profile is not None:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="enabled", interval=0.0005)

    async def work(url: str) -> dict[str, Any]:
        return await measure(url, args.requests, profiler)

    # The JSON logs are written, as in production, but not into our output.
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        result = on_throwaway_database(work)
    print(json.dumps(result, indent=2))
    if profiler is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        (args.profile / "analyze.html").write_text(profiler.output_html())
        text = profiler.output_text(unicode=False, color=False)
        (args.profile / "analyze.txt").write_text(text)


if __name__ == "__main__":
    main()
