//! `GET` and `DELETE /v1/responses/{id}`: a response an upstream stored,
//! reached through the account that answered it
//! ([`crate::router::affinity`]). Only for responses this data plane passed
//! through, and only for the key that created them; anything else is a 404
//! ([`ApiError::response_not_found`]), which says why.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response};

use super::ApiError;
use crate::body::Body;
use crate::config::snapshot::{Config, ResolvedDeployment};
use crate::formats::Format;
use crate::headers::REQUEST_ID;
use crate::providers::{self, Backend, Fetches, Target};
use crate::request::access::{self, Decision};
use crate::router::affinity::{self, Account};

/// How long the upstream has to answer a retrieval.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The id in a `/v1/responses/{id}` path; `None` for other paths.
pub fn response_path(path: &str) -> Option<&str> {
    let id = path
        .strip_prefix("/v1")
        .unwrap_or(path)
        .strip_prefix("/responses/")?;
    (!id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    .then_some(id)
}

/// Answers `method` on the stored response `id`.
pub async fn stored_response(
    state: &super::HttpState,
    req: Request<Incoming>,
    id: &str,
    request_id: &HeaderValue,
) -> Result<Response<Body>, ApiError> {
    let config = super::openai::current_config(state)?;
    let key = super::openai::authenticate(&config, req.headers())?;
    let home = state
        .router
        .affinity()
        .home(id)
        .filter(|home| home.owner == affinity::owner(&key.key_id))
        .ok_or_else(|| ApiError::response_not_found(id))?;
    let (deployment, group) = deployment_of(&config, &key, home.account)
        .ok_or_else(|| ApiError::response_not_found(id))?;
    let Ok(Backend::Http(provider)) = providers::backend(deployment.deployment()) else {
        return Err(ApiError::response_not_found(id));
    };
    let d = deployment.deployment();
    let upstream_model = providers::upstream_model(d, group);
    let address = provider
        .address(deployment, &upstream_model, Format::Responses, false)
        .map_err(|_| ApiError::upstream_error(&d.id, "its address could not be made"))?;
    // `…/responses` → `…/responses/{id}`, before any query (Azure's version).
    let url = match address.url.split_once('?') {
        Some((path, query)) => format!("{path}/{id}?{query}"),
        None => format!("{}/{id}", address.url),
    };
    let target = Target::new(&url, address.headers, |uri| state.upstream.is_proxied(uri))
        .map_err(|_| ApiError::upstream_error(&d.id, "its address could not be made"))?;
    let method = req.method().clone();
    let mut request = Request::new(Bytes::new());
    *request.method_mut() = if method == Method::DELETE {
        Method::DELETE
    } else {
        Method::GET
    };
    request.headers_mut().insert(REQUEST_ID, request_id.clone());
    for (name, value) in target.headers() {
        request.headers_mut().insert(name.clone(), value.clone());
    }
    if provider.fetches(deployment) == Fetches::EntraToken {
        let authorization = crate::forward::token::entra_authorization(
            deployment.targets().token(),
            &deployment.secrets().azure,
            &state.upstream,
            &state.metrics,
        )
        .await
        .map_err(|e| ApiError::upstream_error(&d.id, &e.to_string()))?;
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, authorization);
    }
    let response = state
        .upstream
        .send(&target, request, TIMEOUT)
        .await
        .map_err(|e| ApiError::upstream_error(&d.id, &e.to_string()))?;
    let (parts, body) = response.into_parts();
    let mut resp = Response::new(body.boxed_unsync());
    *resp.status_mut() = parts.status;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    Ok(resp)
}

/// A deployment of `account` that serves the Responses API, in a group
/// `key` may use, and the group's name.
fn deployment_of<'c>(
    config: &'c Config,
    key: &Arc<sluice_proto::admin::v1::Key>,
    account: Account,
) -> Option<(&'c ResolvedDeployment, &'c str)> {
    config.model_groups().iter().find_map(|group| {
        if !matches!(
            access::check(config, key, group.name()),
            Decision::Allowed { .. }
        ) {
            return None;
        }
        group
            .deployments()
            .iter()
            .find(|d| providers::serves_responses(d.deployment()) && Account::of(d) == account)
            .map(|d| (d, group.name()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_paths() {
        assert_eq!(response_path("/v1/responses/resp_1"), Some("resp_1"));
        assert_eq!(response_path("/responses/resp_1"), Some("resp_1"));
        assert_eq!(response_path("/v1/responses/"), None);
        assert_eq!(response_path("/v1/responses/a/b"), None);
        assert_eq!(response_path("/v1/responses/a%2F"), None);
        assert_eq!(response_path("/v1/responses"), None);
    }
}
