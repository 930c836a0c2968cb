"""The openai SDK is loaded only when a provider is configured.

It costs about a second of start-up and 60 MiB per process; a deployment on
the local engine without chat should pay neither. Checked in a fresh
interpreter, since this test process has long imported it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import asyncio, sys
from asgi_lifespan import LifespanManager
from accessai.core.config import Settings
from accessai.main import create_app

async def main():
    app = create_app(Settings(database_url=sys.argv[1], log_level="WARNING"))
    async with LifespanManager(app):
        pass

asyncio.run(main())
print("openai" in sys.modules)
"""


def test_an_app_without_a_provider_never_imports_the_sdk(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert completed.stdout.strip().splitlines()[-1] == "False", completed.stderr
