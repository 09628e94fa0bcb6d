"""OpenAI's Responses API (`/v1/responses`) through the official OpenAI Python SDK.

Run by tests/tests/responses.rs (against Sluice, one run per deployment kind:
pass-through to `provider: openai`, translated to chat completions, Claude)
and by tests/tests/mock_upstream.rs (straight against the mock upstream),
with:

    SLUICE_TEST_BASE_URL        http://127.0.0.1:PORT/v1
    SLUICE_TEST_KEY             a key allowed SLUICE_TEST_MODEL
    SLUICE_TEST_MODEL           the model (group) to ask
    SLUICE_TEST_EXPECTED_TEXT   the text of a whole answer (optional)
    SLUICE_TEST_EXPECTED_STREAM the text of a streamed answer (optional)
    SLUICE_TEST_SENT_DIR        when set, every request body the SDK sends is
                                written there as NNN.json, in order, so the
                                Rust test can compare it with what the
                                upstream received byte for byte

Every run asserts the same shapes of the SDK's accumulated results (item
types, `output_text`, a function call's name and parsed arguments, usage),
so passing for every deployment kind means the shapes agree. The `strict`
tests also validate results and events against the SDK's own pydantic
types (the SDK itself builds them without validating).
"""

import json
import os
import typing

try:  # newer SDKs are built on httpx2
    import httpx2 as httpx
except ImportError:
    import httpx
import openai
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    }
]

# Codex's freeform `apply_patch`: a custom tool with a grammar.
CUSTOM_TOOLS = [
    {
        "type": "custom",
        "name": "apply_patch",
        "description": "Apply a patch to the workspace's files.",
        "format": {
            "type": "grammar",
            "syntax": "lark",
            "definition": 'start: "*** Begin Patch" /(.|\\n)*/ "*** End Patch"',
        },
    }
]

SCHEMA_FORMAT = {
    "type": "json_schema",
    "name": "city_weather",
    "schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "temperature": {"type": "number"},
        },
        "required": ["city", "temperature"],
        "additionalProperties": False,
    },
    "strict": True,
}


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        pytest.skip(f"{name} is not set (run through `cargo test --test responses`)")
    return value


_sent = {"n": 0}


def _record(request):
    directory = os.environ.get("SLUICE_TEST_SENT_DIR")
    if not directory or request.method != "POST":
        return
    request.read()
    _sent["n"] += 1
    with open(os.path.join(directory, f"{_sent['n']:03}.json"), "wb") as f:
        f.write(request.content)


@pytest.fixture
def client():
    http = httpx.Client(event_hooks={"request": [_record]})
    return openai.OpenAI(
        base_url=env("SLUICE_TEST_BASE_URL"),
        api_key=env("SLUICE_TEST_KEY"),
        max_retries=0,
        http_client=http,
    )


@pytest.fixture
def model():
    return env("SLUICE_TEST_MODEL")


def _event_types():
    union = typing.get_args(ResponseStreamEvent)[0]
    return {
        typing.get_args(cls.model_fields["type"].annotation)[0]: cls
        for cls in typing.get_args(union)
    }


EVENT_TYPES = _event_types()


def strictly(model_type, value):
    """`value` (as the SDK built it, without validating) validated against
    the SDK's own type: every required field there, of its type. An event
    against the type its `type` names."""
    data = value.model_dump(mode="json", exclude_unset=True)
    if model_type is ResponseStreamEvent:
        model_type = EVENT_TYPES[data["type"]]
    pydantic.TypeAdapter(model_type).validate_python(data)


def assert_text_response(response, expected=None):
    assert response.object == "response"
    assert response.status == "completed"
    assert [item.type for item in response.output] == ["message"], response
    message = response.output[0]
    assert message.role == "assistant"
    assert [part.type for part in message.content] == ["output_text"]
    assert response.output_text
    if expected:
        assert response.output_text == expected
    assert_usage(response)


def assert_usage(response):
    usage = response.usage
    assert usage is not None, response
    assert usage.input_tokens > 0
    assert usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def function_calls(response):
    calls = [item for item in response.output if item.type == "function_call"]
    assert calls, response
    for call in calls:
        assert call.name == "get_weather"
        assert call.call_id
        arguments = json.loads(call.arguments)
        assert isinstance(arguments, dict) and isinstance(arguments.get("city"), str)
    return calls


def replayed(call, with_id=True):
    """A function call item sent back as input: what the API accepts (the
    stream helper's `parsed_arguments` is the SDK's own, not the API's).
    Codex (`store: false`) sends no item ids: nothing was stored to name."""
    item = {
        "type": "function_call",
        "call_id": call.call_id,
        "name": call.name,
        "arguments": call.arguments,
    }
    if with_id and call.id:
        item["id"] = call.id
    return item


def test_create(client, model):
    response = client.responses.create(
        model=model, input="Say hello", instructions="Be brief.", max_output_tokens=256
    )
    assert response.id.startswith("resp_")
    assert_text_response(response, os.environ.get("SLUICE_TEST_EXPECTED_TEXT"))


def test_stream_helper_accumulates_the_final_response(client, model):
    deltas = []
    with client.responses.stream(model=model, input="Say hello") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert_text_response(final, os.environ.get("SLUICE_TEST_EXPECTED_STREAM"))
    assert "".join(deltas) == final.output_text


def test_create_stream_sends_the_event_sequence(client, model):
    events = list(client.responses.create(model=model, input="Say hello", stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created", types
    assert types[-1] == "response.completed", types
    for expected in [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]:
        assert expected in types, types
    order = [types.index(t) for t in [
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]]
    assert order == sorted(order), types
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), numbers
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == events[-1].response.output_text
    assert_usage(events[-1].response)


def test_a_function_tool_round_trip(client, model):
    question = {"role": "user", "content": "What's the weather in Paris?"}
    first = client.responses.create(model=model, input=[question], tools=TOOLS)
    calls = function_calls(first)
    assert_usage(first)
    replay = [question]
    for call in calls:
        replay.append(replayed(call))
        replay.append(
            {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 21}'}
        )
    second = client.responses.create(model=model, input=replay, tools=TOOLS, store=False)
    assert_text_response(second)


def test_json_schema_output(client, model):
    response = client.responses.create(
        model=model, input="The weather in Paris, as JSON", text={"format": SCHEMA_FORMAT}
    )
    assert [item.type for item in response.output] == ["message"], response
    parsed = json.loads(response.output_text)
    assert isinstance(parsed["city"], str)
    assert isinstance(parsed["temperature"], (int, float))
    assert_usage(response)


def test_a_codex_style_multi_turn_exchange(client, model):
    """Codex: `store: false`, the whole conversation replayed every turn
    (its own function calls and their outputs included), always streamed."""
    conversation = [
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What's the weather in Paris?"}]},
    ]

    def turn():
        with client.responses.stream(
            model=model,
            instructions="You are a coding agent.",
            input=conversation,
            tools=TOOLS,
            store=False,
        ) as stream:
            for event in stream:
                assert event.type != "error", event
            return stream.get_final_response()

    first = turn()
    calls = function_calls(first)
    for call in calls:
        conversation.append(replayed(call, with_id=False))
        conversation.append(
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}
        )
    second = turn()
    assert_text_response(second)
    conversation.append(
        {"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": second.output_text}]}
    )
    conversation.append(
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "And in Tokyo?"}]}
    )
    third = turn()
    function_calls(third)
    assert_usage(third)


def test_translated_custom_tool_round_trip(client, model):
    """A custom tool (Codex's `apply_patch`) on a translated deployment,
    where it is a function of one string: its calls come back as
    `custom_tool_call`s, streamed and whole, and its call and output go
    back as input. Validated strictly against the SDK's types. (Pass-through
    deployments send custom tools as they are: `-k 'not translated'`.)"""
    conversation = [
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Fix the typo in a.rs"}]},
    ]

    def turn():
        events = []
        with client.responses.stream(
            model=model, input=conversation, tools=CUSTOM_TOOLS, store=False
        ) as stream:
            for event in stream:
                strictly(ResponseStreamEvent, event)
                events.append(event)
            final = stream.get_final_response()
        strictly(Response, final)
        return events, final

    events, first = turn()
    calls = [item for item in first.output if item.type == "custom_tool_call"]
    assert len(calls) == 1, first
    call = calls[0]
    assert call.name == "apply_patch" and call.call_id and call.input, call
    streamed = "".join(
        e.delta for e in events if e.type == "response.custom_tool_call_input.delta"
    )
    assert streamed == call.input, events
    done = [e for e in events if e.type == "response.custom_tool_call_input.done"]
    assert [e.input for e in done] == [call.input], events

    whole = client.responses.create(
        model=model, input=conversation, tools=CUSTOM_TOOLS, store=False
    )
    strictly(Response, whole)
    assert [item.type for item in whole.output] == ["custom_tool_call"], whole
    assert whole.output[0].input == call.input

    conversation.append(
        {"type": "custom_tool_call", "call_id": call.call_id, "name": call.name,
         "input": call.input}
    )
    conversation.append(
        {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Done."}
    )
    _, second = turn()
    assert_text_response(second)


def test_translated_codex_tool_declarations(client, model):
    """What Codex declares on a translated deployment: its function and
    custom tools (some in namespaces, some in an `additional_tools` input
    item) are offered, built-in tools a chat upstream cannot run are left
    out, and a call of a namespaced tool names its namespace. The upstream
    is made to call `lookup`, the first function offered."""
    tools = [
        {"type": "namespace", "name": "crm", "description": "The CRM.", "tools": [
            {"type": "function", "name": "lookup", "description": "Finds a customer.",
             "parameters": {"type": "object", "properties": {"name": {"type": "string"}},
                            "required": ["name"], "additionalProperties": False},
             "strict": True, "defer_loading": True}]},
        *TOOLS,
        {"type": "web_search", "external_web_access": False},
        {"type": "image_generation"},
        {"type": "local_shell"},
    ]
    conversation = [
        {"type": "additional_tools", "role": "developer", "tools": [
            {"type": "namespace", "name": "functions", "description": "Code mode.",
             "tools": [{"type": "custom", "name": "exec", "description": "Runs JavaScript."}]}]},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Who is Ada?"}]},
    ]
    with client.responses.stream(
        model=model, input=conversation, tools=tools, store=False
    ) as stream:
        for event in stream:
            strictly(ResponseStreamEvent, event)
        streamed = stream.get_final_response()
    whole = client.responses.create(model=model, input=conversation, tools=tools, store=False)
    for response in (streamed, whole):
        strictly(Response, response)
        calls = [item for item in response.output if item.type == "function_call"]
        assert [(c.name, c.namespace) for c in calls] == [("lookup", "crm")], response
    call = whole.output[0]
    conversation.append(
        {"type": "function_call", "call_id": call.call_id, "name": call.name,
         "namespace": call.namespace, "arguments": call.arguments}
    )
    conversation.append(
        {"type": "function_call_output", "call_id": call.call_id, "output": "Ada Lovelace"}
    )
    assert_text_response(
        client.responses.create(model=model, input=conversation, tools=tools, store=False)
    )


def test_compact_returns_a_compaction(client, model):
    """Codex's remote compaction (`POST /v1/responses/compact`), run only
    where SLUICE_TEST_COMPACT is set (a deployment serving the Responses
    API: nothing else can make one)."""
    env("SLUICE_TEST_COMPACT")
    from openai.types.responses import ResponseCompactionItem, ResponseUsage

    conversation = [
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Fix the typo in a.rs"}]},
        {"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": "Fixed."}]},
    ]
    compacted = client.responses.compact(model=model, input=conversation)
    assert compacted.object == "response.compaction", compacted
    assert compacted.output[-1].type == "compaction", compacted
    strictly(ResponseCompactionItem, compacted.output[-1])
    strictly(ResponseUsage, compacted.usage)
    assert compacted.output[-1].encrypted_content
    # The compaction goes back as input, as Codex sends it next turn.
    follow = client.responses.create(
        model=model,
        input=[compacted.output[-1].model_dump(exclude_none=True),
               {"type": "message", "role": "user", "content": "Go on."}],
    )
    assert follow.status == "completed", follow


# The SDK builds its results without validating them: these two validate
# them against its types, strictly (`-k strict` selects them).


def test_strict_response_types(client, model):
    strictly(Response, client.responses.create(model=model, input="Say hello"))
    strictly(Response, client.responses.create(model=model, input="Weather in Paris?", tools=TOOLS))


def test_strict_stream_event_types(client, model):
    for event in client.responses.create(model=model, input="Say hello", stream=True):
        strictly(ResponseStreamEvent, event)
