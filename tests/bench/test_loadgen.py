"""The load generator against the loopback stand-in upstream, for a fraction of a second."""

from __future__ import annotations

from bench import loadgen
from tests.support.openai_upstream import OpenAIUpstream


async def test_load_counts_successes_and_errors() -> None:
    with OpenAIUpstream(api_key="sk-right") as upstream:
        body = {"model": "standin-model", "messages": [{"role": "user", "content": "hi"}]}
        spec = {
            "url": f"{upstream.base_url}/chat/completions",
            "method": "POST",
            "json": body,
            "concurrency": 2,
            "duration": 0.3,
            "warmup": 0.0,
        }
        good = await loadgen.run({**spec, "headers": [{"Authorization": "Bearer sk-right"}]})
        bad = await loadgen.run({**spec, "headers": [{"Authorization": "Bearer sk-wrong"}]})
    assert good["requests"] > 0
    assert good["errors"] == 0
    assert good["statuses"] == {"200": good["requests"]}
    assert bad["requests"] > 0
    assert bad["errors"] == bad["requests"]
    assert bad["error_samples"][0].startswith("401")
