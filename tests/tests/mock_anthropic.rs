//! The mock Anthropic upstream itself: it must check requests the way
//! Anthropic's API does, stream the exact event sequence the official SDK
//! accumulates, and fail in Anthropic's shapes, or the gateway tests of
//! `tests/anthropic.rs` prove nothing.

use serde_json::{Value, json};
use sluice_tests::mock_anthropic::{
    self, Fault, KEY, MockAnthropic, PROMPT_TOO_LONG, Reply, TEXT, USAGE, Usage, sse_events,
};

/// An answer: status, headers, body text.
struct Got {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// Asserts Anthropic's error envelope with this status and type.
    #[track_caller]
    fn assert_error(&self, status: u16, kind: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text);
        let body = self.json();
        assert_eq!(body["type"], "error", "{}", self.text);
        assert_eq!(body["error"]["type"], kind, "{}", self.text);
        assert!(body["request_id"].is_string(), "{}", self.text);
        body["error"]["message"].as_str().unwrap().to_string()
    }
}

const HEADERS: &[(&str, &str)] = &[
    ("x-api-key", KEY),
    ("anthropic-version", "2023-06-01"),
    ("content-type", "application/json"),
];

async fn send(mock: &MockAnthropic, path: &str, headers: &[(&str, &str)], body: &str) -> Got {
    let mut r = sluice_tests::http_client()
        .post(format!("{}{path}", mock.url()))
        .body(body.to_string());
    for (n, v) in headers {
        r = r.header(*n, *v);
    }
    let r = r.send().await.unwrap();
    Got {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        text: r.text().await.unwrap(),
    }
}

async fn messages(mock: &MockAnthropic, body: &Value) -> Got {
    send(mock, "/v1/messages", HEADERS, &body.to_string()).await
}

fn hello() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello"}],
    })
}

fn streamed(mut body: Value) -> Value {
    body["stream"] = json!(true);
    body
}

/// The message a stream builds, accumulated as the official SDK does
/// (`message_start`, blocks by index, `message_delta` overwriting usage),
/// with the event names seen in order.
fn accumulate(text: &str) -> (Value, Vec<String>) {
    let mut message = Value::Null;
    let mut json_bufs: Vec<String> = Vec::new();
    let mut names = Vec::new();
    for (name, data) in sse_events(text) {
        assert_eq!(data["type"], name.as_str(), "event: line = data type");
        names.push(name.clone());
        match name.as_str() {
            "message_start" => message = data["message"].clone(),
            "content_block_start" => {
                let i = data["index"].as_u64().unwrap() as usize;
                assert_eq!(i, message["content"].as_array().unwrap().len(), "in order");
                message["content"]
                    .as_array_mut()
                    .unwrap()
                    .push(data["content_block"].clone());
                json_bufs.push(String::new());
            }
            "content_block_delta" => {
                let i = data["index"].as_u64().unwrap() as usize;
                let block = &mut message["content"][i];
                let d = &data["delta"];
                match d["type"].as_str().unwrap() {
                    "text_delta" => {
                        let t = format!(
                            "{}{}",
                            block["text"].as_str().unwrap(),
                            d["text"].as_str().unwrap()
                        );
                        block["text"] = json!(t);
                    }
                    "thinking_delta" => {
                        let t = format!(
                            "{}{}",
                            block["thinking"].as_str().unwrap(),
                            d["thinking"].as_str().unwrap()
                        );
                        block["thinking"] = json!(t);
                    }
                    "signature_delta" => block["signature"] = d["signature"].clone(),
                    "input_json_delta" => {
                        json_bufs[i].push_str(d["partial_json"].as_str().unwrap());
                    }
                    other => panic!("unknown delta {other}"),
                }
            }
            "content_block_stop" => {
                let i = data["index"].as_u64().unwrap() as usize;
                if message["content"][i]["type"] == "tool_use" {
                    message["content"][i]["input"] = serde_json::from_str(&json_bufs[i]).unwrap();
                }
            }
            "message_delta" => {
                message["stop_reason"] = data["delta"]["stop_reason"].clone();
                message["stop_sequence"] = data["delta"]["stop_sequence"].clone();
                if let Some(details) = data["delta"].get("stop_details") {
                    message["stop_details"] = details.clone();
                }
                for (k, v) in data["usage"].as_object().unwrap() {
                    message["usage"][k] = v.clone();
                }
            }
            "message_stop" | "ping" | "error" => {}
            other => panic!("unknown event {other}"),
        }
    }
    (message, names)
}

#[tokio::test]
async fn answers_like_anthropic_and_records_every_request() {
    let mock = MockAnthropic::start().await.unwrap();
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"Say hello"}],"x_unknown":{"kept":true}}"#;
    let mut headers = HEADERS.to_vec();
    headers.push(("anthropic-beta", "prompt-caching-2024-07-31"));
    let got = send(&mock, "/v1/messages?beta=true", &headers, body).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert!(
        got.headers["request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
    let m = got.json();
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["model"], "claude-sonnet-4-5");
    assert!(m["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(m["content"], json!([{"type": "text", "text": TEXT}]));
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(m["stop_sequence"], Value::Null);
    assert_eq!(
        m["usage"],
        json!({"input_tokens": 21, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 9})
    );

    let seen = mock.last_request().unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v1/messages?beta=true");
    assert_eq!(seen.path_only(), "/v1/messages");
    assert_eq!(seen.query("beta"), Some("true"));
    assert_eq!(seen.header("X-Api-Key"), Some(KEY));
    assert_eq!(
        seen.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
    assert_eq!(&seen.body[..], body.as_bytes(), "the raw bytes");
    assert_eq!(mock.hits(), 1);

    // Invalid requests are recorded too; clear() forgets them all.
    send(&mock, "/v1/messages", &[], "{}").await;
    assert_eq!(mock.hits(), 2);
    assert_eq!(mock.requests().len(), 2);
    mock.clear();
    assert_eq!(mock.hits(), 0);
    assert!(mock.last_request().is_none());
}

#[tokio::test]
async fn checks_the_headers_and_fields_anthropic_requires() {
    let mock = MockAnthropic::start_with_key("sk-ant-other").await.unwrap();
    assert_eq!(mock.key(), "sk-ant-other");
    let body = hello().to_string();
    let headers =
        |key: Option<&'static str>, version: Option<&'static str>, ct: Option<&'static str>| {
            let mut h = Vec::new();
            if let Some(k) = key {
                h.push(("x-api-key", k));
            }
            if let Some(v) = version {
                h.push(("anthropic-version", v));
            }
            if let Some(c) = ct {
                h.push(("content-type", c));
            }
            h
        };
    let ok = headers(
        Some("sk-ant-other"),
        Some("2023-06-01"),
        Some("application/json"),
    );
    assert_eq!(send(&mock, "/v1/messages", &ok, &body).await.status, 200);

    let m = send(
        &mock,
        "/v1/messages",
        &headers(None, Some("2023-06-01"), Some("application/json")),
        &body,
    )
    .await
    .assert_error(401, "authentication_error");
    assert!(m.contains("x-api-key"), "{m}");
    // The mock's own key is not another mock's.
    send(
        &mock,
        "/v1/messages",
        &headers(Some(KEY), Some("2023-06-01"), Some("application/json")),
        &body,
    )
    .await
    .assert_error(401, "authentication_error");
    // The key as a Bearer token, as the current official SDKs send it.
    let mut bearer = headers(None, Some("2023-06-01"), Some("application/json"));
    bearer.push(("authorization", "Bearer sk-ant-other"));
    assert_eq!(
        send(&mock, "/v1/messages", &bearer, &body).await.status,
        200
    );
    let mut bearer = headers(None, Some("2023-06-01"), Some("application/json"));
    bearer.push(("authorization", "Bearer sk-ant-wrong"));
    send(&mock, "/v1/messages", &bearer, &body)
        .await
        .assert_error(401, "authentication_error");
    let m = send(
        &mock,
        "/v1/messages",
        &headers(Some("sk-ant-other"), None, Some("application/json")),
        &body,
    )
    .await
    .assert_error(400, "invalid_request_error");
    assert!(m.contains("anthropic-version"), "{m}");
    let m = send(
        &mock,
        "/v1/messages",
        &headers(Some("sk-ant-other"), Some("2023-06-01"), Some("text/plain")),
        &body,
    )
    .await
    .assert_error(400, "invalid_request_error");
    assert!(m.contains("content-type"), "{m}");
    send(&mock, "/v1/complete", &ok, &body)
        .await
        .assert_error(404, "not_found_error");

    // Each body a real Anthropic refuses, and the words that say why.
    let cases: Vec<(&str, Value)> = vec![
        (
            "model: Field required",
            json!({"max_tokens": 5, "messages": [{"role": "user", "content": "a"}]}),
        ),
        (
            "max_tokens: Field required",
            json!({"model": "c", "messages": [{"role": "user", "content": "a"}]}),
        ),
        (
            "max_tokens",
            json!({"model": "c", "max_tokens": 0, "messages": [{"role": "user", "content": "a"}]}),
        ),
        (
            "max_tokens",
            json!({"model": "c", "max_tokens": "5", "messages": [{"role": "user", "content": "a"}]}),
        ),
        (
            "max_tokens",
            json!({"model": "c", "max_tokens": 2.5, "messages": [{"role": "user", "content": "a"}]}),
        ),
        ("messages", json!({"model": "c", "max_tokens": 5})),
        (
            "messages",
            json!({"model": "c", "max_tokens": 5, "messages": []}),
        ),
        (
            "first message",
            json!({"model": "c", "max_tokens": 5, "messages": [{"role": "assistant", "content": "a"}]}),
        ),
        (
            "role",
            json!({"model": "c", "max_tokens": 5, "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}]}),
        ),
        (
            "alternate",
            json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}),
        ),
        (
            "non-empty",
            json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": ""}]}),
        ),
        (
            "non-empty",
            json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}),
        ),
        (
            "stop: Extra inputs",
            json!({"model": "c", "max_tokens": 5, "stop": ["x"], "messages": [{"role": "user", "content": "a"}]}),
        ),
        (
            "stream_options",
            json!({"model": "c", "max_tokens": 5, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "a"}]}),
        ),
        (
            "tool_calls",
            json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "tool_calls": []}]}),
        ),
        (
            "temperature",
            json!({"model": "c", "max_tokens": 5, "temperature": 1.7, "messages": [{"role": "user", "content": "a"}]}),
        ),
        (
            "tool_choice",
            json!({"model": "c", "max_tokens": 5, "tool_choice": "required", "messages": [{"role": "user", "content": "a"}]}),
        ),
        (
            "function",
            json!({"model": "c", "max_tokens": 5, "tools": [{"type": "function", "function": {"name": "f"}}], "messages": [{"role": "user", "content": "a"}]}),
        ),
        (
            "image_url",
            json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}),
        ),
        (
            "media_type",
            json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "AAAA"}}]}]}),
        ),
        (
            "budget_tokens",
            json!({"model": "c", "max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 4096}, "messages": [{"role": "user", "content": "a"}]}),
        ),
        (
            "signature",
            json!({"model": "c", "max_tokens": 5, "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "b"}]},
            {"role": "user", "content": "c"}]}),
        ),
        (
            "unexpected `tool_use_id`",
            json!({"model": "c", "max_tokens": 5, "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "x"}]}]}),
        ),
        (
            "without `tool_result`",
            json!({"model": "c", "max_tokens": 5, "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
            {"role": "user", "content": "no result"}]}),
        ),
    ];
    for (why, body) in cases {
        let m = send(&mock, "/v1/messages", &ok, &body.to_string())
            .await
            .assert_error(400, "invalid_request_error");
        assert!(m.contains(why), "{body}: {m:?} should say {why:?}");
    }
    send(&mock, "/v1/messages", &ok, "{not json")
        .await
        .assert_error(400, "invalid_request_error");

    // What it accepts: a full conversation with images, tools, a signed
    // thinking block, cache markers and a prefilled final assistant turn.
    let full = json!({
        "model": "c", "max_tokens": 2048,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "stop_sequences": ["END"], "temperature": 0.5, "top_k": 5,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Look"},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig=="},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]}]},
            {"role": "assistant", "content": "The weather is"},
        ],
    });
    let mut temp_one = full.clone();
    temp_one["temperature"] = json!(1);
    let got = messages_with(&mock, &ok, &temp_one).await;
    assert_eq!(got.status, 200, "{}", got.text);
    // Thinking and a temperature other than 1 do not go together.
    messages_with(&mock, &ok, &full)
        .await
        .assert_error(400, "invalid_request_error");
}

async fn messages_with(mock: &MockAnthropic, headers: &[(&str, &str)], body: &Value) -> Got {
    send(mock, "/v1/messages", headers, &body.to_string()).await
}

#[tokio::test]
async fn every_reply_comes_whole_and_streamed_alike() {
    let mock = MockAnthropic::start().await.unwrap();
    let usage = Usage {
        input_tokens: 4,
        output_tokens: 30,
        cache_creation_input_tokens: 1200,
        cache_read_input_tokens: 800,
    };
    mock.usage(usage);
    let weather = |city: &str| {
        (
            "get_weather".to_string(),
            json!({"city": city, "unit": "c"}),
        )
    };
    let replies = vec![
        (Reply::Text("Bonjour à tous, ça va ?".into()), "end_turn"),
        (
            Reply::ToolUse(vec![weather("Paris"), weather("Tokyo")]),
            "tool_use",
        ),
        (
            Reply::TextThenToolUse {
                text: "Let me check.".into(),
                tools: vec![weather("Oslo")],
            },
            "tool_use",
        ),
        (
            Reply::ThinkingThenText {
                thinking: "The user wants a greeting.".into(),
                signature: "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds".into(),
                text: "Hello!".into(),
            },
            "end_turn",
        ),
        (Reply::Refusal, "refusal"),
        (Reply::StopReason("pause_turn".into()), "pause_turn"),
        (
            Reply::StopReason("model_context_window_exceeded".into()),
            "model_context_window_exceeded",
        ),
    ];
    for (reply, stop_reason) in replies {
        mock.reply(reply.clone());
        let whole = messages(&mock, &hello()).await;
        assert_eq!(whole.status, 200, "{}", whole.text);
        let whole = whole.json();
        assert_eq!(whole["stop_reason"], stop_reason, "{whole}");

        let got = messages(&mock, &streamed(hello())).await;
        assert_eq!(got.status, 200);
        assert_eq!(
            got.headers["content-type"].to_str().unwrap(),
            "text/event-stream; charset=utf-8"
        );
        let (mut built, names) = accumulate(&got.text);
        assert_eq!(names[0], "message_start", "{reply:?}");
        assert!(names.contains(&"ping".to_string()), "{names:?}");
        assert_eq!(names[names.len() - 2..], ["message_delta", "message_stop"]);
        // The start counts 1 output token, the delta the total: summing them is wrong.
        let start = &sse_events(&got.text)[0].1;
        assert_eq!(start["message"]["usage"]["output_tokens"], 1);
        assert_eq!(start["message"]["usage"]["cache_read_input_tokens"], 800);
        // Ids differ per request; the rest is the same answer.
        built["id"] = whole["id"].clone();
        for (i, block) in whole["content"].as_array().unwrap().iter().enumerate() {
            if block["type"] == "tool_use" {
                built["content"][i]["id"] = block["id"].clone();
            }
        }
        assert_eq!(built, whole, "{reply:?}: streamed = whole");
        assert_eq!(whole["usage"]["cache_creation_input_tokens"], 1200);
        assert_eq!(whole["usage"]["output_tokens"], 30);
        assert_eq!(usage.prompt_tokens(), 2004);
    }

    // Parallel tool calls: one block each, ids unique, input deltas in
    // fragments, the first empty.
    mock.reply(Reply::ToolUse(vec![weather("Paris"), weather("Tokyo")]));
    let got = messages(&mock, &streamed(hello())).await;
    let events = sse_events(&got.text);
    let starts: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, d)| &d["content_block"])
        .collect();
    assert_eq!(starts.len(), 2);
    assert_ne!(starts[0]["id"], starts[1]["id"]);
    assert_eq!(starts[0]["input"], json!({}));
    let fragments: Vec<&str> = events
        .iter()
        .filter(|(_, d)| d["index"] == 1 && d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert!(fragments.len() >= 3, "{fragments:?}");
    assert_eq!(fragments[0], "");

    // A refusal carries stop_details; a stop sequence names itself.
    mock.reply(Reply::Refusal);
    let m = messages(&mock, &hello()).await.json();
    assert_eq!(m["content"], json!([]));
    assert_eq!(m["stop_details"]["type"], "refusal");
    mock.reply(Reply::StopReason("stop_sequence".into()));
    let mut body = hello();
    body["stop_sequences"] = json!(["END", "STOP"]);
    let m = messages(&mock, &body).await.json();
    assert_eq!(
        (m["stop_reason"].as_str(), m["stop_sequence"].as_str()),
        (Some("stop_sequence"), Some("END"))
    );
}

#[tokio::test]
async fn faults_come_in_anthropics_shapes_once_or_until_told() {
    let mock = MockAnthropic::start().await.unwrap();
    let faults = [
        (Fault::Overloaded, 529, "overloaded_error"),
        (Fault::RateLimited, 429, "rate_limit_error"),
        (Fault::PromptTooLong, 400, "invalid_request_error"),
        (Fault::Authentication, 401, "authentication_error"),
        (Fault::Api, 500, "api_error"),
        (Fault::MidStreamError, 529, "overloaded_error"),
        (
            Fault::Error {
                status: 403,
                kind: "permission_error".into(),
                message: "no".into(),
            },
            403,
            "permission_error",
        ),
    ];
    for (fault, status, kind) in faults {
        mock.fail_next(fault.clone());
        let got = messages(&mock, &hello()).await;
        let message = got.assert_error(status, kind);
        match fault {
            Fault::RateLimited => {
                assert_eq!(got.headers["retry-after"], mock_anthropic::RETRY_AFTER);
            }
            Fault::PromptTooLong => assert_eq!(message, PROMPT_TOO_LONG),
            _ => {}
        }
        // Once: the next answers.
        assert_eq!(messages(&mock, &hello()).await.status, 200);
    }

    // Streamed, a fault before the stream is an HTTP error; mid-stream, an
    // error event after the first text.
    mock.fail_next(Fault::Overloaded);
    messages(&mock, &streamed(hello()))
        .await
        .assert_error(529, "overloaded_error");
    mock.fail_next(Fault::MidStreamError);
    let got = messages(&mock, &streamed(hello())).await;
    assert_eq!(got.status, 200);
    let events = sse_events(&got.text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(events[4].1["error"]["type"], "overloaded_error");

    // Standing until succeed(); scripted steps come first, in order.
    mock.fail(Fault::Api);
    mock.reply_next(Reply::Text("scripted".into()));
    mock.fail_next(Fault::Overloaded);
    let m = messages(&mock, &hello()).await.json();
    assert_eq!(m["content"][0]["text"], "scripted");
    messages(&mock, &hello())
        .await
        .assert_error(529, "overloaded_error");
    messages(&mock, &hello())
        .await
        .assert_error(500, "api_error");
    messages(&mock, &hello())
        .await
        .assert_error(500, "api_error");
    mock.succeed();
    assert_eq!(
        messages(&mock, &hello()).await.json()["content"][0]["text"],
        TEXT
    );

    // An invalid request is refused before any fault, and takes no step.
    mock.fail_next(Fault::Overloaded);
    let mut bad = hello();
    bad["max_tokens"] = json!(-1);
    messages(&mock, &bad)
        .await
        .assert_error(400, "invalid_request_error");
    messages(&mock, &hello())
        .await
        .assert_error(529, "overloaded_error");
}

#[tokio::test]
async fn count_tokens_answers_the_standing_usage_and_takes_no_step() {
    let mock = MockAnthropic::start().await.unwrap();
    let body = json!({"model": "c", "messages": [{"role": "user", "content": "a"}]});
    mock.fail_next(Fault::Overloaded);
    let got = send(
        &mock,
        "/v1/messages/count_tokens?beta=true",
        HEADERS,
        &body.to_string(),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json(), json!({"input_tokens": USAGE.prompt_tokens()}));
    mock.usage(Usage {
        input_tokens: 10,
        cache_read_input_tokens: 5,
        ..USAGE
    });
    let got = send(
        &mock,
        "/v1/messages/count_tokens",
        HEADERS,
        &body.to_string(),
    )
    .await;
    assert_eq!(got.json(), json!({"input_tokens": 15}));
    // The scripted 529 was left for /v1/messages.
    messages(&mock, &hello())
        .await
        .assert_error(529, "overloaded_error");
    // Still checked like a real one.
    send(
        &mock,
        "/v1/messages/count_tokens",
        &HEADERS[..1],
        &body.to_string(),
    )
    .await
    .assert_error(400, "invalid_request_error");
}

/// The official `anthropic` SDK against the mock directly: its stream
/// helpers (`messages.stream(...).get_final_message()`) accept the mock's
/// events, and its error classes match the mock's errors. The Python tests
/// run in file order and each takes the next scripted step (below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_anthropic_sdk_accepts_the_mock() {
    let mock = MockAnthropic::start().await.unwrap();
    mock.usage(Usage {
        input_tokens: 4,
        output_tokens: 30,
        cache_creation_input_tokens: 1200,
        cache_read_input_tokens: 800,
    });
    let weather = |city: &str| ("get_weather".to_string(), json!({"city": city}));
    mock.reply_next(Reply::Text(TEXT.into()));
    mock.reply_next(Reply::Text(TEXT.into()));
    mock.reply_next(Reply::ToolUse(vec![weather("Paris"), weather("Tokyo")]));
    mock.reply_next(Reply::TextThenToolUse {
        text: "Let me check.".into(),
        tools: vec![weather("Paris"), weather("Tokyo")],
    });
    mock.reply_next(Reply::ThinkingThenText {
        thinking: "The user wants a greeting.".into(),
        signature: "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgx".into(),
        text: "Hello!".into(),
    });
    mock.reply_next(Reply::Refusal);
    mock.fail_next(Fault::Overloaded);
    mock.fail_next(Fault::RateLimited);
    mock.fail_next(Fault::Authentication);
    mock.fail_next(Fault::PromptTooLong);
    mock.fail_next(Fault::MidStreamError);
    sluice_tests::pytest(
        "test_anthropic_sdk_mock.py",
        [
            ("SLUICE_TEST_ANTHROPIC_URL", mock.url()),
            ("SLUICE_TEST_ANTHROPIC_KEY", mock.key().to_string()),
            ("SLUICE_TEST_EXPECTED_TEXT", TEXT.to_string()),
        ],
    )
    .await;
    // Eleven scripted requests, count_tokens and a wrong key, each once.
    assert_eq!(mock.hits(), 13);
    // The SDK sends its own (newer) API version; the mock takes any date.
    let versions: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| {
            r.header("anthropic-version")
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(versions.iter().all(|v| v.len() == 10), "{versions:?}");
}
