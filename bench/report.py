"""Turn a run's scenario results into ratios, target verdicts, JSON, a chart and a table."""

from __future__ import annotations

import os
import platform
import re
import socket
from pathlib import Path
from typing import Any

Result = dict[str, Any]

# The targets, as ratios measured in the same run.
METERED_MIN_SHARE_OF_CEILING = 0.60
METERING_MAX_P50_MS = 1.0
METERING_MAX_P99_MS = 5.0
HISTORY_MAX_SLOWDOWN = 1.5

TABLE_START = "<!-- bench:table:start -->"
TABLE_END = "<!-- bench:table:end -->"


def machine() -> dict[str, Any]:
    """CPU model, cores, memory and OS of this machine (Linux /proc when present)."""
    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        if match:
            cpu = match.group(1).strip()
    memory_gib: float | None = None
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        match = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(), re.MULTILINE)
        if match:
            memory_gib = round(int(match.group(1)) / 1024 / 1024, 1)
    os_name = platform.platform()
    os_release = Path("/etc/os-release")
    if os_release.exists():
        match = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', os_release.read_text(), re.MULTILINE)
        if match:
            os_name = f"{match.group(1)} ({platform.release()})"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "os": os_name,
        "python": platform.python_version(),
    }


def redis_version(host: str, port: int) -> str:
    """The server's version from ``INFO server`` over a raw socket (no client library).

    Never aborts a run: an unreachable, slow or refusing server (an error
    reply such as ``-NOAUTH``) gives "unknown".
    """
    data = b""
    try:
        with socket.create_connection((host, port), timeout=2) as connection:
            connection.sendall(b"INFO server\r\n")
            while b"redis_version" not in data or not data.endswith(b"\r\n"):
                if data.startswith(b"-"):
                    break  # an error reply: no INFO follows
                chunk = connection.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:  # refused, unreachable, reset or timed out (TimeoutError)
        return "unknown"
    match = re.search(rb"redis_version:([^\r\n]+)", data)
    return match.group(1).decode() if match else "unknown"


def merge_halves(scenarios: dict[str, Result]) -> dict[str, Result]:
    """Fold ``name#1`` and ``name#2`` into ``name``: summed counts, mean rate and latencies.

    Means of two halves' percentiles are not the percentiles of the whole;
    with equal halves at the same concurrency they are close, and the halves
    stay in the JSON under ``halves``.
    """
    merged: dict[str, Result] = {}
    for name, row in scenarios.items():
        base, sep, _ = name.partition("#")
        if not sep:
            merged[name] = row
            continue
        merged.setdefault(base, {"halves": []})["halves"].append(row)
    for row in merged.values():
        halves = row.get("halves")
        if not isinstance(halves, list):
            continue
        count = len(halves)
        row.update(
            requests=sum(h["requests"] for h in halves),
            errors=sum(h["errors"] for h in halves),
            concurrency=halves[0].get("concurrency"),
        )
        for key in ("rps", "p50_ms", "p90_ms", "p99_ms", "mean_ms"):
            row[key] = round(sum(h.get(key, 0.0) for h in halves) / count, 3)
    return merged


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def derive(scenarios: dict[str, Result]) -> dict[str, Any]:
    """Ratios to the baselines and a verdict per target, for each worker count present.

    Scenario names follow ``<kind>@<workers>w`` (throughput scenarios) or a
    plain name (single-run comparisons). A missing scenario gives ``None``.
    """
    derived: dict[str, Any] = {"ratios": {}, "targets": {}}
    errors = sum(int(result.get("errors", 0)) for result in scenarios.values())
    for key in sorted(k for k in scenarios if k.startswith("metered@")):
        workers = key.split("@", 1)[1]
        metered = scenarios[key]
        ceiling = scenarios.get(f"ceiling@{workers}")
        baseline = scenarios.get(f"baseline@{workers}")
        share = _ratio(metered["rps"], ceiling["rps"]) if ceiling else None
        derived["ratios"][workers] = {
            "metered_vs_ceiling_rps": share,
            "metered_vs_baseline_rps": _ratio(metered["rps"], baseline["rps"])
            if baseline
            else None,
            "ceiling_vs_baseline_rps": (
                _ratio(ceiling["rps"], baseline["rps"]) if ceiling and baseline else None
            ),
        }
        hot = scenarios.get(f"hot_user@{workers}")
        if hot:
            derived["ratios"][workers]["hot_user_vs_metered_rps"] = _ratio(
                hot["rps"], metered["rps"]
            )
        derived["targets"][f"metered_at_least_60pct_of_ceiling@{workers}"] = {
            "value": share,
            "target": METERED_MIN_SHARE_OF_CEILING,
            "met": share is not None and share >= METERED_MIN_SHARE_OF_CEILING,
        }
    with_metering = scenarios.get("overhead_metered")
    without = scenarios.get("overhead_unmetered")
    if with_metering and without:
        p50 = round(with_metering["p50_ms"] - without["p50_ms"], 3)
        p99 = round(with_metering["p99_ms"] - without["p99_ms"], 3)
        derived["metering_overhead_ms"] = {"p50": p50, "p99": p99}
        derived["targets"]["metering_p50_at_most_1ms"] = {
            "value": p50,
            "target": METERING_MAX_P50_MS,
            "met": p50 <= METERING_MAX_P50_MS,
        }
        derived["targets"]["metering_p99_at_most_5ms"] = {
            "value": p99,
            "target": METERING_MAX_P99_MS,
            "met": p99 <= METERING_MAX_P99_MS,
        }
    for read in ("balance", "transactions"):
        small = scenarios.get(f"history_{read}_small")
        large = scenarios.get(f"history_{read}_large")
        if small and large:
            slowdown_p50 = _ratio(large["p50_ms"], small["p50_ms"])
            slowdown_rps = _ratio(small["rps"], large["rps"])
            derived["ratios"][f"history_{read}"] = {
                "large_vs_small_p50": slowdown_p50,
                "small_vs_large_rps": slowdown_rps,
            }
            worst = max(v for v in (slowdown_p50, slowdown_rps) if v is not None)
            derived["targets"][f"history_{read}_within_1_5x"] = {
                "value": worst,
                "target": HISTORY_MAX_SLOWDOWN,
                "met": worst <= HISTORY_MAX_SLOWDOWN,
            }
    chat = scenarios.get("chat_via_service")
    direct = scenarios.get("chat_direct_upstream")
    if chat and direct:
        derived["ratios"]["chat"] = {
            "service_vs_direct_rps": _ratio(chat["rps"], direct["rps"]),
            "added_p50_ms": round(chat["p50_ms"] - direct["p50_ms"], 3),
            "added_p99_ms": round(chat["p99_ms"] - direct["p99_ms"], 3),
        }
    derived["targets"]["errors_zero"] = {"value": errors, "target": 0, "met": errors == 0}
    return derived


def markdown_table(result: Result) -> str:
    """The scenario table and the target verdicts, for docs/PERFORMANCE.md."""
    info = result["machine"]
    lines = [
        f"Run {result['started_at']} ({result['mode']} mode, {result['duration_s']} s per "
        f"scenario): {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, "
        f"{info['os']}; Python {info['python']}, PostgreSQL {info.get('postgresql')}, "
        f"Redis {info.get('redis')}.",
        "",
        "| scenario | concurrency | requests/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in result["scenarios"].items():
        lines.append(
            f"| {name} | {row.get('concurrency', '-')} | {row['rps']} | {row['p50_ms']} "
            f"| {row['p99_ms']} | {row.get('errors', 0)} |"
        )
    memory = result.get("memory") or {}
    if memory:
        lines += [
            "",
            "| memory after the load | service RSS MiB | reference app RSS MiB | ratio |",
            "|---|---:|---:|---:|",
        ]
        for tag, row in memory.items():
            ratio = _ratio(row["service_rss_mib"], row["refapp_rss_mib"])
            lines.append(
                f"| {tag} (all processes) | {row['service_rss_mib']} | {row['refapp_rss_mib']} "
                f"| {ratio} |"
            )
    lines += ["", "| target | measured | limit | met |", "|---|---:|---:|---|"]
    for name, target in result["derived"]["targets"].items():
        met = "yes" if target["met"] else "**no**"
        lines.append(f"| {name} | {target['value']} | {target['target']} | {met} |")
    return "\n".join(lines)


def update_performance_doc(path: Path, table: str) -> None:
    """Replace the table between the markers (appending the markers when absent)."""
    text = path.read_text() if path.exists() else "# Performance\n"
    block = f"{TABLE_START}\n{table}\n{TABLE_END}"
    if TABLE_START in text and TABLE_END in text:
        head, rest = text.split(TABLE_START, 1)
        _, tail = rest.split(TABLE_END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def chart(result: Result, path: Path) -> None:
    """Requests/s and p50/p99 per scenario, side by side (matplotlib, bench group)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["scenarios"])
    rps = [result["scenarios"][n]["rps"] for n in names]
    p50 = [result["scenarios"][n]["p50_ms"] for n in names]
    p99 = [result["scenarios"][n]["p99_ms"] for n in names]
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 0.45 * len(names) + 2))
    positions = range(len(names))
    left.barh(positions, rps, color="#3b7dd8")
    left.set_yticks(list(positions), names)
    left.invert_yaxis()
    left.set_xlabel("requests/s")
    left.set_title("Throughput")
    height = 0.4
    right.barh([p - height / 2 for p in positions], p50, height, label="p50", color="#5bb974")
    right.barh([p + height / 2 for p in positions], p99, height, label="p99", color="#e8710a")
    right.set_yticks(list(positions), [""] * len(names))
    right.invert_yaxis()
    right.set_xscale("log")
    right.set_xlabel("latency ms (log)")
    right.set_title("Latency")
    right.legend()
    info = result["machine"]
    figure.suptitle(f"AccessAI bench {result['started_at']} - {info['cpu']}, {info['cores']} cores")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
