"""Sluice's data plane through the official OpenAI Python SDK.

Run by `the_official_openai_python_sdk_works_against_the_gateway` in
tests/tests/openai_api.rs, which starts etcd, the control plane, a data plane
and a mock upstream, creates the deployments and a key, and passes them here:

    SLUICE_TEST_BASE_URL            http://127.0.0.1:PORT/v1
    SLUICE_TEST_KEY                 a Sluice key allowed the models below
    SLUICE_TEST_MODEL               a chat model the key may use
    SLUICE_TEST_SLASHED_MODEL       a chat model the key may use, named `vendor/model`
    SLUICE_TEST_EMBEDDING_MODEL     an embedding model the key may use
    SLUICE_TEST_MODERATION_MODEL    a moderation model the key may use
    SLUICE_TEST_FLAGGED_WORD        a word the upstream's moderation flags as violence
    SLUICE_TEST_IMAGE_MODEL         an image model the key may use (a GPT image model: its answer reports usage)
    SLUICE_TEST_DENIED_MODEL        a deployed model the key may not use
    SLUICE_TEST_MISSING_MODEL       a model the key may use that nothing serves
    SLUICE_TEST_FAILING_MODEL       a model whose upstream answers 500
    SLUICE_TEST_RATE_LIMITED_MODEL  a model whose upstream answers 429
    SLUICE_TEST_EXPECTED_TEXT       the upstream's chat answer
    SLUICE_TEST_EXPECTED_STREAM     the upstream's streamed answer, joined
    SLUICE_TEST_EMBEDDING_DIMENSIONS  the length of the upstream's vectors

By hand: `python3 -m pytest -q tests/python/test_openai_sdk.py` with those set.
"""

import base64
import os

import openai
import pytest

MESSAGES = [{"role": "user", "content": "Say hello"}]


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set (run through `cargo test --test openai_api`)")
    return value


@pytest.fixture
def client():
    # max_retries=0: a 429 or 5xx must surface as-is, not be retried by the SDK.
    return openai.OpenAI(
        base_url=env("SLUICE_TEST_BASE_URL"),
        api_key=env("SLUICE_TEST_KEY"),
        max_retries=0,
        timeout=30,
    )


def test_chat_completion(client):
    completion = client.chat.completions.create(
        model=env("SLUICE_TEST_MODEL"), messages=MESSAGES
    )
    assert completion.choices[0].message.content == env("SLUICE_TEST_EXPECTED_TEXT")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens > 0


def test_streamed_chat_completion(client):
    stream = client.chat.completions.create(
        model=env("SLUICE_TEST_MODEL"), messages=MESSAGES, stream=True
    )
    pieces = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert len(pieces) > 1, "the answer came in chunks"
    assert "".join(pieces) == env("SLUICE_TEST_EXPECTED_STREAM")


def test_embeddings(client):
    # The SDK asks for base64 by default and decodes it.
    result = client.embeddings.create(
        model=env("SLUICE_TEST_EMBEDDING_MODEL"), input=["one", "two"]
    )
    assert len(result.data) == 2
    dimensions = int(env("SLUICE_TEST_EMBEDDING_DIMENSIONS"))
    assert all(len(item.embedding) == dimensions for item in result.data)
    assert result.usage.prompt_tokens > 0


def test_embeddings_as_floats(client):
    result = client.embeddings.create(
        model=env("SLUICE_TEST_EMBEDDING_MODEL"), input="one", encoding_format="float"
    )
    assert len(result.data[0].embedding) == int(env("SLUICE_TEST_EMBEDDING_DIMENSIONS"))


def test_moderations(client):
    word = env("SLUICE_TEST_FLAGGED_WORD")
    result = client.moderations.create(
        model=env("SLUICE_TEST_MODERATION_MODEL"),
        input=[f"I will {word} this process", "hello"],
    )
    assert [r.flagged for r in result.results] == [True, False]
    assert result.results[0].categories.violence is True


def test_image_generation(client):
    result = client.images.generate(model=env("SLUICE_TEST_IMAGE_MODEL"), prompt="a red fox", n=2)
    assert len(result.data) == 2
    assert base64.b64decode(result.data[0].b64_json).startswith(b"\x89PNG")
    assert result.usage.output_tokens > 0


def test_moderations_without_a_model_call_openais_default(client):
    # The SDK lets `model` out; OpenAI, and Sluice, then use
    # omni-moderation-latest, which the harness deploys under that name.
    result = client.moderations.create(input=f"I will {env('SLUICE_TEST_FLAGGED_WORD')} it")
    assert result.results[0].flagged is True


def test_models_list_shows_only_what_the_key_may_use(client):
    ids = {model.id for model in client.models.list()}
    assert env("SLUICE_TEST_MODEL") in ids
    assert env("SLUICE_TEST_EMBEDDING_MODEL") in ids
    assert env("SLUICE_TEST_DENIED_MODEL") not in ids


def test_models_retrieve(client):
    model = client.models.retrieve(env("SLUICE_TEST_MODEL"))
    assert model.id == env("SLUICE_TEST_MODEL")


def test_a_model_named_with_a_slash(client):
    # The SDK percent-encodes the name in the path: /models/vendor%2Fmodel.
    slashed = env("SLUICE_TEST_SLASHED_MODEL")
    assert client.models.retrieve(slashed).id == slashed
    assert slashed in {model.id for model in client.models.list()}
    completion = client.chat.completions.create(model=slashed, messages=MESSAGES)
    assert completion.choices[0].message.content == env("SLUICE_TEST_EXPECTED_TEXT")


def test_an_unknown_key_raises_authentication_error():
    client = openai.OpenAI(
        base_url=env("SLUICE_TEST_BASE_URL"),
        api_key="sk-this-key-was-never-issued-0123456789abcdef",
        max_retries=0,
    )
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model=env("SLUICE_TEST_MODEL"), messages=MESSAGES)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"


def test_a_denied_model_raises_permission_denied(client):
    denied = env("SLUICE_TEST_DENIED_MODEL")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model=denied, messages=MESSAGES)
    error = caught.value
    assert error.status_code == 403
    assert error.code == "model_access_denied"
    assert denied in error.message
    # The SDK keeps the `error` object as the body.
    assert env("SLUICE_TEST_MODEL") in error.body["available_models"]
    assert denied not in error.body["available_models"]


def test_a_model_nothing_serves_raises_not_found(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model=env("SLUICE_TEST_MISSING_MODEL"), messages=MESSAGES
        )
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"


def test_a_non_string_model_raises_bad_request(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=env("SLUICE_TEST_MODEL"), messages=MESSAGES, extra_body={"model": 42}
        )
    assert caught.value.status_code == 400
    assert caught.value.param == "model"


def test_an_upstream_500_raises_internal_server_error(client):
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model=env("SLUICE_TEST_FAILING_MODEL"), messages=MESSAGES
        )
    assert caught.value.status_code in (500, 502)


def test_an_upstream_429_raises_rate_limit_error(client):
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model=env("SLUICE_TEST_RATE_LIMITED_MODEL"), messages=MESSAGES
        )
    assert caught.value.status_code == 429
    # The upstream's advice on when to retry reaches the SDK, whose own
    # retries (max_retries > 0) wait that long.
    assert caught.value.response.headers["retry-after-ms"] == "2000"
    assert caught.value.response.headers["retry-after"] == "2"
