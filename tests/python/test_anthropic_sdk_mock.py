"""The official Anthropic Python SDK against the mock Anthropic upstream
(tests/src/mock_anthropic.rs) directly, no gateway: proof that the mock's
answers, streams and errors are what the SDK expects of Anthropic's API.

Run by `the_official_anthropic_sdk_accepts_the_mock` in
tests/tests/mock_anthropic.rs, which starts the mock, scripts one step per
request below (the tests run in file order) and passes:

    SLUICE_TEST_ANTHROPIC_URL   http://127.0.0.1:PORT
    SLUICE_TEST_ANTHROPIC_KEY   the key the mock requires
    SLUICE_TEST_EXPECTED_TEXT   the text of its default reply
"""

import os

import anthropic
import pytest

MODEL = "claude-sonnet-4-5"
HELLO = [{"role": "user", "content": "Say hello"}]
TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set (run through `cargo test --test mock_anthropic`)")
    return value


def client():
    # max_retries=0: every scripted step is one request.
    return anthropic.Anthropic(
        base_url=env("SLUICE_TEST_ANTHROPIC_URL"),
        api_key=env("SLUICE_TEST_ANTHROPIC_KEY"),
        max_retries=0,
        timeout=30,
    )


def test_1_create_answers_a_message_with_cache_usage():
    m = client().messages.create(model=MODEL, max_tokens=64, messages=HELLO)
    assert m.type == "message" and m.role == "assistant"
    assert m.content[0].type == "text"
    assert m.content[0].text == env("SLUICE_TEST_EXPECTED_TEXT")
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens == 4
    assert m.usage.cache_creation_input_tokens == 1200
    assert m.usage.cache_read_input_tokens == 800
    assert m.usage.output_tokens == 30


def test_2_stream_accumulates_text_and_the_final_usage():
    with client().messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == env("SLUICE_TEST_EXPECTED_TEXT")
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    # message_delta's totals replace message_start's, not add to them.
    assert final.usage.output_tokens == 30
    assert final.usage.input_tokens == 4
    assert final.usage.cache_read_input_tokens == 800


def test_3_parallel_tool_use_whole():
    m = client().messages.create(model=MODEL, max_tokens=256, tools=TOOLS, messages=HELLO)
    assert m.stop_reason == "tool_use"
    calls = [b for b in m.content if b.type == "tool_use"]
    assert [c.input for c in calls] == [{"city": "Paris"}, {"city": "Tokyo"}]
    assert calls[0].id != calls[1].id


def test_4_text_then_parallel_tool_use_streamed():
    with client().messages.stream(
        model=MODEL, max_tokens=256, tools=TOOLS, messages=HELLO
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[0].text == "Let me check."
    assert [b.input for b in final.content[1:]] == [{"city": "Paris"}, {"city": "Tokyo"}]
    assert final.stop_reason == "tool_use"


def test_5_thinking_then_text_streamed_keeps_the_signature():
    with client().messages.stream(
        model=MODEL,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=HELLO,
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "The user wants a greeting."
    assert final.content[0].signature == "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgx"
    assert final.content[1].text == "Hello!"


def test_6_refusal():
    m = client().messages.create(model=MODEL, max_tokens=64, messages=HELLO)
    assert m.stop_reason == "refusal"
    assert m.content == []


def test_7_overloaded_is_529():
    with pytest.raises(anthropic.OverloadedError) as caught:
        client().messages.create(model=MODEL, max_tokens=64, messages=HELLO)
    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"


def test_8_rate_limited_says_when_to_retry():
    with pytest.raises(anthropic.RateLimitError) as caught:
        client().messages.create(model=MODEL, max_tokens=64, messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "2"


def test_9_authentication_error():
    with pytest.raises(anthropic.AuthenticationError):
        client().messages.create(model=MODEL, max_tokens=64, messages=HELLO)


def test_10_prompt_too_long_is_a_bad_request():
    with pytest.raises(anthropic.BadRequestError) as caught:
        client().messages.create(model=MODEL, max_tokens=64, messages=HELLO)
    assert "prompt is too long" in caught.value.message


def test_11_an_error_event_mid_stream_raises():
    with pytest.raises(anthropic.APIStatusError) as caught:
        with client().messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream:
            for _ in stream:
                pass
    assert caught.value.body["error"]["type"] == "overloaded_error"


def test_12_count_tokens():
    counted = client().messages.count_tokens(model=MODEL, messages=HELLO)
    assert counted.input_tokens == 4 + 1200 + 800


def test_a_wrong_key_is_refused_before_anything_is_counted():
    c = anthropic.Anthropic(
        base_url=env("SLUICE_TEST_ANTHROPIC_URL"), api_key="sk-ant-wrong", max_retries=0
    )
    with pytest.raises(anthropic.AuthenticationError):
        c.messages.create(model=MODEL, max_tokens=64, messages=HELLO)
