//! Anthropic both ways (issue 19, DESIGN §4), end to end: real etcd, the
//! real control plane and data plane, mock Anthropic upstreams
//! ([`MockAnthropic`]) and the mock OpenAI upstream.
//!
//! - Claude behind the OpenAI API: the official `openai` SDK against
//!   `provider: anthropic` deployments (chat, streams, parallel tool calls,
//!   a 529 retried, a too-long prompt falling back, a key refused), and what
//!   the mock received: a valid Messages request, nothing injected.
//! - `/v1/messages` for Anthropic-native clients: the official `anthropic`
//!   SDK against a Claude and an OpenAI-compatible deployment, pass-through
//!   byte for byte except `model`, errors in Anthropic's envelope,
//!   `/v1/models` in Anthropic's shape.
//! - Usage from Anthropic answers (cache tokens once) reaching `GetUsage`.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_tests::admin_client::api;
use sluice_tests::admin_client::api::get_usage_request::Scope;
use sluice_tests::gateway::{Answer, Gateway, UPSTREAM_KEY, strings};
use sluice_tests::mock_anthropic::{Fault, MockAnthropic, Reply, TEXT, USAGE, Usage, sse_events};
use sluice_tests::mock_upstream;

const WAIT: Duration = Duration::from_secs(30);
/// The upstream model every Claude deployment here names.
const CLAUDE_MODEL: &str = "claude-sonnet-4-5-20250929";

/// Deployment `id` of `group`: `provider: anthropic` at `mock`.
fn claude(id: &str, group: &str, mock: &MockAnthropic) -> api::Deployment {
    api::Deployment {
        id: id.into(),
        model_name: group.into(),
        provider: "anthropic".into(),
        model: CLAUDE_MODEL.into(),
        api_base: mock.url(),
        api_key: mock.key().into(),
        ..Default::default()
    }
}

/// Like [`claude`], the provider named LiteLLM-style in `model`.
fn claude_prefixed(id: &str, group: &str, mock: &MockAnthropic) -> api::Deployment {
    api::Deployment {
        provider: String::new(),
        model: format!("anthropic/{CLAUDE_MODEL}"),
        ..claude(id, group, mock)
    }
}

fn fallback(group: &str, to: &[&str]) -> api::Fallback {
    api::Fallback {
        model_group: group.into(),
        fallbacks: strings(to),
    }
}

async fn mocks(n: usize) -> Vec<MockAnthropic> {
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(MockAnthropic::start().await.unwrap());
    }
    all
}

fn weather(city: &str) -> (String, Value) {
    ("get_weather".into(), json!({"city": city}))
}

fn usage_env(u: Usage) -> String {
    format!(
        "{},{},{},{}",
        u.input_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens, u.output_tokens
    )
}

/// The text of a message's `content`, whether a string or text blocks.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect(),
        _ => String::new(),
    }
}

/// `body` sent to `path` of data plane 0 with these headers (raw bytes).
/// A chat completion stream's text and its usage chunk's `usage` (null when
/// it has none), after checking it ends as OpenAI's do.
fn chat_stream(stream: &str) -> (String, Value) {
    assert!(stream.trim_end().ends_with("data: [DONE]"), "{stream}");
    let chunks = sse_events(stream);
    let content = chunks
        .iter()
        .filter_map(|(_, c)| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    let usage = chunks
        .iter()
        .rev()
        .find(|(_, c)| !c["usage"].is_null())
        .map(|(_, c)| c["usage"].clone())
        .unwrap_or(Value::Null);
    (content, usage)
}

async fn send(gw: &Gateway, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut r = gw.http.post(gw.url(path)).body(body.to_string());
    for (n, v) in headers {
        r = r.header(*n, *v);
    }
    Answer::read(r.send().await.expect("data plane answers")).await
}

/// An Anthropic client's headers, with a Sluice key in `x-api-key`.
fn anthropic_headers(key: &str) -> Vec<(&str, &str)> {
    vec![
        ("x-api-key", key),
        ("anthropic-version", "2023-06-01"),
        ("content-type", "application/json"),
    ]
}

fn openai_headers(key: &str) -> Vec<(String, String)> {
    vec![
        ("authorization".into(), format!("Bearer {key}")),
        ("content-type".into(), "application/json".into()),
    ]
}

async fn chat(gw: &Gateway, key: &str, body: &Value) -> Answer {
    gw.post(key, "/v1/chat/completions", body).await
}

/// `msg_mock_000123` and `toolu_mock_123_0` ids (numbered per request by
/// each mock) replaced by fixed ones, to compare two answers.
fn normalize_ids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["msg_mock_", "toolu_mock_", "req_mock_"]
        .iter()
        .filter_map(|p| rest.find(p).map(|i| (i, *p)))
        .min()
    {
        let (i, prefix) = at;
        out.push_str(&rest[..i]);
        out.push_str(prefix);
        out.push('N');
        rest = &rest[i + prefix.len()..];
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '_')
            .unwrap_or(rest.len());
        // Keep a tool call's index (`_0`, `_1`): the last `_n` group.
        let id = &rest[..digits];
        if let Some(index) = id.rfind('_').filter(|_| prefix == "toolu_mock_") {
            out.push_str(&id[index..]);
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------
// Claude behind the OpenAI API
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_openai_sdk_talks_to_claude_behind_the_openai_api() {
    let gw = Gateway::start(1).await;
    let m = mocks(7).await;
    let [text, tools, overloaded, second, small, big, secret] = &m[..] else {
        unreachable!()
    };
    let usage = Usage {
        input_tokens: 3,
        output_tokens: 12,
        cache_creation_input_tokens: 1000,
        cache_read_input_tokens: 500,
    };
    text.usage(usage);
    tools.reply(Reply::ToolUse(vec![weather("Paris"), weather("Tokyo")]));
    overloaded.fail(Fault::Overloaded);
    second.reply(Reply::Text("Hello from the second deployment.".into()));
    small.fail(Fault::PromptTooLong);
    big.reply(Reply::Text("Hello from the larger context.".into()));

    gw.deploy(claude("claude-text", "claude", text)).await;
    gw.deploy(claude_prefixed("claude-tools", "claude-tools", tools))
        .await;
    gw.deploy(api::Deployment {
        order: 1,
        ..claude("claude-first", "claude-retry", overloaded)
    })
    .await;
    gw.deploy(api::Deployment {
        order: 2,
        ..claude("claude-second", "claude-retry", second)
    })
    .await;
    gw.deploy(claude("claude-small", "claude-small", small))
        .await;
    gw.deploy(claude("claude-big", "claude-big", big)).await;
    gw.deploy(claude("claude-secret", "claude-secret", secret))
        .await;
    gw.set_router(api::RouterSettings {
        context_window_fallbacks: vec![fallback("claude-small", &["claude-big"])],
        ..Default::default()
    })
    .await;
    let key = gw
        .key(
            None,
            &[
                "claude",
                "claude-tools",
                "claude-retry",
                "claude-small",
                "claude-big",
            ],
        )
        .await;
    gw.sync().await;

    sluice_tests::pytest(
        "test_openai_sdk_anthropic.py",
        [
            ("SLUICE_TEST_BASE_URL", gw.url("/v1")),
            ("SLUICE_TEST_KEY", key.clone()),
            ("SLUICE_TEST_MODEL", "claude".into()),
            ("SLUICE_TEST_TOOLS_MODEL", "claude-tools".into()),
            ("SLUICE_TEST_RETRY_MODEL", "claude-retry".into()),
            ("SLUICE_TEST_SMALL_MODEL", "claude-small".into()),
            ("SLUICE_TEST_DENIED_MODEL", "claude-secret".into()),
            ("SLUICE_TEST_EXPECTED_TEXT", TEXT.into()),
            (
                "SLUICE_TEST_SECOND_TEXT",
                "Hello from the second deployment.".into(),
            ),
            (
                "SLUICE_TEST_BIG_TEXT",
                "Hello from the larger context.".into(),
            ),
            ("SLUICE_TEST_USAGE", usage_env(usage)),
        ],
    )
    .await;

    // What the Claude mock received: valid Messages requests (it refuses
    // anything else), with Anthropic's headers and the provider key.
    let seen = text.requests();
    for r in &seen {
        assert_eq!(r.path_only(), "/v1/messages");
        assert_eq!(r.header("x-api-key"), Some(text.key()));
        assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
        assert!(
            !r.headers.iter().any(|(_, v)| v.contains(&key)),
            "the Sluice key is not sent upstream: {:?}",
            r.headers
        );
        assert_eq!(r.json()["model"], CLAUDE_MODEL);
    }
    let chat = seen
        .iter()
        .map(|r| r.json())
        .find(|b| b.get("system").is_some())
        .expect("the chat request with a system message");
    assert_eq!(text_of(&chat["system"]), "You are terse.", "{chat}");
    assert_eq!(chat["messages"].as_array().unwrap().len(), 1, "{chat}");
    assert_eq!(chat["messages"][0]["role"], "user");
    assert_eq!(text_of(&chat["messages"][0]["content"]), "Say hello");
    assert_eq!(chat["max_tokens"], 4096, "the documented default: {chat}");
    assert_eq!(chat["stop_sequences"], json!(["END"]), "{chat}");
    for injected in ["temperature", "top_p", "top_k", "thinking", "tools"] {
        assert!(chat.get(injected).is_none(), "{injected} injected: {chat}");
    }
    assert_ne!(chat["stream"], json!(true), "{chat}");
    let stream = seen
        .iter()
        .map(|r| r.json())
        .find(|b| b["max_tokens"] == 100)
        .expect("the streamed request");
    assert_eq!(stream["stream"], true, "{stream}");
    assert_eq!(stream["temperature"], 0.2, "{stream}");
    // The tool round trips: tool_use blocks in the assistant turn and one
    // tool_result block per tool message, answering them by id.
    let follow_ups: Vec<Value> = seen
        .iter()
        .map(|r| r.json())
        .filter(|b| b["messages"].as_array().is_some_and(|m| m.len() == 3))
        .collect();
    assert_eq!(follow_ups.len(), 2, "whole and streamed: {follow_ups:?}");
    for body in &follow_ups {
        let uses = body["messages"][1]["content"].as_array().unwrap();
        let uses: Vec<&Value> = uses.iter().filter(|b| b["type"] == "tool_use").collect();
        assert_eq!(uses.len(), 2, "{body}");
        assert_eq!(uses[0]["input"], json!({"city": "Paris"}), "{body}");
        assert_eq!(uses[1]["input"], json!({"city": "Tokyo"}), "{body}");
        let results = body["messages"][2]["content"].as_array().unwrap();
        assert_eq!(results.len(), 2, "{body}");
        for (result, used) in results.iter().zip(&uses) {
            assert_eq!(result["type"], "tool_result", "{body}");
            assert_eq!(result["tool_use_id"], used["id"], "{body}");
        }
        assert_eq!(text_of(&results[0]["content"]), "sunny in Paris", "{body}");
        assert_eq!(body["tools"][0]["name"], "get_weather", "{body}");
    }
    let asked = tools.requests();
    assert_eq!(asked.len(), 2);
    let first = asked[0].json();
    assert_eq!(
        first["tool_choice"],
        json!({"type": "any"}),
        "required → any"
    );
    assert_eq!(first["tools"][0]["name"], "get_weather");
    assert_eq!(
        first["tools"][0]["input_schema"]["required"],
        json!(["city"]),
        "{first}"
    );
    let streamed = asked[1].json();
    assert_eq!(streamed["stream"], true);
    assert_ne!(
        streamed["tool_choice"]["disable_parallel_tool_use"],
        json!(true),
        "parallel_tool_calls: true keeps them parallel: {streamed}"
    );
    // Retried once onto the second; fell back once onto the big one.
    assert_eq!((overloaded.hits(), second.hits()), (1, 1));
    assert_eq!((small.hits(), big.hits()), (1, 1));
    assert_eq!(secret.hits(), 0, "refused before any upstream call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claudes_answers_map_to_openais_stop_reasons_thinking_and_errors() {
    let gw = Gateway::start(1).await;
    let m = mocks(2).await;
    let [claude_mock, versioned] = &m[..] else {
        unreachable!()
    };
    gw.deploy(claude("c", "claude", claude_mock)).await;
    gw.deploy(api::Deployment {
        api_version: "2024-10-22".into(),
        ..claude("v", "claude-versioned", versioned)
    })
    .await;
    gw.set_router(api::RouterSettings {
        num_retries: Some(0),
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["*"]).await;
    gw.sync().await;
    let hello = json!({"model": "claude", "messages": [{"role": "user", "content": "Say hello"}]});

    // Every stop reason, and one Anthropic may add tomorrow.
    for (reply, finish) in [
        (Reply::StopReason("end_turn".into()), json!("stop")),
        (Reply::StopReason("stop_sequence".into()), json!("stop")),
        (Reply::StopReason("max_tokens".into()), json!("length")),
        (
            Reply::StopReason("model_context_window_exceeded".into()),
            json!("length"),
        ),
        (Reply::ToolUse(vec![weather("Paris")]), json!("tool_calls")),
        (Reply::Refusal, json!("content_filter")),
        (
            Reply::StopReason("a_reason_from_the_future".into()),
            json!("a_reason_from_the_future"),
        ),
    ] {
        claude_mock.reply(reply.clone());
        let a = chat(&gw, &key, &hello).await;
        a.assert_ok();
        assert_eq!(
            a.json["choices"][0]["finish_reason"], finish,
            "{reply:?}: {}",
            a.text
        );
    }
    claude_mock.reply(Reply::StopReason("pause_turn".into()));
    let a = chat(&gw, &key, &hello).await;
    a.assert_ok();
    assert!(
        a.json["choices"][0]["finish_reason"].is_string(),
        "pause_turn maps to something documented: {}",
        a.text
    );

    // Thinking → reasoning_content, its signature kept and sent back.
    let signature = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds==";
    claude_mock.reply(Reply::ThinkingThenText {
        thinking: "The user wants a greeting.".into(),
        signature: signature.into(),
        text: "Hello!".into(),
    });
    let mut body = hello.clone();
    body["reasoning_effort"] = json!("low");
    let a = chat(&gw, &key, &body).await;
    a.assert_ok();
    let message = &a.json["choices"][0]["message"];
    assert_eq!(message["content"], "Hello!", "{}", a.text);
    assert_eq!(message["reasoning_content"], "The user wants a greeting.");
    let sent = claude_mock.last_request().unwrap().json();
    assert_eq!(sent["thinking"]["type"], "enabled", "{sent}");
    assert_eq!(
        sent["thinking"]["budget_tokens"], 1024,
        "low → 1024: {sent}"
    );
    assert!(sent.get("reasoning_effort").is_none(), "{sent}");
    // Next turn: the assistant message as the client got it goes back.
    let mut next = hello.clone();
    next["messages"] = json!([
        {"role": "user", "content": "Say hello"},
        message,
        {"role": "user", "content": "Again"},
    ]);
    next["reasoning_effort"] = json!("low");
    chat(&gw, &key, &next).await.assert_ok();
    let sent = claude_mock.last_request().unwrap().json();
    let thinking = &sent["messages"][1]["content"][0];
    assert_eq!(thinking["type"], "thinking", "{sent}");
    assert_eq!(thinking["signature"], signature, "signature intact: {sent}");
    // Streamed thinking: reasoning deltas before the text.
    let mut body = hello.clone();
    body["stream"] = json!(true);
    let a = chat(&gw, &key, &body).await;
    a.assert_ok();
    let chunks: Vec<Value> = sse_events(&a.text).into_iter().map(|(_, d)| d).collect();
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(reasoning, "The user wants a greeting.", "{}", a.text);
    assert_eq!(content, "Hello!", "{}", a.text);

    // An error event mid-stream: the text so far, then OpenAI's error event.
    claude_mock.reply(Reply::Text(TEXT.into()));
    claude_mock.fail_next(Fault::MidStreamError);
    let a = chat(&gw, &key, &body).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let events: Vec<Value> = sse_events(&a.text).into_iter().map(|(_, d)| d).collect();
    let error = events
        .iter()
        .find(|e| e.get("error").is_some())
        .unwrap_or_else(|| panic!("an error event: {}", a.text));
    assert_eq!(error["error"]["code"], "stream_interrupted", "{}", a.text);
    assert!(
        a.text.contains("Hello"),
        "the first text arrived: {}",
        a.text
    );

    // The deployment's api_version, and the client's anthropic-beta.
    let mut headers = openai_headers(&key);
    headers.push(("anthropic-beta".into(), "prompt-caching-2024-07-31".into()));
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mut body = hello.clone();
    body["model"] = json!("claude-versioned");
    let a = send(&gw, "/v1/chat/completions", &headers, &body.to_string()).await;
    a.assert_ok();
    let seen = versioned.last_request().unwrap();
    assert_eq!(seen.header("anthropic-version"), Some("2024-10-22"));
    assert_eq!(
        seen.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chat_requests_become_valid_messages_requests_and_streams_keep_every_tool_call() {
    let gw = Gateway::start(1).await;
    let claude_mock = MockAnthropic::start().await.unwrap();
    gw.deploy(claude("c", "claude", &claude_mock)).await;
    let key = gw.key(None, &["claude"]).await;
    gw.sync().await;
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let tool = json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}});
    let body = json!({
        "model": "claude",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}},
            ]},
            {"role": "user", "content": "And the weather?"},
        ],
        "max_completion_tokens": 321,
        "stop": "END",
        "tools": [tool],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": false,
    });
    let a = chat(&gw, &key, &body).await;
    a.assert_ok();
    let sent = claude_mock.last_request().unwrap().json();
    assert_eq!(
        sent["max_tokens"], 321,
        "max_completion_tokens honoured: {sent}"
    );
    assert_eq!(sent["stop_sequences"], json!(["END"]), "{sent}");
    assert_eq!(text_of(&sent["system"]), "Be brief.");
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "consecutive user turns merged: {sent}");
    let blocks = messages[0]["content"].as_array().unwrap();
    let images: Vec<&Value> = blocks.iter().filter(|b| b["type"] == "image").collect();
    assert_eq!(images.len(), 2, "{sent}");
    assert_eq!(
        images[0]["source"],
        json!({"type": "url", "url": "https://example.com/cat.png"})
    );
    assert_eq!(images[1]["source"]["type"], "base64");
    assert_eq!(images[1]["source"]["media_type"], "image/png");
    assert_eq!(images[1]["source"]["data"], png);
    assert!(text_of(&messages[0]["content"]).contains("And the weather?"));
    assert_eq!(sent["tool_choice"]["type"], "tool", "{sent}");
    assert_eq!(sent["tool_choice"]["name"], "get_weather");
    assert_eq!(sent["tool_choice"]["disable_parallel_tool_use"], true);
    let mut none = body.clone();
    none["tool_choice"] = json!("none");
    none.as_object_mut().unwrap().remove("parallel_tool_calls");
    chat(&gw, &key, &none).await.assert_ok();
    let sent = claude_mock.last_request().unwrap().json();
    assert_eq!(sent["tool_choice"], json!({"type": "none"}), "{sent}");

    // A text block then two tool blocks, streamed: the text, and both calls
    // at indices 0 and 1 with every argument, equal to the whole answer.
    claude_mock.reply(Reply::TextThenToolUse {
        text: "Let me check.".into(),
        tools: vec![weather("Paris"), weather("Tokyo")],
    });
    let ask = json!({"model": "claude", "messages": [{"role": "user", "content": "Weather?"}], "tools": [tool]});
    let whole = chat(&gw, &key, &ask).await;
    whole.assert_ok();
    let message = &whole.json["choices"][0]["message"];
    assert_eq!(message["content"], "Let me check.", "{}", whole.text);
    let calls = message["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{}", whole.text);
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let a = chat(&gw, &key, &streamed).await;
    a.assert_ok();
    let (mut content, mut args, mut names, mut finish) = (
        String::new(),
        [String::new(), String::new()],
        [String::new(), String::new()],
        Value::Null,
    );
    let mut roles = 0;
    for (_, chunk) in sse_events(&a.text) {
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        let delta = &choice["delta"];
        roles += usize::from(delta.get("role").is_some_and(|r| !r.is_null()));
        content.push_str(delta["content"].as_str().unwrap_or_default());
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let i = call["index"].as_u64().expect("an index") as usize;
            assert!(i < 2, "{}", a.text);
            names[i].push_str(call["function"]["name"].as_str().unwrap_or_default());
            args[i].push_str(call["function"]["arguments"].as_str().unwrap_or_default());
        }
        if !choice["finish_reason"].is_null() {
            finish = choice["finish_reason"].clone();
        }
    }
    assert_eq!(roles, 1, "one role chunk: {}", a.text);
    assert_eq!(content, "Let me check.");
    assert_eq!(finish, "tool_calls");
    for (i, city) in ["Paris", "Tokyo"].iter().enumerate() {
        assert_eq!(names[i], "get_weather", "{}", a.text);
        let parsed: Value =
            serde_json::from_str(&args[i]).unwrap_or_else(|e| panic!("{e}: {}", a.text));
        assert_eq!(parsed, json!({"city": city}));
        let whole_args: Value =
            serde_json::from_str(calls[i]["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(parsed, whole_args, "streamed = whole");
    }
    assert!(a.text.trim_end().ends_with("data: [DONE]"), "{}", a.text);
}

/// Issue 19, item 4: Claude refusing the deployment's key is the upstream's
/// failure, not the client's (its Sluice key is fine): `upstream_error`,
/// never Anthropic's `authentication_error` or a 401 an SDK would take for a
/// bad Sluice key, and the provider key in no answer and no log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_authentication_error_is_upstream_error_without_the_key() {
    let gw = Gateway::start(1).await;
    let wrong_key = MockAnthropic::start().await.unwrap();
    let provider_key = "sk-ant-wrong-provider-key-31337";
    gw.deploy(api::Deployment {
        api_key: provider_key.into(),
        ..claude("w", "claude", &wrong_key)
    })
    .await;
    // A second group: an authentication failure cools its deployment down.
    gw.deploy(api::Deployment {
        api_key: provider_key.into(),
        ..claude("w2", "claude-m", &wrong_key)
    })
    .await;
    gw.set_router(api::RouterSettings {
        num_retries: Some(0),
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["claude", "claude-m"]).await;
    gw.sync().await;

    let hello = json!({"model": "claude", "messages": [{"role": "user", "content": "Say hello"}]});
    let chat_answer = chat(&gw, &key, &hello).await;
    let body = json!({"model": "claude-m", "max_tokens": 64, "messages": [{"role": "user", "content": "Say hello"}]});
    let messages_answer = send(
        &gw,
        "/v1/messages",
        &anthropic_headers(&key),
        &body.to_string(),
    )
    .await;
    assert_eq!(wrong_key.hits(), 2, "{chat_answer:?}\n{messages_answer:?}");
    for a in [&chat_answer, &messages_answer] {
        assert_ne!(a.status, 200, "{}", a.text);
        assert!(!a.text.contains(provider_key), "{}", a.text);
    }
    gw.assert_logs_hold_none_of(&[provider_key]);
    assert_eq!(
        messages_answer.json["type"], "error",
        "{}",
        messages_answer.text
    );
    for a in [&chat_answer, &messages_answer] {
        assert_ne!(
            a.status, 401,
            "not the client's key: {} (on /v1/messages: {})",
            a.text, messages_answer.text
        );
    }
    chat_answer.assert_error(chat_answer.status, "upstream_error");
    assert_ne!(
        messages_answer.json["error"]["type"], "authentication_error",
        "{}",
        messages_answer.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limited_claude_is_retried_and_cools_down() {
    let gw = Gateway::start(1).await;
    let m = mocks(4).await;
    m[0].fail(Fault::RateLimited);
    m[2].fail(Fault::Overloaded);
    gw.deploy(api::Deployment {
        order: 1,
        ..claude("m-overloaded", "claude-m", &m[2])
    })
    .await;
    gw.deploy(api::Deployment {
        order: 2,
        ..claude("m-spare", "claude-m", &m[3])
    })
    .await;
    gw.deploy(api::Deployment {
        order: 1,
        ..claude("limited", "claude", &m[0])
    })
    .await;
    gw.deploy(api::Deployment {
        order: 2,
        ..claude("spare", "claude", &m[1])
    })
    .await;
    gw.set_router(api::RouterSettings {
        allowed_fails: Some(0),
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["claude", "claude-m"]).await;
    gw.sync().await;
    let hello = json!({"model": "claude", "messages": [{"role": "user", "content": "Say hello"}]});
    let a = chat(&gw, &key, &hello).await;
    a.assert_ok();
    assert_eq!(a.header("x-sluice-deployment"), Some("spare"));
    assert_eq!(a.header("x-sluice-attempts"), Some("2"));
    // Cooling down (retry-after: 2): the next goes straight to the spare.
    let a = chat(&gw, &key, &hello).await;
    a.assert_ok();
    assert_eq!(a.header("x-sluice-attempts"), Some("1"), "{:?}", a.headers);
    assert_eq!(m[0].hits(), 1);
    // The same on /v1/messages, an overloaded Claude this time.
    let body = json!({"model": "claude-m", "max_tokens": 64, "messages": [{"role": "user", "content": "Say hello"}]});
    let a = send(
        &gw,
        "/v1/messages",
        &anthropic_headers(&key),
        &body.to_string(),
    )
    .await;
    a.assert_ok();
    assert_eq!(a.header("x-sluice-deployment"), Some("m-spare"));
    assert_eq!(a.header("x-sluice-attempts"), Some("2"));
    assert_eq!(a.json["content"][0]["text"], TEXT, "{}", a.text);
    assert_eq!((m[2].hits(), m[3].hits()), (1, 1));
}

// ---------------------------------------------------------------------------
// /v1/messages for Anthropic-native clients
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_anthropic_sdk_reaches_claude_and_openai_models() {
    let gw = Gateway::start(1).await;
    let m = mocks(2).await;
    let [claude_mock, tools] = &m[..] else {
        unreachable!()
    };
    let usage = Usage {
        input_tokens: 5,
        output_tokens: 17,
        cache_creation_input_tokens: 2048,
        cache_read_input_tokens: 4096,
    };
    claude_mock.usage(usage);
    tools.reply(Reply::ToolUse(vec![weather("Paris"), weather("Tokyo")]));
    gw.deploy(claude("claude-a", "claude", claude_mock)).await;
    gw.deploy(claude_prefixed("claude-t", "claude-tools", tools))
        .await;
    gw.deploy_openai("gpt-4o", "gpt-4o-2024-08-06").await;
    let key = gw.key(None, &["claude", "claude-tools", "gpt-4o"]).await;
    let denied = gw.key(None, &["nothing-deployed"]).await;
    gw.sync().await;

    sluice_tests::pytest(
        "test_anthropic_sdk.py",
        [
            ("SLUICE_TEST_BASE_URL", gw.url("")),
            ("SLUICE_TEST_KEY", key.clone()),
            ("SLUICE_TEST_DENIED_KEY", denied.clone()),
            ("SLUICE_TEST_CLAUDE", "claude".into()),
            ("SLUICE_TEST_CLAUDE_TOOLS", "claude-tools".into()),
            ("SLUICE_TEST_GPT", "gpt-4o".into()),
            ("SLUICE_TEST_CLAUDE_TEXT", TEXT.into()),
            ("SLUICE_TEST_CLAUDE_USAGE", usage_env(usage)),
            ("SLUICE_TEST_GPT_TEXT", mock_upstream::CHAT_CONTENT.into()),
            (
                "SLUICE_TEST_GPT_USAGE",
                format!(
                    "{},{}",
                    mock_upstream::PROMPT_TOKENS,
                    mock_upstream::COMPLETION_TOKENS
                ),
            ),
        ],
    )
    .await;

    // The Claude mock got the SDK's requests with the provider key, the
    // model rewritten, count_tokens on its own path.
    let seen = claude_mock.requests();
    assert!(
        seen.iter()
            .all(|r| r.header("x-api-key") == Some(claude_mock.key()))
    );
    assert!(seen.iter().all(|r| r.json()["model"] == CLAUDE_MODEL));
    assert!(
        seen.iter()
            .any(|r| r.path_only() == "/v1/messages/count_tokens"),
        "count_tokens reached Claude"
    );
    let first = seen[0].json();
    assert_eq!(first["system"], "You are terse.", "{first}");
    assert_eq!(first["max_tokens"], 256);
    // The OpenAI mock got chat completions, the tool turn translated.
    let gpt = gw.upstream.requests();
    assert!(gpt.iter().all(|r| r.path_only() == "/v1/chat/completions"));
    assert!(
        gpt.iter()
            .all(|r| r.header("authorization") == Some(&format!("Bearer {UPSTREAM_KEY}"))),
        "the provider key, not the client's"
    );
    // A tool result's image went in a user message after the tool message.
    let imaged = gpt
        .iter()
        .map(|r| r.json())
        .find(|b| b["messages"][2]["tool_call_id"] == "toolu_img")
        .expect("the request with a tool result's image");
    assert_eq!(
        imaged["messages"][2]["content"], "(an image: in the next message)",
        "{imaged}"
    );
    assert_eq!(imaged["messages"][3]["role"], "user", "{imaged}");
    assert!(
        imaged["messages"][3]["content"][1]["image_url"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("data:image/png;base64,")),
        "{imaged}"
    );
    // A PDF document went as a `file` part.
    let pdf = gpt
        .iter()
        .map(|r| r.json())
        .find(|b| b["messages"][0]["content"][0]["type"] == "file")
        .expect("the request with a PDF");
    assert_eq!(
        pdf["messages"][0]["content"][0]["file"],
        json!({"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQK"})
    );
    // The agent-shaped request went without what only Anthropic does.
    let agents = gpt
        .iter()
        .map(|r| r.json())
        .find(|b| b["user"] == "user_abc_session_1")
        .expect("the agent's request");
    assert!(agents.get("context_management").is_none(), "{agents}");
    assert!(!agents.to_string().contains("cache_control"), "{agents}");
    assert_eq!(agents["reasoning_effort"], "medium", "{agents}");
    let with_tools = gpt
        .iter()
        .map(|r| r.json())
        .find(|b| b.get("tool_choice").is_some())
        .expect("the tool request");
    assert_eq!(with_tools["model"], "gpt-4o-2024-08-06");
    assert_eq!(with_tools["tools"][0]["type"], "function", "{with_tools}");
    assert_eq!(with_tools["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        with_tools["tools"][0]["function"]["parameters"]["required"],
        json!(["city"])
    );
    assert_eq!(
        with_tools["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}}),
        "{with_tools}"
    );
    let messages = with_tools["messages"].as_array().unwrap();
    let assistant = messages
        .iter()
        .find(|m| m["role"] == "assistant")
        .expect("the assistant turn");
    assert_eq!(assistant["tool_calls"][0]["id"], "toolu_01", "{with_tools}");
    let arguments: Value = serde_json::from_str(
        assistant["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(arguments, json!({"city": "Paris"}));
    let tool = messages
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("a tool message");
    assert_eq!(tool["tool_call_id"], "toolu_01");
    assert_eq!(text_of(&tool["content"]), "sunny");
    // The system prompt of the plain request → a system message.
    let plain = gpt
        .iter()
        .map(|r| r.json())
        .find(|b| b.get("tools").is_none() && b["stream"] != json!(true))
        .expect("the plain request");
    assert_eq!(plain["messages"][0]["role"], "system", "{plain}");
    assert_eq!(text_of(&plain["messages"][0]["content"]), "You are terse.");
    assert_eq!(plain["max_tokens"], 256, "{plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_pass_through_byte_for_byte_except_the_model() {
    let gw = Gateway::start(1).await;
    let claude_mock = MockAnthropic::start().await.unwrap();
    gw.deploy(claude("c", "claude", &claude_mock)).await;
    let key = gw.key(None, &["claude"]).await;
    gw.sync().await;

    // Odd spacing, escapes, a cache marker, a signed thinking block, a field
    // nobody knows, `model` in the middle: all as the client wrote them.
    let body = r#"{
  "max_tokens" : 2048,
  "system": [{"type": "text", "text": "A long cached preamble \u00e9\u2603 …", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
  "model": "claude",
  "thinking": {"type": "enabled", "budget_tokens": 1024},
  "messages": [
    {"role": "user", "content": "Think about it"},
    {"role": "assistant", "content": [{"type": "thinking", "thinking": "Let me think…", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds=="}, {"type": "text", "text": "Done."}]},
    {"role": "user", "content": [{"type": "text", "text": "And now?", "cache_control": {"type": "ephemeral"}}]}
  ],
  "x_sluice_test_unknown": {"nested": [1, 2.50, 1e3, true, null], "order": "kept"},
  "metadata": {"user_id": "u-1"}
}"#;
    let want = body.replace(
        r#""model": "claude""#,
        &format!(r#""model": "{CLAUDE_MODEL}""#),
    );
    let mut headers = anthropic_headers(&key);
    let beta = "interleaved-thinking-2025-05-14,prompt-caching-2024-07-31";
    headers.push(("anthropic-beta", beta));

    // Claude Code's `?beta=true` on the path.
    let a = send(&gw, "/v1/messages?beta=true", &headers, body).await;
    a.assert_ok();
    let seen = claude_mock.last_request().unwrap();
    assert_eq!(seen.path_only(), "/v1/messages");
    assert_eq!(
        String::from_utf8_lossy(&seen.body),
        want,
        "byte for byte but the model"
    );
    assert_eq!(seen.header("anthropic-beta"), Some(beta));
    assert_eq!(seen.header("x-api-key"), Some(claude_mock.key()));
    assert!(!seen.headers.iter().any(|(_, v)| v.contains(&key)));
    // The answer as Claude sent it: the same as asking the mock directly.
    let direct = sluice_tests::http_client()
        .post(format!("{}/v1/messages", claude_mock.url()))
        .header("x-api-key", claude_mock.key())
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(want.clone())
        .send()
        .await
        .unwrap();
    let direct = direct.text().await.unwrap();
    assert_eq!(normalize_ids(&a.text), normalize_ids(&direct));
    assert_eq!(a.header("x-sluice-model-group"), Some("claude"));

    // Streamed: the body still byte for byte, the events as Claude sent them.
    claude_mock.reply(Reply::ThinkingThenText {
        thinking: "Still thinking.".into(),
        signature: "c2lnbmF0dXJl".into(),
        text: "Now done.".into(),
    });
    let streamed = body.replacen("{\n", "{\n  \"stream\": true,\n", 1);
    let a = send(&gw, "/v1/messages?beta=true", &headers, &streamed).await;
    a.assert_ok();
    let want_streamed = want.replacen("{\n", "{\n  \"stream\": true,\n", 1);
    let seen = claude_mock.last_request().unwrap();
    assert_eq!(String::from_utf8_lossy(&seen.body), want_streamed);
    let direct = sluice_tests::http_client()
        .post(format!("{}/v1/messages", claude_mock.url()))
        .header("x-api-key", claude_mock.key())
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(want_streamed)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        normalize_ids(&a.text),
        normalize_ids(&direct),
        "the stream byte for byte as sent"
    );
    let signature = sse_events(&a.text)
        .into_iter()
        .find(|(_, d)| d["delta"]["type"] == "signature_delta")
        .map(|(_, d)| d["delta"]["signature"].clone());
    assert_eq!(signature, Some(json!("c2lnbmF0dXJl")));

    // Claude's own errors come back in its envelope; a mid-stream error as
    // its error event.
    claude_mock.fail_next(Fault::PromptTooLong);
    let a = send(&gw, "/v1/messages", &headers, body).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(a.json["type"], "error", "{}", a.text);
    assert_eq!(a.json["error"]["type"], "invalid_request_error");
    claude_mock.fail_next(Fault::MidStreamError);
    let a = send(&gw, "/v1/messages", &headers, &streamed).await;
    assert_eq!(a.status, 200);
    let last = sse_events(&a.text).pop().expect("events");
    assert_eq!(last.0, "error", "{}", a.text);
    assert_eq!(last.1["type"], "error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_errors_come_in_anthropics_envelope_and_models_in_its_list() {
    let gw = Gateway::start(1).await;
    let claude_mock = MockAnthropic::start().await.unwrap();
    gw.deploy(claude("c", "claude", &claude_mock)).await;
    gw.deploy_openai("gpt-4o", "gpt-4o-2024-08-06").await;
    gw.deploy(claude("s", "claude-secret", &claude_mock)).await;
    let key = gw.key(None, &["claude", "gpt-4o"]).await;
    gw.sync().await;
    let hello = |model: &str| {
        json!({"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "Say hello"}]})
            .to_string()
    };
    let envelope = |a: &Answer, status: u16, kind: &str| {
        assert_eq!(a.status, status, "{}", a.text);
        assert_eq!(a.json["type"], "error", "Anthropic's envelope: {}", a.text);
        assert_eq!(a.json["error"]["type"], kind, "{}", a.text);
        assert!(
            a.json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}",
            a.text
        );
    };

    // A Sluice key in x-api-key, and as a Bearer token.
    send(
        &gw,
        "/v1/messages",
        &anthropic_headers(&key),
        &hello("claude"),
    )
    .await
    .assert_ok();
    let bearer = format!("Bearer {key}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("anthropic-version", "2023-06-01"),
        ("content-type", "application/json"),
    ];
    send(&gw, "/messages", &headers, &hello("claude"))
        .await
        .assert_ok();
    let before = claude_mock.hits();
    let a = send(
        &gw,
        "/v1/messages",
        &anthropic_headers("sk-nope"),
        &hello("claude"),
    )
    .await;
    envelope(&a, 401, "authentication_error");
    let a = send(
        &gw,
        "/v1/messages",
        &anthropic_headers(&key),
        &hello("claude-secret"),
    )
    .await;
    envelope(&a, 403, "permission_error");
    assert!(a.text.contains("claude-secret"), "{}", a.text);
    let a = send(
        &gw,
        "/v1/messages",
        &anthropic_headers(&key),
        "{\"max_tokens\": 5",
    )
    .await;
    envelope(&a, 400, "invalid_request_error");
    let a = send(
        &gw,
        "/v1/messages",
        &anthropic_headers(&key),
        &json!({"max_tokens": 5, "messages": []}).to_string(),
    )
    .await;
    envelope(&a, 400, "invalid_request_error");
    let a = send(
        &gw,
        "/v1/messages/count_tokens?beta=true",
        &anthropic_headers("sk-nope"),
        &hello("claude"),
    )
    .await;
    envelope(&a, 401, "authentication_error");
    assert_eq!(
        claude_mock.hits(),
        before,
        "no upstream call for any of them"
    );
    // An upstream's failure after retries, in the envelope too.
    claude_mock.fail(Fault::Api);
    let a = send(
        &gw,
        "/v1/messages",
        &anthropic_headers(&key),
        &hello("claude"),
    )
    .await;
    assert_ne!(a.status, 200);
    assert_eq!(a.json["type"], "error", "{}", a.text);
    claude_mock.succeed();

    // GET /v1/models: Anthropic's list with anthropic-version, OpenAI's without.
    let r = gw
        .http
        .get(gw.url("/v1/models"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    let a = Answer::read(r).await;
    a.assert_ok();
    let data = a.json["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", a.text));
    let ids: Vec<&str> = data.iter().filter_map(|m| m["id"].as_str()).collect();
    assert!(
        ids.contains(&"claude") && ids.contains(&"gpt-4o"),
        "{}",
        a.text
    );
    assert!(!ids.contains(&"claude-secret"), "only what the key may use");
    for model in data {
        assert_eq!(model["type"], "model", "{model}");
        assert!(model["display_name"].is_string(), "{model}");
        let created = model["created_at"].as_str().unwrap_or_default();
        assert!(
            created.len() >= 20 && created.as_bytes()[10] == b'T',
            "RFC 3339: {model}"
        );
    }
    assert_eq!(a.json["has_more"], false);
    assert_eq!(a.json["first_id"], data[0]["id"]);
    assert_eq!(a.json["last_id"], data[data.len() - 1]["id"]);
    assert!(a.json.get("object").is_none(), "{}", a.text);
    let a = gw.get(&key, "/v1/models").await;
    a.assert_ok();
    assert_eq!(a.json["object"], "list", "{}", a.text);
}

// ---------------------------------------------------------------------------
// Usage
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counted {
    requests: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    spend: i64,
}

impl Counted {
    fn of(usage: &api::GetUsageResponse) -> Counted {
        let u = usage.usage.unwrap_or_default();
        Counted {
            requests: u.requests,
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            spend: u.spend,
        }
    }
}

/// Polls `GetUsage` of `scope` until it equals `want`; fails with the last.
async fn usage_reaches(gw: &Gateway, scope: Scope, want: Counted) {
    gw.admin
        .usage_reaches(scope, &want, Counted::of, WAIT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_from_claude_with_cache_tokens_reaches_get_usage_exactly() {
    let gw = Gateway::start(1).await;
    let claude_mock = MockAnthropic::start().await.unwrap();
    let usage = Usage {
        input_tokens: 7,
        output_tokens: 13,
        cache_creation_input_tokens: 100,
        cache_read_input_tokens: 50,
    };
    claude_mock.usage(usage);
    // Claude's list prices, cache reads at a tenth and writes at 1.25× of
    // the input price: each request costs 7 × 3 + 100 × 3.75 + 50 × 0.3 +
    // 13 × 15 = 606 µ$ (at the input price alone it would be 666).
    gw.deploy(api::Deployment {
        input_cost_per_token: 3e-6,
        output_cost_per_token: 1.5e-5,
        cache_read_input_token_cost: Some(3e-7),
        cache_creation_input_token_cost: Some(3.75e-6),
        ..claude("c", "claude", &claude_mock)
    })
    .await;
    let key = gw.key(None, &["claude"]).await;
    gw.sync().await;
    let prompt = usage.prompt_tokens();
    assert_eq!(prompt, 157);

    let mut requests = 0;
    // Chat completions: whole, streamed with and without a usage chunk.
    let hello = json!({"model": "claude", "messages": [{"role": "user", "content": "Say hello"}]});
    for _ in 0..2 {
        let a = chat(&gw, &key, &hello).await;
        a.assert_ok();
        let u = &a.json["usage"];
        assert_eq!(u["prompt_tokens"], prompt, "{}", a.text);
        assert_eq!(u["completion_tokens"], 13);
        assert_eq!(u["total_tokens"], prompt + 13);
        assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 50);
        assert_eq!(u["prompt_tokens_details"]["cache_write_tokens"], 100);
        requests += 1;
    }
    for include_usage in [true, false, true, false] {
        let mut body = hello.clone();
        body["stream"] = json!(true);
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        let a = chat(&gw, &key, &body).await;
        a.assert_ok();
        let usages: Vec<Value> = sse_events(&a.text)
            .into_iter()
            .map(|(_, d)| d["usage"].clone())
            .filter(|u| u.is_object())
            .collect();
        if include_usage {
            assert_eq!(usages.len(), 1, "{}", a.text);
            assert_eq!(usages[0]["prompt_tokens"], prompt, "{}", a.text);
            assert_eq!(usages[0]["prompt_tokens_details"]["cached_tokens"], 50);
            assert_eq!(
                usages[0]["prompt_tokens_details"]["cache_write_tokens"],
                100
            );
        } else {
            assert!(usages.is_empty(), "not asked for: {}", a.text);
        }
        assert!(a.text.trim_end().ends_with("data: [DONE]"), "{}", a.text);
        requests += 1;
    }
    // The Responses API, translated (Responses → chat → Messages and back):
    // the cache's counts in `input_tokens_details`, priced as Claude's.
    for stream in [false, true] {
        let body = json!({"model": "claude", "input": "Say hello", "stream": stream});
        let a = gw.post(&key, "/v1/responses", &body).await;
        a.assert_ok();
        let usage = if stream {
            let done = sse_events(&a.text)
                .into_iter()
                .find(|(event, _)| event == "response.completed")
                .unwrap_or_else(|| panic!("no response.completed: {}", a.text));
            done.1["response"]["usage"].clone()
        } else {
            a.json["usage"].clone()
        };
        assert_eq!(usage["input_tokens"], prompt, "{usage}");
        assert_eq!(
            usage["input_tokens_details"]["cached_tokens"], 50,
            "{usage}"
        );
        assert_eq!(
            usage["input_tokens_details"]["cache_write_tokens"], 100,
            "{usage}"
        );
        requests += 1;
    }
    // Messages, passed through: whole and streamed. count_tokens is free.
    let body = json!({"model": "claude", "max_tokens": 64, "messages": [{"role": "user", "content": "Say hello"}]});
    for stream in [false, true, false, true] {
        let mut body = body.clone();
        body["stream"] = json!(stream);
        let a = send(
            &gw,
            "/v1/messages",
            &anthropic_headers(&key),
            &body.to_string(),
        )
        .await;
        a.assert_ok();
        requests += 1;
    }
    let a = send(
        &gw,
        "/v1/messages/count_tokens",
        &anthropic_headers(&key),
        &json!({"model": "claude", "messages": [{"role": "user", "content": "Say hello"}]})
            .to_string(),
    )
    .await;
    a.assert_ok();
    assert_eq!(a.json["input_tokens"], prompt);
    assert_eq!(claude_mock.hits(), requests as usize + 1);

    let want = Counted {
        requests,
        prompt_tokens: requests * prompt,
        completion_tokens: requests * 13,
        spend: requests as i64 * 606,
    };
    let key_id = sluice_control_plane::secrets::sha256_hex(&key);
    usage_reaches(&gw, Scope::KeyId(key_id), want).await;
    usage_reaches(&gw, Scope::ModelGroup("claude".into()), want).await;
    // The cache's tokens in GetUsage and the data plane's metrics too.
    let got = gw
        .admin
        .usage_of(Scope::ModelGroup("claude".into()))
        .await
        .unwrap()
        .usage
        .unwrap_or_default();
    assert_eq!(
        (got.cache_read_tokens, got.cache_write_tokens),
        (requests * 50, requests * 100)
    );
    let metrics = gw.planes[0].metrics_once_idle().await.unwrap();
    for (name, n) in [
        ("sluice_usage_cache_read_tokens_total", requests * 50),
        ("sluice_usage_cache_write_tokens_total", requests * 100),
    ] {
        assert_eq!(
            sluice_tests::data_plane::sample(&metrics, name),
            Some(n as f64),
            "{name} in:\n{metrics}"
        );
    }
}

// ---------------------------------------------------------------------------
// Claude on Vertex AI
// ---------------------------------------------------------------------------

/// Claude as Vertex AI serves it: `provider: vertex_ai` and a `claude…`
/// model reach `…/publishers/anthropic/models/{model}:rawPredict`
/// (`:streamRawPredict` for streams, `count-tokens:rawPredict` to count)
/// with a Google token, the body Anthropic's with `anthropic_version` in it
/// and the model out of it; OpenAI and Anthropic clients both served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claude_on_vertex_ai_is_reached_through_raw_predict_with_a_google_token() {
    let google = mock_upstream::MockUpstream::start().await.unwrap();
    let metadata_host = format!("127.0.0.1:{}", google.port());
    let gw = Gateway::start_with_env(1, &[], &[("GCE_METADATA_HOST", &metadata_host)]).await;
    let vertex = MockAnthropic::start_vertex().await.unwrap();
    let location = format!(
        "{}/v1/projects/test-project/locations/us-east5",
        vertex.url()
    );
    let model = "claude-sonnet-4-5@20250929";
    gw.deploy(api::Deployment {
        id: "vc".into(),
        model_name: "vclaude".into(),
        provider: "vertex_ai".into(),
        model: model.into(),
        api_base: location.clone(),
        vertex_project: "test-project".into(),
        vertex_location: "us-east5".into(),
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["vclaude"]).await;
    gw.sync().await;
    let models_path = "/v1/projects/test-project/locations/us-east5/publishers/anthropic/models";

    // The OpenAI API, whole: translated to a Messages request Vertex takes.
    let a = chat(
        &gw,
        &key,
        &json!({"model": "vclaude", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 64}),
    )
    .await;
    a.assert_ok();
    assert_eq!(a.json["choices"][0]["message"]["content"], TEXT);
    let seen = vertex.last_request().unwrap();
    assert_eq!(
        seen.path_only(),
        format!("{models_path}/{model}:rawPredict")
    );
    assert_eq!(seen.header("authorization"), Some("Bearer ya29.mock-0"));
    assert_eq!(seen.header("anthropic-version"), None);
    let body = String::from_utf8_lossy(&seen.body).into_owned();
    assert!(
        body.starts_with(r#"{"anthropic_version":"vertex-2023-10-16","#),
        "{body}"
    );
    assert!(seen.json().get("model").is_none(), "{body}");
    assert_eq!(seen.json()["max_tokens"], 64);

    // Streamed: the streaming verb, the events translated back.
    let a = chat(
        &gw,
        &key,
        &json!({"model": "vclaude", "messages": [{"role": "user", "content": "Hi"}], "stream": true}),
    )
    .await;
    a.assert_ok();
    let (content, usage) = chat_stream(&a.text);
    assert_eq!(content, TEXT, "{}", a.text);
    assert!(usage.is_null(), "none asked for: {}", a.text);
    let seen = vertex.last_request().unwrap();
    assert_eq!(
        seen.path_only(),
        format!("{models_path}/{model}:streamRawPredict")
    );

    // Anthropic's own clients: their body as written but for the model and
    // the version, whole and streamed, and token counting.
    let headers = anthropic_headers(&key);
    let native = r#"{"model": "vclaude", "max_tokens": 99, "messages": [{"role": "user", "content": "Hi \u00e9"}], "x_sluice_test_unknown": [1, 2.50]}"#;
    let a = send(&gw, "/v1/messages", &headers, native).await;
    a.assert_ok();
    assert_eq!(a.json["content"][0]["text"], TEXT);
    let seen = vertex.last_request().unwrap();
    assert_eq!(
        seen.path_only(),
        format!("{models_path}/{model}:rawPredict")
    );
    assert_eq!(
        String::from_utf8_lossy(&seen.body),
        r#"{"anthropic_version":"vertex-2023-10-16","max_tokens":99,"messages":[{"role": "user", "content": "Hi \u00e9"}],"x_sluice_test_unknown":[1, 2.50]}"#,
        "the values byte for byte, in their order"
    );
    let streamed = native.replacen('{', r#"{"stream": true, "#, 1);
    let a = send(&gw, "/v1/messages", &headers, &streamed).await;
    a.assert_ok();
    let events: Vec<String> = sse_events(&a.text).into_iter().map(|(e, _)| e).collect();
    assert_eq!(events.first().map(String::as_str), Some("message_start"));
    assert_eq!(events.last().map(String::as_str), Some("message_stop"));
    assert_eq!(
        vertex.last_request().unwrap().path_only(),
        format!("{models_path}/{model}:streamRawPredict")
    );
    let a = send(
        &gw,
        "/v1/messages/count_tokens",
        &headers,
        r#"{"model": "vclaude", "messages": [{"role": "user", "content": "Hi"}]}"#,
    )
    .await;
    a.assert_ok();
    assert_eq!(a.json["input_tokens"], USAGE.prompt_tokens());
    let seen = vertex.last_request().unwrap();
    assert_eq!(
        seen.path_only(),
        format!("{models_path}/count-tokens:rawPredict")
    );
    assert_eq!(
        seen.json()["model"],
        model,
        "count-tokens reads it from the body"
    );

    // Claude's errors come back in its envelope.
    vertex.fail_next(Fault::Overloaded);
    let a = send(&gw, "/v1/messages", &headers, native).await;
    assert_eq!(a.status, 529, "{}", a.text);
    assert_eq!(a.json["error"]["type"], "overloaded_error", "{}", a.text);
    // One token served every request.
    let grants = google
        .requests()
        .into_iter()
        .filter(|r| r.path_only().ends_with("/token"))
        .count();
    assert_eq!(grants, 1);
    gw.assert_logs_hold_none_of(&["ya29.mock-0"]);
}

// ---------------------------------------------------------------------------
// Claude on Bedrock
// ---------------------------------------------------------------------------

/// Claude as Bedrock serves it: `provider: bedrock` reaches
/// `/model/{id}/invoke` (`/invoke-with-response-stream` for streams) with
/// every request signed (SigV4, checked by the mock against the request as
/// it arrived) by the deployment's keys, the environment's (with their
/// session token), or a Bedrock API key; streams read from AWS's event
/// stream; AWS's errors in the client's shape; token counts estimated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claude_on_bedrock_is_signed_streamed_and_answered_in_each_clients_shape() {
    use sluice_tests::mock_anthropic::{
        AWS_ACCESS_KEY_ID, AWS_REGION, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, BEDROCK_API_KEY,
    };
    let gw = Gateway::start_with_env(
        1,
        &[],
        &[
            ("MOCK_AWS_SECRET", AWS_SECRET_ACCESS_KEY),
            ("AWS_ACCESS_KEY_ID", AWS_ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", AWS_SECRET_ACCESS_KEY),
            ("AWS_SESSION_TOKEN", AWS_SESSION_TOKEN),
            ("AWS_REGION", AWS_REGION),
        ],
    )
    .await;
    let bedrock = MockAnthropic::start_bedrock().await.unwrap();
    let model = "us.anthropic.claude-sonnet-4-20250514-v1:0";
    let deployment = |id: &str, group: &str| api::Deployment {
        id: id.into(),
        model_name: group.into(),
        provider: "bedrock".into(),
        model: model.into(),
        api_base: bedrock.url(),
        ..Default::default()
    };
    gw.deploy(api::Deployment {
        aws_region_name: AWS_REGION.into(),
        aws_access_key_id: AWS_ACCESS_KEY_ID.into(),
        aws_secret_access_key: "os.environ/MOCK_AWS_SECRET".into(),
        ..deployment("keys", "bclaude")
    })
    .await;
    gw.deploy(deployment("env", "bclaude-env")).await;
    gw.deploy(api::Deployment {
        api_key: BEDROCK_API_KEY.into(),
        ..deployment("api-key", "bclaude-key")
    })
    .await;
    gw.deploy(api::Deployment {
        aws_region_name: AWS_REGION.into(),
        aws_access_key_id: AWS_ACCESS_KEY_ID.into(),
        aws_secret_access_key: "not-the-secret".into(),
        ..deployment("wrong", "bclaude-wrong")
    })
    .await;
    let key = gw
        .key(
            None,
            &["bclaude", "bclaude-env", "bclaude-key", "bclaude-wrong"],
        )
        .await;
    gw.sync().await;
    let invoke = "/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/invoke";
    let hello = |group: &str| json!({"model": group, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 64});

    // The OpenAI API, whole: signed with the deployment's own keys.
    let a = chat(&gw, &key, &hello("bclaude")).await;
    a.assert_ok();
    assert_eq!(a.json["choices"][0]["message"]["content"], TEXT);
    assert_eq!(a.json["usage"]["prompt_tokens"], USAGE.prompt_tokens());
    let seen = bedrock.last_request().unwrap();
    assert_eq!(seen.path_only(), invoke);
    let authorization = seen.header("authorization").unwrap();
    assert!(
        authorization.starts_with(&format!("AWS4-HMAC-SHA256 Credential={AWS_ACCESS_KEY_ID}/")),
        "{authorization}"
    );
    assert!(authorization.contains("/us-east-1/bedrock/aws4_request"));
    assert_eq!(seen.header("x-amz-security-token"), None);
    let body = String::from_utf8_lossy(&seen.body).into_owned();
    assert!(
        body.starts_with(r#"{"anthropic_version":"bedrock-2023-05-31","#),
        "{body}"
    );
    assert!(seen.json().get("model").is_none(), "{body}");

    // Streamed, usage asked for: AWS's event stream read as Claude's events.
    let mut streamed = hello("bclaude");
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let a = chat(&gw, &key, &streamed).await;
    a.assert_ok();
    assert_eq!(a.header("content-type"), Some("text/event-stream"));
    let (content, usage) = chat_stream(&a.text);
    assert_eq!(content, TEXT, "{}", a.text);
    assert_eq!(usage["completion_tokens"], USAGE.output_tokens);
    assert_eq!(
        bedrock.last_request().unwrap().path_only(),
        "/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/invoke-with-response-stream"
    );

    // Anthropic's clients: their body but for the model and the version;
    // the stream as Claude sent its events.
    let headers = anthropic_headers(&key);
    let native = r#"{"model": "bclaude-env", "max_tokens": 99, "messages": [{"role": "user", "content": "Hi \u00e9"}]}"#;
    let a = send(&gw, "/v1/messages", &headers, native).await;
    a.assert_ok();
    assert_eq!(a.json["content"][0]["text"], TEXT);
    let seen = bedrock.last_request().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&seen.body),
        r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":99,"messages":[{"role": "user", "content": "Hi \u00e9"}]}"#
    );
    // The environment's keys, with their session token.
    assert_eq!(seen.header("x-amz-security-token"), Some(AWS_SESSION_TOKEN));
    // Beta flags go in the body, where Bedrock reads them.
    let mut with_beta = headers.clone();
    with_beta.push((
        "anthropic-beta",
        "context-1m-2025-08-07,interleaved-thinking-2025-05-14",
    ));
    send(&gw, "/v1/messages", &with_beta, native)
        .await
        .assert_ok();
    assert_eq!(
        bedrock.last_request().unwrap().json()["anthropic_beta"],
        json!(["context-1m-2025-08-07", "interleaved-thinking-2025-05-14"])
    );
    let stream = native.replacen('{', r#"{"stream": true, "#, 1);
    let a = send(&gw, "/v1/messages", &headers, &stream).await;
    a.assert_ok();
    let events: Vec<String> = sse_events(&a.text).into_iter().map(|(e, _)| e).collect();
    assert_eq!(events.first().map(String::as_str), Some("message_start"));
    assert!(
        events.contains(&"content_block_delta".to_owned()),
        "{events:?}"
    );
    assert_eq!(events.last().map(String::as_str), Some("message_stop"));

    // A Bedrock API key: a bearer token, nothing signed.
    let a = chat(&gw, &key, &hello("bclaude-key")).await;
    a.assert_ok();
    let seen = bedrock.last_request().unwrap();
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {BEDROCK_API_KEY}").as_str())
    );
    assert_eq!(seen.header("x-amz-date"), None);

    // Counting tokens: estimated, Bedrock not asked.
    let hits = bedrock.hits();
    let a = send(
        &gw,
        "/v1/messages/count_tokens",
        &headers,
        r#"{"model": "bclaude", "messages": [{"role": "user", "content": "How many tokens is this?"}]}"#,
    )
    .await;
    a.assert_ok();
    assert!(a.json["input_tokens"].as_u64().unwrap() > 0, "{}", a.text);
    assert_eq!(bedrock.hits(), hits);

    // AWS's errors in each client's shape; a mid-stream exception as
    // Anthropic's error event.
    bedrock.fail_next(Fault::PromptTooLong);
    let a = chat(&gw, &key, &hello("bclaude")).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(
        a.json["error"]["type"], "invalid_request_error",
        "{}",
        a.text
    );
    assert_eq!(
        a.json["error"]["message"],
        "Input is too long for requested model."
    );
    bedrock.fail_next(Fault::RateLimited);
    let a = send(&gw, "/v1/messages", &headers, native).await;
    assert_eq!(a.status, 429, "{}", a.text);
    assert_eq!(a.json["type"], "error");
    assert_eq!(a.json["error"]["type"], "rate_limit_error", "{}", a.text);
    // (That deployment cools now; another one streams.)
    bedrock.fail_next(Fault::MidStreamError);
    let other = stream.replace("bclaude-env", "bclaude-key");
    let a = send(&gw, "/v1/messages", &headers, &other).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let last = sse_events(&a.text).pop().expect("events");
    assert_eq!(last.0, "error", "{}", a.text);
    assert_eq!(last.1["error"]["message"], "The model stream failed.");

    // A wrong secret: Bedrock refuses the signature, the client is told the
    // deployment's credentials need fixing.
    let a = chat(&gw, &key, &hello("bclaude-wrong")).await;
    let error = a.assert_error(502, "upstream_error");
    assert!(
        error["message"].as_str().unwrap().contains("credentials"),
        "{error}"
    );
    gw.assert_logs_hold_none_of(&[AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, BEDROCK_API_KEY]);
}

/// Bedrock from a pod without keys: the data plane fetches temporary ones
/// from the pod's identity, as AWS's SDKs do: EKS Pod Identity's container
/// credentials endpoint (its token read from the file EKS mounts), or a
/// service account's web identity exchanged at STS; fetched once for every
/// request while they live, and refused identities answered as credentials
/// needing fixing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bedrock_in_a_pod_signs_with_temporary_keys_from_its_identity() {
    use sluice_tests::mock_anthropic::{AWS_ACCESS_KEY_ID, AWS_REGION, AWS_SESSION_TOKEN};
    use sluice_tests::mock_upstream::{
        IMDS_SESSION_TOKEN, INSTANCE_ROLE, MockUpstream, POD_IDENTITY_TOKEN, WEB_IDENTITY_TOKEN,
    };
    let aws = MockUpstream::start().await.unwrap();
    let bedrock = MockAnthropic::start_bedrock().await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let pod_token = files.path().join("eks-pod-identity-token");
    std::fs::write(&pod_token, format!("{POD_IDENTITY_TOKEN}\n")).unwrap();
    let web_token = files.path().join("token");
    std::fs::write(&web_token, WEB_IDENTITY_TOKEN).unwrap();
    let claude = |id: &str| api::Deployment {
        id: id.into(),
        model_name: id.into(),
        provider: "bedrock".into(),
        model: "anthropic.claude-3-5-haiku-20241022-v1:0".into(),
        api_base: bedrock.url(),
        aws_region_name: AWS_REGION.into(),
        ..Default::default()
    };
    let asked = |path: &str| {
        aws.requests()
            .into_iter()
            .filter(|r| r.path_only() == path)
            .count()
    };
    let signed_with_the_pods_keys = || {
        let seen = bedrock.last_request().unwrap();
        assert!(
            seen.header("authorization")
                .unwrap()
                .starts_with(&format!("AWS4-HMAC-SHA256 Credential={AWS_ACCESS_KEY_ID}/")),
            "{:?}",
            seen.header("authorization")
        );
        assert_eq!(seen.header("x-amz-security-token"), Some(AWS_SESSION_TOKEN));
    };

    // EKS Pod Identity.
    let pod_url = aws.url("/v1/credentials");
    let pod_token_path = pod_token.to_string_lossy().into_owned();
    let gw = Gateway::start_with_env(
        1,
        &[],
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &pod_url),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &pod_token_path),
        ],
    )
    .await;
    gw.deploy(claude("pod")).await;
    let key = gw.key(None, &["*"]).await;
    gw.sync().await;
    let body =
        json!({"model": "pod", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16});
    let answers = futures::future::join_all((0..6).map(|_| chat(&gw, &key, &body))).await;
    for a in &answers {
        a.assert_ok();
    }
    assert_eq!(asked("/v1/credentials"), 1, "one fetch for every request");
    let fetch = aws
        .requests()
        .into_iter()
        .find(|r| r.path_only() == "/v1/credentials")
        .unwrap();
    assert_eq!(fetch.header("authorization"), Some(POD_IDENTITY_TOKEN));
    signed_with_the_pods_keys();
    gw.assert_logs_hold_none_of(&[AWS_SESSION_TOKEN, POD_IDENTITY_TOKEN]);
    drop(gw);

    // A service account's web identity, exchanged at STS.
    let sts = aws.url("/sts");
    let web_token_path = web_token.to_string_lossy().into_owned();
    let gw = Gateway::start_with_env(
        1,
        &[],
        &[
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/sluice-bedrock",
            ),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", &web_token_path),
            ("AWS_ENDPOINT_URL_STS", &sts),
        ],
    )
    .await;
    gw.deploy(claude("web")).await;
    let key = gw.key(None, &["*"]).await;
    gw.sync().await;
    let body =
        json!({"model": "web", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16});
    for _ in 0..3 {
        chat(&gw, &key, &body).await.assert_ok();
    }
    assert_eq!(asked("/sts/"), 1);
    let exchange = aws
        .requests()
        .into_iter()
        .find(|r| r.path_only() == "/sts/")
        .unwrap();
    let form = String::from_utf8_lossy(&exchange.body).into_owned();
    assert!(form.starts_with("Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fsluice-bedrock&"), "{form}");
    signed_with_the_pods_keys();

    // The token file is read on each fetch (Kubernetes rotates it): one
    // STS refuses is the deployment's credentials needing fixing.
    std::fs::write(&web_token, "eyJ.expired.token").unwrap();
    gw.deploy(claude("refused")).await;
    gw.sync().await;
    let hits = bedrock.hits();
    let body = json!({"model": "refused", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16});
    let a = chat(&gw, &key, &body).await;
    let error = a.assert_error(502, "upstream_error");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("credentials"), "{message}");
    assert!(!message.contains("verification key"), "{message}");
    assert_eq!(bedrock.hits(), hits, "nothing reached Bedrock");
    gw.assert_logs_hold_none_of(&[AWS_SESSION_TOKEN, WEB_IDENTITY_TOKEN]);
    drop(gw);

    // Neither: the instance's role, from EC2's metadata service (IMDSv2:
    // a session token first), as on an EKS node or an EC2 host.
    let gw = Gateway::start_with_env(
        1,
        &[],
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &aws.url(""))],
    )
    .await;
    gw.deploy(claude("node")).await;
    let key = gw.key(None, &["*"]).await;
    gw.sync().await;
    let body =
        json!({"model": "node", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16});
    let answers = futures::future::join_all((0..6).map(|_| chat(&gw, &key, &body))).await;
    for a in &answers {
        a.assert_ok();
    }
    assert_eq!(asked("/latest/api/token"), 1, "one fetch for every request");
    let role = format!("/latest/meta-data/iam/security-credentials/{INSTANCE_ROLE}");
    assert_eq!(asked(&role), 1);
    let session = aws
        .requests()
        .into_iter()
        .find(|r| r.path_only() == role)
        .unwrap();
    assert_eq!(
        session.header("x-aws-ec2-metadata-token"),
        Some(IMDS_SESSION_TOKEN)
    );
    signed_with_the_pods_keys();
    gw.assert_logs_hold_none_of(&[AWS_SESSION_TOKEN, IMDS_SESSION_TOKEN]);
    drop(gw);

    // The metadata service turned off, and nothing else: refused before
    // anything is sent, saying what to set.
    let gw = Gateway::start_with_env(1, &[], &[("AWS_EC2_METADATA_DISABLED", "true")]).await;
    gw.deploy(claude("none")).await;
    let key = gw.key(None, &["*"]).await;
    gw.sync().await;
    let hits = (bedrock.hits(), aws.hits());
    let body =
        json!({"model": "none", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16});
    let a = chat(&gw, &key, &body).await;
    assert!(a.status >= 500, "{} {}", a.status, a.text);
    assert!(a.text.contains("no AWS credentials"), "{}", a.text);
    assert_eq!((bedrock.hits(), aws.hits()), hits, "nothing was sent");
}

/// Claude Code pointed at Sluice believes it talks to Anthropic's own API
/// and sends its first-party beta flags with every request; Bedrock and
/// Vertex AI refuse a whole request over one flag they do not take. Each
/// is sent only its own flags, under its names, where it reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claude_codes_beta_flags_reach_each_cloud_as_it_takes_them() {
    use sluice_tests::mock_anthropic::{AWS_ACCESS_KEY_ID, AWS_REGION, AWS_SECRET_ACCESS_KEY};
    let google = mock_upstream::MockUpstream::start().await.unwrap();
    let metadata_host = format!("127.0.0.1:{}", google.port());
    let gw = Gateway::start_with_env(1, &[], &[("GCE_METADATA_HOST", &metadata_host)]).await;
    let vertex = MockAnthropic::start_vertex().await.unwrap();
    let bedrock = MockAnthropic::start_bedrock().await.unwrap();
    gw.deploy(api::Deployment {
        id: "vc".into(),
        model_name: "vertex".into(),
        provider: "vertex_ai".into(),
        model: "claude-sonnet-4-5@20250929".into(),
        api_base: format!("{}/v1/projects/p/locations/us-east5", vertex.url()),
        vertex_project: "p".into(),
        vertex_location: "us-east5".into(),
        ..Default::default()
    })
    .await;
    gw.deploy(api::Deployment {
        id: "bc".into(),
        model_name: "bedrock".into(),
        provider: "bedrock".into(),
        model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0".into(),
        api_base: bedrock.url(),
        aws_region_name: AWS_REGION.into(),
        aws_access_key_id: AWS_ACCESS_KEY_ID.into(),
        aws_secret_access_key: AWS_SECRET_ACCESS_KEY.into(),
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["vertex", "bedrock"]).await;
    gw.sync().await;
    let claude_code = "claude-code-20250219,interleaved-thinking-2025-05-14,\
        context-management-2025-06-27,prompt-caching-scope-2026-01-05,\
        mcp-servers-2025-12-04,advanced-tool-use-2025-11-20,context-1m-2025-08-07";
    let mut headers = anthropic_headers(&key);
    headers.push(("anthropic-beta", claude_code));
    let body = |model: &str| {
        json!({"model": model, "max_tokens": 64, "stream": true,
               "messages": [{"role": "user", "content": "Hi"}],
               "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}})
        .to_string()
    };

    // Bedrock: its flags in the body, no header.
    let a = send(&gw, "/v1/messages", &headers, &body("bedrock")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let seen = bedrock.last_request().unwrap();
    assert_eq!(seen.header("anthropic-beta"), None);
    assert_eq!(
        seen.json()["anthropic_beta"],
        json!([
            "interleaved-thinking-2025-05-14",
            "context-management-2025-06-27",
            "tool-search-tool-2025-10-19",
            "context-1m-2025-08-07"
        ])
    );

    // Vertex AI: its flags in the header, the long context's in the body.
    let a = send(&gw, "/v1/messages", &headers, &body("vertex")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let seen = vertex.last_request().unwrap();
    assert_eq!(
        seen.header("anthropic-beta"),
        Some(
            "interleaved-thinking-2025-05-14,context-management-2025-06-27,tool-search-tool-2025-10-19"
        )
    );
    assert_eq!(
        seen.json()["anthropic_beta"],
        json!([
            "interleaved-thinking-2025-05-14",
            "context-management-2025-06-27",
            "tool-search-tool-2025-10-19",
            "context-1m-2025-08-07"
        ])
    );
    // The body's other members as the client sent them.
    assert_eq!(
        seen.json()["context_management"],
        json!({"edits": [{"type": "clear_tool_uses_20250919"}]})
    );

    // Flags neither takes: nothing of them is sent, and the request goes.
    let mut headers = anthropic_headers(&key);
    headers.push(("anthropic-beta", "claude-code-20250219,oauth-2025-04-20"));
    for (model, seen) in [("bedrock", &bedrock), ("vertex", &vertex)] {
        let whole = json!({"model": model, "max_tokens": 64,
                           "messages": [{"role": "user", "content": "Hi"}]})
        .to_string();
        let a = send(&gw, "/v1/messages", &headers, &whole).await;
        assert_eq!(a.status, 200, "{model}: {}", a.text);
        let last = seen.last_request().unwrap();
        assert_eq!(last.header("anthropic-beta"), None, "{model}");
        assert!(last.json().get("anthropic_beta").is_none(), "{model}");
    }
}

/// Bedrock's models that only Converse serves (`bedrock/us.amazon.nova-…`,
/// `meta.llama…`): a chat request made Converse's (`/model/{id}/converse`,
/// `/converse-stream`), the answer and its stream events made chat's, so
/// chat, Messages and Responses clients all reach them; what Converse
/// cannot take refused before sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bedrock_converse_models_are_reached_by_every_client_through_chat() {
    use sluice_tests::mock_anthropic::{AWS_ACCESS_KEY_ID, AWS_REGION, AWS_SECRET_ACCESS_KEY};
    let gw = Gateway::start(1).await;
    let bedrock = MockAnthropic::start_bedrock().await.unwrap();
    gw.deploy(api::Deployment {
        id: "nova".into(),
        model_name: "nova".into(),
        provider: "bedrock".into(),
        model: "us.amazon.nova-pro-v1:0".into(),
        api_base: bedrock.url(),
        aws_region_name: AWS_REGION.into(),
        aws_access_key_id: AWS_ACCESS_KEY_ID.into(),
        aws_secret_access_key: AWS_SECRET_ACCESS_KEY.into(),
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["nova"]).await;
    gw.sync().await;
    let converse = "/model/us.amazon.nova-pro-v1%3A0/converse";

    // Whole: Converse's request, chat's answer.
    let hello = json!({"model": "nova", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "max_tokens": 64, "top_k": 5});
    let a = chat(&gw, &key, &hello).await;
    a.assert_ok();
    assert_eq!(a.json["object"], "chat.completion");
    assert_eq!(a.json["choices"][0]["message"]["content"], TEXT);
    assert_eq!(a.json["choices"][0]["finish_reason"], "stop");
    assert_eq!(a.json["usage"]["prompt_tokens"], USAGE.input_tokens);
    let seen = bedrock.last_request().unwrap();
    assert_eq!(seen.path_only(), converse);
    assert_eq!(
        seen.json(),
        json!({
            "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
            "system": [{"text": "Be brief."}],
            "inferenceConfig": {"maxTokens": 64},
            "additionalModelRequestFields": {"top_k": 5},
        })
    );

    // Tool calls, whole and streamed.
    bedrock.reply(Reply::ToolUse(vec![weather("Paris")]));
    let tool = json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}});
    let ask = json!({"model": "nova", "messages": [{"role": "user", "content": "Weather?"}], "tools": [tool]});
    let a = chat(&gw, &key, &ask).await;
    a.assert_ok();
    let call = &a.json["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    assert_eq!(a.json["choices"][0]["finish_reason"], "tool_calls");
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let a = chat(&gw, &key, &streamed).await;
    a.assert_ok();
    let arguments: String = sse_events(&a.text)
        .iter()
        .filter_map(|(_, c)| {
            c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(
        bedrock.last_request().unwrap().path_only(),
        "/model/us.amazon.nova-pro-v1%3A0/converse-stream"
    );
    bedrock.reply(Reply::Text(TEXT.into()));

    // A text stream with usage asked for.
    let mut streamed = hello.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let a = chat(&gw, &key, &streamed).await;
    a.assert_ok();
    let (content, usage) = chat_stream(&a.text);
    assert_eq!(content, TEXT, "{}", a.text);
    assert_eq!(usage["completion_tokens"], USAGE.output_tokens);

    // Anthropic's and the Responses API's clients, through chat.
    let native =
        r#"{"model": "nova", "max_tokens": 99, "messages": [{"role": "user", "content": "Hi"}]}"#;
    let a = send(&gw, "/v1/messages", &anthropic_headers(&key), native).await;
    a.assert_ok();
    assert_eq!(a.json["type"], "message", "{}", a.text);
    assert_eq!(a.json["content"][0]["text"], TEXT);
    let a = gw
        .post(
            &key,
            "/v1/responses",
            &json!({"model": "nova", "input": "Hi"}),
        )
        .await;
    a.assert_ok();
    assert_eq!(a.json["object"], "response", "{}", a.text);
    assert_eq!(
        a.json["output"][0]["content"][0]["text"], TEXT,
        "{}",
        a.text
    );

    // A break mid-stream ends it with an error event.
    bedrock.fail_next(Fault::MidStreamError);
    let a = chat(&gw, &key, &streamed).await;
    assert_eq!(a.status, 200);
    assert!(a.text.contains("stream_interrupted"), "{}", a.text);

    // An image by URL, which Converse cannot fetch: refused, nothing sent.
    let hits = bedrock.hits();
    let a = chat(
        &gw,
        &key,
        &json!({"model": "nova", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}),
    )
    .await;
    let error = a.assert_error(400, "invalid_request_error");
    assert_eq!(error["param"], "messages[0].content[0]", "{error}");
    assert_eq!(bedrock.hits(), hits);
}
