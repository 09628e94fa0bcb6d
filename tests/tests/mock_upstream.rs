//! The mock OpenAI upstream itself: it must speak OpenAI well enough for the
//! official SDK, record what it is sent, and hold a stream exactly where told,
//! or the gateway tests that rely on it prove nothing.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use sluice_tests::mock_upstream::{self, MockUpstream};

async fn post(url: &str, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
    let mut r = sluice_tests::http_client().post(url).body(body.to_string());
    for (n, v) in headers {
        r = r.header(*n, *v);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn answers_like_openai_and_records_every_request() {
    let upstream = MockUpstream::start().await.unwrap();
    let (status, body) = post(
        &upstream.url("/v1/chat/completions"),
        &[("authorization", "Bearer sk-up"), ("x-request-id", "r-1")],
        &json!({"model": "gpt-4o", "messages": []}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        mock_upstream::CHAT_CONTENT
    );
    assert_eq!(body["usage"]["total_tokens"], 18);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.header("Authorization"), Some("Bearer sk-up"));
    assert_eq!(seen.header("x-request-id"), Some("r-1"));
    assert_eq!(seen.json()["model"], "gpt-4o");

    let (status, body) = post(
        &upstream.url("/openai/deployments/my-dep/chat/completions?api-version=2024-10-21"),
        &[("api-key", "az")],
        &json!({"messages": []}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = upstream.last_request().unwrap();
    assert_eq!(
        seen.path_only(),
        "/openai/deployments/my-dep/chat/completions"
    );
    assert_eq!(seen.query("api-version"), Some("2024-10-21"));

    for path in ["/embeddings", "/v1/embeddings"] {
        let (status, body) = post(
            &upstream.url(path),
            &[],
            &json!({"model": "e", "input": ["a", "b", "c"]}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["data"].as_array().unwrap().len(), 3);
        assert_eq!(
            body["data"][0]["embedding"],
            json!(mock_upstream::EMBEDDING)
        );
    }
    let (status, body) = post(
        &upstream.url("/v1/completions"),
        &[],
        &json!({"model": "i", "prompt": "x"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "text_completion");

    let (status, body) = post(&upstream.url("/v1/nope"), &[], &json!({})).await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"].is_string());
    assert_eq!(upstream.requests().len(), 6);
    upstream.clear();
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn fails_and_waits_when_told() {
    let upstream = MockUpstream::start().await.unwrap();
    upstream.fail_with(429, "rate_limit_exceeded");
    let (status, body) = post(
        &upstream.url("/v1/chat/completions"),
        &[],
        &json!({"model": "m"}),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    upstream.succeed();
    upstream.set_latency(Duration::from_millis(300));
    let started = Instant::now();
    let (status, _) = post(
        &upstream.url("/v1/chat/completions"),
        &[],
        &json!({"model": "m"}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_held_stream_sends_its_first_chunk_then_waits_for_release() {
    let upstream = MockUpstream::start().await.unwrap();
    let gate = upstream.hold_streams();
    let r = sluice_tests::http_client()
        .post(upstream.url("/v1/chat/completions"))
        .body(
            json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut stream = r.bytes_stream();
    let mut received = Vec::new();
    while !received.ends_with(b"\n\n") {
        received.extend_from_slice(&stream.next().await.unwrap().unwrap());
    }
    upstream.first_chunk_sent().await;
    let first = String::from_utf8(received.clone()).unwrap();
    assert!(first.contains(mock_upstream::STREAM_PIECES[0]), "{first}");
    // Held: nothing more comes until released.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), stream.next())
            .await
            .is_err(),
        "the stream was not held"
    );
    gate.release();
    while let Some(chunk) = stream.next().await {
        received.extend_from_slice(&chunk.unwrap());
    }
    let all = String::from_utf8(received).unwrap();
    assert!(all.ends_with("data: [DONE]\n\n"), "{all}");
    assert!(
        all.contains("\"usage\""),
        "include_usage adds a usage chunk"
    );
    let text: String = all
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| {
            serde_json::from_str::<Value>(d).ok()?["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, mock_upstream::STREAM_PIECES.concat());
}

/// The happy paths of tests/python/test_openai_sdk.py, straight against the
/// mock: proves the mock is OpenAI enough for the official SDK (and that the
/// Python tests themselves are sound) before any gateway is involved.
#[tokio::test(flavor = "multi_thread")]
async fn the_official_openai_sdk_accepts_the_mocks_answers() {
    let upstream = MockUpstream::start().await.unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/test_openai_sdk.py");
    let out = tokio::process::Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", script, "-k"])
        .arg("test_chat_completion or test_streamed_chat_completion or test_embeddings")
        .env("SLUICE_TEST_BASE_URL", upstream.url("/v1"))
        .env("SLUICE_TEST_KEY", "sk-anything")
        .env("SLUICE_TEST_MODEL", "gpt-4o")
        .env("SLUICE_TEST_EMBEDDING_MODEL", "text-embedding-3-small")
        .envs(mock_upstream::sdk_expectations())
        .output()
        .await
        .expect("python3 runs (scripts/test.sh installs openai and pytest)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("4 passed"), "{stdout}");
    let paths: Vec<String> = upstream.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths.len(), 4, "{paths:?}");
    assert!(
        upstream
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer sk-anything"))
    );
}

/// The Responses API: whole, stored and fetched back, an unknown
/// `previous_response_id` refused as OpenAI does, and streamed in OpenAI's
/// event sequence.
#[tokio::test]
async fn answers_the_responses_api_like_openai() {
    let upstream = MockUpstream::start().await.unwrap();
    let (status, body) = post(
        &upstream.url("/v1/responses"),
        &[],
        &json!({"model": "gpt-4o", "input": "Say hello"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "response");
    assert_eq!(body["status"], "completed");
    let id = body["id"].as_str().unwrap();
    assert!(id.starts_with("resp_"), "{id}");
    assert_eq!(body["output"][0]["type"], "message");
    assert_eq!(
        body["output"][0]["content"][0]["text"],
        mock_upstream::CHAT_CONTENT
    );
    assert_eq!(body["usage"]["input_tokens"], mock_upstream::PROMPT_TOKENS);
    assert_eq!(
        body["usage"]["output_tokens"],
        mock_upstream::COMPLETION_TOKENS
    );
    assert_eq!(body["usage"]["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(upstream.last_request().unwrap().path, "/v1/responses");

    let r = sluice_tests::http_client()
        .get(upstream.url(&format!("/v1/responses/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let fetched: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(fetched, body);

    let (status, chained) = post(
        &upstream.url("/responses"),
        &[],
        &json!({"model": "gpt-4o", "input": "More", "previous_response_id": id, "store": false}),
    )
    .await;
    assert_eq!(status, 200, "{chained}");
    assert!(
        upstream
            .stored_response(chained["id"].as_str().unwrap())
            .is_none()
    );
    let (status, unknown) = post(
        &upstream.url("/v1/responses"),
        &[],
        &json!({"model": "gpt-4o", "input": "x", "previous_response_id": "resp_nope"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        unknown,
        json!({"error": {
            "message": "Previous response with id 'resp_nope' not found.",
            "type": "invalid_request_error",
            "param": "previous_response_id",
            "code": "previous_response_not_found",
        }})
    );

    let tools = json!([{"type": "function", "name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
    let (_, call) = post(
        &upstream.url("/v1/responses"),
        &[],
        &json!({"model": "m", "input": "Weather?", "tools": tools}),
    )
    .await;
    assert_eq!(call["output"][0]["type"], "function_call", "{call}");
    assert_eq!(call["output"][0]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["output"][0]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string(), "{args}");
    let call_id = call["output"][0]["call_id"].clone();
    let (_, answered) = post(
        &upstream.url("/v1/responses"),
        &[],
        &json!({"model": "m", "tools": tools, "input": [
            {"role": "user", "content": "Weather?"},
            call["output"][0],
            {"type": "function_call_output", "call_id": call_id, "output": "sunny"},
        ]}),
    )
    .await;
    assert_eq!(answered["output"][0]["type"], "message", "{answered}");
    // What OpenAI refuses in input items.
    let mut extra = call["output"][0].clone();
    extra["parsed_arguments"] = json!({"city": "Paris"});
    let (status, refused) = post(
        &upstream.url("/v1/responses"),
        &[],
        &json!({"model": "m", "input": [{"role": "user", "content": "?"}, extra]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(refused["error"]["param"], "input[1].parsed_arguments");
    let (status, orphan) = post(
        &upstream.url("/v1/responses"),
        &[],
        &json!({"model": "m", "store": false, "input": [
            {"role": "user", "content": "?"},
            {"type": "function_call_output", "call_id": "call_other", "output": "sunny"},
        ]}),
    )
    .await;
    assert_eq!(status, 400, "{orphan}");
    assert!(
        orphan["error"]["message"]
            .as_str()
            .unwrap()
            .contains("call_other")
    );

    let r = sluice_tests::http_client()
        .post(upstream.url("/v1/responses"))
        .body(json!({"model": "m", "input": "hi", "stream": true}).to_string())
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = r.text().await.unwrap();
    let events: Vec<(String, Value)> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (name.to_owned(), serde_json::from_str(data).unwrap())
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], i);
    }
    assert_eq!(events[10].1["response"]["usage"]["total_tokens"], 18);
}

/// tests/python/test_openai_sdk_responses.py straight against the mock: the
/// official SDK accepts its Responses answers, whole, streamed, with tools.
#[tokio::test(flavor = "multi_thread")]
async fn the_official_openai_sdk_accepts_the_mocks_responses() {
    let upstream = MockUpstream::start().await.unwrap();
    sluice_tests::pytest(
        "test_openai_sdk_responses.py",
        [
            ("SLUICE_TEST_BASE_URL", upstream.url("/v1")),
            ("SLUICE_TEST_KEY", "sk-anything".into()),
            ("SLUICE_TEST_MODEL", "gpt-4o".into()),
            (
                "SLUICE_TEST_EXPECTED_TEXT",
                mock_upstream::CHAT_CONTENT.into(),
            ),
            (
                "SLUICE_TEST_EXPECTED_STREAM",
                mock_upstream::STREAM_PIECES.concat(),
            ),
            // The mock serves function tools only, as the pass-through's tests
            // need; compaction has its own path, which this test does not expect.
            (
                "PYTEST_ADDOPTS",
                "-k 'not translated and not compact'".into(),
            ),
        ],
    )
    .await;
    assert!(
        upstream
            .requests()
            .iter()
            .all(|r| r.path_only() == "/v1/responses")
    );
}

/// Told to, chat completions call the first function tool (until a tool
/// result is the last message) and follow a `response_format` schema,
/// whole and streamed; by default they answer text whatever they are asked.
#[tokio::test]
async fn chat_calls_tools_and_follows_schemas_when_told() {
    let upstream = MockUpstream::start().await.unwrap();
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let asked =
        json!({"model": "m", "tools": tools, "messages": [{"role": "user", "content": "?"}]});
    let url = upstream.url("/v1/chat/completions");
    let (_, plain) = post(&url, &[], &asked).await;
    assert_eq!(
        plain["choices"][0]["message"]["content"],
        mock_upstream::CHAT_CONTENT
    );
    upstream.call_tools_and_follow_schemas();
    let (_, called) = post(&url, &[], &asked).await;
    let choice = &called["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{called}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string());
    let mut answered = asked.clone();
    answered["messages"] = json!([
        {"role": "user", "content": "?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
    ]);
    let (_, text) = post(&url, &[], &answered).await;
    assert_eq!(
        text["choices"][0]["message"]["content"],
        mock_upstream::CHAT_CONTENT
    );
    let schema = json!({"model": "m", "messages": [], "response_format": {"type": "json_schema",
        "json_schema": {"name": "w", "schema": {"type": "object", "properties": {"t": {"type": "number"}}}}}});
    let (_, json_answer) = post(&url, &[], &schema).await;
    let content: Value = serde_json::from_str(
        json_answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(content["t"].is_number(), "{content}");
    let mut streamed = asked.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let r = sluice_tests::http_client()
        .post(&url)
        .body(streamed.to_string())
        .send()
        .await
        .unwrap();
    let all = r.text().await.unwrap();
    assert!(all.contains("\"tool_calls\""), "{all}");
    assert!(all.contains("\"finish_reason\":\"tool_calls\""), "{all}");
    assert!(all.contains("\"usage\""), "{all}");
    assert!(all.ends_with("data: [DONE]\n\n"), "{all}");
}
