//! The `mock` provider (deployment `model: mock/<anything>`): answers
//! in-process with canned bodies in OpenAI's exact shapes, so demos and tests
//! need no provider account and no network.
//!
//! | format | answer |
//! |---|---|
//! | chat completions | one `chat.completion` with an assistant message and `usage` |
//! | chat completions, `stream: true` | `chat.completion.chunk` events (role, then one word of content per chunk, then `finish_reason: "stop"`; a final `usage` chunk when `stream_options.include_usage` is true), then `data: [DONE]` |
//! | completions | one `text_completion` (streamed the same way when asked) |
//! | embeddings | one deterministic 8-dimension vector per input, as floats or, with `encoding_format: "base64"`, as little-endian f32 in base64 |
//! | image generations | `n` (default 1) copies of a 1×1 PNG, as `b64_json`, or as a `data:` URL in `url` with `response_format: "url"`; `usage` as the GPT image models write it (prompt words in, 272 output tokens an image) |
//! | moderations | one result per input string (one for a list of content parts), in omni-moderation's categories; `violence` flagged when the text holds "kill", `harassment` when it holds "idiot"; no `usage`, as OpenAI's |
//!
//! Token counts are whitespace-separated words: prompt words in, content
//! words out.
//!
//! **Knobs**, in the deployment's `api_base`, written as a query string with
//! or without a `mock://` scheme, e.g. `mock://?latency_ms=200&fail=429`:
//!
//! | knob | effect |
//! |---|---|
//! | `latency_ms=N` | wait N ms before answering (before the first chunk when streaming) |
//! | `chunk_delay_ms=N` | wait N ms between streamed chunks |
//! | `fail=STATUS` | answer STATUS (400–599) with an OpenAI error body (`429`: `rate_limit_exceeded`, others: `mock_failure`) |
//! | `content=TEXT` | the assistant's text (`+` stands for a space); default [`DEFAULT_CONTENT`] |
//!
//! Unknown knobs and unparsable values are ignored, so a typo degrades to
//! the default behaviour rather than breaking the deployment.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::formats::{Format, sse};
use crate::request::parse::Parsed;

/// What the mock says unless `content=` says otherwise.
pub const DEFAULT_CONTENT: &str = "This is a mock response from Sluice.";

/// Dimensions of a mock embedding.
const EMBEDDING_DIMENSIONS: usize = 8;

/// The knobs of one mock deployment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    pub latency: Duration,
    pub chunk_delay: Duration,
    pub fail: Option<StatusCode>,
    pub content: Option<String>,
}

impl Settings {
    /// Reads the knobs from a mock deployment's `api_base`.
    pub fn from_api_base(api_base: &str) -> Settings {
        let query = api_base.trim();
        let query = query.strip_prefix("mock://").unwrap_or(query);
        let query = query.split_once('?').map_or(query, |(_, q)| q);
        let mut settings = Settings::default();
        for pair in query.split('&') {
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let millis = || value.parse::<u64>().ok().map(Duration::from_millis);
            match name {
                "latency_ms" => settings.latency = millis().unwrap_or_default(),
                "chunk_delay_ms" => settings.chunk_delay = millis().unwrap_or_default(),
                "fail" => {
                    settings.fail = value
                        .parse::<u16>()
                        .ok()
                        .and_then(|s| StatusCode::from_u16(s).ok())
                        .filter(|s| s.is_client_error() || s.is_server_error());
                }
                "content" => settings.content = Some(value.replace('+', " ")),
                _ => {}
            }
        }
        settings
    }
}

/// The mock's answer, before its latency is applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Json {
        status: StatusCode,
        body: String,
    },
    /// Server-sent events, each already framed as `data: …\n\n`.
    Stream {
        events: Vec<String>,
    },
}

/// Answers `request`, a body in `format`, as the model `model`.
/// `ask_usage`: the gateway asks a stream for its usage chunk, as it would
/// a real upstream with `stream_options.include_usage`.
pub fn answer(
    settings: &Settings,
    format: Format,
    request: &Parsed,
    model: &str,
    ask_usage: bool,
) -> Reply {
    if let Some(status) = settings.fail {
        let code = if status == StatusCode::TOO_MANY_REQUESTS {
            "rate_limit_exceeded"
        } else {
            "mock_failure"
        };
        let body = json!({"error": {
            "message": format!("mock failure {} (set by the deployment's fail= knob)", status.as_u16()),
            "type": if status.is_server_error() { "server_error" } else { "invalid_request_error" },
            "param": null,
            "code": code,
        }});
        return Reply::Json {
            status,
            body: body.to_string(),
        };
    }
    // The body was checked by `request::parse`, so it is a JSON object.
    let body: Value = serde_json::from_slice(request.body()).unwrap_or(Value::Null);
    let with_usage = ask_usage || include_usage(&body);
    let content = settings.content.as_deref().unwrap_or(DEFAULT_CONTENT);
    let prompt_tokens = words(&body);
    let completion_tokens = content.split_whitespace().count() as u64;
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let id = format!("mock-{}", crate::headers::random_hex(12));
    match format {
        // The mock speaks OpenAI's formats; a Messages request reaches it
        // translated (`crate::forward`), so this is a caller's mistake.
        Format::Messages | Format::CountTokens | Format::Responses | Format::ResponsesCompact => {
            Reply::Json {
            status: StatusCode::BAD_REQUEST,
            body: json!({"error": {
                "message": "the mock provider answers OpenAI's formats only",
                "type": "invalid_request_error", "param": null, "code": null,
            }})
            .to_string(),
            }
        }
        Format::Embeddings => embeddings(&body, model, prompt_tokens),
        Format::Moderations => moderations(&body, model),
        Format::ImageGenerations => images(&body, request.n, prompt_tokens, created),
        Format::ChatCompletions if request.stream => {
            let chunk = |delta: Value, finish: Value| {
                json!({
                    "id": id, "object": "chat.completion.chunk", "created": created,
                    "model": model, "system_fingerprint": null,
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
                })
            };
            let mut chunks = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
            chunks.extend(
                pieces(content).map(|piece| chunk(json!({ "content": piece }), Value::Null)),
            );
            chunks.push(chunk(json!({}), json!("stop")));
            if with_usage {
                chunks.push(json!({
                    "id": id, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [], "usage": usage,
                }));
            }
            stream(chunks)
        }
        Format::ChatCompletions => Reply::Json {
            status: StatusCode::OK,
            body: json!({
                "id": id, "object": "chat.completion", "created": created, "model": model,
                "system_fingerprint": null,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": null},
                    "logprobs": null,
                    "finish_reason": "stop",
                }],
                "usage": usage,
            })
            .to_string(),
        },
        Format::Completions if request.stream => {
            let chunk = |text: &str, finish: Value| {
                json!({
                    "id": id, "object": "text_completion", "created": created, "model": model,
                    "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}],
                })
            };
            let mut chunks: Vec<Value> = pieces(content).map(|p| chunk(&p, Value::Null)).collect();
            chunks.push(chunk("", json!("stop")));
            if with_usage {
                chunks.push(json!({
                    "id": id, "object": "text_completion", "created": created,
                    "model": model, "choices": [], "usage": usage,
                }));
            }
            stream(chunks)
        }
        Format::Completions => Reply::Json {
            status: StatusCode::OK,
            body: json!({
                "id": id, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": content, "logprobs": null, "finish_reason": "stop"}],
                "usage": usage,
            })
            .to_string(),
        },
    }
}

fn stream(chunks: Vec<Value>) -> Reply {
    let mut events: Vec<String> = chunks.iter().map(sse::event).collect();
    events.push(sse::DONE.to_owned());
    Reply::Stream { events }
}

/// The content split into word-sized pieces that concatenate back to it.
fn pieces(content: &str) -> impl Iterator<Item = String> + '_ {
    content
        .split_inclusive(' ')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
}

fn include_usage(body: &Value) -> bool {
    body["stream_options"]["include_usage"].as_bool() == Some(true)
}

fn embeddings(body: &Value, model: &str, prompt_tokens: u64) -> Reply {
    let inputs: Vec<&Value> = match &body["input"] {
        Value::Array(items) if !items.is_empty() && !items.iter().all(Value::is_number) => {
            items.iter().collect()
        }
        // A string, or one input given as token ids.
        other => vec![other],
    };
    let base64 = body["encoding_format"].as_str() == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let vector = vector_for(&input.to_string());
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Reply::Json {
        status: StatusCode::OK,
        body: json!({
            "object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        })
        .to_string(),
    }
}

/// omni-moderation's categories, and the word (in lower case) that flags
/// each in the mock; `None`: never flagged.
const MODERATION_CATEGORIES: [(&str, Option<&str>); 13] = [
    ("harassment", Some("idiot")),
    ("harassment/threatening", None),
    ("hate", None),
    ("hate/threatening", None),
    ("illicit", None),
    ("illicit/violent", None),
    ("self-harm", None),
    ("self-harm/intent", None),
    ("self-harm/instructions", None),
    ("sexual", None),
    ("sexual/minors", None),
    ("violence", Some("kill")),
    ("violence/graphic", None),
];

fn moderations(body: &Value, model: &str) -> Reply {
    let texts: Vec<String> = match &body["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .map(|i| i.as_str().unwrap_or_default().to_owned())
            .collect(),
        // Content parts (text and images): one result for them all.
        Value::Array(parts) => vec![
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(" "),
        ],
        _ => vec![String::new()],
    };
    let results: Vec<Value> = texts
        .iter()
        .map(|text| {
            let text = text.to_lowercase();
            let (mut categories, mut scores, mut types) = (
                serde_json::Map::new(),
                serde_json::Map::new(),
                serde_json::Map::new(),
            );
            for (category, word) in MODERATION_CATEGORIES {
                let hit = word.is_some_and(|w| text.contains(w));
                categories.insert(category.into(), json!(hit));
                scores.insert(category.into(), json!(if hit { 0.93 } else { 0.0001 }));
                types.insert(category.into(), json!(["text"]));
            }
            let flagged = categories.values().any(|v| v == &Value::Bool(true));
            json!({
                "flagged": flagged,
                "categories": categories,
                "category_scores": scores,
                "category_applied_input_types": types,
            })
        })
        .collect();
    Reply::Json {
        status: StatusCode::OK,
        body: json!({
            "id": format!("modr-{}", crate::headers::random_hex(12)),
            "model": model,
            "results": results,
        })
        .to_string(),
    }
}

/// A 1×1 transparent PNG: an image every client decodes.
const PIXEL_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

/// The output tokens the mock reports per image: `gpt-image-1`'s for a
/// low-quality square one.
pub const IMAGE_TOKENS: u64 = 272;

fn images(body: &Value, n: u64, prompt_tokens: u64, created: u64) -> Reply {
    let as_url = body["response_format"] == "url";
    let image = if as_url {
        json!({"url": format!("data:image/png;base64,{PIXEL_PNG}")})
    } else {
        json!({"b64_json": PIXEL_PNG})
    };
    // OpenAI's most is 10.
    let n = n.min(10);
    let output_tokens = n * IMAGE_TOKENS;
    Reply::Json {
        status: StatusCode::OK,
        body: json!({
            "created": created,
            "data": vec![image; n as usize],
            "usage": {
                "input_tokens": prompt_tokens,
                "input_tokens_details": {"text_tokens": prompt_tokens, "image_tokens": 0},
                "output_tokens": output_tokens,
                "total_tokens": prompt_tokens + output_tokens,
            },
        })
        .to_string(),
    }
}

/// A unit-length vector that depends only on `text` (FNV-1a seeded), so the
/// same input always embeds the same.
fn vector_for(text: &str) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let raw: Vec<f32> = (0..EMBEDDING_DIMENSIONS)
        .map(|i| {
            h = h.rotate_left(13).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64;
            // In [-1, 1): the top 24 bits as a fraction.
            ((h >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    raw.iter().map(|x| x / norm).collect()
}

/// Whitespace-separated words in every string of `messages`, `prompt` and
/// `input`, at least 1.
fn words(body: &Value) -> u64 {
    fn count(v: &Value) -> u64 {
        match v {
            Value::String(s) => s.split_whitespace().count() as u64,
            Value::Array(items) => items.iter().map(count).sum(),
            Value::Object(map) => map.values().map(count).sum(),
            _ => 0,
        }
    }
    let total: u64 = ["messages", "prompt", "input"]
        .iter()
        .map(|f| count(&body[*f]))
        .sum();
    total.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Bytes;

    fn parsed(format: Format, body: &str) -> Parsed {
        crate::request::parse::parse(format, Bytes::copy_from_slice(body.as_bytes()))
            .expect("valid")
    }

    fn json_of(reply: Reply) -> Value {
        match reply {
            Reply::Json { status, body } => {
                assert_eq!(status, StatusCode::OK);
                serde_json::from_str(&body).expect("json")
            }
            Reply::Stream { .. } => panic!("expected JSON"),
        }
    }

    #[test]
    fn image_shape() {
        let generate = |body: &str| {
            let request = parsed(Format::ImageGenerations, body);
            json_of(answer(
                &Settings::default(),
                Format::ImageGenerations,
                &request,
                "m",
                false,
            ))
        };
        let v = generate(r#"{"model":"m","prompt":"a red fox","n":2}"#);
        let data = v["data"].as_array().expect("data");
        assert_eq!(data.len(), 2);
        assert_eq!(data[0]["b64_json"], PIXEL_PNG);
        assert_eq!(v["usage"]["input_tokens"], 3);
        assert_eq!(v["usage"]["output_tokens"], 2 * IMAGE_TOKENS);
        let v = generate(r#"{"model":"m","prompt":"a fox","response_format":"url"}"#);
        let url = v["data"][0]["url"].as_str().expect("a url");
        assert!(url.starts_with("data:image/png;base64,"), "{url}");
    }

    #[test]
    fn knobs() {
        let s = Settings::from_api_base("mock://?latency_ms=200&fail=429&content=hi+there&x=1");
        assert_eq!(s.latency, Duration::from_millis(200));
        assert_eq!(s.fail, Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(s.content.as_deref(), Some("hi there"));
        assert_eq!(Settings::from_api_base(""), Settings::default());
        assert_eq!(
            Settings::from_api_base("fail=200&latency_ms=x"),
            Settings::default()
        );
    }

    #[test]
    fn moderation_shape() {
        let moderate = |body: &str| {
            let request = parsed(Format::Moderations, body);
            json_of(answer(
                &Settings::default(),
                Format::Moderations,
                &request,
                "omni-moderation-2024-09-26",
                false,
            ))
        };
        let v = moderate(r#"{"model":"m","input":["I will KILL this bug","hello"]}"#);
        assert!(v["id"].as_str().unwrap().starts_with("modr-"));
        assert_eq!(v["model"], "omni-moderation-2024-09-26");
        assert!(v.get("usage").is_none(), "OpenAI's answer has none");
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["flagged"], true);
        assert_eq!(results[0]["categories"]["violence"], true);
        assert_eq!(results[0]["categories"]["harassment"], false);
        assert_eq!(results[0]["categories"].as_object().unwrap().len(), 13);
        assert_eq!(results[1]["flagged"], false);
        let parts = r#"{"model":"m","input":[{"type":"text","text":"you idiot"},
            {"type":"image_url","image_url":{"url":"https://x/y.png"}}]}"#;
        let v = moderate(parts);
        assert_eq!(v["results"].as_array().unwrap().len(), 1);
        assert_eq!(v["results"][0]["categories"]["harassment"], true);
    }

    #[test]
    fn chat_completion_shape() {
        let request = parsed(
            Format::ChatCompletions,
            r#"{"model":"m","messages":[{"role":"user","content":"say three words"}]}"#,
        );
        let v = json_of(answer(
            &Settings::default(),
            Format::ChatCompletions,
            &request,
            "up",
            false,
        ));
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "up");
        assert_eq!(v["choices"][0]["message"]["role"], "assistant");
        assert_eq!(v["choices"][0]["message"]["content"], DEFAULT_CONTENT);
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        // "user" + "say three words" = 4 words.
        assert_eq!(v["usage"]["prompt_tokens"], 4);
        assert_eq!(v["usage"]["completion_tokens"], 7);
        assert_eq!(v["usage"]["total_tokens"], 11);
    }

    #[test]
    fn chat_stream_shape() {
        let request = parsed(
            Format::ChatCompletions,
            r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#,
        );
        let Reply::Stream { events } = answer(
            &Settings::default(),
            Format::ChatCompletions,
            &request,
            "up",
            false,
        ) else {
            panic!("expected a stream");
        };
        assert_eq!(events.last().map(String::as_str), Some("data: [DONE]\n\n"));
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| {
                let data = e
                    .strip_prefix("data: ")
                    .and_then(|e| e.strip_suffix("\n\n"));
                serde_json::from_str(data.expect("framed")).expect("json")
            })
            .collect();
        assert!(chunks.len() > 3);
        assert!(
            chunks
                .iter()
                .all(|c| c["object"] == "chat.completion.chunk")
        );
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, DEFAULT_CONTENT);
        assert_eq!(
            chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
            "stop"
        );
        assert_eq!(chunks[chunks.len() - 1]["usage"]["completion_tokens"], 7);
    }

    #[test]
    fn embeddings_shape() {
        let request = parsed(Format::Embeddings, r#"{"model":"m","input":["a b","c"]}"#);
        let v = json_of(answer(
            &Settings::default(),
            Format::Embeddings,
            &request,
            "e",
            false,
        ));
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["data"][0]["object"], "embedding");
        assert_eq!(v["data"][0]["embedding"].as_array().map(Vec::len), Some(8));
        assert_eq!(v["usage"]["prompt_tokens"], 3);
        let request = parsed(
            Format::Embeddings,
            r#"{"model":"m","input":"a","encoding_format":"base64"}"#,
        );
        let v = json_of(answer(
            &Settings::default(),
            Format::Embeddings,
            &request,
            "e",
            false,
        ));
        let encoded = v["data"][0]["embedding"].as_str().expect("base64 text");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64");
        assert_eq!(bytes.len(), 8 * 4);
    }

    #[test]
    fn failure_knob() {
        let request = parsed(Format::Completions, r#"{"model":"m","prompt":"x"}"#);
        let settings = Settings::from_api_base("fail=503");
        let Reply::Json { status, body } =
            answer(&settings, Format::Completions, &request, "m", false)
        else {
            panic!("expected JSON");
        };
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["error"]["code"], "mock_failure");
    }
}
