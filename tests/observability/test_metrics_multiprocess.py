"""`accessai serve --workers 2` with PROMETHEUS_MULTIPROC_DIR: /metrics sums both workers.

A real server in a subprocess on a free loopback port. Requests open a new
connection each, so the kernel hands them to both workers; each worker
writes its own sample files, and whichever worker answers /metrics must
report the total of all of them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from accessai.observability.multiprocess import MULTIPROCESS_ENV, prepare_for_workers
from tests.support.network import free_port, wait_until
from tests.support.settings import TEST_JWT_SECRET

STARTUP_TIMEOUT_SECONDS = 60
BATCH = 8
MAX_BATCHES = 40
TRAFFIC_ROUTE = "/health"


def per_worker_counts(directory: Path, route: str) -> Counter[str]:
    """Requests to ``route`` recorded by each worker, read from its own sample file."""
    counts: Counter[str] = Counter()
    for path in directory.glob("counter_*.db"):
        pid = path.stem.removeprefix("counter_")
        for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
            _metric, sample, labels, _help = json.loads(key)
            if sample == "accessai_http_requests_total" and labels.get("handler") == route:
                counts[pid] += int(value)
    return counts


def exposed_total(text: str, route: str) -> int:
    total = 0
    for line in text.splitlines():
        if line.startswith("accessai_http_requests_total{") and f'handler="{route}"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def announced_directory(log: str) -> Path:
    """The directory `accessai serve` chose, from its metrics.multiprocess log line."""
    for line in log.splitlines():
        if line.startswith("{") and json.loads(line).get("event") == "metrics.multiprocess":
            return Path(json.loads(line)["directory"])
    raise AssertionError(f"no metrics.multiprocess line in:\n{log[-2000:]}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Two workers with PROMETHEUS_MULTIPROC_DIR given (the default is tested below)."""
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    # A stale file from an "earlier run": serve must clear it, or it would be summed in.
    (multiproc / "counter_999999.db").write_bytes(b"stale")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ACCESSAI_", "PROMETHEUS_"))},
        "ENVIRONMENT": "test",
        "JWT_SECRET": TEST_JWT_SECRET,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
    }
    command = [
        str(Path(sys.executable).with_name("accessai")),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=tmp_path,  # no developer .env
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/health/live", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        if not wait_until(ready, timeout=STARTUP_TIMEOUT_SECONDS, interval=0.2):
            pytest.fail(f"server did not start:\n{log_path.read_text()[-3000:]}")
        assert announced_directory(log_path.read_text()) == multiproc
        assert not (multiproc / "counter_999999.db").exists()
        yield base, multiproc
    finally:
        # Our own process group: the supervisor and its two workers.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_metrics_sum_the_requests_of_both_workers(server: tuple[str, Path]) -> None:
    base, multiproc = server

    def one_request(_: int) -> int:
        # A fresh connection per request, so either worker may accept it.
        with httpx.Client(timeout=10) as client:
            return client.get(f"{base}{TRAFFIC_ROUTE}").status_code

    sent = 0
    with ThreadPoolExecutor(max_workers=BATCH) as pool:
        for _ in range(MAX_BATCHES):
            statuses = list(pool.map(one_request, range(BATCH)))
            assert statuses == [200] * BATCH
            sent += BATCH
            if len(+per_worker_counts(multiproc, TRAFFIC_ROUTE)) >= 2:
                break

    workers = +per_worker_counts(multiproc, TRAFFIC_ROUTE)
    assert len(workers) == 2, f"one worker served everything: {workers}"
    assert sum(workers.values()) == sent

    # Whichever worker answers, it reports the total of both.
    for _ in range(4):
        with httpx.Client(timeout=10) as client:
            text = client.get(f"{base}/metrics").text
        assert exposed_total(text, TRAFFIC_ROUTE) == sent
        # Counters are summed across processes, not reported per pid.
        assert not re.search(r"accessai_http_requests_total\{[^}]*pid=", text)


def test_serve_makes_a_private_directory_for_several_workers(monkeypatch) -> None:
    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)
    assert prepare_for_workers(1) is None
    assert MULTIPROCESS_ENV not in os.environ

    directory = prepare_for_workers(2)
    try:
        assert directory is not None
        # Exported for the workers, which inherit the environment.
        assert os.environ[MULTIPROCESS_ENV] == directory
        assert Path(directory).is_dir()
        assert list(Path(directory).iterdir()) == []
    finally:
        # Not monkeypatch: it would restore the variable, pointing at a removed directory.
        os.environ.pop(MULTIPROCESS_ENV, None)
        if directory is not None:
            Path(directory).rmdir()


def test_a_given_directory_is_emptied_of_old_samples(monkeypatch, tmp_path) -> None:
    (tmp_path / "counter_1.db").write_bytes(b"old")
    (tmp_path / "keep.txt").write_text("not a sample file")
    monkeypatch.setenv(MULTIPROCESS_ENV, str(tmp_path))
    assert prepare_for_workers(1) == str(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
