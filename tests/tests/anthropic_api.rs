//! Anthropic's API on the data plane in front of an OpenAI-compatible
//! deployment (the quick start's case): `/v1/messages` translated to chat
//! completions and back, whole and streamed; `count_tokens` estimated
//! without an upstream call; errors in Anthropic's envelope; `/v1/models`
//! in Anthropic's shape when asked with `anthropic-version`.
//!
//! The Anthropic upstream's side (pass-through, Claude behind the OpenAI
//! API, the official SDKs) is `anthropic.rs`'s.

use serde_json::{Value, json};
use sluice_tests::gateway::{Answer, Gateway};
use sluice_tests::mock_upstream::{CHAT_CONTENT, COMPLETION_TOKENS, PROMPT_TOKENS, STREAM_PIECES};

/// A Messages request, as Anthropic's SDK writes it.
fn messages_body(model: &str) -> Value {
    json!({
        "model": model,
        "max_tokens": 256,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": "Say hello"}],
        "stop_sequences": ["END"],
    })
}

async fn post_messages(gw: &Gateway, key: &str, path: &str, body: &Value) -> Answer {
    let r = gw
        .http
        .post(gw.url(path))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("data plane answers");
    Answer::read(r).await
}

#[tokio::test]
async fn a_messages_request_reaches_an_openai_deployment_translated_and_comes_back_in_anthropics_shape()
 {
    let (gw, key) = Gateway::serving("gpt-4o", "gpt-4o-2024-08-06").await;
    // Claude Code adds `?beta=true`: the route is the path's.
    let answer = post_messages(
        &gw,
        &key,
        "/v1/messages?beta=true",
        &messages_body("gpt-4o"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let m = &answer.json;
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert!(m["id"].as_str().unwrap().starts_with("msg_"), "{m}");
    assert_eq!(
        m["content"],
        json!([{"type": "text", "text": CHAT_CONTENT}])
    );
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(m["usage"]["input_tokens"], PROMPT_TOKENS);
    assert_eq!(m["usage"]["output_tokens"], COMPLETION_TOKENS);
    assert_eq!(answer.header("x-sluice-model-group"), Some("gpt-4o"));

    // The upstream was asked in OpenAI's shape.
    let seen = gw
        .upstream
        .last_request()
        .expect("the upstream was called")
        .json();
    assert_eq!(seen["model"], "gpt-4o-2024-08-06");
    assert_eq!(
        seen["messages"],
        json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ])
    );
    assert_eq!(seen["stop"], json!(["END"]));
    assert_eq!(seen["max_tokens"], 256);
    assert!(
        seen.get("temperature").is_none(),
        "nothing injected: {seen}"
    );
}

#[tokio::test]
async fn a_streamed_messages_request_is_translated_event_by_event() {
    let (gw, key) = Gateway::serving("gpt-4o", "gpt-4o").await;
    let mut body = messages_body("gpt-4o");
    body["stream"] = json!(true);
    let answer = post_messages(&gw, &key, "/v1/messages", &body).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events: Vec<(String, Value)> = answer
        .text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (name.to_owned(), serde_json::from_str(data).unwrap())
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    assert!(names.contains(&"content_block_start") && names.contains(&"message_delta"));
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(text, STREAM_PIECES.concat());
    let delta = &events.iter().find(|(n, _)| n == "message_delta").unwrap().1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], COMPLETION_TOKENS);
    // The upstream was asked for its usage, which the translation needs.
    let seen = gw.upstream.last_request().unwrap().json();
    assert_eq!(seen["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn count_tokens_on_an_openai_deployment_is_estimated_without_an_upstream_call() {
    let (gw, key) = Gateway::serving("gpt-4o", "gpt-4o").await;
    let mut body = messages_body("gpt-4o");
    body.as_object_mut().unwrap().remove("max_tokens");
    let answer = post_messages(&gw, &key, "/v1/messages/count_tokens", &body).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(
        answer.json["input_tokens"].as_u64().unwrap() > 0,
        "{}",
        answer.text
    );
    assert_eq!(gw.upstream.hits(), 0);
}

#[tokio::test]
async fn errors_on_anthropics_routes_use_anthropics_envelope() {
    let (gw, key) = Gateway::serving("gpt-4o", "gpt-4o").await;
    let denied = post_messages(&gw, &key, "/v1/messages", &messages_body("o1")).await;
    assert_eq!(denied.status, 403, "{}", denied.text);
    assert_eq!(denied.json["type"], "error");
    assert_eq!(denied.json["error"]["type"], "permission_error");
    assert!(
        denied.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gpt-4o"),
        "names what the key may use: {}",
        denied.text
    );
    let unknown = post_messages(&gw, "sk-nope", "/v1/messages", &messages_body("gpt-4o")).await;
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.json["error"]["type"], "authentication_error");
    let bad = post_messages(&gw, &key, "/v1/messages", &json!({"model": "gpt-4o"})).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json["error"]["type"], "invalid_request_error");
    assert_eq!(gw.upstream.hits(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn models_are_listed_in_anthropics_shape_when_asked_with_anthropic_version() {
    let (gw, key) = Gateway::serving("gpt-4o", "gpt-4o").await;
    let r = gw
        .http
        .get(gw.url("/v1/models?limit=1000"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    let answer = Answer::read(r).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let data = answer.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["type"], "model");
    assert_eq!(data[0]["id"], "gpt-4o");
    assert!(data[0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(answer.json["has_more"], false);
    assert_eq!(answer.json["first_id"], "gpt-4o");
    assert_eq!(answer.json["last_id"], "gpt-4o");
    // Without the header: OpenAI's shape.
    let openai = gw.get(&key, "/v1/models").await;
    assert_eq!(openai.json["object"], "list");
}
