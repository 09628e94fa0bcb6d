"""Budgets, credits and rate limits through the official OpenAI Python SDK.

Run by `the_official_openai_sdk_raises_rate_limit_error_for_quota_and_limits`
in tests/tests/usage.rs, which starts the gateway and passes:

    SLUICE_TEST_BASE_URL      http://127.0.0.1:PORT/v1
    SLUICE_TEST_MODEL         a chat model both keys may use
    SLUICE_TEST_BUDGET_KEY    a key whose max_budget one call spends
    SLUICE_TEST_RPM_KEY       a key with rpm_limit 1

By hand: `python3 -m pytest -q tests/python/test_openai_sdk_quota.py` with those set.
"""

import os

import openai
import pytest

MESSAGES = [{"role": "user", "content": "Say hello"}]


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set (run through `cargo test --test usage`)")
    return value


def client(key):
    # max_retries=0: the 429 must surface as-is, not be retried by the SDK.
    return openai.OpenAI(
        base_url=env("SLUICE_TEST_BASE_URL"), api_key=key, max_retries=0, timeout=30
    )


def test_a_spent_budget_raises_rate_limit_error_with_insufficient_quota():
    c = client(env("SLUICE_TEST_BUDGET_KEY"))
    c.chat.completions.create(model=env("SLUICE_TEST_MODEL"), messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as caught:
        c.chat.completions.create(model=env("SLUICE_TEST_MODEL"), messages=MESSAGES)
    assert caught.value.status_code == 429
    assert caught.value.code == "insufficient_quota"
    assert "Budget exceeded" in caught.value.message
    # Retrying soon cannot help: the SDK is told not to.
    assert caught.value.response.headers["x-should-retry"] == "false"


def test_a_reached_rpm_limit_raises_rate_limit_error_with_openai_headers():
    c = client(env("SLUICE_TEST_RPM_KEY"))
    first = c.chat.completions.with_raw_response.create(
        model=env("SLUICE_TEST_MODEL"), messages=MESSAGES
    )
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    with pytest.raises(openai.RateLimitError) as caught:
        c.chat.completions.create(model=env("SLUICE_TEST_MODEL"), messages=MESSAGES)
    assert caught.value.code == "rate_limit_exceeded"
    headers = caught.value.response.headers
    assert headers["x-ratelimit-limit-requests"] == "1"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(headers["retry-after"]) <= 60
