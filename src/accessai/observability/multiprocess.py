"""Prometheus multiprocess mode: where the workers' sample files live.

``accessai serve`` prepares the directory in the supervisor, before any
worker starts: with several workers and no PROMETHEUS_MULTIPROC_DIR it
makes a private temporary one (workers inherit the variable), so /metrics
is right by default; either way, files left by earlier processes go.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_ENV) or None


def reset_multiprocess_dir(path: str) -> None:
    """Create the directory and delete samples left by earlier processes (before workers start)."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def prepare_for_workers(workers: int) -> str | None:
    """The directory the workers will use (created and emptied), or None for one worker."""
    directory = multiprocess_dir()
    if directory is None and workers > 1:
        directory = tempfile.mkdtemp(prefix="accessai-metrics-")
        os.environ[MULTIPROCESS_ENV] = directory
    if directory is not None:
        reset_multiprocess_dir(directory)
    return directory
