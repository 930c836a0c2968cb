"""Prometheus multiprocess mode: where the workers' sample files live.

Kept free of prometheus_client imports: ``accessai serve`` prepares the
directory in the supervisor process, which must not create sample files of
its own.
"""

from __future__ import annotations

import os
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
