"""The premise of the one-slot timeout handling (engine.py), checked on the real embedded server
(slow tier): llama.cpp keeps computing a reply after the client gave up on it, and answers
`GET /models` only once that reply is done, so waiting for that answer waits until it is idle."""

from __future__ import annotations

import time

import openai
import pytest

from date_spark.config import LocalModelConfig
from date_spark.llm.local import LocalModelServer, llama_available

needs_llama = pytest.mark.skipif(
    not llama_available(),
    reason="llama-cpp-python[server] is not installed (make test installs it)",
)


@pytest.mark.slow
@needs_llama
def test_the_real_server_is_busy_after_a_timeout_until_models_answers() -> None:
    cfg = LocalModelConfig(n_threads=1)
    with LocalModelServer(cfg) as url:
        client = openai.OpenAI(api_key="sk-no-key-required", base_url=url, max_retries=0)
        long_reply = {
            "model": cfg.model_alias,
            "messages": [{"role": "user", "content": "Count from 1 to 1000, one per line."}],
            "max_tokens": 300,
            "extra_body": {"min_tokens": 300},  # at least 5 s at the fastest speed measured
            "seed": 0,
        }
        with pytest.raises(openai.APITimeoutError):
            client.with_options(timeout=1.0).chat.completions.create(**long_reply)
        t0 = time.monotonic()
        client.with_options(timeout=600).models.list()
        waited = time.monotonic() - t0
        t1 = time.monotonic()
        client.with_options(timeout=600).models.list()
        idle = time.monotonic() - t1
    # the abandoned reply went on for seconds after the client left; once it was done, the same
    # question was answered at once
    assert waited > 1.0, waited
    assert idle < min(2.0, waited / 2), (idle, waited)
