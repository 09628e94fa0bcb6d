"""Claude behind Sluice's OpenAI API, through the official OpenAI Python SDK.

Run by `the_official_openai_sdk_talks_to_claude_behind_the_openai_api` in
tests/tests/anthropic.rs, which starts etcd, the control plane, a data plane
and mock Anthropic upstreams, deploys them (`provider: anthropic`), and
passes:

    SLUICE_TEST_BASE_URL        http://127.0.0.1:PORT/v1
    SLUICE_TEST_KEY             a Sluice key allowed every model below but the denied one
    SLUICE_TEST_MODEL           Claude, answering text with cache usage
    SLUICE_TEST_TOOLS_MODEL     Claude, answering two parallel get_weather calls
    SLUICE_TEST_RETRY_MODEL     two Claude deployments, the first overloaded (529)
    SLUICE_TEST_SMALL_MODEL     Claude answering "prompt is too long"; its
                                context_window_fallbacks name a larger group
    SLUICE_TEST_DENIED_MODEL    Claude the key may not use
    SLUICE_TEST_EXPECTED_TEXT   the text answer of SLUICE_TEST_MODEL
    SLUICE_TEST_SECOND_TEXT     the text answer of the retry group's second deployment
    SLUICE_TEST_BIG_TEXT        the text answer of the larger-context group
    SLUICE_TEST_USAGE           input,cache_creation,cache_read,output tokens of SLUICE_TEST_MODEL

The Rust test then checks what the mocks received (system, max_tokens,
stop_sequences, tool_result blocks, ...).
"""

import json
import os

import openai
import pytest

MESSAGES = [{"role": "user", "content": "Say hello"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set (run through `cargo test --test anthropic`)")
    return value


def usage():
    return [int(n) for n in env("SLUICE_TEST_USAGE").split(",")]


@pytest.fixture
def client():
    # max_retries=0: the tests count upstream hits.
    return openai.OpenAI(
        base_url=env("SLUICE_TEST_BASE_URL"),
        api_key=env("SLUICE_TEST_KEY"),
        max_retries=0,
        timeout=30,
    )


def test_chat_reaches_claude_and_answers_in_openais_shape(client):
    completion = client.chat.completions.create(
        model=env("SLUICE_TEST_MODEL"),
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello"},
        ],
        stop=["END"],
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == env("SLUICE_TEST_EXPECTED_TEXT")
    assert completion.choices[0].finish_reason == "stop"
    inp, created, read, out = usage()
    # Each prompt token once: uncached input + cache writes + cache reads.
    assert completion.usage.prompt_tokens == inp + created + read
    assert completion.usage.prompt_tokens_details.cached_tokens == read
    assert completion.usage.completion_tokens == out
    assert completion.usage.total_tokens == inp + created + read + out


def test_stream_accumulates_text_and_a_usage_chunk_counts_cache_once(client):
    stream = client.chat.completions.create(
        model=env("SLUICE_TEST_MODEL"),
        messages=MESSAGES,
        max_tokens=100,
        temperature=0.2,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, roles, finish, usage_chunks = "", [], None, []
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            usage_chunks.append(chunk.usage)
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.delta.role)
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert text == env("SLUICE_TEST_EXPECTED_TEXT")
    assert roles == ["assistant"], "one role chunk"
    assert finish == "stop"
    assert len(usage_chunks) == 1
    inp, created, read, out = usage()
    assert usage_chunks[0].prompt_tokens == inp + created + read
    assert usage_chunks[0].prompt_tokens_details.cached_tokens == read
    assert usage_chunks[0].completion_tokens == out


def follow_up(calls):
    """The conversation after `calls`: the assistant turn and one tool message each."""
    return [
        {"role": "user", "content": "What is the weather in Paris and Tokyo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in calls
            ],
        },
    ] + [
        {"role": "tool", "tool_call_id": c["id"], "content": f"sunny in {json.loads(c['arguments'])['city']}"}
        for c in calls
    ]


def test_parallel_tool_calls_round_trip(client):
    completion = client.chat.completions.create(
        model=env("SLUICE_TEST_TOOLS_MODEL"),
        messages=[{"role": "user", "content": "What is the weather in Paris and Tokyo?"}],
        tools=TOOLS,
        tool_choice="required",
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_weather"]
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris"}, {"city": "Tokyo"}]
    assert calls[0].id != calls[1].id
    answer = client.chat.completions.create(
        model=env("SLUICE_TEST_MODEL"),
        messages=follow_up(
            [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments} for c in calls]
        ),
        tools=TOOLS,
    )
    assert answer.choices[0].message.content == env("SLUICE_TEST_EXPECTED_TEXT")


def test_parallel_tool_calls_streamed_keep_their_indices(client):
    stream = client.chat.completions.create(
        model=env("SLUICE_TEST_TOOLS_MODEL"),
        messages=[{"role": "user", "content": "What is the weather in Paris and Tokyo?"}],
        tools=TOOLS,
        parallel_tool_calls=True,
        stream=True,
    )
    calls, finish = {}, None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                if delta.id:
                    assert call["id"] is None, "an id once per call"
                    call["id"] = delta.id
                if delta.function and delta.function.name:
                    call["name"] += delta.function.name
                if delta.function and delta.function.arguments:
                    call["arguments"] += delta.function.arguments
    assert sorted(calls) == [0, 1], f"indices {sorted(calls)}"
    assert finish == "tool_calls"
    assert [calls[i]["name"] for i in (0, 1)] == ["get_weather", "get_weather"]
    assert [json.loads(calls[i]["arguments"]) for i in (0, 1)] == [{"city": "Paris"}, {"city": "Tokyo"}]
    stream = client.chat.completions.create(
        model=env("SLUICE_TEST_MODEL"),
        messages=follow_up([calls[0], calls[1]]),
        tools=TOOLS,
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == env("SLUICE_TEST_EXPECTED_TEXT")


def test_an_overloaded_deployment_is_retried_on_the_second(client):
    raw = client.chat.completions.with_raw_response.create(
        model=env("SLUICE_TEST_RETRY_MODEL"), messages=MESSAGES
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == env("SLUICE_TEST_SECOND_TEXT")
    assert raw.headers["x-sluice-deployment"] == "claude-second"
    assert raw.headers["x-sluice-attempts"] == "2"


def test_a_too_long_prompt_falls_back_to_the_larger_context_group(client):
    raw = client.chat.completions.with_raw_response.create(
        model=env("SLUICE_TEST_SMALL_MODEL"), messages=MESSAGES
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == env("SLUICE_TEST_BIG_TEXT")
    assert raw.headers["x-sluice-fallback"] == "claude-big"


def test_a_key_without_access_is_refused_before_any_upstream_call(client):
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model=env("SLUICE_TEST_DENIED_MODEL"), messages=MESSAGES)
    assert caught.value.status_code == 403
    assert caught.value.code == "model_access_denied"
    assert env("SLUICE_TEST_DENIED_MODEL") in caught.value.message
