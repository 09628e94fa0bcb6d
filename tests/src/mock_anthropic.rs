//! A mock Anthropic upstream: an in-process HTTP server on a free loopback
//! port that speaks Anthropic's Messages API (`POST /v1/messages`,
//! `POST /v1/messages/count_tokens`, a query string allowed), checks what the
//! real one requires, records every request, and answers from a per-test
//! script, whole or streamed as the request's `stream` asks.
//!
//! ```ignore
//! let claude = MockAnthropic::start().await?;
//! // deployment: provider "anthropic", api_base = claude.url(), api_key = claude.key()
//! claude.reply(Reply::ToolUse(vec![("get_weather".into(), json!({"city": "Paris"}))]));
//! claude.fail_next(Fault::Overloaded);          // the next request gets a 529
//! // ... the data plane is called ...
//! let seen = claude.last_request().unwrap();
//! assert_eq!(seen.json()["stop_sequences"], json!(["END"]));
//! ```
//!
//! **What it checks**, answering 401 or 400 in Anthropic's error envelope
//! `{"type":"error","error":{"type","message"},"request_id"}` as the real API
//! does: `x-api-key` (or `Authorization: Bearer`, which the current official
//! SDKs send) equal to its key; `anthropic-version` present (a date);
//! `content-type: application/json`; a JSON object body with `model`,
//! `max_tokens` a positive integer (not for `count_tokens`), `messages`
//! non-empty, starting with `user` and alternating (stricter than today's
//! API, which merges same-role turns: a gateway must merge them itself), no
//! `system` role, no empty text blocks, each `tool_result` answering a
//! `tool_use` id of the previous assistant turn and each `tool_use` answered
//! in the next user turn, thinking blocks carrying a `signature`, images with
//! a valid `source`, `tools` with `input_schema`, `tool_choice` one of
//! `auto`/`any`/`tool`/`none`, `temperature` within 0..=1, a thinking budget
//! of at least 1024 below `max_tokens`. OpenAI's own parameter names (`stop`,
//! `n`, `stream_options`, `max_completion_tokens`, message `tool_calls`, …)
//! are refused with "Extra inputs are not permitted", as the real API refuses
//! them; other unknown fields pass, so pass-through tests can carry one.
//!
//! **What it answers**: the next scripted step ([`MockAnthropic::reply_next`],
//! [`MockAnthropic::fail_next`]), else the standing fault
//! ([`MockAnthropic::fail`]), else the standing [`Reply`] (by default
//! [`Reply::Text`] of [`TEXT`]), with the standing [`Usage`]. A stream is
//! Anthropic's exact sequence: `message_start`, per block
//! `content_block_start`, (`ping` after the first), `content_block_delta`s in
//! several fragments (`text_delta`, `input_json_delta` starting with an empty
//! fragment, `thinking_delta`, `signature_delta`), `content_block_stop`, then
//! `message_delta` (stop reason and the cumulative usage) and `message_stop`,
//! each as an `event:` line and a `data:` line. `count_tokens` answers
//! `{"input_tokens"}` of the standing usage and never takes a scripted step.
//!
//! **As Vertex AI** ([`MockAnthropic::start_vertex`]) it serves Claude where
//! Vertex does, `POST /v1/projects/{p}/locations/{l}/publishers/anthropic/models/{model}:rawPredict`
//! (`:streamRawPredict` for a stream, and only for one) and
//! `…/models/count-tokens:rawPredict`, and checks what Vertex wants instead
//! of a key and a version header: `Authorization: Bearer ya29.…` (a Google
//! token), `anthropic_version` `vertex-2023-10-16` in the body, no `model`
//! there (it is the URL's) but for `count-tokens`.
//!
//! **As Bedrock** ([`MockAnthropic::start_bedrock`]) it serves Claude at
//! `POST /model/{model id}/invoke` and `/invoke-with-response-stream` (the
//! id percent-encoded), and checks what Bedrock wants: a SigV4 signature of
//! the request as it arrived, made with [`AWS_ACCESS_KEY_ID`] and
//! [`AWS_SECRET_ACCESS_KEY`] for region [`AWS_REGION`] (the session token
//! [`AWS_SESSION_TOKEN`] when one is sent), or a Bedrock API key as a bearer
//! token; `anthropic_version` `bedrock-2023-05-31` in the body and no
//! `model`. A stream is AWS's event stream, each of Anthropic's events
//! base64-encoded in a `chunk`; errors are AWS's `{"message"}` with
//! `x-amzn-errortype` (a 429 `ThrottlingException`, a 503
//! `ServiceUnavailableException`, a 400 `ValidationException` "Input is too
//! long for requested model."), a mid-stream one an exception message.
//! Its Converse API too (`/model/{id}/converse` and `/converse-stream`):
//! the request's members, roles and blocks checked as Converse does, the
//! answer and its stream events (`messageStart`, `contentBlockDelta`, …,
//! `metadata`) made from the same script.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

pub use crate::mock_upstream::Recorded;

/// The time an `x-amz-date` (`20261203T060000Z`) names.
pub fn amz_date(date: &str) -> Option<std::time::SystemTime> {
    let d = date.as_bytes();
    if d.len() != 16 || !date.is_ascii() || d[8] != b'T' || d[15] != b'Z' {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &date[0..4],
        &date[4..6],
        &date[6..8],
        &date[9..11],
        &date[11..13],
        &date[13..15]
    );
    humantime::parse_rfc3339(&rfc3339).ok()
}

/// The access key the mock as Bedrock signs with.
pub const AWS_ACCESS_KEY_ID: &str = "AKIDMOCKBEDROCK";
/// Its secret.
pub const AWS_SECRET_ACCESS_KEY: &str = "mock/bedrock+secret/EXAMPLEKEY";
/// The session token it accepts (or none).
pub const AWS_SESSION_TOKEN: &str = "FwoGZXIvYXdzEMockSessionToken";
/// The region it signs for.
pub const AWS_REGION: &str = "us-east-1";
/// The Bedrock API key it takes as a bearer token.
pub const BEDROCK_API_KEY: &str = "ABSKmockbedrockapikey";

/// The key the mock requires in `x-api-key` unless started with another.
pub const KEY: &str = "sk-ant-mock-secret-4c1d9e7b";
/// The text of [`Reply::Text`] when a test sets none (the default reply).
pub const TEXT: &str = "Hello from the mock Anthropic upstream.";
/// The `usage` of every answer unless [`MockAnthropic::usage`] sets another.
pub const USAGE: Usage = Usage {
    input_tokens: 21,
    output_tokens: 9,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 0,
};
/// What a [`Fault::RateLimited`] answer says in `retry-after` (seconds).
pub const RETRY_AFTER: &str = "2";
/// The message of [`Fault::PromptTooLong`], as Anthropic words it.
pub const PROMPT_TOO_LONG: &str = "prompt is too long: 250000 tokens > 200000 maximum";

type Body = BoxBody<Bytes, Broken>;

/// Token counts as Anthropic reports them: `input_tokens` excludes the
/// cached parts (`cache_creation_input_tokens` written to the cache,
/// `cache_read_input_tokens` read from it), so the prompt is their sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl Usage {
    /// Every prompt token, each counted once: what OpenAI calls `prompt_tokens`.
    pub fn prompt_tokens(&self) -> u64 {
        self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens
    }

    fn json(&self) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "output_tokens": self.output_tokens,
        })
    }
}

impl Default for Usage {
    fn default() -> Self {
        USAGE
    }
}

/// What the mock answers a valid `/v1/messages` request with.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// One text block, `end_turn`.
    Text(String),
    /// One `tool_use` block per `(name, input)`, in order (parallel tool
    /// calls), `tool_use`. Ids are `toolu_mock_{request}_{index}`.
    ToolUse(Vec<(String, Value)>),
    /// A text block, then the tool calls (as Claude says what it will do
    /// before calling a tool), `tool_use`.
    TextThenToolUse {
        text: String,
        tools: Vec<(String, Value)>,
    },
    /// A thinking block with its signature, then a text block, `end_turn`.
    ThinkingThenText {
        thinking: String,
        signature: String,
        text: String,
    },
    /// No content, `refusal`, with `stop_details` of type `refusal`.
    Refusal,
    /// [`TEXT`] ending with this `stop_reason` (`pause_turn`, `max_tokens`,
    /// `model_context_window_exceeded`, anything); `stop_sequence` gets
    /// the request's first `stop_sequences` entry.
    StopReason(String),
}

impl Default for Reply {
    fn default() -> Self {
        Reply::Text(TEXT.into())
    }
}

/// A failure the mock answers with instead of a reply, in Anthropic's
/// shapes and statuses.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// 529 `overloaded_error` "Overloaded".
    Overloaded,
    /// 429 `rate_limit_error` with `retry-after: 2` and
    /// `anthropic-ratelimit-requests-remaining: 0`.
    RateLimited,
    /// 400 `invalid_request_error` [`PROMPT_TOO_LONG`].
    PromptTooLong,
    /// 401 `authentication_error` "invalid x-api-key".
    Authentication,
    /// 500 `api_error` "Internal server error".
    Api,
    /// A 200 stream that starts (message, a text block, a first delta),
    /// then sends an `error` event with `overloaded_error` and ends. A
    /// request without `stream` gets the 529 instead.
    MidStreamError,
    /// Any status, error type and message.
    Error {
        status: u16,
        kind: String,
        message: String,
    },
}

impl Fault {
    fn parts(&self) -> (u16, &str, &str) {
        match self {
            Fault::Overloaded | Fault::MidStreamError => (529, "overloaded_error", "Overloaded"),
            Fault::RateLimited => (
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
            ),
            Fault::PromptTooLong => (400, "invalid_request_error", PROMPT_TOO_LONG),
            Fault::Authentication => (401, "authentication_error", "invalid x-api-key"),
            Fault::Api => (500, "api_error", "Internal server error"),
            Fault::Error {
                status,
                kind,
                message,
            } => (*status, kind, message),
        }
    }
}

/// One scripted step: consumed by one `/v1/messages` request.
#[derive(Debug, Clone)]
enum Step {
    Reply(Reply),
    Fail(Fault),
}

#[derive(Default)]
struct Behaviour {
    reply: Reply,
    fault: Option<Fault>,
    usage: Usage,
    script: VecDeque<Step>,
}

#[derive(Clone, Copy, PartialEq)]
enum Cloud {
    Anthropic,
    Vertex,
    Bedrock,
}

struct Shared {
    key: String,
    /// Serves Claude as Anthropic's API does, or a cloud (see the module
    /// doc).
    cloud: Cloud,
    requests: Mutex<Vec<Recorded>>,
    behaviour: Mutex<Behaviour>,
    /// Numbers requests (ids of messages, tool calls and request ids).
    counter: AtomicU64,
}

/// The running mock Anthropic upstream. Stops on drop.
pub struct MockAnthropic {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl MockAnthropic {
    /// A mock requiring [`KEY`].
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with_key(KEY).await
    }

    /// A mock requiring `key` in `x-api-key`.
    pub async fn start_with_key(key: &str) -> anyhow::Result<Self> {
        Self::serve(key, Cloud::Anthropic).await
    }

    /// A mock serving Claude as Vertex AI does (see the module doc); its
    /// [`MockAnthropic::url`] is the host of a location's URL.
    pub async fn start_vertex() -> anyhow::Result<Self> {
        Self::serve("", Cloud::Vertex).await
    }

    /// A mock serving Claude as Bedrock does (see the module doc); its
    /// [`MockAnthropic::url`] is a deployment's `api_base`.
    pub async fn start_bedrock() -> anyhow::Result<Self> {
        Self::serve(BEDROCK_API_KEY, Cloud::Bedrock).await
    }

    async fn serve(key: &str, cloud: Cloud) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            key: key.to_string(),
            cloud,
            requests: Mutex::default(),
            behaviour: Mutex::default(),
            counter: AtomicU64::new(0),
        });
        let state = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(state.clone(), req));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT`: a deployment's `api_base` (the data plane
    /// appends `/v1/messages`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The key it requires in `x-api-key`.
    pub fn key(&self) -> &str {
        &self.shared.key
    }

    /// From now on, valid requests get `reply` (after any scripted steps).
    pub fn reply(&self, reply: Reply) {
        self.shared.behaviour.lock().unwrap().reply = reply;
    }

    /// The next valid request gets `reply` (queued after earlier steps).
    pub fn reply_next(&self, reply: Reply) {
        let mut b = self.shared.behaviour.lock().unwrap();
        b.script.push_back(Step::Reply(reply));
    }

    /// From now on, valid requests get `fault` (after any scripted steps),
    /// until [`MockAnthropic::succeed`].
    pub fn fail(&self, fault: Fault) {
        self.shared.behaviour.lock().unwrap().fault = Some(fault);
    }

    /// The next valid request gets `fault` (queued after earlier steps).
    pub fn fail_next(&self, fault: Fault) {
        let mut b = self.shared.behaviour.lock().unwrap();
        b.script.push_back(Step::Fail(fault));
    }

    /// No standing fault and no scripted steps; the standing reply stays.
    pub fn succeed(&self) {
        let mut b = self.shared.behaviour.lock().unwrap();
        b.fault = None;
        b.script.clear();
    }

    /// The usage every answer reports from now on (and `count_tokens`'
    /// `input_tokens`: its `input_tokens`).
    pub fn usage(&self, usage: Usage) {
        self.shared.behaviour.lock().unwrap().usage = usage;
    }

    /// How many requests reached the mock, valid or not.
    pub fn hits(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn last_request(&self) -> Option<Recorded> {
        self.shared.requests.lock().unwrap().last().cloned()
    }

    /// Forgets the recorded requests (the script and replies stay).
    pub fn clear(&self) {
        self.shared.requests.lock().unwrap().clear();
    }
}

impl Drop for MockAnthropic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The events of an SSE body, as `(event, data)`: the `event:` line's name
/// (empty when there is none) and the `data:` line parsed as JSON (a string
/// when it is not JSON, such as OpenAI's `[DONE]`).
pub fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .filter_map(|e| {
            let mut name = String::new();
            let mut data = Vec::new();
            for line in e.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if data.is_empty() {
                return None;
            }
            let data = data.join("\n");
            let value = serde_json::from_str(&data).unwrap_or(Value::String(data));
            Some((name, value))
        })
        .collect()
}

/// Why a streamed answer broke off (never, today: streams end cleanly).
#[derive(Debug)]
pub struct Broken;

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the mock's stream broke off")
    }
}

impl std::error::Error for Broken {}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Endpoint {
    Messages,
    CountTokens,
}

fn endpoint(path: &str) -> Option<Endpoint> {
    match path.split('?').next().unwrap_or(path) {
        "/v1/messages" => Some(Endpoint::Messages),
        "/v1/messages/count_tokens" => Some(Endpoint::CountTokens),
        _ => None,
    }
}

fn json_response(status: u16, request_id: &str, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .header("request-id", request_id)
        .body(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("valid response")
}

/// Anthropic's error envelope.
fn error_body(kind: &str, message: &str, request_id: &str) -> Value {
    json!({
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": request_id,
    })
}

fn error(status: u16, kind: &str, message: &str, request_id: &str) -> Response<Body> {
    json_response(status, request_id, &error_body(kind, message, request_id))
}

fn invalid(message: &str, request_id: &str) -> Response<Body> {
    error(400, "invalid_request_error", message, request_id)
}

fn fault_response(fault: &Fault, request_id: &str) -> Response<Body> {
    let (status, kind, message) = fault.parts();
    let mut response = error(status, kind, message, request_id);
    if *fault == Fault::RateLimited {
        let headers = response.headers_mut();
        headers.insert("retry-after", RETRY_AFTER.parse().unwrap());
        headers.insert(
            "anthropic-ratelimit-requests-remaining",
            "0".parse().unwrap(),
        );
    }
    response
}

async fn answer(state: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Broken> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let (api_key, version, content_type) = (
        header("x-api-key"),
        header("anthropic-version"),
        header("content-type"),
    );
    state
        .requests
        .lock()
        .unwrap()
        .push(Recorded::new(&parts, &path, &body));
    let n = state.counter.fetch_add(1, Ordering::SeqCst) + 1;
    let request_id = format!("req_mock_{n:06}");
    let rid = request_id.as_str();

    if state.cloud == Cloud::Bedrock {
        return Ok(bedrock::answer(&state, &parts, &path, &body, n, rid));
    }
    let vertex = if state.cloud == Cloud::Vertex {
        vertex_endpoint(&path)
    } else {
        endpoint(&path).map(|e| (e, None))
    };
    let Some((endpoint, vertex)) = vertex else {
        return Ok(error(
            404,
            "not_found_error",
            &format!("Not found: {}", parts.uri.path()),
            rid,
        ));
    };
    if parts.method != hyper::Method::POST {
        return Ok(error(
            405,
            "invalid_request_error",
            &format!("Method {} not allowed; use POST", parts.method),
            rid,
        ));
    }
    if let Some(at) = vertex {
        let request = match vertex_request(
            header("authorization").as_deref(),
            content_type.as_deref(),
            header("anthropic-beta").as_deref(),
            &body,
            endpoint,
            at,
        ) {
            Ok(request) => request,
            Err(response) => return Ok(response(rid)),
        };
        return Ok(respond(&state, endpoint, request, n, rid));
    }
    // Anthropic's API takes the key in `x-api-key`, and (as its current SDKs
    // send it) as a Bearer token.
    let bearer = header("authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned));
    match api_key.as_deref().or(bearer.as_deref()) {
        None => {
            return Ok(error(
                401,
                "authentication_error",
                "x-api-key header is required",
                rid,
            ));
        }
        Some(k) if k != state.key => {
            return Ok(error(401, "authentication_error", "invalid x-api-key", rid));
        }
        Some(_) => {}
    }
    match version.as_deref().map(str::trim) {
        None | Some("") => return Ok(invalid("anthropic-version: header is required", rid)),
        Some(v) if !is_date(v) => {
            return Ok(invalid(
                &format!("anthropic-version: invalid version {v:?}"),
                rid,
            ));
        }
        Some(_) => {}
    }
    if !content_type.as_deref().is_some_and(|c| {
        c.trim()
            .to_ascii_lowercase()
            .starts_with("application/json")
    }) {
        return Ok(invalid(
            &format!("content-type: must be application/json, got {content_type:?}"),
            rid,
        ));
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return Ok(invalid(
            "There was an issue with your request body: it is not valid JSON",
            rid,
        ));
    };
    if let Err(message) = validate(&request, endpoint == Endpoint::CountTokens) {
        return Ok(invalid(&message, rid));
    }
    Ok(respond(&state, endpoint, request, n, rid))
}

/// The scripted step and the usage for the next answer to `endpoint`.
fn next_step(state: &Shared, endpoint: Endpoint) -> (Step, Usage) {
    let mut b = state.behaviour.lock().unwrap();
    let step = match endpoint {
        Endpoint::CountTokens => b.fault.clone().map(Step::Fail),
        Endpoint::Messages => b
            .script
            .pop_front()
            .or_else(|| b.fault.clone().map(Step::Fail)),
    };
    let step = step.unwrap_or_else(|| Step::Reply(b.reply.clone()));
    (step, b.usage)
}

/// The answer to a request that passed the checks.
fn respond(
    state: &Shared,
    endpoint: Endpoint,
    request: Value,
    n: u64,
    rid: &str,
) -> Response<Body> {
    let (step, usage) = next_step(state, endpoint);
    let streamed = request["stream"] == json!(true);
    let reply = match step {
        Step::Fail(Fault::MidStreamError) if streamed && endpoint == Endpoint::Messages => {
            return stream_then_fail(&request, usage, n, rid);
        }
        Step::Fail(fault) => return fault_response(&fault, rid),
        Step::Reply(reply) => reply,
    };
    if endpoint == Endpoint::CountTokens {
        return json_response(200, rid, &json!({"input_tokens": usage.prompt_tokens()}));
    }
    let message = message(&request, &reply, usage, n);
    if streamed {
        stream(message, usage, rid)
    } else {
        json_response(200, rid, &message)
    }
}

/// Claude as Bedrock serves it (see the module doc).
mod bedrock {
    use super::*;
    use sluice_data_plane::formats::eventstream;
    use sluice_data_plane::providers::sigv4;

    /// AWS's error, its kind in `x-amzn-errortype`.
    fn aws_error(status: u16, kind: &str, message: &str, rid: &str) -> Response<Body> {
        let mut response = json_response(status, rid, &json!({"message": message}));
        response.headers_mut().insert(
            "x-amzn-errortype",
            format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/")
                .parse()
                .unwrap(),
        );
        response
    }

    fn fault(fault: &Fault, rid: &str) -> Response<Body> {
        match fault {
            Fault::RateLimited => aws_error(
                429,
                "ThrottlingException",
                "Too many requests, please wait before trying again.",
                rid,
            ),
            Fault::Overloaded => aws_error(
                503,
                "ServiceUnavailableException",
                "Bedrock is unable to process your request.",
                rid,
            ),
            Fault::PromptTooLong => aws_error(
                400,
                "ValidationException",
                "Input is too long for requested model.",
                rid,
            ),
            Fault::Authentication => aws_error(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
                rid,
            ),
            _ => aws_error(500, "InternalServerException", "Internal server error", rid),
        }
    }

    /// Whether the request is signed as the mock's keys sign it, or carries
    /// its API key; why not otherwise.
    fn authenticated(
        state: &Shared,
        parts: &hyper::http::request::Parts,
        body: &[u8],
    ) -> Result<(), String> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let refused = |message: &str| Err(message.to_owned());
        let Some(authorization) = header("authorization") else {
            return refused("Missing Authentication Token");
        };
        if let Some(key) = authorization.strip_prefix("Bearer ") {
            return if key == state.key {
                Ok(())
            } else {
                refused("Invalid API Key format: Must start with pre-defined prefix")
            };
        }
        let (Some(date), Some(host)) = (header("x-amz-date"), header("host")) else {
            return refused("x-amz-date and host must be signed");
        };
        let Some(at) = amz_date(date) else {
            return refused("x-amz-date is not a date");
        };
        let token = header("x-amz-security-token");
        if token.is_some_and(|t| t != AWS_SESSION_TOKEN) {
            return refused("The security token included in the request is invalid.");
        }
        let uri: hyper::Uri = parts.uri.to_string().parse().unwrap();
        let signed = sigv4::sign(
            &sigv4::Credentials {
                access_key_id: AWS_ACCESS_KEY_ID,
                secret_access_key: AWS_SECRET_ACCESS_KEY,
                session_token: token,
            },
            AWS_REGION,
            "bedrock",
            &sigv4::Request {
                method: parts.method.as_str(),
                uri: &uri,
                host,
                content_type: header("content-type").unwrap_or(""),
                body,
            },
            at,
        )
        .unwrap();
        if signed.authorization.to_str().ok() != Some(authorization) {
            return refused(
                "The request signature we calculated does not match the signature you provided.",
            );
        }
        Ok(())
    }

    /// One of Anthropic's server-sent events as Bedrock's chunk.
    fn chunk(sse: &[u8]) -> Option<Bytes> {
        let text = std::str::from_utf8(sse).ok()?;
        let data = text.lines().find_map(|l| l.strip_prefix("data: "))?;
        let payload = json!({
            "bytes": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data),
        });
        Some(Bytes::from(eventstream::encode(
            &[
                (":event-type", "chunk"),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload.to_string().as_bytes(),
        )))
    }

    fn event_stream(frames: Vec<Bytes>, rid: &str) -> Response<Body> {
        let stream =
            futures::stream::iter(frames.into_iter().map(|b| Ok::<_, Broken>(Frame::data(b))));
        Response::builder()
            .status(200)
            .header("content-type", "application/vnd.amazon.eventstream")
            .header("x-amzn-requestid", rid)
            .body(StreamBody::new(stream).boxed())
            .expect("valid response")
    }

    /// The top-level members Converse takes; any other is refused.
    const CONVERSE_MEMBERS: &[&str] = &[
        "messages",
        "system",
        "inferenceConfig",
        "toolConfig",
        "guardrailConfig",
        "additionalModelRequestFields",
        "additionalModelResponseFieldPaths",
        "promptVariables",
        "requestMetadata",
        "performanceConfig",
    ];

    /// What Converse refuses of a request, in roughly its words.
    fn converse_invalid(request: &Map<String, Value>) -> Option<String> {
        if let Some(extra) = request
            .keys()
            .find(|k| !CONVERSE_MEMBERS.contains(&k.as_str()))
        {
            return Some(format!(
                "Malformed input request: extraneous key [{extra}] is not permitted"
            ));
        }
        let Some(messages) = request.get("messages").and_then(Value::as_array) else {
            return Some("messages: Field required".into());
        };
        let mut last = "";
        for (i, m) in messages.iter().enumerate() {
            let role = m["role"].as_str().unwrap_or_default();
            if !matches!(role, "user" | "assistant") {
                return Some(format!("messages.{i}.role: must be user or assistant"));
            }
            if role == last {
                return Some(
                    "A conversation must alternate between user and assistant roles.".into(),
                );
            }
            if i == 0 && role != "user" {
                return Some("A conversation must start with a user message.".into());
            }
            last = role;
            let blocks = m["content"].as_array().filter(|b| !b.is_empty());
            let Some(blocks) = blocks else {
                return Some(format!("messages.{i}.content: must be a non-empty list"));
            };
            for b in blocks {
                let known = [
                    "text",
                    "image",
                    "toolUse",
                    "toolResult",
                    "reasoningContent",
                    "document",
                ];
                if b.as_object().is_none_or(|o| {
                    o.len() != 1 || !known.contains(&o.keys().next().unwrap().as_str())
                }) {
                    return Some(format!(
                        "messages.{i}.content: a block must be one of {known:?}: {b}"
                    ));
                }
            }
        }
        if messages.is_empty() {
            return Some("messages: must not be empty".into());
        }
        None
    }

    /// Claude's reply as Converse writes it, whole or as its stream events.
    fn converse_answer(
        state: &Shared,
        request: &Map<String, Value>,
        stream: bool,
        n: u64,
        rid: &str,
    ) -> Response<Body> {
        if let Some(message) = converse_invalid(request) {
            return aws_error(400, "ValidationException", &message, rid);
        }
        let (step, usage) = next_step(state, Endpoint::Messages);
        let reply = match step {
            Step::Fail(Fault::MidStreamError) if stream => {
                let frames = vec![
                    converse_event("messageStart", &json!({"role": "assistant"})),
                    converse_event(
                        "contentBlockDelta",
                        &json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
                    ),
                    Bytes::from(eventstream::encode(
                        &[
                            (":exception-type", "modelStreamErrorException"),
                            (":content-type", "application/json"),
                            (":message-type", "exception"),
                        ],
                        br#"{"message":"The model stream failed."}"#,
                    )),
                ];
                return event_stream(frames, rid);
            }
            Step::Fail(f) => return fault(&f, rid),
            Step::Reply(reply) => reply,
        };
        let (text, tools, stop) = match reply {
            Reply::ToolUse(tools) => (String::new(), tools, "tool_use"),
            Reply::TextThenToolUse { text, tools } => (text, tools, "tool_use"),
            Reply::Text(text) => (text, Vec::new(), "end_turn"),
            _ => (TEXT.to_owned(), Vec::new(), "end_turn"),
        };
        let usage = json!({
            "inputTokens": usage.input_tokens,
            "outputTokens": usage.output_tokens,
            "totalTokens": usage.input_tokens + usage.output_tokens,
        });
        if !stream {
            let mut content = Vec::new();
            if !text.is_empty() {
                content.push(json!({"text": text}));
            }
            for (i, (name, input)) in tools.iter().enumerate() {
                content.push(json!({"toolUse": {"toolUseId": format!("tooluse_mock_{n}_{i}"), "name": name, "input": input}}));
            }
            return json_response(
                200,
                rid,
                &json!({
                    "output": {"message": {"role": "assistant", "content": content}},
                    "stopReason": stop,
                    "usage": usage,
                    "metrics": {"latencyMs": 12},
                }),
            );
        }
        let mut frames = vec![converse_event(
            "messageStart",
            &json!({"role": "assistant"}),
        )];
        let mut index = 0;
        if !text.is_empty() {
            for piece in fragments(&text, 3) {
                frames.push(converse_event(
                    "contentBlockDelta",
                    &json!({"contentBlockIndex": 0, "delta": {"text": piece}}),
                ));
            }
            frames.push(converse_event(
                "contentBlockStop",
                &json!({"contentBlockIndex": 0}),
            ));
            index = 1;
        }
        for (i, (name, input)) in tools.iter().enumerate() {
            let at = index + i;
            frames.push(converse_event("contentBlockStart", &json!({"contentBlockIndex": at, "start": {"toolUse": {"toolUseId": format!("tooluse_mock_{n}_{i}"), "name": name}}})));
            for piece in fragments(&input.to_string(), 2) {
                frames.push(converse_event(
                    "contentBlockDelta",
                    &json!({"contentBlockIndex": at, "delta": {"toolUse": {"input": piece}}}),
                ));
            }
            frames.push(converse_event(
                "contentBlockStop",
                &json!({"contentBlockIndex": at}),
            ));
        }
        frames.push(converse_event("messageStop", &json!({"stopReason": stop})));
        frames.push(converse_event(
            "metadata",
            &json!({"usage": usage, "metrics": {"latencyMs": 12}}),
        ));
        event_stream(frames, rid)
    }

    fn converse_event(kind: &str, data: &Value) -> Bytes {
        Bytes::from(eventstream::encode(
            &[
                (":event-type", kind),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            data.to_string().as_bytes(),
        ))
    }

    pub fn answer(
        state: &Shared,
        parts: &hyper::http::request::Parts,
        path: &str,
        body: &[u8],
        n: u64,
        rid: &str,
    ) -> Response<Body> {
        let path = path.split('?').next().unwrap_or(path);
        let Some((model, verb)) = path
            .strip_prefix("/model/")
            .and_then(|rest| rest.rsplit_once('/'))
        else {
            return aws_error(404, "UnknownOperationException", "Not found", rid);
        };
        let (stream_verb, converse) = match verb {
            "invoke" => (false, false),
            "invoke-with-response-stream" => (true, false),
            "converse" => (false, true),
            "converse-stream" => (true, true),
            _ => return aws_error(404, "UnknownOperationException", "Not found", rid),
        };
        if model.contains(':') || model.contains('/') {
            return aws_error(
                400,
                "ValidationException",
                "The model id must be URL-encoded",
                rid,
            );
        }
        let model = percent_encoding::percent_decode_str(model).decode_utf8_lossy();
        if let Err(message) = authenticated(state, parts, body) {
            return aws_error(403, "InvalidSignatureException", &message, rid);
        }
        let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(body) else {
            return aws_error(400, "ValidationException", "Malformed input request", rid);
        };
        if converse {
            return converse_answer(state, &request, stream_verb, n, rid);
        }
        match request.remove("anthropic_version") {
            Some(Value::String(v)) if v == "bedrock-2023-05-31" => {}
            _ => {
                return aws_error(
                    400,
                    "ValidationException",
                    "Malformed input request: #: required key [anthropic_version] not found",
                    rid,
                );
            }
        }
        if request.contains_key("model") {
            return aws_error(
                400,
                "ValidationException",
                "Malformed input request: #: extraneous key [model] is not permitted",
                rid,
            );
        }
        if request.remove("stream").is_some() {
            return aws_error(
                400,
                "ValidationException",
                "Malformed input request: #: extraneous key [stream] is not permitted",
                rid,
            );
        }
        // Bedrock refuses a flag it does not take, in the body or the header.
        let header = parts
            .headers
            .get("anthropic-beta")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(|b| json!(b));
        let body_betas = request.remove("anthropic_beta").unwrap_or(json!([]));
        let known = body_betas.as_array().is_some_and(|list| {
            list.iter().cloned().chain(header).all(|b| {
                b.as_str()
                    .is_some_and(|b| super::BEDROCK_BETAS.contains(&b))
            })
        });
        if !known {
            return aws_error(400, "ValidationException", "invalid beta flag", rid);
        }
        request.insert("model".into(), json!(model.as_ref()));
        let request = Value::Object(request);
        if let Err(message) = validate(&request, false) {
            return aws_error(400, "ValidationException", &message, rid);
        }
        let (step, usage) = next_step(state, Endpoint::Messages);
        let reply = match step {
            Step::Fail(Fault::MidStreamError) if stream_verb => {
                let message = message(&request, &Reply::Text(TEXT.into()), usage, n);
                let mut frames: Vec<Bytes> = events(&message, usage)
                    .iter()
                    .take(3)
                    .filter_map(|e| chunk(e))
                    .collect();
                frames.push(Bytes::from(eventstream::encode(
                    &[
                        (":exception-type", "modelStreamErrorException"),
                        (":content-type", "application/json"),
                        (":message-type", "exception"),
                    ],
                    br#"{"message":"The model stream failed."}"#,
                )));
                return event_stream(frames, rid);
            }
            Step::Fail(f) => return fault(&f, rid),
            Step::Reply(reply) => reply,
        };
        let message = message(&request, &reply, usage, n);
        if stream_verb {
            let frames = events(&message, usage)
                .iter()
                .filter_map(|e| chunk(e))
                .collect();
            event_stream(frames, rid)
        } else {
            json_response(200, rid, &message)
        }
    }
}

/// Where a Vertex request is asked: the model in its URL (none for
/// `count-tokens`) and whether the verb is the streaming one.
#[derive(Clone, Copy, PartialEq, Debug)]
struct VertexCall<'a> {
    model: Option<&'a str>,
    stream_verb: bool,
}

/// Vertex AI's Claude paths, under a location's
/// `/v1/projects/{p}/locations/{l}`.
fn vertex_endpoint(path: &str) -> Option<(Endpoint, Option<VertexCall<'_>>)> {
    let path = path.split('?').next().unwrap_or(path);
    let rest = path.strip_prefix("/v1/projects/")?;
    let (_project, rest) = rest.split_once("/locations/")?;
    let (_location, rest) = rest.split_once("/publishers/anthropic/models/")?;
    let (model, verb) = rest.split_once(':')?;
    let stream_verb = match verb {
        "rawPredict" => false,
        "streamRawPredict" => true,
        _ => return None,
    };
    if model == "count-tokens" {
        return (!stream_verb).then_some((
            Endpoint::CountTokens,
            Some(VertexCall {
                model: None,
                stream_verb,
            }),
        ));
    }
    (!model.is_empty() && !model.contains('/')).then_some((
        Endpoint::Messages,
        Some(VertexCall {
            model: Some(model),
            stream_verb,
        }),
    ))
}

/// A response made once the request id is known.
type Refusal = Box<dyn FnOnce(&str) -> Response<Body>>;

/// The beta flags the mock Vertex takes in the `anthropic-beta` header, and
/// in the body's `anthropic_beta` (the long context only there).
const VERTEX_HEADER_BETAS: &[&str] = &[
    "interleaved-thinking-2025-05-14",
    "context-management-2025-06-27",
    "tool-search-tool-2025-10-19",
];
const VERTEX_BODY_BETAS: &[&str] = &[
    "interleaved-thinking-2025-05-14",
    "context-management-2025-06-27",
    "tool-search-tool-2025-10-19",
    "context-1m-2025-08-07",
];
/// The beta flags the mock Bedrock takes, in the body or the header.
const BEDROCK_BETAS: &[&str] = &[
    "interleaved-thinking-2025-05-14",
    "context-1m-2025-08-07",
    "context-management-2025-06-27",
    "tool-search-tool-2025-10-19",
    "effort-2025-11-24",
];

/// What Vertex checks of a Claude request, and the request as Anthropic's
/// API would have had it (the URL's model in it, no `anthropic_version`).
fn vertex_request(
    authorization: Option<&str>,
    content_type: Option<&str>,
    betas: Option<&str>,
    body: &[u8],
    endpoint: Endpoint,
    at: VertexCall<'_>,
) -> Result<Value, Refusal> {
    // Google's own envelope for what Vertex refuses before Claude sees it.
    let google = |status: u16, code: &'static str, message: String| -> Refusal {
        Box::new(move |rid: &str| {
            json_response(
                status,
                rid,
                &json!({"error": {"code": status, "message": message, "status": code}}),
            )
        })
    };
    if !authorization.is_some_and(|a| a.starts_with("Bearer ya29.")) {
        return Err(google(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token.".into(),
        ));
    }
    let refuse = |message: String| -> Refusal { Box::new(move |rid: &str| invalid(&message, rid)) };
    if !content_type.is_some_and(|c| {
        c.trim()
            .to_ascii_lowercase()
            .starts_with("application/json")
    }) {
        return Err(refuse(format!(
            "content-type: must be application/json, got {content_type:?}"
        )));
    }
    let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(body) else {
        return Err(refuse("body: it is not a JSON object".into()));
    };
    match request.remove("anthropic_version") {
        Some(Value::String(v)) if v == "vertex-2023-10-16" => {}
        Some(v) => {
            return Err(refuse(format!(
                "anthropic_version: Input should be 'vertex-2023-10-16', got {v}"
            )));
        }
        None => return Err(refuse("anthropic_version: Field required".into())),
    }
    // Vertex checks the header's flags against its own list, and reads the
    // long context's from the body only.
    let header: Vec<&str> = betas
        .into_iter()
        .flat_map(|b| b.split(','))
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect();
    let unexpected: Vec<&str> = header
        .iter()
        .copied()
        .filter(|b| !VERTEX_HEADER_BETAS.contains(b))
        .collect();
    if !unexpected.is_empty() {
        return Err(refuse(format!(
            "Unexpected value(s) `{}` for the `anthropic-beta` header. Please consult our documentation at docs.anthropic.com or try again without the header.",
            unexpected.join("`, `")
        )));
    }
    if let Some(body_betas) = request.remove("anthropic_beta") {
        let known = body_betas.as_array().is_some_and(|list| {
            list.iter()
                .all(|b| b.as_str().is_some_and(|b| VERTEX_BODY_BETAS.contains(&b)))
        });
        if !known {
            return Err(refuse(format!(
                "anthropic_beta: invalid beta flag in {body_betas}"
            )));
        }
    }
    if request.contains_key("context_management")
        && !header.contains(&"context-management-2025-06-27")
    {
        return Err(refuse(
            "context_management: Extra inputs are not permitted".into(),
        ));
    }
    if let Some(model) = at.model {
        if request.contains_key("model") {
            return Err(refuse("model: Extra inputs are not permitted".into()));
        }
        request.insert("model".into(), json!(model));
    }
    let streamed = request.get("stream") == Some(&json!(true));
    if endpoint == Endpoint::Messages && streamed != at.stream_verb {
        return Err(google(
            400,
            "FAILED_PRECONDITION",
            "Stream must be set to true for streamRawPredict and false for rawPredict.".into(),
        ));
    }
    let request = Value::Object(request);
    validate(&request, endpoint == Endpoint::CountTokens).map_err(refuse)?;
    Ok(request)
}

fn is_date(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// The request fields OpenAI has and Anthropic's API refuses ("Extra inputs
/// are not permitted"): a translation that forwards one is wrong.
const OPENAI_ONLY: &[&str] = &[
    "stop",
    "n",
    "stream_options",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "response_format",
    "parallel_tool_calls",
    "seed",
    "reasoning_effort",
    "functions",
    "function_call",
    "user",
    "modalities",
    "prediction",
    "store",
];

/// What the real API refuses with 400, in roughly its words; `Ok` when the
/// request is one it would serve.
fn validate(request: &Value, count_tokens: bool) -> Result<(), String> {
    let Some(obj) = request.as_object() else {
        return Err("body: Input should be a valid dictionary".into());
    };
    match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        Some(_) => return Err("model: Input should be a valid string".into()),
        None => return Err("model: Field required".into()),
    }
    let max_tokens = if count_tokens {
        None
    } else {
        match obj.get("max_tokens") {
            None => return Err("max_tokens: Field required".into()),
            Some(v) => match v.as_u64() {
                Some(0) => {
                    return Err("max_tokens: Input should be greater than or equal to 1".into());
                }
                Some(n) => Some(n),
                None => return Err("max_tokens: Input should be a valid integer".into()),
            },
        }
    };
    for field in OPENAI_ONLY {
        if obj.contains_key(*field) {
            return Err(format!("{field}: Extra inputs are not permitted"));
        }
    }
    if let Some(stream) = obj.get("stream")
        && !stream.is_boolean()
    {
        return Err("stream: Input should be a valid boolean".into());
    }
    if let Some(system) = obj.get("system") {
        match system {
            Value::String(_) => {}
            Value::Array(blocks) => {
                for (i, b) in blocks.iter().enumerate() {
                    if b["type"] != "text" || !b["text"].is_string() {
                        return Err(format!("system.{i}: Input should be a text block"));
                    }
                }
            }
            _ => return Err("system: Input should be a valid string or list of blocks".into()),
        }
    }
    if let Some(stops) = obj.get("stop_sequences")
        && !stops
            .as_array()
            .is_some_and(|s| s.iter().all(Value::is_string))
    {
        return Err("stop_sequences: Input should be a valid list of strings".into());
    }
    if let Some(t) = obj.get("temperature") {
        match t.as_f64() {
            Some(t) if (0.0..=1.0).contains(&t) => {}
            Some(_) => {
                return Err("temperature: Input should be between 0 and 1".into());
            }
            None => return Err("temperature: Input should be a valid number".into()),
        }
    }
    if let Some(p) = obj.get("top_p")
        && !p.as_f64().is_some_and(|p| (0.0..=1.0).contains(&p))
    {
        return Err("top_p: Input should be a number between 0 and 1".into());
    }
    if let Some(k) = obj.get("top_k")
        && k.as_u64().is_none()
    {
        return Err("top_k: Input should be a valid integer".into());
    }
    if let Some(thinking) = obj.get("thinking") {
        validate_thinking(thinking, max_tokens, obj.get("temperature"))?;
    }
    let mut tool_names = Vec::new();
    if let Some(tools) = obj.get("tools") {
        let Some(tools) = tools.as_array() else {
            return Err("tools: Input should be a valid list".into());
        };
        for (i, tool) in tools.iter().enumerate() {
            if tool.get("function").is_some() || tool["type"] == "function" {
                return Err(format!(
                    "tools.{i}: OpenAI's `function` tool shape; Anthropic's is name, description, input_schema"
                ));
            }
            let custom = tool
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(|t| t == "custom");
            if !custom {
                continue; // a server tool (web_search_…, bash_…): not checked
            }
            match tool["name"].as_str() {
                Some(n) if !n.is_empty() => tool_names.push(n.to_string()),
                _ => return Err(format!("tools.{i}.name: Field required")),
            }
            if !tool["input_schema"].is_object() {
                return Err(format!("tools.{i}.custom.input_schema: Field required"));
            }
        }
    }
    if let Some(choice) = obj.get("tool_choice") {
        validate_tool_choice(choice, &tool_names)?;
    }
    let Some(messages) = obj.get("messages") else {
        return Err("messages: Field required".into());
    };
    let Some(messages) = messages.as_array() else {
        return Err("messages: Input should be a valid list".into());
    };
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    validate_messages(messages)
}

fn validate_thinking(
    thinking: &Value,
    max_tokens: Option<u64>,
    temperature: Option<&Value>,
) -> Result<(), String> {
    match thinking["type"].as_str() {
        Some("enabled") => {
            let Some(budget) = thinking["budget_tokens"].as_u64() else {
                return Err("thinking.enabled.budget_tokens: Field required".into());
            };
            if budget < 1024 {
                return Err(
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
                        .into(),
                );
            }
            if let Some(max) = max_tokens
                && max <= budget
            {
                return Err(format!(
                    "`max_tokens` must be greater than `thinking.budget_tokens` ({max} <= {budget})"
                ));
            }
            if let Some(t) = temperature
                && t.as_f64() != Some(1.0)
            {
                return Err("`temperature` may only be set to 1 when thinking is enabled".into());
            }
            Ok(())
        }
        Some("disabled" | "adaptive") => Ok(()),
        _ => Err("thinking: Input tag does not match 'enabled', 'disabled' or 'adaptive'".into()),
    }
}

fn validate_tool_choice(choice: &Value, tool_names: &[String]) -> Result<(), String> {
    match choice["type"].as_str() {
        Some("auto" | "any" | "none") => {}
        Some("tool") => match choice["name"].as_str() {
            Some(name) if tool_names.iter().any(|t| t == name) => {}
            Some(name) => return Err(format!("tool_choice: no tool named {name:?} in `tools`")),
            None => return Err("tool_choice.tool.name: Field required".into()),
        },
        _ => {
            return Err(format!(
                "tool_choice: Input tag {choice} does not match any of 'auto', 'any', 'tool', 'none'"
            ));
        }
    }
    if let Some(d) = choice.get("disable_parallel_tool_use")
        && !d.is_boolean()
    {
        return Err("tool_choice.disable_parallel_tool_use: Input should be a boolean".into());
    }
    Ok(())
}

fn validate_messages(messages: &[Value]) -> Result<(), String> {
    let mut previous_tool_uses: Vec<String> = Vec::new();
    let mut previous_role = "";
    for (i, m) in messages.iter().enumerate() {
        let Some(m) = m.as_object() else {
            return Err(format!("messages.{i}: Input should be a valid dictionary"));
        };
        for k in m.keys() {
            if k != "role" && k != "content" {
                return Err(format!("messages.{i}.{k}: Extra inputs are not permitted"));
            }
        }
        let role = match m.get("role").and_then(Value::as_str) {
            Some(r @ ("user" | "assistant")) => r,
            _ => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                ));
            }
        };
        if i == 0 && role != "user" {
            return Err("messages: first message must use the \"user\" role".into());
        }
        if role == previous_role {
            return Err(format!(
                "messages.{i}: roles must alternate between \"user\" and \"assistant\", but found multiple \"{role}\" roles in a row"
            ));
        }
        let last = i + 1 == messages.len();
        let mut answered = Vec::new();
        let mut tool_uses = Vec::new();
        match m.get("content") {
            Some(Value::String(s)) => {
                if s.is_empty() && !(last && role == "assistant") {
                    return Err(format!(
                        "messages.{i}: all messages must have non-empty content except for the optional final assistant message"
                    ));
                }
            }
            Some(Value::Array(blocks)) => {
                if blocks.is_empty() && !(last && role == "assistant") {
                    return Err(format!(
                        "messages.{i}: all messages must have non-empty content except for the optional final assistant message"
                    ));
                }
                for (j, b) in blocks.iter().enumerate() {
                    validate_block(b, role, &format!("messages.{i}.content.{j}"))?;
                    match b["type"].as_str() {
                        Some("tool_result") => {
                            let id = b["tool_use_id"].as_str().unwrap_or_default();
                            if !previous_tool_uses.iter().any(|t| t == id) {
                                return Err(format!(
                                    "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                                ));
                            }
                            answered.push(id.to_string());
                        }
                        Some("tool_use") => {
                            tool_uses.push(b["id"].as_str().unwrap_or_default().to_string());
                        }
                        _ => {}
                    }
                }
            }
            None => return Err(format!("messages.{i}.content: Field required")),
            Some(_) => {
                return Err(format!(
                    "messages.{i}.content: Input should be a valid string or list of blocks"
                ));
            }
        }
        let unanswered: Vec<&str> = previous_tool_uses
            .iter()
            .filter(|t| !answered.contains(t))
            .map(String::as_str)
            .collect();
        if !unanswered.is_empty() {
            return Err(format!(
                "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                unanswered.join(", ")
            ));
        }
        previous_tool_uses = tool_uses;
        previous_role = role;
    }
    Ok(())
}

fn validate_block(b: &Value, role: &str, at: &str) -> Result<(), String> {
    let kind = b["type"].as_str().unwrap_or_default();
    let user_only = ["tool_result", "image", "document", "search_result"];
    let assistant_only = [
        "tool_use",
        "thinking",
        "redacted_thinking",
        "server_tool_use",
    ];
    if (role == "assistant" && user_only.contains(&kind))
        || (role == "user" && assistant_only.contains(&kind))
    {
        return Err(format!(
            "{at}: a `{kind}` block is not allowed in a {role} message"
        ));
    }
    match kind {
        "text" => match b["text"].as_str() {
            Some("") => Err(format!("{at}: text content blocks must be non-empty")),
            Some(_) => Ok(()),
            None => Err(format!("{at}.text.text: Field required")),
        },
        "image" => {
            let source = &b["source"];
            match source["type"].as_str() {
                Some("base64") => {
                    let media = source["media_type"].as_str().unwrap_or_default();
                    if !["image/jpeg", "image/png", "image/gif", "image/webp"].contains(&media) {
                        return Err(format!(
                            "{at}.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
                        ));
                    }
                    match source["data"].as_str() {
                        Some(d) if !d.is_empty() && !d.starts_with("data:") => Ok(()),
                        _ => Err(format!(
                            "{at}.image.source.base64.data: the image data must be base64, without a data: URL prefix"
                        )),
                    }
                }
                Some("url") => match source["url"].as_str() {
                    Some(u) if u.starts_with("http://") || u.starts_with("https://") => Ok(()),
                    _ => Err(format!("{at}.image.source.url.url: Input should be a URL")),
                },
                _ => Err(format!(
                    "{at}.image.source: Input tag does not match 'base64', 'url' or 'file'"
                )),
            }
        }
        "tool_use" => {
            if b["id"].as_str().is_none_or(str::is_empty) {
                return Err(format!("{at}.tool_use.id: Field required"));
            }
            if b["name"].as_str().is_none_or(str::is_empty) {
                return Err(format!("{at}.tool_use.name: Field required"));
            }
            if !b["input"].is_object() {
                return Err(format!(
                    "{at}.tool_use.input: Input should be a valid dictionary"
                ));
            }
            Ok(())
        }
        "tool_result" => {
            if !b["tool_use_id"].is_string() {
                return Err(format!("{at}.tool_result.tool_use_id: Field required"));
            }
            match b.get("content") {
                None | Some(Value::String(_)) => Ok(()),
                Some(Value::Array(parts)) => {
                    for (k, p) in parts.iter().enumerate() {
                        validate_block(p, "user", &format!("{at}.tool_result.content.{k}"))?;
                    }
                    Ok(())
                }
                Some(_) => Err(format!(
                    "{at}.tool_result.content: Input should be a valid string or list"
                )),
            }
        }
        "thinking" => {
            if !b["thinking"].is_string() {
                return Err(format!("{at}.thinking.thinking: Field required"));
            }
            match b["signature"].as_str() {
                Some(s) if !s.is_empty() => Ok(()),
                _ => Err(format!("{at}.thinking.signature: Field required")),
            }
        }
        "redacted_thinking" => match b["data"].as_str() {
            Some(_) => Ok(()),
            None => Err(format!("{at}.redacted_thinking.data: Field required")),
        },
        "document"
        | "search_result"
        | "server_tool_use"
        | "web_search_tool_result"
        | "container_upload" => Ok(()),
        other => Err(format!(
            "{at}: Input tag '{other}' found using 'type' does not match any of the expected tags"
        )),
    }
}

/// The whole answer (`type: message`) to `request`.
fn message(request: &Value, reply: &Reply, usage: Usage, n: u64) -> Value {
    let tool_uses = |tools: &[(String, Value)]| -> Vec<Value> {
        tools
            .iter()
            .enumerate()
            .map(|(i, (name, input))| {
                json!({"type": "tool_use", "id": format!("toolu_mock_{n}_{i}"), "name": name, "input": input})
            })
            .collect()
    };
    let text = |t: &str| json!({"type": "text", "text": t});
    let mut stop_sequence = Value::Null;
    let mut stop_details = None;
    let (content, stop_reason): (Vec<Value>, String) = match reply {
        Reply::Text(t) => (vec![text(t)], "end_turn".into()),
        Reply::ToolUse(tools) => (tool_uses(tools), "tool_use".into()),
        Reply::TextThenToolUse { text: t, tools } => {
            let mut blocks = vec![text(t)];
            blocks.extend(tool_uses(tools));
            (blocks, "tool_use".into())
        }
        Reply::ThinkingThenText {
            thinking,
            signature,
            text: t,
        } => (
            vec![
                json!({"type": "thinking", "thinking": thinking, "signature": signature}),
                text(t),
            ],
            "end_turn".into(),
        ),
        Reply::Refusal => {
            stop_details = Some(json!({"type": "refusal", "category": null, "explanation": null}));
            (Vec::new(), "refusal".into())
        }
        Reply::StopReason(reason) => {
            if reason == "stop_sequence" {
                stop_sequence = request["stop_sequences"][0].clone();
            }
            (vec![text(TEXT)], reason.clone())
        }
    };
    let mut message = json!({
        "id": format!("msg_mock_{n:06}"),
        "type": "message",
        "role": "assistant",
        "model": request["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage.json(),
    });
    if let Some(details) = stop_details {
        message["stop_details"] = details;
    }
    message
}

/// `text` in `parts` pieces (at character boundaries; fewer when short).
fn fragments(text: &str, parts: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(parts.max(1)).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The events of `message` streamed, in Anthropic's order.
fn events(message: &Value, usage: Usage) -> Vec<Bytes> {
    let mut start = message.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["stop_sequence"] = Value::Null;
    if let Some(m) = start.as_object_mut() {
        m.remove("stop_details");
    }
    // message_start counts the output so far (1); message_delta the total.
    start["usage"]["output_tokens"] = json!(1);
    let mut out = vec![event(
        "message_start",
        &json!({"type": "message_start", "message": start}),
    )];
    let blocks = message["content"].as_array().cloned().unwrap_or_default();
    if blocks.is_empty() {
        out.push(event("ping", &json!({"type": "ping"})));
    }
    for (index, block) in blocks.iter().enumerate() {
        let (empty, deltas): (Value, Vec<Value>) = match block["type"].as_str() {
            Some("text") => (
                json!({"type": "text", "text": ""}),
                fragments(block["text"].as_str().unwrap_or_default(), 3)
                    .into_iter()
                    .map(|t| json!({"type": "text_delta", "text": t}))
                    .collect(),
            ),
            Some("tool_use") => {
                let mut start = block.clone();
                start["input"] = json!({});
                let input = block["input"].to_string();
                // Anthropic's first input_json_delta is often empty.
                let pieces = std::iter::once(String::new()).chain(fragments(&input, 3));
                (
                    start,
                    pieces
                        .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                        .collect(),
                )
            }
            Some("thinking") => {
                let mut deltas: Vec<Value> =
                    fragments(block["thinking"].as_str().unwrap_or_default(), 2)
                        .into_iter()
                        .map(|t| json!({"type": "thinking_delta", "thinking": t}))
                        .collect();
                deltas.push(json!({"type": "signature_delta", "signature": block["signature"]}));
                (
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                    deltas,
                )
            }
            _ => (block.clone(), Vec::new()),
        };
        out.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": empty}),
        ));
        if index == 0 {
            out.push(event("ping", &json!({"type": "ping"})));
        }
        for delta in deltas {
            out.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        out.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    let mut delta = json!({
        "stop_reason": message["stop_reason"],
        "stop_sequence": message["stop_sequence"],
    });
    if let Some(details) = message.get("stop_details") {
        delta["stop_details"] = details.clone();
    }
    out.push(event(
        "message_delta",
        &json!({"type": "message_delta", "delta": delta, "usage": usage.json()}),
    ));
    out.push(event("message_stop", &json!({"type": "message_stop"})));
    out
}

fn sse_response(request_id: &str, events: Vec<Bytes>) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Broken>>(16);
    tokio::spawn(async move {
        for (i, bytes) in events.into_iter().enumerate() {
            if i == 0 && bytes.len() > 8 {
                // The first event in two writes, as a network may deliver
                // it: a client must not take half an event for a whole one.
                let (a, b) = (
                    bytes.slice(..bytes.len() / 2),
                    bytes.slice(bytes.len() / 2..),
                );
                if tx.send(Ok(Frame::data(a))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                if tx.send(Ok(Frame::data(b))).await.is_err() {
                    return;
                }
                continue;
            }
            if tx.send(Ok(Frame::data(bytes))).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("request-id", request_id)
        .body(BodyExt::boxed(StreamBody::new(ReceiverStream::new(rx))))
        .expect("valid response")
}

fn stream(message: Value, usage: Usage, request_id: &str) -> Response<Body> {
    sse_response(request_id, events(&message, usage))
}

/// A stream that starts, then fails with an `error` event.
fn stream_then_fail(request: &Value, usage: Usage, n: u64, request_id: &str) -> Response<Body> {
    let message = message(request, &Reply::Text(TEXT.into()), usage, n);
    let all = events(&message, usage);
    // message_start, content_block_start, ping, the first text_delta.
    let mut events: Vec<Bytes> = all.into_iter().take(4).collect();
    events.push(event(
        "error",
        &error_body("overloaded_error", "Overloaded", request_id),
    ));
    sse_response(request_id, events)
}

/// Fields of `body` (a JSON object) other than `except`, for comparing a
/// forwarded body with the client's.
pub fn without(body: &Value, except: &[&str]) -> Map<String, Value> {
    body.as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| !except.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Value {
        json!({"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    }

    #[test]
    fn a_minimal_request_is_valid() {
        assert_eq!(validate(&valid(), false), Ok(()));
    }

    #[test]
    fn required_fields_and_openai_names_are_refused() {
        let mut r = valid();
        r.as_object_mut().unwrap().remove("max_tokens");
        assert_eq!(
            validate(&r, false).unwrap_err(),
            "max_tokens: Field required"
        );
        assert_eq!(validate(&r, true), Ok(()), "count_tokens takes none");
        let mut r = valid();
        r["max_tokens"] = json!(0);
        assert!(validate(&r, false).is_err());
        let mut r = valid();
        r["stop"] = json!(["x"]);
        assert!(validate(&r, false).unwrap_err().starts_with("stop:"));
        let mut r = valid();
        r["temperature"] = json!(1.5);
        assert!(validate(&r, false).is_err());
        let mut r = valid();
        r["x_unknown"] = json!(1);
        assert_eq!(validate(&r, false), Ok(()), "unknown fields pass");
    }

    #[test]
    fn turns_alternate_and_tool_results_answer_the_previous_turn() {
        let mut r = valid();
        r["messages"] = json!([
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
        ]);
        assert!(validate(&r, false).unwrap_err().contains("alternate"));
        r["messages"] = json!([{"role": "system", "content": "a"}]);
        assert!(validate(&r, false).is_err());
        r["messages"] = json!([
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "w", "input": {}},
                {"type": "tool_use", "id": "t2", "name": "w", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "t2", "content": "rain"},
            ]},
        ]);
        assert_eq!(validate(&r, false), Ok(()));
        r["messages"][2]["content"][1]["tool_use_id"] = json!("t9");
        assert!(validate(&r, false).unwrap_err().contains("t9"));
        r["messages"][2]["content"] = json!([{"type": "tool_result", "tool_use_id": "t1"}]);
        assert!(validate(&r, false).unwrap_err().contains("t2"));
    }

    #[test]
    fn thinking_blocks_need_their_signature() {
        let mut r = valid();
        r["messages"] = json!([
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "b"}]},
            {"role": "user", "content": "c"},
        ]);
        assert!(validate(&r, false).unwrap_err().contains("signature"));
        r["messages"][1]["content"][0]["signature"] = json!("sig");
        assert_eq!(validate(&r, false), Ok(()));
    }

    #[test]
    fn streams_follow_anthropics_order() {
        let reply = Reply::TextThenToolUse {
            text: "Let me check.".into(),
            tools: vec![("w".into(), json!({"city": "Paris"}))],
        };
        let m = message(&valid(), &reply, USAGE, 1);
        let text: String = events(&m, USAGE)
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        let names: Vec<String> = sse_events(&text).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
        assert_eq!(names[names.len() - 2..], ["message_delta", "message_stop"]);
        let json: String = sse_events(&text)
            .iter()
            .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
            .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&json).unwrap(),
            json!({"city": "Paris"})
        );
    }

    #[test]
    fn fragments_keep_every_character() {
        assert_eq!(fragments("héllo wörld", 3).concat(), "héllo wörld");
        assert_eq!(fragments("ab", 3), ["a", "b"]);
        assert!(fragments("", 3).is_empty());
    }
}
