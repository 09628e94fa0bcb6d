//! The data plane's HTTP server: HTTP/1.1 and HTTP/2 on one port, in clear
//! text (h2c) or over TLS ([`HttpState::tls`]), with graceful shutdown.
//!
//! | route | answer |
//! |---|---|
//! | `GET /health/liveness` | 200 while the process serves HTTP |
//! | `GET /health/readiness` | 200 once a config is loaded (from the stream or the cache), else 503 with the reason |
//! | `GET /metrics` | Prometheus metrics ([`crate::metrics`]) |
//! | `GET /debug/config` | the applied config as a protobuf `sluice.config.v1.Snapshot`, literal provider `api_key`s redacted; needs the data-plane token |
//! | `GET /debug/routing` | each model group's deployments with their routing state on this data plane (JSON); needs the data-plane token |
//! | `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/responses` (and without `/v1`); Anthropic's `/v1/messages`, `/v1/messages/count_tokens` | the OpenAI API, and Anthropic's ([`openai`]) |
//! | `GET`, `DELETE /v1/responses/{id}` | a response a stateful upstream stored, through the account that answered it ([`stored`]) |
//! | `GET /v1/models`, `GET /v1/models/{model}` (and without `/v1`; `{model}` percent-decoded, as SDKs encode `vendor/model`) | the models the key may use, OpenAI's list / model objects |
//! | a known path, another method | 405, OpenAI's error shape |
//! | anything else | 404, OpenAI's error shape |
//!
//! Routes are one `match` in [`route`]; the OpenAI API is [`openai`], the
//! operator's endpoints [`ops`], every error answered [`error`].
//!
//! Every answer carries `x-request-id`: the client's, when it sent a usable
//! one, else a fresh random id; the same id goes upstream and into the log.
//!
//! Robustness ([`Limits`]): HTTP/1 headers must arrive within the header
//! read timeout (slow-loris), which in hyper also bounds how long a
//! keep-alive connection may wait for its next request; a request body must
//! arrive within the body read timeout (else 408); a connection with no
//! request in flight for the idle timeout is closed ([`connection`]), which
//! covers clients that connect and send nothing and idle HTTP/2
//! connections; headers are capped at [`MAX_HEADER_BYTES`]; HTTP/2
//! connections are pinged every [`KEEP_ALIVE_INTERVAL`] and closed when a
//! ping goes unanswered. A panicking handler is caught ([`catch_panics`]):
//! the request gets a 500 in OpenAI's shape, `sluice_handler_panics_total`
//! counts it, and the process keeps serving.

pub mod connection;
pub mod error;
pub mod openai;
pub mod ops;
mod remember;
pub mod stored;

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::either::Either;

use crate::body::{Body, carrying_released_after_write, full};
use crate::config::applied::AppliedConfig;
use crate::config::secrets::Secret;
use crate::formats::Format;
use crate::headers::{self, REQUEST_ID};
use crate::metrics::Metrics;
use crate::request::Route;
use crate::request::parse::DEFAULT_MAX_BODY_BYTES;
use crate::upstream::Upstream;
pub use error::ApiError;

/// How long a client may take to send a request's headers (and how long an
/// HTTP/1 keep-alive connection may wait for its next request).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client may take to send a request's body once its headers are
/// in: 10 MiB at a slow 1.5 Mbit/s.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a connection may go without a request in flight.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The most header bytes a request may carry.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// HTTP/2 keep-alive pings; an unanswered ping closes the connection after
/// as long again.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(60);

/// The `content-type` of `GET /debug/config`.
pub const PROTOBUF: &str = "application/x-protobuf";

/// How long shutdown waits for in-flight requests before closing anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What request handling reads.
#[derive(Debug)]
pub struct HttpState {
    pub applied: Arc<AppliedConfig>,
    pub metrics: Arc<Metrics>,
    /// The data-plane token, which `/debug/config` asks for; with none, that
    /// endpoint always answers 401.
    pub token: Option<Secret>,
    /// The client upstream calls go through.
    pub upstream: Upstream,
    /// This data plane's routing state, shared by every worker.
    pub router: Arc<crate::router::Router>,
    /// Metering, budgets and credits, shared by every worker.
    pub usage: Arc<crate::usage::Metering>,
    pub limits: Limits,
    /// Serves HTTPS when set (HTTP/2 or HTTP/1.1 by ALPN).
    pub tls: Option<crate::tls::Acceptor>,
}

/// What the server allows a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request bodies above this many bytes get 413.
    pub max_body_bytes: u64,
    /// Headers must be in within this long; an HTTP/1 keep-alive connection
    /// is closed after this long without a new request.
    pub header_read_timeout: Duration,
    /// A body must be in within this long after its headers, else 408.
    pub body_read_timeout: Duration,
    /// A connection with no request in flight this long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

impl HttpState {
    /// State with the default [`Limits`] and a new upstream client.
    pub fn new(
        applied: Arc<AppliedConfig>,
        metrics: Arc<Metrics>,
        token: Option<Secret>,
    ) -> Result<HttpState, crate::upstream::InitError> {
        Ok(HttpState {
            applied,
            usage: crate::usage::Metering::in_memory(Arc::clone(&metrics)),
            metrics,
            token,
            upstream: Upstream::new(&crate::upstream::Tls::new(&[])?)?,
            // Nobody hears this state's cooldowns: no config stream.
            router: crate::router::Router::new().0,
            limits: Limits::default(),
            tls: None,
        })
    }
}

/// Where a server's connections come from.
pub enum Accepting {
    /// Its own listening socket.
    Listener(TcpListener),
    /// Connections accepted elsewhere and handed over ([`crate::serve::workers`]);
    /// the sender closing ends the server as a shutdown does.
    Handed(tokio::sync::mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>),
}

impl From<TcpListener> for Accepting {
    fn from(listener: TcpListener) -> Self {
        Accepting::Listener(listener)
    }
}

impl Accepting {
    /// The next connection; `None` when no more will come.
    async fn next(&mut self) -> Option<(tokio::net::TcpStream, SocketAddr)> {
        match self {
            Accepting::Listener(listener) => Some(accept(listener).await),
            Accepting::Handed(handed) => loop {
                let (stream, peer) = handed.recv().await?;
                match stream
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::TcpStream::from_std(stream))
                {
                    Ok(stream) => return Some((stream, peer)),
                    Err(e) => tracing::warn!(%peer, error = %e, "cannot take over a connection"),
                }
            },
        }
    }
}

/// The next connection `listener` accepts. A failure is logged and waited
/// out: it is running out of file descriptors, typically, and accepting
/// again at once would spin.
pub async fn accept(listener: &TcpListener) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept an HTTP connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves HTTP on the connections `accepting` yields until `shutdown`
/// resolves (or no more come), then stops accepting and gives open requests
/// [`DRAIN_TIMEOUT`] to finish.
pub async fn serve(
    accepting: impl Into<Accepting>,
    state: Arc<HttpState>,
    shutdown: impl Future<Output = ()>,
) {
    let mut accepting = accepting.into();
    let limits = state.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX))
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_INTERVAL);
    // Every connection task holds a receiver: the sender sees them all gone
    // when the last connection has ended.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = accepting.next() => match accepted {
                Some(accepted) => accepted,
                None => break,
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let activity = connection::Activity::new();
        let service = {
            let (state, activity) = (Arc::clone(&state), Arc::clone(&activity));
            service_fn(move |req| {
                let state = Arc::clone(&state);
                let in_flight = activity.begin();
                async move {
                    Ok::<_, Infallible>(in_flight_until_sent(handle(&state, req).await, in_flight))
                }
            })
        };
        let closing = connection::closing(activity, limits.idle_timeout, stopping.clone());
        let (builder, tls) = (builder.clone(), state.tls.clone());
        tokio::spawn(async move {
            let io = match tls {
                None => Either::Left(stream),
                // Bounded like headers: a handshake is the first thing a
                // slow-loris client can drag out.
                Some(tls) => {
                    match tokio::time::timeout(limits.header_read_timeout, tls.0.accept(stream))
                        .await
                    {
                        Ok(Ok(stream)) => Either::Right(stream),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            let connection = builder.serve_connection(TokioIo::new(io), service);
            let mut connection = std::pin::pin!(connection);
            // `biased`: polled in order, without drawing a random number
            // at each of the several wake-ups a request makes here.
            let ended = tokio::select! {
                biased;
                ended = connection.as_mut() => ended,
                why = closing => {
                    tracing::trace!(%peer, why, "closing an HTTP connection");
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(accepting);
    drop(stopping);
    let _ = stop.send(true);
    tokio::select! {
        () = stop.closed() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("HTTP connections still open after {DRAIN_TIMEOUT:?}; closing them");
        }
    }
}

/// The answer, keeping its request counted as in flight on its connection
/// until the body has been sent (or abandoned).
fn in_flight_until_sent(resp: Response<Body>, in_flight: connection::InFlight) -> Response<Body> {
    resp.map(|body| carrying_released_after_write(body, in_flight))
}

/// Binds `address` (`host:port`), for `serve`.
pub async fn bind(address: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Answers one request: [`route`], with the request id set and panics
/// caught.
pub async fn handle(state: &HttpState, req: Request<Incoming>) -> Response<Body> {
    let request_id = request_id(req.headers());
    let mut resp = catch_panics(&state.metrics, route(state, req, &request_id)).await;
    resp.headers_mut().insert(REQUEST_ID, request_id);
    resp
}

/// Runs `handler`; a panic in it becomes a 500 in OpenAI's shape and a
/// count in `sluice_handler_panics_total`, rather than a dropped connection.
/// (A panic while a streamed body is polled later is hyper's to contain:
/// it ends that connection only.)
pub async fn catch_panics(
    metrics: &Metrics,
    handler: impl Future<Output = Response<Body>>,
) -> Response<Body> {
    match AssertUnwindSafe(handler).catch_unwind().await {
        Ok(resp) => resp,
        Err(panic) => {
            metrics.handler_panicked();
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %what, "a request handler panicked");
            error_response(&ApiError::internal("the request handler failed"))
        }
    }
}

/// The client's `x-request-id` when it is short printable ASCII (it goes
/// into logs and upstream headers), else a new random one.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    // The client's value itself, shared rather than copied, when it is a
    // usable id; whitespace around it makes it unusable.
    headers
        .get(REQUEST_ID)
        .filter(|v| {
            let id = v.as_bytes();
            !id.is_empty() && id.len() <= 128 && id.iter().all(u8::is_ascii_graphic)
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_maybe_shared(Bytes::from(headers::random_hex(16)))
                .unwrap_or_else(|_| HeaderValue::from_static("unset"))
        })
}

/// The model a `/v1/models/{model}` path names, percent-decoded: SDKs encode
/// the name (`vendor%2Fmodel`), and `vendor/model` sent as is works too.
fn path_model(segment: &str) -> Result<Cow<'_, str>, ApiError> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| {
            ApiError::invalid_request(
                Some("model"),
                "the model in the path is not UTF-8 once percent-decoded".into(),
            )
        })
}

/// `Some(None)` for the models list, `Some(Some(id))` for one model.
fn models_path(path: &str) -> Option<Option<&str>> {
    let rest = path
        .strip_prefix("/v1")
        .unwrap_or(path)
        .strip_prefix("/models")?;
    match rest {
        "" | "/" => Some(None),
        _ => rest.strip_prefix('/').map(Some),
    }
}

/// Answers one request.
pub async fn route(
    state: &HttpState,
    req: Request<Incoming>,
    request_id: &HeaderValue,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let path = path.as_str();
    let method = req.method().clone();
    if let Some(route) = Route::from_path(path) {
        return if method == Method::POST {
            openai::completion(state, route, req, request_id).await
        } else {
            let error = ApiError::method_not_allowed(method.as_str(), path, "POST");
            error_response_in(route.format(), &error)
        };
    }
    if let Some(id) = stored::response_path(path) {
        return if method == Method::GET || method == Method::DELETE {
            stored::stored_response(state, req, id, request_id)
                .await
                .unwrap_or_else(|e| error_response(&e))
        } else {
            error_response(&ApiError::method_not_allowed(
                method.as_str(),
                path,
                "GET, DELETE",
            ))
        };
    }
    if let Some(model) = models_path(path) {
        // Anthropic's clients (Claude Code among them) list models with
        // `anthropic-version` set, and read Anthropic's shapes.
        let format = if req.headers().contains_key("anthropic-version") {
            Format::Messages
        } else {
            Format::ChatCompletions
        };
        let answer = match (method == Method::GET, model) {
            (true, None) => openai::list_models(state, req.headers(), format),
            (true, Some(model)) => path_model(model)
                .and_then(|model| openai::get_model(state, req.headers(), &model, format)),
            (false, _) => Err(ApiError::method_not_allowed(method.as_str(), path, "GET")),
        };
        return answer.unwrap_or_else(|e| error_response_in(format, &e));
    }
    let method = &method;
    let answer = match (method, path) {
        (&Method::GET, "/health/liveness") => Ok(ops::liveness()),
        (&Method::GET, "/health/readiness") => Ok(ops::readiness(state)),
        (&Method::GET, "/metrics") => Ok(ops::metrics(state)),
        (&Method::GET, "/debug/config") => ops::debug_config(state, req.headers()).await,
        (&Method::GET, "/debug/routing") => ops::debug_routing(state, req.headers()),
        (
            _,
            "/health/liveness" | "/health/readiness" | "/metrics" | "/debug/config"
            | "/debug/routing",
        ) => Err(ApiError::method_not_allowed(method.as_str(), path, "GET")),
        _ => Err(ApiError::unknown_route(method.as_str(), path)),
    };
    answer.unwrap_or_else(|e| error_response(&e))
}

fn error_response(error: &ApiError) -> Response<Body> {
    json_response(error.status, error.body())
}

/// The error in the shape the client's API has: Anthropic's envelope for
/// Anthropic's formats, OpenAI's for the rest.
fn error_response_in(format: Format, error: &ApiError) -> Response<Body> {
    if format.is_anthropic() {
        json_response(error.status, error.anthropic_body())
    } else {
        error_response(error)
    }
}

fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    response(status, "application/json", body.into())
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_models_paths_name_their_model_percent_decoded() {
        assert_eq!(models_path("/v1/models"), Some(None));
        assert_eq!(models_path("/models/"), Some(None));
        assert_eq!(models_path("/v1/models/gpt-4o"), Some(Some("gpt-4o")));
        assert_eq!(models_path("/v1/modelsx"), None);
        assert_eq!(models_path("/v1/chat/completions"), None);
        let model = |segment| path_model(segment).map(Cow::into_owned);
        assert_eq!(model("vendor%2Fmodel").unwrap(), "vendor/model");
        assert_eq!(model("vendor/model").unwrap(), "vendor/model");
        assert_eq!(model("a%20b").unwrap(), "a b");
        assert_eq!(model("ft:gpt-4o:org:x:1").unwrap(), "ft:gpt-4o:org:x:1");
        // A lone or broken escape is kept as written, as browsers do.
        assert_eq!(model("100%").unwrap(), "100%");
        assert_eq!(model("%zz").unwrap(), "%zz");
        let refused = path_model("%FF").expect_err("not UTF-8");
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert_eq!(refused.param.as_deref(), Some("model"));
    }
}
