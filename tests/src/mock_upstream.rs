//! A mock OpenAI-compatible upstream: an in-process HTTP server on a free
//! loopback port that answers like OpenAI (and like Azure OpenAI's deployment
//! URLs), records every request it receives, and can be told per test to be
//! slow, to fail, or to hold a streamed answer back after its first chunk.
//!
//! ```ignore
//! let upstream = MockUpstream::start().await?;
//! // deployment: provider "openai", api_base = upstream.url("/v1")
//! let gate = upstream.hold_streams();      // streams stop after chunk 1
//! // ... client reads the first chunk ...
//! gate.release();                          // the rest and [DONE] follow
//! let seen = upstream.last_request().unwrap();
//! assert_eq!(seen.header("authorization"), Some("Bearer sk-upstream-..."));
//! ```
//!
//! Answered paths (a query string is allowed on any): `/v1/chat/completions`,
//! `/chat/completions`, `/v1/completions`, `/completions`, `/v1/embeddings`,
//! `/embeddings`, and `/openai/deployments/{deployment}/chat/completions`
//! (and `/embeddings`), and OpenAI's Responses API: `POST /v1/responses`
//! (`/responses`, whole or streamed in its exact event sequence),
//! `POST /v1/responses/compact` and `GET /v1/responses/{id}` of a stored
//! one. Anything else gets 404 in
//! OpenAI's error shape.
//!
//! A Responses request answers a `message` with [`CHAT_CONTENT`]
//! ([`STREAM_PIECES`] when streamed); a `function_call` of its first function
//! tool instead when it has one and its last input item is not a
//! `function_call_output`; and JSON made from the schema when `text.format`
//! is `json_schema`. It is stored unless `store: false`; an unknown
//! `previous_response_id` gets OpenAI's 400 `previous_response_not_found`,
//! and input items OpenAI refuses (an unknown member, a
//! `function_call_output` answering no call) its 400 too.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

/// The content of every non-streamed chat answer.
pub const CHAT_CONTENT: &str = "Hello from the mock upstream.";
/// The pieces of a streamed chat answer, one per SSE chunk, in order.
pub const STREAM_PIECES: [&str; 3] = ["Hello", " from the", " mock upstream."];
/// The `usage` of every chat and completion answer.
pub const PROMPT_TOKENS: u64 = 11;
pub const COMPLETION_TOKENS: u64 = 7;
/// The vector every embedding answer carries, once per input.
pub const EMBEDDING: [f32; 4] = [0.25, -0.5, 0.75, 1.0];
/// The word that makes a moderation flag its input as `violence`.
pub const FLAGGED_WORD: &str = "kill";
/// The output tokens a GPT image model's answer reports per image.
pub const IMAGE_TOKENS: u64 = 1056;
/// A 1×1 PNG, base64: every image the mock generates.
pub const IMAGE_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
/// What a forced 429 or 503 says about retrying, as OpenAI's and Azure's
/// do: `retry-after` (seconds) and `retry-after-ms`. It also reports its
/// account's rate-limit counters (`x-ratelimit-remaining-requests: 0`).
pub const RETRY_AFTER: &str = "2";
pub const RETRY_AFTER_MS: &str = "2000";

type Body = BoxBody<Bytes, Closed>;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// HTTP/1.1 or HTTP/2, as the request arrived.
    pub version: hyper::Version,
    /// Path and query, as sent (`/v1/chat/completions`, `/openai/...?api-version=...`).
    pub path: String,
    /// Header names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Recorded {
    /// A request as it arrived: `path` with its query, `body` read whole.
    pub fn new(parts: &hyper::http::request::Parts, path: &str, body: &Bytes) -> Recorded {
        Recorded {
            method: parts.method.to_string(),
            version: parts.version,
            path: path.to_owned(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.clone(),
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or(&self.path)
    }

    /// The value of query parameter `name`, if present.
    pub fn query(&self, name: &str) -> Option<&str> {
        let (_, query) = self.path.split_once('?')?;
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// Releases streamed answers held back by [`MockUpstream::hold_streams`].
#[derive(Clone)]
pub struct StreamGate {
    notify: Arc<Notify>,
}

impl StreamGate {
    /// Lets one held stream (the next, if none waits yet) send the rest.
    pub fn release(&self) {
        self.notify.notify_one();
    }
}

/// What one request meets, before the standing behaviour
/// ([`MockUpstream::script`]).
#[derive(Debug, Clone)]
pub enum Fault {
    /// This status, with an OpenAI error body carrying `code`, and these
    /// extra headers.
    Status {
        status: u16,
        code: String,
        headers: Vec<(String, String)>,
    },
    /// This status and exactly this JSON body (a context-length error, a
    /// content-filter refusal).
    Body { status: u16, body: Value },
    /// Waits this long before answering normally (past a timeout).
    Hang(Duration),
    /// Closes the connection without an answer.
    Close,
    /// A streamed answer that sends this many chunks, then breaks off.
    BreakStream { after: usize },
    /// A streamed answer that sends this many chunks, then goes silent for
    /// an hour.
    StallStream { after: usize },
    /// Answers normally.
    Succeed,
}

impl Fault {
    /// `status` with an OpenAI error body carrying `code`.
    pub fn status(status: u16, code: &str) -> Fault {
        Fault::Status {
            status,
            code: code.into(),
            headers: Vec::new(),
        }
    }

    /// `status` with `retry-after: seconds` (and nothing else of advice).
    pub fn retry_after(status: u16, seconds: u64) -> Fault {
        Fault::Status {
            status,
            code: "rate_limit_exceeded".into(),
            headers: vec![("retry-after".into(), seconds.to_string())],
        }
    }
}

#[derive(Default)]
struct Behaviour {
    latency: Duration,
    /// Status and body (JSON, or text when a string).
    failure: Option<(u16, Value)>,
    gate: Option<Arc<Notify>>,
    /// Consumed one per request, before the rest.
    script: std::collections::VecDeque<Fault>,
    /// Chat answers call tools and follow `response_format` schemas
    /// ([`MockUpstream::call_tools_and_follow_schemas`]).
    model_like: bool,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    behaviour: Mutex<Behaviour>,
    first_chunks_sent: Notify,
    /// Requests whose caller went away before the whole answer was sent.
    abandoned: AtomicUsize,
    /// Responses API answers by id, unless asked `store: false`.
    responses: Mutex<std::collections::HashMap<String, Value>>,
    /// Numbers the ids of Responses API objects.
    ids: AtomicUsize,
    /// Seconds the tokens it hands out live (0: 3600).
    token_life: std::sync::atomic::AtomicU64,
}

/// Counts a request as abandoned unless disarmed: dropped with the handler
/// when hyper cancels it because the caller's connection closed.
struct Abandoned<'a>(Option<&'a AtomicUsize>);

impl Abandoned<'_> {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(count) = self.0 {
            count.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// What `tests/python/test_openai_sdk.py` should expect of this mock's
/// answers, as the environment variables it reads.
pub fn sdk_expectations() -> [(&'static str, String); 3] {
    [
        ("SLUICE_TEST_EXPECTED_TEXT", CHAT_CONTENT.to_string()),
        ("SLUICE_TEST_EXPECTED_STREAM", STREAM_PIECES.concat()),
        (
            "SLUICE_TEST_EMBEDDING_DIMENSIONS",
            EMBEDDING.len().to_string(),
        ),
    ]
}

/// The running mock upstream. Stops on drop.
pub struct MockUpstream {
    addr: SocketAddr,
    /// `https` when started with [`MockUpstream::start_tls`].
    scheme: &'static str,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl MockUpstream {
    pub async fn start() -> anyhow::Result<Self> {
        Self::serve(None).await
    }

    /// Like [`MockUpstream::start`], serving HTTPS with this PEM certificate
    /// chain and key, HTTP/2 or HTTP/1.1 as the client's ALPN asks.
    pub async fn start_tls(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let certs = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(key)?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self::serve(Some(TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn serve(tls: Option<TlsAcceptor>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                // As servers do: a streamed answer's small chunks must not
                // wait for the previous one's ACK (Nagle).
                let _ = stream.set_nodelay(true);
                let (state, tls) = (state.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(state.clone(), req));
                    let server = auto::Builder::new(TokioExecutor::new());
                    let _ = match tls {
                        None => server.serve_connection(TokioIo::new(stream), service).await,
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => {
                                server.serve_connection(TokioIo::new(stream), service).await
                            }
                            Err(_) => return,
                        },
                    };
                });
            }
        });
        Ok(Self {
            addr,
            scheme,
            shared,
            task,
        })
    }

    /// `http://127.0.0.1:PORT` (`https://localhost:PORT` when serving TLS,
    /// the name its certificate has) followed by `path` (e.g. `"/v1"` for an
    /// `api_base`).
    pub fn url(&self, path: &str) -> String {
        match self.scheme {
            "https" => format!("https://localhost:{}{path}", self.addr.port()),
            _ => format!("http://{}{path}", self.addr),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn last_request(&self) -> Option<Recorded> {
        self.shared.requests.lock().unwrap().last().cloned()
    }

    /// Forgets the recorded requests.
    pub fn clear(&self) {
        self.shared.requests.lock().unwrap().clear();
    }

    /// Waits this long before answering anything.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.behaviour.lock().unwrap().latency = latency;
    }

    /// Answers every request with `status` and an OpenAI error body carrying
    /// `code` until [`MockUpstream::succeed`].
    pub fn fail_with(&self, status: u16, code: &str) {
        let body = json!({"error": {
            "message": format!("mock upstream forced failure: {status} {code}"),
            "type": if status == 429 { "rate_limit_error" } else { "server_error" },
            "param": null,
            "code": code,
        }});
        self.shared.behaviour.lock().unwrap().failure = Some((status, body));
    }

    /// Answers every request with `status` and `text` as a plain-text body
    /// (a load balancer's error page, say) until [`MockUpstream::succeed`].
    pub fn fail_with_text(&self, status: u16, text: &str) {
        self.shared.behaviour.lock().unwrap().failure = Some((status, Value::from(text)));
    }

    /// Answers every request with `status` and exactly `body` (JSON) until
    /// [`MockUpstream::succeed`].
    pub fn fail_with_body(&self, status: u16, body: Value) {
        self.shared.behaviour.lock().unwrap().failure = Some((status, json!({ "raw": body })));
    }

    /// The next requests meet these faults, one each, in order; the ones
    /// after them the standing behaviour.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.behaviour.lock().unwrap().script = faults.into_iter().collect();
    }

    /// From now on, chat completions answer as a model would when asked
    /// for more than text: a chat request with function `tools` whose last
    /// message is not a `tool` result gets one `tool_calls` entry for its
    /// first function (`finish_reason: "tool_calls"`, arguments made from
    /// its parameters' schema), and one whose `response_format` is
    /// `json_schema` gets JSON made from the schema as its content. Off by
    /// default: chat answers are [`CHAT_CONTENT`] whatever they are asked.
    /// (The Responses API answers this way always.)
    pub fn call_tools_and_follow_schemas(&self) {
        self.shared.behaviour.lock().unwrap().model_like = true;
    }

    /// How long the tokens it hands out as Google's token endpoint live
    /// (and the keys it hands out as AWS's credentials endpoints).
    pub fn set_token_life(&self, seconds: u64) {
        self.shared.token_life.store(seconds, Ordering::SeqCst);
    }

    /// How many requests reached this upstream.
    pub fn hits(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Answers normally again, with no latency and no script.
    pub fn succeed(&self) {
        let mut b = self.shared.behaviour.lock().unwrap();
        b.failure = None;
        b.latency = Duration::ZERO;
        b.script.clear();
    }

    /// From now on, streamed answers send their first chunk, then wait for
    /// [`StreamGate::release`] before sending the rest and `[DONE]`.
    pub fn hold_streams(&self) -> StreamGate {
        let notify = Arc::new(Notify::new());
        self.shared.behaviour.lock().unwrap().gate = Some(notify.clone());
        StreamGate { notify }
    }

    /// How many requests were abandoned by their caller: a handler cancelled
    /// while it waited out its latency, or a streamed answer whose reader
    /// went away before `[DONE]`.
    pub fn abandoned(&self) -> usize {
        self.shared.abandoned.load(Ordering::SeqCst)
    }

    /// The stored Responses API answer `id`, as `GET /v1/responses/{id}` gives it.
    pub fn stored_response(&self, id: &str) -> Option<Value> {
        self.shared.responses.lock().unwrap().get(id).cloned()
    }

    /// Resolves once a held stream has sent its first chunk.
    pub async fn first_chunk_sent(&self) {
        self.shared.first_chunks_sent.notified().await;
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(
            Full::new(body.into())
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("valid response")
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    full(status, "application/json", body.to_string())
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}}),
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    Moderations,
    Images,
    Responses,
    Compact,
}

/// The mock as Google's token endpoints: a service account's (`POST
/// /token`, OAuth's JWT bearer grant) and the metadata server's (`GET
/// /computeMetadata/v1/instance/service-accounts/default/token`, which
/// wants `Metadata-Flavor: Google`). Tokens are `ya29.mock-{n}`, numbered,
/// living [`MockUpstream::set_token_life`] seconds.
fn google_token(
    state: &Shared,
    parts: &hyper::http::request::Parts,
    path: &str,
) -> Option<Response<Body>> {
    let grant = parts.method == hyper::Method::POST && path == "/token";
    let metadata = parts.method == hyper::Method::GET
        && path == "/computeMetadata/v1/instance/service-accounts/default/token";
    if !(grant || metadata) {
        return None;
    }
    let flavored = parts
        .headers
        .get("metadata-flavor")
        .is_some_and(|v| v == "Google");
    if metadata && !flavored {
        return Some(error(
            StatusCode::FORBIDDEN,
            "Missing Metadata-Flavor: Google",
        ));
    }
    // A standing failure ([`MockUpstream::fail_with_body`]) is the token
    // endpoint's too: credentials it refuses.
    if let Some((status, body)) = state.behaviour.lock().unwrap().failure.clone() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        return Some(json_response(status, &body));
    }
    let n = state.ids.fetch_add(1, Ordering::SeqCst);
    let life = match state.token_life.load(Ordering::SeqCst) {
        0 => 3600,
        n => n,
    };
    Some(json_response(
        StatusCode::OK,
        &json!({"access_token": format!("ya29.mock-{n}"), "expires_in": life, "token_type": "Bearer"}),
    ))
}

/// The field `name` of a URL-encoded form, decoded.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(body).split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// The service account token a pod's Azure workload identity is exchanged
/// with, as the mock's Entra ID takes it.
pub const AZURE_FEDERATED_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.azure-federated.mock";

/// The client secret of the service principal the mock's Entra ID knows.
pub const AZURE_CLIENT_SECRET: &str = "Q~mock.client-secret+/=";

/// The mock as Microsoft Entra ID's token endpoint (`POST
/// /{tenant}/oauth2/v2.0/token`), taking only the client credentials grant
/// for Cognitive Services' scope, with [`AZURE_FEDERATED_TOKEN`] as a JWT
/// client assertion (a workload identity's) or [`AZURE_CLIENT_SECRET`]; and
/// as Azure's instance metadata service (`GET
/// /metadata/identity/oauth2/token`, wanting `Metadata: true`), a host's
/// managed identity, its tokens `entra-mock-mi-{n}`. Tokens are
/// `entra-mock-{n}`, living [`MockUpstream::set_token_life`] seconds.
fn entra_token(
    state: &Shared,
    parts: &hyper::http::request::Parts,
    path: &str,
    body: &[u8],
) -> Option<Response<Body>> {
    if path.split('?').next() == Some("/metadata/identity/oauth2/token") {
        // Azure's instance metadata service, as a host's managed identity.
        let flavored = parts.headers.get("metadata").is_some_and(|v| v == "true");
        let resource = parts
            .uri
            .query()
            .is_some_and(|q| q.contains("resource=https%3A%2F%2Fcognitiveservices.azure.com%2F"));
        if parts.method != hyper::Method::GET || !flavored || !resource {
            return Some(json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": "invalid_request", "error_description": "Required metadata header not specified"}),
            ));
        }
        let n = state.ids.fetch_add(1, Ordering::SeqCst);
        return Some(json_response(
            StatusCode::OK,
            &json!({"access_token": format!("entra-mock-mi-{n}"), "expires_in": "86399", "token_type": "Bearer", "resource": "https://cognitiveservices.azure.com/"}),
        ));
    }
    if path.split('?').next() == Some(APP_IDENTITY_PATH) {
        // App Service's (and Container Apps') identity endpoint.
        let proven = parts
            .headers
            .get("x-identity-header")
            .is_some_and(|v| v == APP_IDENTITY_HEADER);
        let query = parts.uri.query().unwrap_or_default();
        let asked = query.contains("api-version=2019-08-01")
            && query.contains("resource=https%3A%2F%2Fcognitiveservices.azure.com%2F");
        if parts.method != hyper::Method::GET || !proven || !asked {
            return Some(json_response(
                StatusCode::BAD_REQUEST,
                &json!({"statusCode": 400, "message": "Unable to load the proper Managed Identity."}),
            ));
        }
        let n = state.ids.fetch_add(1, Ordering::SeqCst);
        let expires_on = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + 3600;
        return Some(json_response(
            StatusCode::OK,
            &json!({"access_token": format!("entra-mock-app-{n}"), "expires_on": expires_on.to_string(), "resource": "https://cognitiveservices.azure.com/", "token_type": "Bearer"}),
        ));
    }
    let tenant = path.strip_suffix("/oauth2/v2.0/token")?.strip_prefix('/')?;
    if parts.method != hyper::Method::POST || tenant.is_empty() || tenant.contains('/') {
        return None;
    }
    let field = |name: &str| form_field(body, name);
    let refuse = |error: &str, description: &str| {
        Some(json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": error, "error_description": description}),
        ))
    };
    if field("grant_type").as_deref() != Some("client_credentials") {
        return refuse(
            "unsupported_grant_type",
            "AADSTS70003: grant type not supported",
        );
    }
    if field("scope").as_deref() != Some("https://cognitiveservices.azure.com/.default")
        || field("client_id").is_none_or(|c| c.is_empty())
    {
        return refuse(
            "invalid_request",
            "AADSTS900144: scope or client_id missing",
        );
    }
    let federated = field("client_assertion_type").as_deref()
        == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        && field("client_assertion").as_deref() == Some(AZURE_FEDERATED_TOKEN);
    let secret = field("client_secret").as_deref() == Some(AZURE_CLIENT_SECRET);
    if !(federated || secret) {
        return refuse(
            "invalid_client",
            "AADSTS700211: no matching federated identity record found",
        );
    }
    let n = state.ids.fetch_add(1, Ordering::SeqCst);
    let life = match state.token_life.load(Ordering::SeqCst) {
        0 => 3599,
        n => n,
    };
    Some(json_response(
        StatusCode::OK,
        &json!({"token_type": "Bearer", "expires_in": life, "ext_expires_in": life, "access_token": format!("entra-mock-{n}")}),
    ))
}

/// Where the mock plays App Service's identity endpoint (`IDENTITY_ENDPOINT`).
pub const APP_IDENTITY_PATH: &str = "/msi/token";
/// The secret it wants in `X-IDENTITY-HEADER` (`IDENTITY_HEADER`).
pub const APP_IDENTITY_HEADER: &str = "853b9a84-5bfa-4b22-a3f3-0b9a43d9ad8a";

/// The token a pod's EKS Pod Identity agent wants, as the mock plays it.
pub const POD_IDENTITY_TOKEN: &str = "eks-pod-identity-token-mock";
/// The service account token STS takes for a web identity's role.
pub const WEB_IDENTITY_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.web-identity.mock";

/// The session token the mock's instance metadata service hands out.
pub const IMDS_SESSION_TOKEN: &str = "AQAEAimds-session-token-mock==";
/// The role the mock's instance has.
pub const INSTANCE_ROLE: &str = "sluice-node-role";
/// Where the instance metadata service names the role, and keeps its keys.
const IMDS_ROLES: &str = "/latest/meta-data/iam/security-credentials/";

/// The mock as AWS's credentials endpoints, handing out the mock Bedrock's
/// keys ([`crate::mock_anthropic::AWS_ACCESS_KEY_ID`] and its secret and
/// session token) for [`MockUpstream::set_token_life`] seconds: the
/// container credentials endpoint (`GET /v1/credentials`, which wants
/// `Authorization:` [`POD_IDENTITY_TOKEN`]), STS (`POST /sts/`,
/// `AssumeRoleWithWebIdentity` with [`WEB_IDENTITY_TOKEN`], answering XML)
/// and EC2's instance metadata service, IMDSv2 only, as an instance whose
/// role is [`INSTANCE_ROLE`] (`PUT /latest/api/token` with a TTL header
/// gives [`IMDS_SESSION_TOKEN`], which the role's name and keys want).
fn aws_credentials(
    state: &Shared,
    parts: &hyper::http::request::Parts,
    path: &str,
    body: &[u8],
) -> Option<Response<Body>> {
    use crate::mock_anthropic::{AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN};
    let container = parts.method == hyper::Method::GET && path == "/v1/credentials";
    let sts = parts.method == hyper::Method::POST && path == "/sts/";
    let imds = path == "/latest/api/token" || path.starts_with(IMDS_ROLES);
    if !(container || sts || imds) {
        return None;
    }
    let life = match state.token_life.load(Ordering::SeqCst) {
        0 => 3600,
        n => n,
    };
    let expiration =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(life));
    let xml = |status: StatusCode, text: String| {
        Response::builder()
            .status(status)
            .header("content-type", "text/xml")
            .body(
                Full::new(Bytes::from(text))
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .expect("valid response")
    };
    let text = |status: StatusCode, text: &str| {
        Response::builder()
            .status(status)
            .header("content-type", "text/plain")
            .body(
                Full::new(Bytes::from(text.to_owned()))
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .expect("valid response")
    };
    if path == "/latest/api/token" {
        let ttl = parts
            .headers
            .get("x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|v| v.to_str().ok()?.parse::<u32>().ok());
        return Some(match (&parts.method, ttl) {
            (&hyper::Method::PUT, Some(1..=21600)) => text(StatusCode::OK, IMDS_SESSION_TOKEN),
            (&hyper::Method::PUT, _) => text(StatusCode::BAD_REQUEST, "Bad Request"),
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
        });
    }
    if imds {
        let session = parts
            .headers
            .get("x-aws-ec2-metadata-token")
            .is_some_and(|v| v == IMDS_SESSION_TOKEN);
        if !session || parts.method != hyper::Method::GET {
            return Some(text(StatusCode::UNAUTHORIZED, "Unauthorized"));
        }
        return Some(match &path[IMDS_ROLES.len()..] {
            "" => text(StatusCode::OK, INSTANCE_ROLE),
            role if role == INSTANCE_ROLE => json_response(
                StatusCode::OK,
                &json!({
                    "Code": "Success",
                    "LastUpdated": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                    "Type": "AWS-HMAC",
                    "AccessKeyId": AWS_ACCESS_KEY_ID,
                    "SecretAccessKey": AWS_SECRET_ACCESS_KEY,
                    "Token": AWS_SESSION_TOKEN,
                    "Expiration": expiration.to_string(),
                }),
            ),
            _ => text(StatusCode::NOT_FOUND, "Not Found"),
        });
    }
    if container {
        let authorized = parts
            .headers
            .get("authorization")
            .is_some_and(|v| v == POD_IDENTITY_TOKEN);
        if !authorized {
            return Some(json_response(
                StatusCode::UNAUTHORIZED,
                &json!({"code": "AccessDeniedException", "message": "Service account token cannot be empty"}),
            ));
        }
        return Some(json_response(
            StatusCode::OK,
            &json!({
                "AccessKeyId": AWS_ACCESS_KEY_ID,
                "SecretAccessKey": AWS_SECRET_ACCESS_KEY,
                "Token": AWS_SESSION_TOKEN,
                "AccountId": "123456789012",
                "Expiration": expiration.to_string(),
            }),
        ));
    }
    let field = |name: &str| form_field(body, name);
    if field("Action").as_deref() != Some("AssumeRoleWithWebIdentity")
        || field("RoleArn").is_none_or(|r| !r.starts_with("arn:aws:iam::"))
    {
        return Some(xml(
            StatusCode::BAD_REQUEST,
            "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>Could not find operation</Message></Error></ErrorResponse>".into(),
        ));
    }
    if field("WebIdentityToken").as_deref() != Some(WEB_IDENTITY_TOKEN) {
        return Some(xml(
            StatusCode::BAD_REQUEST,
            "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>Couldn't retrieve verification key from your identity provider</Message></Error></ErrorResponse>".into(),
        ));
    }
    Some(xml(
        StatusCode::OK,
        format!(
            r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>{AWS_ACCESS_KEY_ID}</AccessKeyId>
      <SecretAccessKey>{AWS_SECRET_ACCESS_KEY}</SecretAccessKey>
      <SessionToken>{AWS_SESSION_TOKEN}</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#
        ),
    ))
}

fn endpoint(path: &str) -> Option<Endpoint> {
    let path = path.split('?').next().unwrap_or(path);
    let rest = path
        // Vertex AI's OpenAI-compatible endpoint:
        // /v1/projects/{p}/locations/{l}/endpoints/openapi/chat/completions.
        .split_once("/endpoints/openapi")
        .map(|(_, rest)| rest)
        // Gemini's OpenAI-compatible API: /v1beta/openai/chat/completions.
        .or_else(|| path.strip_prefix("/v1beta/openai"))
        // Bedrock's: /openai/v1/chat/completions.
        .or_else(|| path.strip_prefix("/openai/v1"))
        .or_else(|| path.strip_prefix("/v1"))
        // Azure's Responses API: /openai/responses.
        .or_else(|| {
            path.strip_prefix("/openai")
                .filter(|r| r.starts_with("/responses"))
        })
        .or_else(|| {
            // /openai/deployments/{deployment}/...
            let tail = path.strip_prefix("/openai/deployments/")?;
            let (deployment, rest) = tail.split_once('/')?;
            (!deployment.is_empty()).then(|| &path[path.len() - rest.len() - 1..])
        })
        .unwrap_or(path);
    match rest {
        "/chat/completions" => Some(Endpoint::Chat),
        "/completions" => Some(Endpoint::Completions),
        "/embeddings" => Some(Endpoint::Embeddings),
        "/moderations" => Some(Endpoint::Moderations),
        "/images/generations" => Some(Endpoint::Images),
        "/responses" => Some(Endpoint::Responses),
        "/responses/compact" => Some(Endpoint::Compact),
        _ => None,
    }
}

/// Why the mock closed a connection without answering ([`Fault::Close`]).
#[derive(Debug)]
struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("closed by the script")
    }
}

impl std::error::Error for Closed {}

async fn answer(state: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Closed> {
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
    state
        .requests
        .lock()
        .unwrap()
        .push(Recorded::new(&parts, &path, &body));
    if let Some(answer) = google_token(&state, &parts, &path) {
        return Ok(answer);
    }
    if let Some(answer) = aws_credentials(&state, &parts, &path, &body) {
        return Ok(answer);
    }
    if let Some(answer) = entra_token(&state, &parts, &path, &body) {
        return Ok(answer);
    }
    let (mut latency, mut failure, gate, fault, model_like) = {
        let mut b = state.behaviour.lock().unwrap();
        let fault = b.script.pop_front();
        (
            b.latency,
            b.failure.clone(),
            b.gate.clone(),
            fault,
            b.model_like,
        )
    };
    let mut stream_fault = None;
    match fault {
        None => {}
        Some(Fault::Succeed) => failure = None,
        Some(Fault::Status {
            status,
            code,
            headers,
        }) => {
            let body = json!({"error": {
                "message": format!("mock upstream scripted failure: {status} {code}"),
                "type": if status == 429 { "rate_limit_error" } else { "server_error" },
                "param": null,
                "code": code,
            }});
            let mut response = json_response(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                &body,
            );
            for (name, value) in headers {
                if let (Ok(name), Ok(value)) = (
                    hyper::header::HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&value),
                ) {
                    response.headers_mut().insert(name, value);
                }
            }
            return Ok(response);
        }
        Some(Fault::Body { status, body }) => {
            failure = Some((status, json!({ "raw": body })));
        }
        Some(Fault::Hang(d)) => {
            latency = d;
            failure = None;
        }
        Some(Fault::Close) => return Err(Closed),
        Some(f @ (Fault::BreakStream { .. } | Fault::StallStream { .. })) => {
            failure = None;
            stream_fault = Some(f);
        }
    }
    if !latency.is_zero() {
        let abandoned = Abandoned(Some(&state.abandoned));
        tokio::time::sleep(latency).await;
        abandoned.disarm();
    }
    if parts.method == hyper::Method::GET
        && let Some(id) = stored_response_path(&path)
    {
        return Ok(match state.responses.lock().unwrap().get(id) {
            Some(response) => json_response(StatusCode::OK, response),
            None => json_response(
                StatusCode::NOT_FOUND,
                &json!({"error": {
                    "message": format!("Response with id '{id}' not found."),
                    "type": "invalid_request_error",
                    "param": null,
                    "code": null,
                }}),
            ),
        });
    }
    let Some(endpoint) = endpoint(&path) else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            &format!("mock upstream: no route {path}"),
        ));
    };
    if parts.method != hyper::Method::POST {
        return Ok(error(
            StatusCode::METHOD_NOT_ALLOWED,
            "mock upstream: POST only",
        ));
    }
    if let Some((status, body)) = failure {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = match (body.as_str(), body.get("raw")) {
            (Some(text), _) => full(status, "text/plain", text.to_owned()),
            (None, Some(raw)) => return Ok(json_response(status, raw)),
            (None, None) => json_response(status, &body),
        };
        if [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE,
        ]
        .contains(&status)
        {
            let headers = response.headers_mut();
            for (name, value) in [
                ("retry-after", RETRY_AFTER),
                ("retry-after-ms", RETRY_AFTER_MS),
                ("x-ratelimit-remaining-requests", "0"),
            ] {
                headers.insert(name, HeaderValue::from_static(value));
            }
        }
        return Ok(response);
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "mock upstream: body is not JSON",
        ));
    };
    let model = request["model"].as_str().unwrap_or("").to_string();
    if endpoint == Endpoint::Chat
        && let Some(reply) = model_like.then(|| chat_reply(&request)).flatten()
    {
        let usage = usage(&request);
        return Ok(if request["stream"] == json!(true) {
            let include_usage =
                (request["stream_options"]["include_usage"] == json!(true)).then_some(usage);
            stream_chat_reply(&model, &reply, include_usage)
        } else {
            json_response(
                StatusCode::OK,
                &chat_reply_completion(&model, &reply, usage),
            )
        });
    }
    let response = match endpoint {
        Endpoint::Chat if request["stream"] == json!(true) => {
            let include_usage = (request["stream_options"]["include_usage"] == json!(true))
                .then(|| usage(&request));
            stream_chat(state, model, include_usage, gate, stream_fault)
        }
        Endpoint::Chat => json_response(StatusCode::OK, &chat_completion(&model, &request)),
        Endpoint::Completions => json_response(StatusCode::OK, &text_completion(&model, &request)),
        Endpoint::Embeddings => json_response(StatusCode::OK, &embeddings(&model, &request)),
        Endpoint::Moderations => json_response(StatusCode::OK, &moderations(&model, &request)),
        Endpoint::Images => json_response(StatusCode::OK, &images(&model, &request)),
        Endpoint::Responses => responses(&state, &model, &request),
        Endpoint::Compact => json_response(StatusCode::OK, &compacted(&request)),
    };
    Ok(response)
}

/// The `usage` an answer reports: [`PROMPT_TOKENS`] and
/// [`COMPLETION_TOKENS`], or what the request's `mock_usage` member asks
/// for (`{"prompt_tokens": n, "completion_tokens": m}`, and the prompt's
/// `cached_tokens` and `cache_write_tokens` for `prompt_tokens_details`: a
/// gateway passes members it does not know), so metering tests can vary it
/// per request.
fn usage(request: &Value) -> Value {
    let asked = &request["mock_usage"];
    let prompt = asked["prompt_tokens"].as_u64().unwrap_or(PROMPT_TOKENS);
    let completion = asked["completion_tokens"]
        .as_u64()
        .unwrap_or(COMPLETION_TOKENS);
    let mut usage = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    });
    for detail in ["cached_tokens", "cache_write_tokens"] {
        if let Some(n) = asked[detail].as_u64() {
            usage["prompt_tokens_details"][detail] = json!(n);
        }
    }
    usage
}

fn chat_completion(model: &str, request: &Value) -> Value {
    json!({
        "id": "chatcmpl-mock-upstream",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": CHAT_CONTENT},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": usage(request),
    })
}

fn text_completion(model: &str, request: &Value) -> Value {
    json!({
        "id": "cmpl-mock-upstream",
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "text": CHAT_CONTENT, "logprobs": null, "finish_reason": "stop"}],
        "usage": usage(request),
    })
}

fn embeddings(model: &str, request: &Value) -> Value {
    let inputs = match &request["input"] {
        Value::Array(items) => items.len().max(1),
        _ => 1,
    };
    let base64 = request["encoding_format"] == json!("base64");
    let vector = if base64 {
        let bytes: Vec<u8> = EMBEDDING.iter().flat_map(|f| f.to_le_bytes()).collect();
        json!(base64_encode(&bytes))
    } else {
        json!(EMBEDDING)
    };
    json!({
        "object": "list",
        "model": model,
        "data": (0..inputs)
            .map(|i| json!({"object": "embedding", "index": i, "embedding": vector}))
            .collect::<Vec<_>>(),
        "usage": {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS},
    })
}

/// OpenAI's moderation: one result per input string, `violence` flagged
/// when it holds [`FLAGGED_WORD`]; no `usage`, as OpenAI's answer has none.
fn moderations(model: &str, request: &Value) -> Value {
    let inputs: Vec<String> = match &request["input"] {
        Value::Array(items) => items.iter().map(Value::to_string).collect(),
        other => vec![other.to_string()],
    };
    let results: Vec<Value> = inputs
        .iter()
        .map(|input| {
            let hit = input.contains(FLAGGED_WORD);
            json!({
                "flagged": hit,
                "categories": {"violence": hit, "harassment": false},
                "category_scores": {"violence": if hit { 0.97 } else { 0.001 }, "harassment": 0.001},
                "category_applied_input_types": {"violence": ["text"], "harassment": ["text"]},
            })
        })
        .collect();
    json!({"id": "modr-mock-upstream", "model": model, "results": results})
}

/// An image generation's answer: `n` (default 1) images, as `b64_json`
/// (or a URL with `response_format: "url"`). A `dall-e…` model reports no
/// `usage`, as DALL·E does; the others [`PROMPT_TOKENS`] in and
/// [`IMAGE_TOKENS`] out per image, as the GPT image models do.
fn images(model: &str, request: &Value) -> Value {
    let n = request["n"].as_u64().unwrap_or(1);
    let image = if request["response_format"] == "url" {
        json!({"url": "https://images.mock-upstream.invalid/1.png"})
    } else {
        json!({"b64_json": IMAGE_B64})
    };
    let mut answer = json!({"created": 1_700_000_000, "data": vec![image; n as usize]});
    if !model.starts_with("dall-e") {
        answer["usage"] = json!({
            "input_tokens": PROMPT_TOKENS,
            "input_tokens_details": {"text_tokens": PROMPT_TOKENS, "image_tokens": 0},
            "output_tokens": n * IMAGE_TOKENS,
            "total_tokens": PROMPT_TOKENS + n * IMAGE_TOKENS,
        });
    }
    answer
}

/// Standard base64 with padding (what OpenAI's `encoding_format: base64` uses).
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn chunk(model: &str, delta: Value, finish_reason: Value) -> Value {
    json!({
        "id": "chatcmpl-mock-upstream",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
    })
}

fn sse(event: &Value) -> Bytes {
    Bytes::from(format!("data: {event}\n\n"))
}

fn stream_chat(
    state: Arc<Shared>,
    model: String,
    include_usage: Option<Value>,
    gate: Option<Arc<Notify>>,
    fault: Option<Fault>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Closed>>(16);
    if let Some(fault) = fault {
        let (after, stall) = match fault {
            Fault::BreakStream { after } => (after, false),
            Fault::StallStream { after } => (after, true),
            _ => (usize::MAX, false),
        };
        tokio::spawn(async move {
            let pieces = STREAM_PIECES.iter().take(after.max(1));
            for (i, piece) in pieces.enumerate() {
                let delta = if i == 0 {
                    json!({"role": "assistant", "content": piece})
                } else {
                    json!({"content": piece})
                };
                let chunk = sse(&chunk(&model, delta, Value::Null));
                if tx.send(Ok(Frame::data(chunk))).await.is_err() {
                    return;
                }
            }
            if stall {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(3600)) => {}
                    () = tx.closed() => {}
                }
            } else {
                // Time for the chunks to reach the caller before the break
                // resets the connection.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = tx.send(Err(Closed)).await;
            }
        });
        return Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(BodyExt::boxed(StreamBody::new(ReceiverStream::new(rx))))
            .expect("valid response");
    }
    tokio::spawn(async move {
        let send = |bytes: Bytes| {
            let tx = tx.clone();
            async move { tx.send(Ok(Frame::data(bytes))).await.is_ok() }
        };
        let first = chunk(
            &model,
            json!({"role": "assistant", "content": STREAM_PIECES[0]}),
            Value::Null,
        );
        if !send(sse(&first)).await {
            return;
        }
        if let Some(gate) = gate {
            state.first_chunks_sent.notify_one();
            tokio::select! {
                () = gate.notified() => {}
                () = tx.closed() => {
                    state.abandoned.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        }
        for piece in &STREAM_PIECES[1..] {
            if !send(sse(&chunk(&model, json!({"content": piece}), Value::Null))).await {
                state.abandoned.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
        let _ = send(sse(&chunk(&model, json!({}), json!("stop")))).await;
        if let Some(usage) = include_usage {
            let mut last = chunk(&model, json!({}), Value::Null);
            last["choices"] = json!([]);
            last["usage"] = usage;
            let _ = send(sse(&last)).await;
        }
        let _ = send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(BodyExt::boxed(StreamBody::new(ReceiverStream::new(rx))))
        .expect("valid response")
}

/// A chat answer beyond [`CHAT_CONTENT`]
/// ([`MockUpstream::call_tools_and_follow_schemas`]).
enum ChatReply {
    /// `(id, name, arguments)`.
    ToolCall(String, String, String),
    Json(String),
}

/// What a model-like chat answer to `request` is; `None`: [`CHAT_CONTENT`].
fn chat_reply(request: &Value) -> Option<ChatReply> {
    let answered = request["messages"]
        .as_array()
        .and_then(|m| m.last())
        .is_some_and(|m| m["role"] == "tool");
    let tool = request["tools"]
        .as_array()
        .and_then(|tools| tools.iter().find(|t| t["type"] == "function"));
    if let Some(tool) = tool.filter(|_| !answered && request["tool_choice"] != json!("none")) {
        let function = &tool["function"];
        let arguments = sample_of(&function["parameters"]).to_string();
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        return Some(ChatReply::ToolCall(
            format!("call_mock_{n:x}"),
            function["name"].as_str().unwrap_or_default().to_owned(),
            arguments,
        ));
    }
    let format = &request["response_format"];
    match format["type"].as_str() {
        Some("json_schema") => Some(ChatReply::Json(
            sample_of(&format["json_schema"]["schema"]).to_string(),
        )),
        Some("json_object") => Some(ChatReply::Json(json!({"answer": CHAT_CONTENT}).to_string())),
        _ => None,
    }
}

fn chat_reply_completion(model: &str, reply: &ChatReply, usage: Value) -> Value {
    let (message, finish) = match reply {
        ChatReply::ToolCall(id, name, arguments) => (
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": id, "type": "function",
                "function": {"name": name, "arguments": arguments},
            }]}),
            "tool_calls",
        ),
        ChatReply::Json(text) => (json!({"role": "assistant", "content": text}), "stop"),
    };
    json!({
        "id": "chatcmpl-mock-upstream",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": usage,
    })
}

fn stream_chat_reply(
    model: &str,
    reply: &ChatReply,
    include_usage: Option<Value>,
) -> Response<Body> {
    let mut events = Vec::new();
    let finish = match reply {
        ChatReply::ToolCall(id, name, arguments) => {
            events.push(chunk(
                model,
                json!({"role": "assistant", "content": null, "tool_calls": [{
                    "index": 0, "id": id, "type": "function",
                    "function": {"name": name, "arguments": ""},
                }]}),
                Value::Null,
            ));
            events.push(chunk(
                model,
                json!({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}),
                Value::Null,
            ));
            "tool_calls"
        }
        ChatReply::Json(text) => {
            events.push(chunk(
                model,
                json!({"role": "assistant", "content": text}),
                Value::Null,
            ));
            "stop"
        }
    };
    events.push(chunk(model, json!({}), json!(finish)));
    if let Some(usage) = include_usage {
        let mut last = chunk(model, json!({}), Value::Null);
        last["choices"] = json!([]);
        last["usage"] = usage;
        events.push(last);
    }
    let mut body: Vec<u8> = events.iter().flat_map(|e| sse(e).to_vec()).collect();
    body.extend_from_slice(b"data: [DONE]\n\n");
    let mut response = full(StatusCode::OK, "text/event-stream", body);
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

// ---------------------------------------------------------------------------
// The Responses API
// ---------------------------------------------------------------------------

/// `id` of `/v1/responses/{id}` (or `/responses/{id}`, or Azure's
/// `/openai/responses/{id}` and `/openai/v1/responses/{id}`), query allowed.
fn stored_response_path(path: &str) -> Option<&str> {
    let path = path.split('?').next().unwrap_or(path);
    let rest = path
        // Vertex AI's OpenAI-compatible endpoint:
        // /v1/projects/{p}/locations/{l}/endpoints/openapi/chat/completions.
        .split_once("/endpoints/openapi")
        .map(|(_, rest)| rest)
        // Gemini's OpenAI-compatible API: /v1beta/openai/chat/completions.
        .or_else(|| path.strip_prefix("/v1beta/openai"))
        .or_else(|| path.strip_prefix("/v1"))
        .or_else(|| path.strip_prefix("/openai/v1"))
        .or_else(|| path.strip_prefix("/openai"))
        .unwrap_or(path);
    let id = rest.strip_prefix("/responses/")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// A fresh id with `prefix` (`resp_`, `msg_`, `fc_`, `call_`): random
/// looking, unique per mock.
fn fresh_id(state: &Shared, prefix: &str) -> String {
    let n = state.ids.fetch_add(1, Ordering::SeqCst) as u64;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    // splitmix64 of the time and the counter.
    let mut x = nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    format!("{prefix}{x:016x}{n:04x}")
}

/// The `usage` of a Responses answer: [`PROMPT_TOKENS`] in and
/// [`COMPLETION_TOKENS`] out unless `mock_usage` says otherwise.
fn responses_usage(request: &Value) -> Value {
    let chat = usage(request);
    let (input, output) = (
        chat["prompt_tokens"].clone(),
        chat["completion_tokens"].clone(),
    );
    let detail = |name: &str| {
        chat["prompt_tokens_details"][name]
            .as_u64()
            .unwrap_or_default()
    };
    json!({
        "input_tokens": input,
        "input_tokens_details": {
            "cached_tokens": detail("cached_tokens"),
            "cache_write_tokens": detail("cache_write_tokens"),
        },
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": chat["total_tokens"],
    })
}

/// `POST /v1/responses/compact`'s answer, as OpenAI's: the input's user
/// messages, then one `compaction` item whose `encrypted_content` is
/// [`COMPACTION`], and the pass's usage.
fn compacted(request: &Value) -> Value {
    let mut output: Vec<Value> = request["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["role"] == "user")
        .cloned()
        .collect();
    output.push(json!({"type": "compaction", "id": "cmp_mock_1", "encrypted_content": COMPACTION}));
    json!({
        "id": "resp_mock_compacted",
        "object": "response.compaction",
        "created_at": 1_700_000_000,
        "output": output,
        "usage": responses_usage(request),
    })
}

/// The `encrypted_content` of the mock's compaction item.
pub const COMPACTION: &str = "gAAAAB-mock-compaction";

/// A value that fits JSON schema `schema`: what a model would fill in.
fn sample_of(schema: &Value) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    match schema["type"].as_str() {
        Some("object") | None if schema["properties"].is_object() => Value::Object(
            schema["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), sample_of(v)))
                .collect(),
        ),
        Some("object") => json!({}),
        Some("array") => json!([sample_of(&schema["items"])]),
        Some("integer") => json!(1),
        Some("number") => json!(1.5),
        Some("boolean") => json!(true),
        Some("null") => Value::Null,
        _ => json!("Paris"),
    }
}

/// The first function tool of a Responses request, unless the last input
/// item is a `function_call_output` (the call was answered) or
/// `tool_choice` is `"none"`.
fn function_to_call(request: &Value) -> Option<&Value> {
    if request["tool_choice"] == json!("none") {
        return None;
    }
    let answered = request["input"]
        .as_array()
        .and_then(|items| items.last())
        .is_some_and(|last| last["type"] == "function_call_output");
    if answered {
        return None;
    }
    request["tools"]
        .as_array()?
        .iter()
        .find(|t| t["type"] == "function")
}

/// The text a message answer carries: JSON from the schema when
/// `text.format` asks for it, else [`CHAT_CONTENT`].
fn responses_text(request: &Value) -> Option<String> {
    let format = &request["text"]["format"];
    match format["type"].as_str() {
        Some("json_schema") => Some(sample_of(&format["schema"]).to_string()),
        Some("json_object") => Some(json!({"answer": CHAT_CONTENT}).to_string()),
        _ => None,
    }
}

/// A `response` object of `status` with `output` (and `usage` once completed).
fn response_object(
    id: &str,
    model: &str,
    request: &Value,
    status: &str,
    output: Vec<Value>,
) -> Value {
    let completed = status == "completed";
    let or = |name: &str, default: Value| match &request[name] {
        Value::Null => default,
        v => v.clone(),
    };
    json!({
        "id": id,
        "object": "response",
        "created_at": 1_700_000_000,
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": null,
        "instructions": or("instructions", Value::Null),
        "max_output_tokens": or("max_output_tokens", Value::Null),
        "max_tool_calls": null,
        "model": model,
        "output": output,
        "parallel_tool_calls": or("parallel_tool_calls", json!(true)),
        "previous_response_id": or("previous_response_id", Value::Null),
        "reasoning": {"effort": null, "summary": null},
        "service_tier": "default",
        "store": or("store", json!(true)),
        "temperature": or("temperature", json!(1.0)),
        "text": or("text", json!({"format": {"type": "text"}})),
        "tool_choice": or("tool_choice", json!("auto")),
        "tools": or("tools", json!([])),
        "top_p": or("top_p", json!(1.0)),
        "truncation": or("truncation", json!("disabled")),
        "usage": if completed { responses_usage(request) } else { Value::Null },
        "user": or("user", Value::Null),
        "metadata": or("metadata", json!({})),
    })
}

fn output_text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// Refuses `input` items OpenAI refuses: an unknown member of a message,
/// `function_call` or `function_call_output` item (`Unknown parameter`), and
/// a `function_call_output` that answers no `function_call` before it when
/// there is no `previous_response_id` to find it in. `(message, param, code)`.
fn check_input(request: &Value) -> Result<(), (String, Value, Value)> {
    let Some(items) = request["input"].as_array() else {
        return Ok(());
    };
    let mut calls = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let kind = item["type"].as_str().unwrap_or("message");
        let known: &[&str] = match kind {
            "message" => &["type", "id", "role", "content", "status"],
            "function_call" => &["type", "id", "call_id", "name", "arguments", "status"],
            "function_call_output" => &["type", "id", "call_id", "output", "status"],
            _ => continue,
        };
        if let Some(unknown) = item
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
            .find(|k| !known.contains(&k.as_str()))
        {
            let param = format!("input[{i}].{unknown}");
            return Err((
                format!("Unknown parameter: '{param}'."),
                json!(param),
                json!("unknown_parameter"),
            ));
        }
        match kind {
            "function_call" => calls.push(item["call_id"].clone()),
            "function_call_output"
                if request["previous_response_id"].is_null()
                    && !calls.contains(&item["call_id"]) =>
            {
                return Err((
                    format!(
                        "No tool call found for function call output with call_id {}.",
                        item["call_id"].as_str().unwrap_or_default()
                    ),
                    json!("input"),
                    Value::Null,
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `POST /v1/responses`.
fn responses(state: &Arc<Shared>, model: &str, request: &Value) -> Response<Body> {
    if let Some(previous) = request["previous_response_id"].as_str()
        && !state.responses.lock().unwrap().contains_key(previous)
    {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": {
                "message": format!("Previous response with id '{previous}' not found."),
                "type": "invalid_request_error",
                "param": "previous_response_id",
                "code": "previous_response_not_found",
            }}),
        );
    }
    if let Err(message) = check_input(request) {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": {
                "message": message.0,
                "type": "invalid_request_error",
                "param": message.1,
                "code": message.2,
            }}),
        );
    }
    let id = fresh_id(state, "resp_");
    let call = function_to_call(request).map(|tool| {
        let arguments = sample_of(&tool["parameters"]).to_string();
        let name = tool["name"].as_str().unwrap_or_default().to_owned();
        (
            fresh_id(state, "fc_"),
            fresh_id(state, "call_"),
            name,
            arguments,
        )
    });
    let message_id = fresh_id(state, "msg_");
    let text = responses_text(request).unwrap_or_else(|| CHAT_CONTENT.to_owned());
    let item = match &call {
        Some((fc, call_id, name, arguments)) => json!({
            "id": fc, "type": "function_call", "status": "completed",
            "call_id": call_id, "name": name, "arguments": arguments,
        }),
        None => json!({
            "id": message_id, "type": "message", "status": "completed", "role": "assistant",
            "content": [output_text_part(&text)],
        }),
    };
    let done = response_object(&id, model, request, "completed", vec![item.clone()]);
    if request["store"] != json!(false) {
        state
            .responses
            .lock()
            .unwrap()
            .insert(id.clone(), done.clone());
    }
    if request["stream"] != json!(true) {
        return json_response(StatusCode::OK, &done);
    }
    // The event sequence OpenAI streams, each `event: TYPE` + `data: {...}`.
    let mut events = Vec::new();
    let started = response_object(&id, model, request, "in_progress", Vec::new());
    events.push(json!({"type": "response.created", "response": started}));
    events.push(json!({"type": "response.in_progress", "response": started}));
    match &call {
        Some((fc, call_id, name, arguments)) => {
            events.push(json!({
                "type": "response.output_item.added", "output_index": 0,
                "item": {"id": fc, "type": "function_call", "status": "in_progress",
                         "call_id": call_id, "name": name, "arguments": ""},
            }));
            let mid = arguments.len() / 2;
            let mid = (mid..=arguments.len())
                .find(|&i| arguments.is_char_boundary(i))
                .unwrap_or(arguments.len());
            for delta in [&arguments[..mid], &arguments[mid..]] {
                events.push(json!({
                    "type": "response.function_call_arguments.delta",
                    "item_id": fc, "output_index": 0, "delta": delta,
                }));
            }
            events.push(json!({
                "type": "response.function_call_arguments.done",
                "item_id": fc, "output_index": 0, "name": name, "arguments": arguments,
            }));
        }
        None => {
            events.push(json!({
                "type": "response.output_item.added", "output_index": 0,
                "item": {"id": message_id, "type": "message", "status": "in_progress",
                         "role": "assistant", "content": []},
            }));
            events.push(json!({
                "type": "response.content_part.added", "item_id": message_id,
                "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
            }));
            let pieces: Vec<String> = if text == CHAT_CONTENT {
                STREAM_PIECES.iter().map(|p| p.to_string()).collect()
            } else {
                vec![text.clone()]
            };
            for delta in pieces {
                events.push(json!({
                    "type": "response.output_text.delta", "item_id": message_id,
                    "output_index": 0, "content_index": 0, "delta": delta, "logprobs": [],
                }));
            }
            events.push(json!({
                "type": "response.output_text.done", "item_id": message_id,
                "output_index": 0, "content_index": 0, "text": text, "logprobs": [],
            }));
            events.push(json!({
                "type": "response.content_part.done", "item_id": message_id,
                "output_index": 0, "content_index": 0, "part": output_text_part(&text),
            }));
        }
    }
    events.push(json!({"type": "response.output_item.done", "output_index": 0, "item": item}));
    events.push(json!({"type": "response.completed", "response": done}));
    let body: String = events
        .into_iter()
        .enumerate()
        .map(|(n, mut event)| {
            event["sequence_number"] = json!(n);
            let name = event["type"].as_str().unwrap_or_default().to_owned();
            format!("event: {name}\ndata: {event}\n\n")
        })
        .collect();
    let mut response = full(StatusCode::OK, "text/event-stream", body);
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(endpoint("/v1/chat/completions") == Some(Endpoint::Chat));
        assert!(endpoint("/chat/completions") == Some(Endpoint::Chat));
        assert!(
            endpoint("/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21")
                == Some(Endpoint::Chat)
        );
        assert!(endpoint("/openai/deployments/d/embeddings") == Some(Endpoint::Embeddings));
        assert!(endpoint("/v1/completions") == Some(Endpoint::Completions));
        assert!(endpoint("/v1/embeddings") == Some(Endpoint::Embeddings));
        assert!(endpoint("/v1/models").is_none());
        assert!(endpoint("/openai/deployments//chat/completions").is_none());
        assert!(endpoint("/v1/responses") == Some(Endpoint::Responses));
        assert!(endpoint("/responses") == Some(Endpoint::Responses));
        assert_eq!(stored_response_path("/v1/responses/resp_1"), Some("resp_1"));
        assert_eq!(
            stored_response_path("/responses/resp_1?x=1"),
            Some("resp_1")
        );
        assert_eq!(stored_response_path("/v1/responses/"), None);
        assert_eq!(
            stored_response_path("/openai/v1/responses/resp_1"),
            Some("resp_1")
        );
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }
}
