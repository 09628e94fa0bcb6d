//! The data plane's HTTP server: HTTP/1.1 and cleartext HTTP/2 (h2c) on one
//! port, with graceful shutdown.
//!
//! | route | answer |
//! |---|---|
//! | `GET /health/liveness` | 200 while the process serves HTTP |
//! | `GET /health/readiness` | 200 once a config is loaded (from the stream or the cache), else 503 with the reason |
//! | `GET /metrics` | Prometheus metrics ([`crate::metrics`]) |
//! | `GET /debug/config` | the applied config as a protobuf `sluice.config.v1.Snapshot`, literal provider `api_key`s redacted; needs the data-plane token |
//! | anything else | 404, OpenAI's error shape |
//!
//! Routes are one `match` in [`route`]; the OpenAI API joins it there.

pub mod error;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::applied::{AppliedConfig, Readiness};
use crate::metrics::{self, Metrics};
use crate::secrets::Secret;
use crate::snapshot::ApiKeys;
pub use error::ApiError;

/// The body of every response.
pub type Body = BoxBody<Bytes, Infallible>;

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
}

/// Serves HTTP on `listener` until `shutdown` resolves, then stops accepting
/// and gives open requests [`DRAIN_TIMEOUT`] to finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    shutdown: impl Future<Output = ()>,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, typically: accepting again at
                    // once would spin.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let service = service_fn(move |req| {
            let state = Arc::clone(&state);
            async move { Ok::<_, Infallible>(route(&state, req).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("HTTP connections still open after {DRAIN_TIMEOUT:?}; closing them");
        }
    }
}

/// Binds `address` (`host:port`), for `serve`.
pub async fn bind(address: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Answers one request.
pub async fn route(state: &HttpState, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let method = req.method();
    let answer = match (method, path) {
        (&Method::GET, "/health/liveness") => Ok(json_response(
            StatusCode::OK,
            json!({ "status": "alive" }).to_string(),
        )),
        (&Method::GET, "/health/readiness") => Ok(readiness(state)),
        (&Method::GET, "/metrics") => Ok(metrics(state)),
        (&Method::GET, "/debug/config") => debug_config(state, req.headers()).await,
        (_, "/health/liveness" | "/health/readiness" | "/metrics" | "/debug/config") => {
            Err(ApiError::method_not_allowed(method.as_str(), path, "GET"))
        }
        _ => Err(ApiError::unknown_route(method.as_str(), path)),
    };
    answer.unwrap_or_else(|e| error_response(&e))
}

fn readiness(state: &HttpState) -> Response<Body> {
    match state.applied.readiness() {
        Readiness::Ready { revision } => json_response(
            StatusCode::OK,
            json!({ "status": "ready", "revision": revision }).to_string(),
        ),
        Readiness::NotReady { reason } => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "not ready", "reason": reason }).to_string(),
        ),
    }
}

fn metrics(state: &HttpState) -> Response<Body> {
    response(
        StatusCode::OK,
        metrics::CONTENT_TYPE,
        Bytes::from(state.metrics.encode()),
    )
}

async fn debug_config(state: &HttpState, headers: &HeaderMap) -> Result<Response<Body>, ApiError> {
    if !token_matches(state.token.as_ref(), headers) {
        return Err(ApiError::data_plane_token_required());
    }
    let Some(config) = state.applied.current() else {
        let reason = match state.applied.readiness() {
            Readiness::NotReady { reason } => reason,
            Readiness::Ready { .. } => "none applied".into(),
        };
        return Err(ApiError::no_configuration(&reason));
    };
    let revision = config.revision();
    // A million keys take a while to encode: not on a runtime thread.
    let encoded = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        config
            .encode_snapshot(ApiKeys::Redacted, &mut out)
            .map(|()| out)
    })
    .await;
    let bytes = match encoded {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => return Err(encoding_failed(&e)),
        Err(e) => return Err(encoding_failed(&e)),
    };
    let mut resp = response(StatusCode::OK, PROTOBUF, Bytes::from(bytes));
    resp.headers_mut()
        .insert("x-sluice-revision", HeaderValue::from(revision));
    Ok(resp)
}

fn encoding_failed(error: &dyn std::error::Error) -> ApiError {
    tracing::error!(error = %error, "encoding the configuration for /debug/config failed");
    ApiError::internal("encoding the configuration failed")
}

/// Whether `Authorization: Bearer <token>` carries the data-plane token.
/// Digests are compared, in constant time, so neither the token's bytes nor
/// its length leak through timing.
fn token_matches(token: Option<&Secret>, headers: &HeaderMap) -> bool {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return false;
    };
    let Some(presented) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    else {
        return false;
    };
    let want = Sha256::digest(token.expose().as_bytes());
    let got = Sha256::digest(presented.trim().as_bytes());
    want.ct_eq(&got).into()
}

fn error_response(error: &ApiError) -> Response<Body> {
    json_response(error.status, error.body())
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    response(status, "application/json", Bytes::from(body))
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body).boxed());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_check() {
        let token = Secret::new("dp-token");
        let mut headers = HeaderMap::new();
        assert!(!token_matches(Some(&token), &headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer dp-token"),
        );
        assert!(token_matches(Some(&token), &headers));
        assert!(!token_matches(None, &headers));
        assert!(!token_matches(Some(&Secret::new("")), &headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer dp-token2"),
        );
        assert!(!token_matches(Some(&token), &headers));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("dp-token"));
        assert!(!token_matches(Some(&token), &headers));
    }
}
