//! The operator's endpoints: liveness, readiness, Prometheus metrics, and
//! `/debug/config` (behind the data-plane token).

use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, HttpState, PROTOBUF, json_response, response};
use crate::body::Body;
use crate::config::applied::Readiness;
use crate::config::secrets::Secret;
use crate::config::snapshot::ApiKeys;
use crate::metrics;

/// `GET /health/liveness`: 200 while the process serves HTTP.
pub(super) fn liveness() -> Response<Body> {
    json_response(StatusCode::OK, json!({ "status": "alive" }).to_string())
}

pub(super) fn readiness(state: &HttpState) -> Response<Body> {
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

pub(super) fn metrics(state: &HttpState) -> Response<Body> {
    response(
        StatusCode::OK,
        metrics::CONTENT_TYPE,
        Bytes::from(state.metrics.encode()),
    )
}

/// The config in force, for a debug endpoint asked with the data-plane
/// token.
fn debug_config_for(
    state: &HttpState,
    headers: &HeaderMap,
) -> Result<std::sync::Arc<crate::config::snapshot::Config>, ApiError> {
    if !token_matches(state.token.as_ref(), headers) {
        return Err(ApiError::data_plane_token_required());
    }
    state.applied.current().ok_or_else(|| {
        let reason = match state.applied.readiness() {
            Readiness::NotReady { reason } => reason,
            Readiness::Ready { .. } => "none applied".into(),
        };
        ApiError::no_configuration(&reason)
    })
}

pub(super) async fn debug_config(
    state: &HttpState,
    headers: &HeaderMap,
) -> Result<Response<Body>, ApiError> {
    let config = debug_config_for(state, headers)?;
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

/// `GET /debug/routing`: every group's deployments with their routing state
/// on this data plane (in flight, latency, this minute's use, cooldown and
/// where it came from, counters), as JSON.
pub(super) fn debug_routing(
    state: &HttpState,
    headers: &HeaderMap,
) -> Result<Response<Body>, ApiError> {
    let config = debug_config_for(state, headers)?;
    let table = state.router.tables().for_config(&config);
    let now = crate::router::Router::clock();
    let groups: Vec<serde_json::Value> = config
        .model_groups()
        .iter()
        .map(|group| {
            let states = table.group(group.name());
            let deployments: Vec<serde_json::Value> = group
                .deployments()
                .iter()
                .zip(states)
                .map(|(d, s)| {
                    let d = d.deployment();
                    let (requests, tokens) = s.minute_usage(now);
                    let (attempts, failures, cooldowns) = s.counters();
                    let cooling = s.cooling(now).map(|(until, source)| {
                        serde_json::json!({
                            "until_ms": until,
                            "remaining_ms": until - now,
                            "source": match source {
                                crate::router::state::CooldownSource::Own => "own",
                                crate::router::state::CooldownSource::Fleet => "fleet",
                            },
                        })
                    });
                    serde_json::json!({
                        "id": d.id,
                        "order": d.order,
                        "weight": d.weight,
                        "rpm": d.rpm,
                        "tpm": d.tpm,
                        "in_flight": s.in_flight(),
                        "latency_ms": s.latency().map(|l| l.as_secs_f64() * 1000.0),
                        "minute": {"requests": requests, "tokens": tokens},
                        "cooling": cooling,
                        "attempts": attempts,
                        "failures": failures,
                        "cooldowns": cooldowns,
                    })
                })
                .collect();
            serde_json::json!({"name": group.name(), "deployments": deployments})
        })
        .collect();
    let policy = table.policy();
    let body = serde_json::json!({
        "revision": config.revision(),
        "strategy": policy.strategy.as_str(),
        "groups": groups,
    });
    Ok(response(
        StatusCode::OK,
        "application/json",
        Bytes::from(body.to_string()),
    ))
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
            // The scheme is case-insensitive (RFC 9110), as in the key's
            // parsing (`request::auth`).
            let (scheme, rest) = v.trim_start().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest)
        })
    else {
        return false;
    };
    let want = Sha256::digest(token.expose().as_bytes());
    let got = Sha256::digest(presented.trim().as_bytes());
    want.ct_eq(&got).into()
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
        for scheme in ["bearer", "BEARER", "BeArEr"] {
            let value = format!("{scheme} dp-token");
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&value).unwrap(),
            );
            assert!(token_matches(Some(&token), &headers), "{scheme}");
        }
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dp-token"),
        );
        assert!(!token_matches(Some(&token), &headers));
    }
}
