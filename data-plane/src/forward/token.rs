//! The bearer token of a provider that fetches one (Vertex AI): taken from
//! the deployment's [`TokenCell`] without a lock while it is usable, fetched
//! again in the background before it goes stale, and fetched by one request
//! at a time (the others waiting for it) when there is none. Only the first
//! request to a deployment, and those after a failed fetch, wait on the
//! token endpoint.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::body::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};

use crate::config::secrets::Secret;
use crate::providers::target::{Target, Token, TokenCell};
use crate::providers::vertex::{self, TokenError};
use crate::upstream::{Upstream, UpstreamError};

/// How long a token endpoint has to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The `Authorization` for a request to a deployment whose provider
/// fetches its token, kept in `cell`, with the credentials `api_key` names.
pub async fn authorization(
    cell: &Arc<TokenCell>,
    api_key: &Secret,
    upstream: &Upstream,
) -> Result<HeaderValue, UpstreamError> {
    if let Some((authorization, fresh)) = cell.usable(Instant::now()) {
        if !fresh && cell.start_refresh() {
            let (cell, api_key, upstream) = (Arc::clone(cell), api_key.clone(), upstream.clone());
            tokio::spawn(async move {
                match fetch(&api_key, &upstream).await {
                    Ok(token) => cell.store(token),
                    // The current token is still usable; the next request
                    // past FRESH tries again.
                    Err(e) => tracing::warn!(error = %e, "refreshing a provider token failed"),
                }
                cell.refreshed();
            });
        }
        return Ok(authorization);
    }
    let _fetching = cell.fetching().await;
    // Another request may have fetched it while this one waited.
    if let Some((authorization, _)) = cell.usable(Instant::now()) {
        return Ok(authorization);
    }
    let token = fetch(api_key, upstream).await?;
    let authorization = token.authorization.clone();
    cell.store(token);
    Ok(authorization)
}

/// Fetches a token with the credentials `api_key` names.
async fn fetch(api_key: &Secret, upstream: &Upstream) -> Result<Token, UpstreamError> {
    let credentials = vertex::credentials(api_key.expose(), |name| std::env::var(name).ok())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let asked = vertex::token_request(&credentials, now)?;
    let target = Target::new(&asked.url, Vec::new(), |uri| upstream.is_proxied(uri))?;
    let (method, body) = match asked.form {
        Some(form) => (Method::POST, Bytes::from(form)),
        None => (Method::GET, Bytes::new()),
    };
    let mut request = Request::new(body);
    *request.method_mut() = method;
    request.headers_mut().extend(asked.headers);
    let started = Instant::now();
    let response = upstream
        .send(&target, request, FETCH_TIMEOUT)
        .await
        .map_err(|e| match e {
            UpstreamError::Connection(detail) => {
                UpstreamError::Connection(format!("the Google token endpoint: {detail}"))
            }
            other => other,
        })?;
    let status = response.status();
    let body = super::read_error_body(response.into_body()).await;
    match vertex::read_token(status.as_u16(), &body) {
        Ok((authorization, life)) => Ok(Token {
            authorization,
            expires_at: started + life,
        }),
        // Answered as the upstream refusing the deployment's credentials:
        // the deployment cools, and the client is told its api_key needs
        // fixing, never what the token endpoint said.
        Err(TokenError::Refused(code)) => Err(UpstreamError::Status {
            status: StatusCode::UNAUTHORIZED,
            body: Bytes::from(format!(r#"{{"error":{{"code":"{code}"}}}}"#)),
            shape: crate::formats::ErrorShape::Other,
            relayed: Box::default(),
        }),
        Err(TokenError::Failed(detail)) => Err(UpstreamError::Connection(detail)),
    }
}
