"""Bounded HTTP load from its own process: fixed concurrency for a fixed time.

Run as ``python -m bench.loadgen SPEC_JSON`` and it prints one JSON summary.
The spec names the URL, method, an optional JSON body, and a list of header
sets; worker ``i`` uses header set ``i % len(headers)`` (one token per user).
A response counts as an error unless its status is ``expect`` (default 200).
aiohttp is used because it costs far less client CPU than httpx, and on a
2-core machine the client's CPU is taken from the server.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from typing import Any

import aiohttp


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


def summarize(latencies_ms: list[float], errors: int, elapsed_s: float) -> dict[str, Any]:
    """Requests/s and latency percentiles of a finished run."""
    values = sorted(latencies_ms)
    count = len(values)
    return {
        "requests": count,
        "errors": errors,
        "seconds": round(elapsed_s, 3),
        "rps": round(count / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        "p50_ms": round(percentile(values, 0.50), 3),
        "p90_ms": round(percentile(values, 0.90), 3),
        "p99_ms": round(percentile(values, 0.99), 3),
        "mean_ms": round(sum(values) / count, 3) if count else 0.0,
    }


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    url: str = spec["url"]
    method: str = spec.get("method", "GET")
    body: bytes | None = json.dumps(spec["json"]).encode() if spec.get("json") is not None else None
    header_sets: list[dict[str, str]] = spec.get("headers") or [{}]
    if body is not None:
        header_sets = [{**h, "Content-Type": "application/json"} for h in header_sets]
    concurrency: int = spec["concurrency"]
    duration: float = spec["duration"]
    warmup: float = spec.get("warmup", 0.5)
    expect: int = spec.get("expect", 200)

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    samples: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        start = time.perf_counter()
        measure_from = start + warmup
        stop = measure_from + duration

        async def worker(index: int) -> None:
            nonlocal errors
            headers = header_sets[index % len(header_sets)]
            while True:
                sent = time.perf_counter()
                if sent >= stop:
                    return
                status = 0
                try:
                    async with http.request(method, url, data=body, headers=headers) as response:
                        payload = await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError) as error:
                    payload = repr(error).encode()
                done = time.perf_counter()
                if sent < measure_from:
                    continue  # warm-up: connections, caches, JIT-free but pool-filling
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status != expect:
                    errors += 1
                    if len(samples) < 3:
                        samples.append(f"{status}: {payload[:200].decode(errors='replace')}")
                latencies.append((done - sent) * 1000)

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - measure_from
    result = summarize(latencies, errors, elapsed)
    result["statuses"] = statuses
    result["error_samples"] = samples
    result["concurrency"] = concurrency
    return result


def main() -> None:
    spec = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(run(spec))))


if __name__ == "__main__":
    main()
