//! OpenAI's Responses API (`POST /v1/responses`) end to end: real etcd, the
//! real control plane and data plane, the mock OpenAI upstream (which serves
//! the Responses API itself, and chat completions) and the mock Anthropic.
//!
//! - Pass-through to `provider: openai`: the official SDK's calls (whole,
//!   streamed, a function tool round trip, JSON-schema output) reach the
//!   upstream byte for byte but `model`, and its answers come back as sent.
//! - Translation, for deployments that serve only chat completions and for
//!   Claude: the same SDK calls give results of the same shape; a
//!   Codex-style exchange (`store: false`, everything replayed, streamed)
//!   works; `previous_response_id` is refused as stateless.
//! - Access (403, nothing sent) and usage metering (`GetUsage`).

use std::time::Duration;

use serde_json::{Value, json};
use sluice_tests::admin_client::api;
use sluice_tests::admin_client::api::get_usage_request::Scope;
use sluice_tests::gateway::{Answer, Gateway, UPSTREAM_KEY, openai_deployment, strings};
use sluice_tests::mock_anthropic::{self, MockAnthropic, Reply};
use sluice_tests::mock_upstream;
use sluice_tests::mock_upstream::{
    CHAT_CONTENT, COMPLETION_TOKENS, MockUpstream, PROMPT_TOKENS, STREAM_PIECES,
};

const WAIT: Duration = Duration::from_secs(30);
const SDK_TESTS: &str = "test_openai_sdk_responses.py";
/// The pass-through group and the model its deployment names upstream:
/// distinct strings, so the one replaced by the other is found exactly.
const PASS_GROUP: &str = "gpt-pass-group";
const PASS_MODEL: &str = "gpt-4o-2024-08-06";

/// A deployment of `group` at `upstream` that serves only chat completions.
fn chat_only(upstream: &MockUpstream, group: &str) -> api::Deployment {
    api::Deployment {
        supported_endpoints: strings(&["/v1/chat/completions"]),
        ..openai_deployment(upstream, group, "gpt-4o-mini")
    }
}

fn claude(group: &str, mock: &MockAnthropic) -> api::Deployment {
    api::Deployment {
        model_name: group.into(),
        provider: "anthropic".into(),
        model: "claude-sonnet-4-5-20250929".into(),
        api_base: mock.url(),
        api_key: mock.key().into(),
        ..Default::default()
    }
}

/// The SDK tests' environment for `model`, answering `text`.
fn sdk_env(gw: &Gateway, key: &str, model: &str, text: &str) -> Vec<(String, String)> {
    vec![
        ("SLUICE_TEST_BASE_URL".into(), gw.url("/v1")),
        ("SLUICE_TEST_KEY".into(), key.into()),
        ("SLUICE_TEST_MODEL".into(), model.into()),
        ("SLUICE_TEST_EXPECTED_TEXT".into(), text.into()),
        ("SLUICE_TEST_EXPECTED_STREAM".into(), text.into()),
    ]
}

/// [`sdk_env`] running only the SDK tests whose names match `only` (pytest's `-k`).
fn only(mut env: Vec<(String, String)>, only: &str) -> Vec<(String, String)> {
    env.push(("PYTEST_ADDOPTS".into(), format!("-k '{only}'")));
    env
}

async fn post_responses(gw: &Gateway, key: &str, body: &Value) -> Answer {
    gw.post(key, "/v1/responses", body).await
}

fn weather_tool() -> Value {
    json!([{"type": "function", "name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

// ---------------------------------------------------------------------------
// Pass-through
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_sdk_reaches_an_openai_deployment_byte_for_byte_but_model() {
    let gw = Gateway::start(1).await;
    gw.deploy(openai_deployment(&gw.upstream, PASS_GROUP, PASS_MODEL))
        .await;
    let key = gw.key(None, &[PASS_GROUP]).await;
    gw.sync().await;

    let sent = tempfile::tempdir().unwrap();
    let mut env = sdk_env(&gw, &key, PASS_GROUP, CHAT_CONTENT);
    env[4].1 = STREAM_PIECES.concat();
    env.push((
        "SLUICE_TEST_SENT_DIR".into(),
        sent.path().display().to_string(),
    ));
    // Custom tools pass through as they are: that test is the translation's.
    // Compaction has a test of its own below.
    sluice_tests::pytest(SDK_TESTS, only(env, "not translated and not compact")).await;

    let mut files: Vec<_> = std::fs::read_dir(sent.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seen = gw.upstream.requests();
    // plain, stream helper, create(stream), 2 round trip, JSON, 3 Codex
    // turns, 3 strict
    assert_eq!(files.len(), 12, "{files:?}");
    assert_eq!(seen.len(), files.len(), "one upstream call per SDK call");
    let group = format!("\"{PASS_GROUP}\"");
    let upstream_model = format!("\"{PASS_MODEL}\"");
    for (file, received) in files.iter().zip(&seen) {
        let body = String::from_utf8(std::fs::read(file).unwrap()).unwrap();
        assert_eq!(body.matches(&group).count(), 1, "{body}");
        let want = body.replace(&group, &upstream_model);
        assert_eq!(
            String::from_utf8_lossy(&received.body),
            want,
            "{} reached the upstream changed",
            file.display()
        );
        assert_eq!(received.method, "POST");
        assert_eq!(received.path, "/v1/responses");
        assert_eq!(
            received.header("authorization"),
            Some(format!("Bearer {UPSTREAM_KEY}").as_str())
        );
        assert!(
            !received.headers.iter().any(|(_, v)| v.contains(&key)),
            "the client's key stays at the gateway"
        );
    }
    // What the SDK sent round-trips the upstream's own items.
    let round_trip = seen[4].json();
    assert_eq!(round_trip["store"], false);
    let kinds: Vec<&str> = round_trip["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap_or("message"))
        .collect();
    assert_eq!(kinds, ["message", "function_call", "function_call_output"]);
    assert_eq!(seen[5].json()["text"]["format"]["type"], "json_schema");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_and_errors_of_an_openai_deployment_come_back_as_sent() {
    let (gw, key) = Gateway::serving(PASS_GROUP, PASS_MODEL).await;
    let a = post_responses(
        &gw,
        &key,
        &json!({"model": PASS_GROUP, "input": "Say hello", "store": true}),
    )
    .await;
    a.assert_ok();
    let id = a.json["id"].as_str().unwrap();
    // The upstream's own object, as it stored it.
    assert_eq!(gw.upstream.stored_response(id), Some(a.json.clone()));
    assert_eq!(a.json["model"], PASS_MODEL);

    // A stateful chain is the upstream's business: a known id works, an
    // unknown one gets the upstream's own 400.
    let chained = post_responses(
        &gw,
        &key,
        &json!({"model": PASS_GROUP, "input": "More", "previous_response_id": id}),
    )
    .await;
    chained.assert_ok();
    let unknown = post_responses(
        &gw,
        &key,
        &json!({"model": PASS_GROUP, "input": "More", "previous_response_id": "resp_nope"}),
    )
    .await;
    let error = unknown.assert_error(400, "previous_response_not_found");
    assert_eq!(error["param"], "previous_response_id");
    assert_eq!(
        error["message"],
        "Previous response with id 'resp_nope' not found."
    );

    // A streamed answer: the upstream's events, as sent.
    let a = post_responses(
        &gw,
        &key,
        &json!({"model": PASS_GROUP, "input": "Say hello", "stream": true, "tools": weather_tool()}),
    )
    .await;
    a.assert_ok();
    let events = mock_anthropic::sse_events(&a.text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert!(!a.text.contains("[DONE]"), "{}", a.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_without_access_to_the_group_gets_403_and_nothing_is_sent() {
    let gw = Gateway::start(1).await;
    gw.deploy(openai_deployment(&gw.upstream, PASS_GROUP, PASS_MODEL))
        .await;
    gw.deploy(chat_only(&gw.upstream, "gpt-chat")).await;
    let key = gw.key(None, &["something-else"]).await;
    gw.sync().await;
    for group in [PASS_GROUP, "gpt-chat"] {
        for stream in [false, true] {
            let a = post_responses(
                &gw,
                &key,
                &json!({"model": group, "input": "Say hello", "stream": stream}),
            )
            .await;
            assert_eq!(a.status, 403, "{}", a.text);
            sluice_tests::gateway::assert_openai_error_shape(&a.json, &a.text);
        }
    }
    assert_eq!(gw.upstream.hits(), 0, "nothing reached the upstream");
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counted {
    requests: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl Counted {
    fn of(usage: &api::GetUsageResponse) -> Counted {
        let u = usage.usage.unwrap_or_default();
        Counted {
            requests: u.requests,
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_of_passed_through_responses_reaches_get_usage() {
    let (gw, key) = Gateway::serving(PASS_GROUP, PASS_MODEL).await;
    // Whole and streamed (usage in `response.completed`), each with its own
    // token counts (the mock's `mock_usage`, passed through).
    for (stream, input, output) in [(false, 5, 9), (true, 13, 17)] {
        let a = post_responses(
            &gw,
            &key,
            &json!({"model": PASS_GROUP, "input": "Say hello", "stream": stream,
                    "mock_usage": {"prompt_tokens": input, "completion_tokens": output}}),
        )
        .await;
        a.assert_ok();
        assert!(a.text.contains(&format!("\"input_tokens\":{input}")));
    }
    let want = Counted {
        requests: 2,
        prompt_tokens: 5 + 13,
        completion_tokens: 9 + 17,
    };
    let key_id = sluice_control_plane::secrets::sha256_hex(&key);
    gw.admin
        .usage_reaches(Scope::KeyId(key_id), &want, Counted::of, WAIT)
        .await;
    gw.admin
        .usage_reaches(
            Scope::ModelGroup(PASS_GROUP.into()),
            &want,
            Counted::of,
            WAIT,
        )
        .await;
}

// ---------------------------------------------------------------------------
// Translation
// ---------------------------------------------------------------------------

/// The same SDK calls as the pass-through's, against a deployment that
/// serves only chat completions (`supported_endpoints` without
/// `/v1/responses`, and `hosted_vllm/`): results of the same shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_sdk_gets_the_same_shapes_from_a_chat_only_deployment() {
    let gw = Gateway::start(1).await;
    gw.upstream.call_tools_and_follow_schemas();
    gw.deploy(chat_only(&gw.upstream, "gpt-chat")).await;
    // An OpenAI-compatible provider other than OpenAI: chat only by default.
    gw.deploy(api::Deployment {
        model_name: "vllm".into(),
        model: "hosted_vllm/llama-3.1-8b".into(),
        api_base: gw.upstream.url("/v1"),
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["gpt-chat", "vllm"]).await;
    gw.sync().await;
    for group in ["gpt-chat", "vllm"] {
        sluice_tests::pytest(
            SDK_TESTS,
            only(
                sdk_env(&gw, &key, group, CHAT_CONTENT),
                // Nothing but a Responses upstream compacts.
                "not strict and not compact",
            ),
        )
        .await;
    }
    let seen = gw.upstream.requests();
    assert!(
        seen.iter().all(|r| r.path_only() == "/v1/chat/completions"),
        "{:?}",
        seen.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    // The Codex exchange's second turn: its function call and output went
    // upstream as an assistant tool call and a tool message.
    let codex = seen
        .iter()
        .map(|r| r.json())
        .filter(|b| b["stream"] == true && b["tools"].is_array())
        .find(|b| {
            b["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"))
        })
        .expect("a Codex turn with a tool result went upstream");
    let messages = codex["messages"].as_array().unwrap();
    assert!(
        messages
            .iter()
            .any(|m| m["role"] == "assistant"
                && m["tool_calls"][0]["function"]["name"] == "get_weather"),
        "{codex}"
    );
    // Codex's custom `apply_patch` went upstream as a function of one
    // string, and its call and output came back as a tool call and result.
    let patched = seen
        .iter()
        .map(|r| r.json())
        .find(|b| {
            b["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"))
                && b["tools"][0]["function"]["name"] == "apply_patch"
        })
        .expect("the custom tool's second turn went upstream");
    let tool = &patched["tools"][0]["function"];
    assert_eq!(tool["parameters"]["required"], json!(["input"]), "{tool}");
    assert!(
        tool["description"]
            .as_str()
            .is_some_and(|d| d.contains("lark grammar")),
        "{tool}"
    );
    let call = &patched["messages"][1]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "apply_patch");
    assert!(
        call["arguments"]
            .as_str()
            .unwrap()
            .starts_with(r#"{"input":"#)
    );
    // Codex's declarations: namespaces flattened, the additional tools
    // offered after the request's, built-in tools left out.
    let declared = seen
        .iter()
        .map(|r| r.json())
        .find(|b| b["tools"][0]["function"]["name"] == "lookup")
        .expect("the Codex declarations went upstream");
    let names: Vec<&str> = declared["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lookup", "get_weather", "exec"], "{declared}");
}

/// A `provider: mock` deployment answers whole and streamed text in shape
/// (it calls no tools, so only the text tests run).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_sdk_gets_text_from_a_mock_provider_deployment() {
    let gw = Gateway::start(1).await;
    gw.deploy(api::Deployment {
        model_name: "mock".into(),
        provider: "mock".into(),
        model: "mock/anything".into(),
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["mock"]).await;
    gw.sync().await;
    let mut env = sdk_env(&gw, &key, "mock", "");
    env.retain(|(k, _)| !k.starts_with("SLUICE_TEST_EXPECTED"));
    sluice_tests::pytest(
        SDK_TESTS,
        only(
            env,
            "test_create or test_stream_helper or test_create_stream",
        ),
    )
    .await;
}

/// The same SDK calls against Claude: results of the same shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_sdk_gets_the_same_shapes_from_claude() {
    let gw = Gateway::start(1).await;
    let m = MockAnthropic::start().await.unwrap();
    gw.deploy(claude("claude", &m)).await;
    let key = gw.key(None, &["claude"]).await;
    gw.sync().await;
    let env = || sdk_env(&gw, &key, "claude", mock_anthropic::TEXT);
    let weather = || vec![("get_weather".to_string(), json!({"city": "Paris"}))];

    sluice_tests::pytest(
        SDK_TESTS,
        only(
            env(),
            "test_create or test_stream_helper or test_create_stream",
        ),
    )
    .await;
    m.reply_next(Reply::ToolUse(weather()));
    sluice_tests::pytest(SDK_TESTS, only(env(), "test_a_function_tool_round_trip")).await;
    m.reply_next(Reply::Text(
        json!({"city": "Paris", "temperature": 21.5}).to_string(),
    ));
    sluice_tests::pytest(SDK_TESTS, only(env(), "test_json_schema_output")).await;
    m.reply_next(Reply::ToolUse(weather()));
    m.reply_next(Reply::Text(mock_anthropic::TEXT.into()));
    m.reply_next(Reply::ToolUse(weather()));
    sluice_tests::pytest(SDK_TESTS, only(env(), "test_a_codex_style")).await;
    // Codex's `apply_patch`, streamed, whole, then answered.
    let patch = || {
        let input = "*** Begin Patch\n*** Update File: a.rs\n-teh\n+the\n*** End Patch";
        vec![("apply_patch".to_string(), json!({ "input": input }))]
    };
    m.reply_next(Reply::ToolUse(patch()));
    m.reply_next(Reply::ToolUse(patch()));
    m.reply_next(Reply::Text(mock_anthropic::TEXT.into()));
    sluice_tests::pytest(SDK_TESTS, only(env(), "test_translated_custom_tool")).await;
    // Codex's declarations: `lookup` (in the `crm` namespace) called
    // streamed and whole, then answered.
    let lookup = || vec![("lookup".to_string(), json!({"name": "Ada"}))];
    m.reply_next(Reply::ToolUse(lookup()));
    m.reply_next(Reply::ToolUse(lookup()));
    m.reply_next(Reply::Text(mock_anthropic::TEXT.into()));
    sluice_tests::pytest(SDK_TESTS, only(env(), "test_translated_codex_tool")).await;
    // Every request was a valid Messages request (the mock refuses others).
    assert!(m.requests().iter().all(|r| r.path_only() == "/v1/messages"));
}

/// Codex's remote compaction, `POST /v1/responses/compact`: the official
/// SDK's `responses.compact` reaches a deployment serving the Responses API
/// and is metered; a group with a chat-only deployment beside one sends it
/// to that one; a group that cannot make a compaction refuses it by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remote_compaction_reaches_a_responses_upstream_and_is_metered() {
    let gw = Gateway::start(1).await;
    gw.deploy(openai_deployment(&gw.upstream, PASS_GROUP, PASS_MODEL))
        .await;
    gw.deploy(chat_only(&gw.upstream, "gpt-chat")).await;
    gw.deploy(api::Deployment {
        id: "mixed-chat".into(),
        ..chat_only(&gw.upstream, "mixed")
    })
    .await;
    gw.deploy(api::Deployment {
        id: "mixed-responses".into(),
        ..openai_deployment(&gw.upstream, "mixed", PASS_MODEL)
    })
    .await;
    let key = gw.key(None, &[PASS_GROUP, "gpt-chat", "mixed"]).await;
    gw.sync().await;

    let mut env = sdk_env(&gw, &key, PASS_GROUP, CHAT_CONTENT);
    env.push(("SLUICE_TEST_COMPACT".into(), "1".into()));
    sluice_tests::pytest(SDK_TESTS, only(env, "test_compact")).await;
    let compacted = gw
        .upstream
        .requests()
        .into_iter()
        .find(|r| r.path_only() == "/v1/responses/compact")
        .expect("the compaction reached the upstream");
    assert_eq!(compacted.json()["model"], PASS_MODEL);

    let body = json!({"model": "mixed", "input": [{"role": "user", "content": "Summarise."}]});
    for _ in 0..6 {
        let a = gw.post(&key, "/v1/responses/compact", &body).await;
        a.assert_ok();
        assert_eq!(a.json["object"], "response.compaction", "{}", a.text);
        assert_eq!(
            gw.upstream.last_request().unwrap().path_only(),
            "/v1/responses/compact"
        );
    }
    let want = Counted {
        requests: 6,
        prompt_tokens: 6 * PROMPT_TOKENS,
        completion_tokens: 6 * COMPLETION_TOKENS,
    };
    gw.admin
        .usage_reaches(Scope::ModelGroup("mixed".into()), &want, Counted::of, WAIT)
        .await;
    // The next turn, carrying the compaction, goes where it can be read,
    // never to the group's chat-only deployment.
    let next = json!({"model": "mixed", "input": [
        {"type": "compaction", "id": "cmp_mock_1", "encrypted_content": mock_upstream::COMPACTION},
        {"role": "user", "content": "Go on."}
    ]});
    for _ in 0..6 {
        let a = post_responses(&gw, &key, &next).await;
        a.assert_ok();
        assert_eq!(
            gw.upstream.last_request().unwrap().path_only(),
            "/v1/responses"
        );
    }

    let body = json!({"model": "gpt-chat", "input": "Summarise."});
    let a = gw.post(&key, "/v1/responses/compact", &body).await;
    assert_eq!(a.status, 400, "{}", a.text);
    sluice_tests::gateway::assert_openai_error_shape(&a.json, &a.text);
    let message = a.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("/responses/compact"), "{message}");
}

/// A gateway with a chat-only deployment (`gpt-chat`) and Claude
/// (`claude`), and a key for both.
async fn chat_only_and_claude() -> (Gateway, MockAnthropic, String) {
    let gw = Gateway::start(1).await;
    let m = MockAnthropic::start().await.unwrap();
    gw.deploy(chat_only(&gw.upstream, "gpt-chat")).await;
    gw.deploy(claude("claude", &m)).await;
    let key = gw.key(None, &["gpt-chat", "claude"]).await;
    gw.sync().await;
    (gw, m, key)
}

/// A function output's image (Codex's `view_image`): to a chat upstream in
/// a user message after the tool message, to Claude inside the tool result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_function_outputs_image_goes_where_each_upstream_reads_images() {
    let (gw, m, key) = chat_only_and_claude().await;
    let png = "data:image/png;base64,iVBORw0KGgo=";
    let body = |group: &str| {
        json!({"model": group, "store": false, "input": [
            {"role": "user", "content": "What is in the screenshot?"},
            {"type": "function_call", "call_id": "call_1", "name": "view_image", "arguments": "{\"path\":\"s.png\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": [
                {"type": "input_image", "image_url": png}]}
        ], "tools": [{"type": "function", "name": "view_image", "parameters": {"type": "object"}}]})
    };
    for group in ["gpt-chat", "claude"] {
        let a = post_responses(&gw, &key, &body(group)).await;
        assert_eq!(a.status, 200, "{group}: {}", a.text);
    }
    let chat = gw.upstream.last_request().unwrap().json();
    let messages = chat["messages"].as_array().unwrap();
    assert_eq!(messages[2]["role"], "tool", "{chat}");
    assert_eq!(messages[2]["content"], "(an image: in the next message)");
    assert_eq!(messages[3]["role"], "user", "{chat}");
    assert_eq!(messages[3]["content"][1]["image_url"]["url"], png, "{chat}");
    let sent = m.last_request().unwrap().json();
    let result = &sent["messages"][2]["content"][0];
    assert_eq!(result["type"], "tool_result", "{sent}");
    assert_eq!(result["content"][0]["type"], "image", "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn previous_response_id_on_a_translated_deployment_is_refused_as_stateless() {
    let (gw, m, key) = chat_only_and_claude().await;
    for group in ["gpt-chat", "claude"] {
        for stream in [false, true] {
            let a = post_responses(
                &gw,
                &key,
                &json!({"model": group, "input": "More", "stream": stream,
                        "previous_response_id": "resp_abc123"}),
            )
            .await;
            assert_eq!(a.status, 400, "{group}: {}", a.text);
            sluice_tests::gateway::assert_openai_error_shape(&a.json, &a.text);
            let error = &a.json["error"];
            assert_eq!(error["type"], "invalid_request_error", "{}", a.text);
            assert_eq!(error["param"], "previous_response_id", "{}", a.text);
            assert!(
                error["message"].as_str().unwrap().contains("stateless"),
                "{}",
                a.text
            );
        }
    }
    assert_eq!((gw.upstream.hits(), m.hits()), (0, 0), "nothing was sent");
}

/// A translated usage: the chat answer's tokens, as the Responses answer's
/// and `GetUsage`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_translated_answer_reports_the_upstreams_usage() {
    let gw = Gateway::start(1).await;
    gw.deploy(chat_only(&gw.upstream, "gpt-chat")).await;
    let key = gw.key(None, &["gpt-chat"]).await;
    gw.sync().await;
    let a = post_responses(
        &gw,
        &key,
        &json!({"model": "gpt-chat", "input": "Say hello", "store": false}),
    )
    .await;
    a.assert_ok();
    assert_eq!(
        gw.upstream.last_request().unwrap().path,
        "/v1/chat/completions"
    );
    assert_eq!(a.json["object"], "response", "{}", a.text);
    assert_eq!(
        a.json["output_text"],
        Value::Null,
        "a property of the SDK's"
    );
    assert_eq!(a.json["output"][0]["content"][0]["text"], CHAT_CONTENT);
    assert_eq!(a.json["usage"]["input_tokens"], PROMPT_TOKENS);
    assert_eq!(a.json["usage"]["output_tokens"], COMPLETION_TOKENS);
    let want = Counted {
        requests: 1,
        prompt_tokens: PROMPT_TOKENS,
        completion_tokens: COMPLETION_TOKENS,
    };
    gw.admin
        .usage_reaches(
            Scope::ModelGroup("gpt-chat".into()),
            &want,
            Counted::of,
            WAIT,
        )
        .await;
}

/// Translated answers and events validate against the SDK's own types
/// (`openai` 3.57's `ResponseUsage` requires
/// `input_tokens_details.cache_write_tokens`), as passed-through ones do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn translated_answers_validate_strictly_against_the_sdks_types() {
    let gw = Gateway::start(1).await;
    gw.upstream.call_tools_and_follow_schemas();
    let m = MockAnthropic::start().await.unwrap();
    gw.deploy(chat_only(&gw.upstream, "gpt-chat")).await;
    gw.deploy(claude("claude", &m)).await;
    let key = gw.key(None, &["gpt-chat", "claude"]).await;
    gw.sync().await;
    sluice_tests::pytest(
        SDK_TESTS,
        only(sdk_env(&gw, &key, "gpt-chat", CHAT_CONTENT), "strict"),
    )
    .await;
    m.reply_next(Reply::Text(mock_anthropic::TEXT.into()));
    m.reply_next(Reply::ToolUse(vec![(
        "get_weather".into(),
        json!({"city": "Paris"}),
    )]));
    sluice_tests::pytest(
        SDK_TESTS,
        only(sdk_env(&gw, &key, "claude", mock_anthropic::TEXT), "strict"),
    )
    .await;
}
