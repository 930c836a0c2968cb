"""The bench's result arithmetic and report writing (no load, no servers, no timing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import loadgen, report


def row(rps: float, p50: float = 1.0, p99: float = 2.0, errors: int = 0) -> dict[str, Any]:
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": errors, "concurrency": 4}


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 0.50) == 50.0
    assert loadgen.percentile(values, 0.99) == 99.0
    assert loadgen.percentile([], 0.5) == 0.0


def test_summarize_counts_and_rates() -> None:
    summary = loadgen.summarize([3.0, 1.0, 2.0, 4.0], errors=1, elapsed_s=2.0)
    assert summary["requests"] == 4
    assert summary["rps"] == 2.0
    assert summary["p50_ms"] == 2.0
    assert summary["errors"] == 1


def test_derive_ratios_and_verdicts() -> None:
    scenarios = {
        "baseline@1w": row(1000),
        "ceiling@1w": row(500),
        "metered@1w": row(250),
        "hot_user@1w": row(100),
        "overhead_unmetered": row(100, p50=2.0, p99=4.0),
        "overhead_metered": row(50, p50=2.5, p99=12.0),
        "history_balance_small": row(100, p50=5.0),
        "history_balance_large": row(90, p50=6.0),
        "history_transactions_small": row(100, p50=5.0),
        "history_transactions_large": row(40, p50=5.0),
        "chat_direct_upstream": row(200, p50=3.0, p99=6.0),
        "chat_via_service": row(100, p50=8.0, p99=20.0, errors=2),
    }
    derived = report.derive(scenarios)
    assert derived["ratios"]["1w"]["metered_vs_ceiling_rps"] == 0.5
    assert derived["ratios"]["1w"]["hot_user_vs_metered_rps"] == 0.4
    targets = derived["targets"]
    assert targets["metered_at_least_60pct_of_ceiling@1w"]["met"] is False
    assert derived["metering_overhead_ms"] == {"p50": 0.5, "p99": 8.0}
    assert targets["metering_p50_at_most_1ms"]["met"] is True
    assert targets["metering_p99_at_most_5ms"]["met"] is False
    assert targets["history_balance_within_1_5x"]["met"] is True
    # Throughput fell 2.5x even though p50 held: the worse of the two counts.
    assert targets["history_transactions_within_1_5x"]["value"] == 2.5
    assert targets["history_transactions_within_1_5x"]["met"] is False
    assert targets["errors_zero"] == {"value": 2, "target": 0, "met": False}
    assert derived["ratios"]["chat"]["added_p50_ms"] == 5.0


def test_performance_doc_table_is_replaced_in_place(tmp_path: Path) -> None:
    result = {
        "started_at": "2026-01-01T00:00:00Z",
        "mode": "quick",
        "duration_s": 1.0,
        "machine": {"cpu": "cpu", "cores": 2, "memory_gib": 4.0, "os": "os", "python": "3.11"},
        "scenarios": {"baseline@1w": row(10)},
        "derived": report.derive({"baseline@1w": row(10)}),
    }
    doc = tmp_path / "PERFORMANCE.md"
    doc.write_text("# Performance\n\nIntro.\n")
    report.update_performance_doc(doc, report.markdown_table(result))
    report.update_performance_doc(doc, report.markdown_table(result))
    text = doc.read_text()
    assert text.startswith("# Performance\n\nIntro.\n")
    assert text.count(report.TABLE_START) == 1
    assert "| baseline@1w | 4 | 10 | 1.0 | 2.0 | 0 |" in text
    assert "| errors_zero | 0 | 0 | yes |" in text


def test_merge_halves_folds_abba_runs() -> None:
    merged = report.merge_halves(
        {
            "baseline@1w": row(10),
            "history_balance_small#1": {**row(100, p50=4.0), "requests": 50, "p90_ms": 1.0},
            "history_balance_large#1": {**row(80, p50=5.0), "requests": 40, "p90_ms": 1.0},
            "history_balance_large#2": {**row(60, p50=7.0), "requests": 30, "p90_ms": 1.0},
            "history_balance_small#2": {**row(120, p50=6.0), "requests": 60, "p90_ms": 1.0},
        }
    )
    assert list(merged) == ["baseline@1w", "history_balance_small", "history_balance_large"]
    small = merged["history_balance_small"]
    assert small["rps"] == 110.0
    assert small["p50_ms"] == 5.0
    assert small["requests"] == 110
    assert len(small["halves"]) == 2
    assert merged["history_balance_large"]["rps"] == 70.0
