"""Sluice's `/v1/messages` through the official Anthropic Python SDK, with a
Claude deployment (passed through) and an OpenAI-compatible one (translated)
behind it.

Run by `the_official_anthropic_sdk_reaches_claude_and_openai_models` in
tests/tests/anthropic.rs, which starts etcd, the control plane, a data plane,
a mock Anthropic upstream and the mock OpenAI upstream, and passes:

    SLUICE_TEST_BASE_URL        http://127.0.0.1:PORT (the SDK appends /v1/messages)
    SLUICE_TEST_KEY             a Sluice key allowed the models below
    SLUICE_TEST_DENIED_KEY      a Sluice key allowed none of them
    SLUICE_TEST_CLAUDE          a model group at the mock Anthropic upstream (text, cache usage)
    SLUICE_TEST_CLAUDE_TOOLS    a model group at the mock Anthropic upstream (two parallel tool calls)
    SLUICE_TEST_GPT             a model group at the mock OpenAI upstream
    SLUICE_TEST_CLAUDE_TEXT     the Anthropic mock's text answer
    SLUICE_TEST_CLAUDE_USAGE    its input,cache_creation,cache_read,output tokens
    SLUICE_TEST_GPT_TEXT        the OpenAI mock's text answer (whole and streamed)
    SLUICE_TEST_GPT_USAGE       its prompt,completion tokens
"""

import os

import anthropic
import pytest

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
        pytest.skip(f"{name} is not set (run through `cargo test --test anthropic`)")
    return value


def ints(name):
    return [int(n) for n in env(name).split(",")]


def client(key=None, **kwargs):
    # max_retries=0: the Rust side counts upstream hits.
    return anthropic.Anthropic(
        base_url=env("SLUICE_TEST_BASE_URL"),
        api_key=key or env("SLUICE_TEST_KEY"),
        max_retries=0,
        timeout=30,
        **kwargs,
    )


def test_create_with_claude_passes_the_answer_through():
    raw = client().messages.with_raw_response.create(
        model=env("SLUICE_TEST_CLAUDE"), max_tokens=256, system="You are terse.", messages=HELLO
    )
    m = raw.parse()
    assert m.type == "message" and m.role == "assistant"
    assert [b.type for b in m.content] == ["text"]
    assert m.content[0].text == env("SLUICE_TEST_CLAUDE_TEXT")
    assert m.stop_reason == "end_turn"
    inp, created, read, out = ints("SLUICE_TEST_CLAUDE_USAGE")
    assert (m.usage.input_tokens, m.usage.cache_creation_input_tokens) == (inp, created)
    assert (m.usage.cache_read_input_tokens, m.usage.output_tokens) == (read, out)
    assert raw.headers["x-sluice-model-group"] == env("SLUICE_TEST_CLAUDE")


def test_create_with_an_openai_model_answers_in_anthropics_shape():
    m = client().messages.create(
        model=env("SLUICE_TEST_GPT"), max_tokens=256, system="You are terse.", messages=HELLO
    )
    assert m.type == "message" and m.role == "assistant"
    assert m.content[0].type == "text"
    assert m.content[0].text == env("SLUICE_TEST_GPT_TEXT")
    assert m.stop_reason == "end_turn"
    prompt, completion = ints("SLUICE_TEST_GPT_USAGE")
    assert (m.usage.input_tokens, m.usage.output_tokens) == (prompt, completion)


def test_an_agents_request_reaches_an_openai_model():
    # What Claude Code sends: cached system blocks and tools, a user id,
    # thinking, and context management (beta), streamed.
    with client().beta.messages.stream(
        model=env("SLUICE_TEST_GPT"),
        max_tokens=32000,
        betas=["context-management-2025-06-27"],
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        messages=HELLO,
        tools=[{**TOOLS[0], "cache_control": {"type": "ephemeral"}}],
        metadata={"user_id": "user_abc_session_1"},
        thinking={"type": "enabled", "budget_tokens": 2048},
        context_management={"edits": [{"type": "clear_tool_uses_20250919"}]},
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == env("SLUICE_TEST_GPT_TEXT")
    assert final.stop_reason == "end_turn"
    prompt, completion = ints("SLUICE_TEST_GPT_USAGE")
    assert (final.usage.input_tokens, final.usage.output_tokens) == (prompt, completion)


@pytest.mark.parametrize("model", ["SLUICE_TEST_CLAUDE", "SLUICE_TEST_GPT"])
def test_stream_builds_the_final_message(model):
    with client().messages.stream(model=env(model), max_tokens=256, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    want = env("SLUICE_TEST_CLAUDE_TEXT" if model == "SLUICE_TEST_CLAUDE" else "SLUICE_TEST_GPT_TEXT")
    assert text == want
    assert final.content[0].text == want
    assert final.stop_reason == "end_turn"
    if model == "SLUICE_TEST_CLAUDE":
        inp, created, read, out = ints("SLUICE_TEST_CLAUDE_USAGE")
        assert final.usage.cache_read_input_tokens == read
        assert final.usage.output_tokens == out
    else:
        prompt, completion = ints("SLUICE_TEST_GPT_USAGE")
        assert (final.usage.input_tokens, final.usage.output_tokens) == (prompt, completion)


def test_tool_use_with_claude_whole_and_streamed():
    m = client().messages.create(
        model=env("SLUICE_TEST_CLAUDE_TOOLS"),
        max_tokens=256,
        tools=TOOLS,
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "Weather in Paris and Tokyo?"}],
    )
    assert m.stop_reason == "tool_use"
    calls = [b for b in m.content if b.type == "tool_use"]
    assert [c.input for c in calls] == [{"city": "Paris"}, {"city": "Tokyo"}]
    with client().messages.stream(
        model=env("SLUICE_TEST_CLAUDE_TOOLS"),
        max_tokens=256,
        tools=TOOLS,
        messages=[{"role": "user", "content": "Weather in Paris and Tokyo?"}],
    ) as stream:
        final = stream.get_final_message()
    assert [b.input for b in final.content if b.type == "tool_use"] == [
        {"city": "Paris"},
        {"city": "Tokyo"},
    ]
    # The results go back, and Claude answers.
    answer = client().messages.create(
        model=env("SLUICE_TEST_CLAUDE"),
        max_tokens=256,
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            {"role": "assistant", "content": [c.model_dump(exclude_none=True) for c in calls]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": c.id, "content": "sunny"} for c in calls
                ],
            },
        ],
    )
    assert answer.content[0].text == env("SLUICE_TEST_CLAUDE_TEXT")


def test_tool_use_with_an_openai_model_is_translated():
    # The OpenAI mock answers text whatever it is asked: what matters is the
    # request it receives (checked by the Rust side) and an answer in shape.
    m = client().messages.create(
        model=env("SLUICE_TEST_GPT"),
        max_tokens=256,
        tools=TOOLS,
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny"}],
            },
        ],
    )
    assert m.content[0].text == env("SLUICE_TEST_GPT_TEXT")


def test_a_tool_results_image_reaches_an_openai_model():
    # Claude Code's Read of an image file: the image rides in the user
    # message after the tool message (checked by the Rust side).
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    m = client().messages.create(
        model=env("SLUICE_TEST_GPT"),
        max_tokens=256,
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "What is in pixel.png?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_img", "name": "get_weather", "input": {"city": "pixel.png"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_img",
                        "content": [
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}
                        ],
                    }
                ],
            },
        ],
    )
    assert m.content[0].text == env("SLUICE_TEST_GPT_TEXT")


def test_a_pdf_reaches_an_openai_model_as_a_file():
    m = client().messages.create(
        model=env("SLUICE_TEST_GPT"),
        max_tokens=256,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "title": "report.pdf",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"},
                    },
                    {"type": "text", "text": "Summarise the report."},
                ],
            }
        ],
    )
    assert m.content[0].text == env("SLUICE_TEST_GPT_TEXT")


def test_count_tokens_on_both():
    inp, created, read, _ = ints("SLUICE_TEST_CLAUDE_USAGE")
    counted = client().messages.count_tokens(model=env("SLUICE_TEST_CLAUDE"), messages=HELLO)
    assert counted.input_tokens == inp + created + read, "Claude's own count"
    estimated = client().messages.count_tokens(
        model=env("SLUICE_TEST_GPT"), system="You are terse.", messages=HELLO
    )
    assert 0 < estimated.input_tokens < 100, "an estimate"


def test_a_bearer_token_works_too():
    c = anthropic.Anthropic(
        base_url=env("SLUICE_TEST_BASE_URL"), auth_token=env("SLUICE_TEST_KEY"), max_retries=0
    )
    m = c.messages.create(model=env("SLUICE_TEST_CLAUDE"), max_tokens=64, messages=HELLO)
    assert m.content[0].text == env("SLUICE_TEST_CLAUDE_TEXT")


def test_a_key_without_access_gets_permission_denied_in_anthropics_envelope():
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        client(env("SLUICE_TEST_DENIED_KEY")).messages.create(
            model=env("SLUICE_TEST_CLAUDE"), max_tokens=64, messages=HELLO
        )
    assert caught.value.status_code == 403
    body = caught.value.body
    assert body["type"] == "error", body
    assert body["error"]["type"] == "permission_error", body
    assert env("SLUICE_TEST_CLAUDE") in body["error"]["message"]


def test_an_unknown_key_gets_authentication_error():
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client("sk-not-a-sluice-key").messages.create(
            model=env("SLUICE_TEST_CLAUDE"), max_tokens=64, messages=HELLO
        )
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_models_list_in_anthropics_shape():
    page = client().models.list()
    ids = [m.id for m in page.data]
    for model in ("SLUICE_TEST_CLAUDE", "SLUICE_TEST_CLAUDE_TOOLS", "SLUICE_TEST_GPT"):
        assert env(model) in ids
    assert all(m.type == "model" and m.display_name for m in page.data)
