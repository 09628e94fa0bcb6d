//! Errors as OpenAI's clients expect them: `{"error": {"message", "type",
//! "param", "code"}}`. Every error the HTTP API answers is built here, one
//! constructor per row of DESIGN §4's table, so the wording and codes live in
//! one place.

//!
//! | case | status | `code` | built by |
//! |---|---|---|---|
//! | missing / unknown key | 401 | `invalid_api_key` | [`ApiError::invalid_api_key`] |
//! | key expired / blocked, team blocked | 401 | `key_expired` / `key_blocked` / `team_blocked` | [`ApiError::key_rejected`] |
//! | model not allowed | 403 | `model_access_denied` (+ `available_models`) | [`ApiError::model_access_denied`] |
//! | allowed model, no deployment | 404 | `model_not_found` | [`ApiError::model_not_found`] |
//! | bad JSON, missing `model`, wrong types, wrong `Content-Type` | 400 | `invalid_request_error` (+ `param`) | [`ApiError::invalid_request`] |
//! | a stored response this data plane did not pass through (`GET`/`DELETE /v1/responses/{id}`) | 404 | `response_not_found` | [`ApiError::response_not_found`] |
//! | body over the limit | 413 | `request_too_large` | [`ApiError::request_too_large`] |
//! | group with no usable deployment (every one cooling: with `Retry-After`) | 503 | `no_healthy_deployment` | [`ApiError::no_healthy_deployment`] |
//! | prompt above every deployment's `max_input_tokens` (pre-call checks) | 400 | `context_length_exceeded` | [`ApiError::prompt_too_large`] |
//! | a budget (key, team, organization) spent, or the team's credits | 429 | `insufficient_quota` | [`ApiError::insufficient_quota`] |
//! | a rate limit (key or team `rpm_limit`/`tpm_limit`, key `max_parallel_requests`) reached | 429 | `rate_limit_exceeded` (+ `Retry-After`, `x-ratelimit-*`) | [`ApiError::rate_limited`] |
//! | a budget not spent, but this data plane's share of what is left is (pacing) | 429 | `rate_limit_exceeded` (+ `Retry-After: 1`) | [`ApiError::budget_paced`] |
//! | upstream unreachable / broken answer | 502 | `upstream_error` | [`ApiError::upstream_error`] |
//! | upstream too slow | 504 | `upstream_timeout` | [`ApiError::upstream_timeout`] |
//! | upstream answered an error without OpenAI's shape | upstream status | `upstream_error` | [`ApiError::upstream_status`] |
//! | no config loaded yet | 503 | `no_configuration` | [`ApiError::no_configuration`] |
//! | a handler panicked | 500 | `internal_error` | [`ApiError::internal`] |
//! | unknown path / wrong method | 404 / 405 | null / `method_not_allowed` | [`ApiError::unknown_route`] / [`ApiError::method_not_allowed`] |
//!
//! An upstream error that already has OpenAI's shape is relayed as the
//! upstream sent it (status and body), not rebuilt here; one in Google's
//! envelope (Gemini) is unwrapped into OpenAI's ([`formats::google`]).
//!
//! On Anthropic's routes (`/v1/messages`, `/v1/messages/count_tokens`, and
//! `/v1/models` asked with `anthropic-version`) the same errors are written
//! in Anthropic's envelope, `{"type": "error", "error": {"type",
//! "message"}}` ([`ApiError::anthropic_body`]): same status and message,
//! the `type` Anthropic gives that status.

use crate::formats;
use crate::request::access::KeyRejection;
use crate::usage::ledger::{Refusal, Scope};
use crate::usage::limits::{Exceeded, Kind};
use hyper::StatusCode;

/// An error response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    /// The request field at fault (OpenAI's `param`).
    pub param: Option<String>,
    /// For a 403: the names the key may use, also listed in the message.
    pub available_models: Option<Vec<String>>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&'static str>,
        message: String,
    ) -> Self {
        ApiError {
            status,
            message,
            kind,
            code,
            param: None,
            available_models: None,
        }
    }

    /// 401: no key in `Authorization: Bearer`, `x-api-key` or `api-key`, or
    /// one this data plane does not know.
    pub fn invalid_api_key(presented: bool) -> Self {
        let message = if presented {
            "Invalid API key: this key is not known to Sluice (mistyped, deleted or \
             regenerated?); check the key your client sends or ask your administrator for one"
        } else {
            "Missing API key: send your Sluice key as `Authorization: Bearer <key>` \
             (or in an `x-api-key` / `api-key` header)"
        };
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("invalid_api_key"),
            message.into(),
        )
    }

    /// 401: a known key that may not be used now.
    pub fn key_rejected(rejection: KeyRejection) -> Self {
        let code = match rejection {
            KeyRejection::Expired => "key_expired",
            KeyRejection::Blocked => "key_blocked",
            KeyRejection::TeamBlocked => "team_blocked",
        };
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some(code),
            rejection.to_string(),
        )
    }

    /// 403: `holder` is how the key (and team) are named: alias or prefix,
    /// never the key.
    pub fn model_access_denied(model: &str, holder: &str, available: Vec<String>) -> Self {
        let listed = if available.is_empty() {
            "none".to_owned()
        } else {
            available.join(", ")
        };
        let mut e = ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            Some("model_access_denied"),
            format!(
                "{holder} may not use model {model:?}. Available models: {listed}. \
                 Use one of those, or ask your administrator for access"
            ),
        );
        e.param = Some("model".into());
        e.available_models = Some(available);
        e
    }

    /// 404: an allowed name that nothing serves.
    pub fn model_not_found(model: &str) -> Self {
        let mut e = ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("model_not_found"),
            format!(
                "The model {model:?} does not exist on this gateway; \
                 GET /v1/models lists the models your key can use"
            ),
        );
        e.param = Some("model".into());
        e
    }

    /// 404: `GET` or `DELETE /v1/responses/{id}` for a response this data
    /// plane did not see a stateful upstream answer for this key.
    pub fn response_not_found(id: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("response_not_found"),
            format!(
                "No stored response {id:?} is known here: a response can be retrieved through \
                 the data plane that passed it through from a deployment that stores \
                 responses, with the key that created it; responses Sluice translated for a \
                 stateless deployment are never stored"
            ),
        )
    }

    /// 400 for a request that cannot be understood; `param` names the field.
    pub fn invalid_request(param: Option<&str>, message: String) -> Self {
        let mut e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("invalid_request_error"),
            message,
        );
        e.param = param.map(str::to_owned);
        e
    }

    /// 413.
    pub fn request_too_large(limit: u64) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            Some("request_too_large"),
            format!(
                "The request body is larger than this gateway accepts ({limit} bytes); \
                 send a smaller request, or ask the operator to raise --max-body-bytes"
            ),
        )
    }

    /// 408: the body did not arrive in time (a slow or stalled client).
    pub fn request_timeout(after: std::time::Duration) -> Self {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            Some("request_timeout"),
            format!(
                "The request body did not arrive within {}s of its headers; \
                 send it at once (the operator sets the limit with --body-read-timeout-ms)",
                after.as_secs_f64()
            ),
        )
    }

    /// 503: the group exists but none of its deployments can be used here
    /// (each refers to an environment variable this data plane lacks).
    /// `retry_after`: seconds until the first deployment is back, when all
    /// are only resting (cooling down or at their rate caps).
    pub fn no_healthy_deployment(group: &str, retry_after: Option<u64>) -> Self {
        let message = match retry_after {
            Some(secs) => format!(
                "Every deployment of model group {group:?} (and of its fallbacks) is cooling \
                 down or at its rate limit; retry in {secs} s"
            ),
            None => format!(
                "No deployment of model group {group:?} is usable on this data plane; \
                 retry later, and ask the operator to check the data plane's log"
            ),
        };
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            Some("no_healthy_deployment"),
            message,
        )
    }

    /// 429: a budget that applies is spent (DESIGN §7), or the team has not
    /// the credits the call takes. `name` is how the message names the key
    /// (its alias or prefix, never the key) or the team or organization.
    pub fn insufficient_quota(refusal: &Refusal, name: &str, now_s: i64) -> Self {
        let message = match refusal {
            Refusal::Budget {
                scope,
                spend,
                max_budget,
                resets_at,
                ..
            } => {
                let reset = match resets_at {
                    Some(at) => {
                        let when = std::time::UNIX_EPOCH
                            + std::time::Duration::from_secs(u64::try_from(*at).unwrap_or(0));
                        format!(
                            "the budget window resets at {} (in {} s)",
                            humantime::format_rfc3339_seconds(when),
                            at.saturating_sub(now_s).max(0)
                        )
                    }
                    None => "this budget does not reset (no budget_duration): ask the operator to raise max_budget"
                        .to_owned(),
                };
                format!(
                    "Budget exceeded: {} {name:?} has spent {} of its max_budget of {}; {reset}",
                    scope.noun(),
                    dollars(*spend),
                    dollars(*max_budget)
                )
            }
            Refusal::Pacing { scope, .. } => {
                return ApiError::budget_paced(*scope, name);
            }
            Refusal::Credits {
                allocated,
                used,
                needed,
                ..
            } => format!(
                "Insufficient credits: team {name:?} has {} of its {allocated} credits left and                  this model takes {needed} per call; ask the operator to add credits                  (CreditService/AddCredits)",
                (allocated - used).max(0)
            ),
        };
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            Some("insufficient_quota"),
            message,
        )
    }

    /// 429: a rate limit of the key or its team is reached on this data
    /// plane (its share of the limit, DESIGN §7). `name` names the key or team.
    pub fn rate_limited(exceeded: &Exceeded, name: &str) -> Self {
        let when = match exceeded.reset_s {
            Some(s) => format!("try again in {s}s"),
            None => "try again when one of its requests in flight ends".to_owned(),
        };
        let kind = match exceeded.kind {
            Kind::Tpm => "tokens",
            Kind::Rpm | Kind::Parallel => "requests",
        };
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            kind,
            Some("rate_limit_exceeded"),
            format!(
                "Rate limit reached for {} {name:?} on {}: limit {}; {when}",
                exceeded.scope.noun(),
                exceeded.kind.noun(),
                exceeded.limit
            ),
        )
    }

    /// 429: the budget is not spent, but this data plane has spent its
    /// share of what is left until the control plane counts it.
    pub fn budget_paced(scope: Scope, name: &str) -> Self {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "requests",
            Some("rate_limit_exceeded"),
            format!(
                "The budget of {} {name:?} is nearly spent and is being shared across the \
                 gateway's data planes: this one has used its share until the spend is counted; \
                 retry in 1 s",
                scope.noun()
            ),
        )
    }

    /// 400: with pre-call checks on, the prompt is larger than every
    /// deployment's `max_input_tokens`, and no context-window fallback took it.
    pub fn prompt_too_large(group: &str, detail: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("context_length_exceeded"),
            format!(
                "The prompt is longer than any deployment of model group {group:?} accepts \
                 ({detail}); shorten it, or ask the operator for a context_window_fallbacks \
                 group"
            ),
        )
    }

    /// 502: the upstream could not be reached or its answer was broken.
    pub fn upstream_error(deployment: &str, detail: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            Some("upstream_error"),
            format!(
                "The upstream of deployment {deployment:?} failed: {detail}; \
                 retry, and tell the operator if it persists"
            ),
        )
    }

    /// An upstream error status whose body is not OpenAI's error shape: the
    /// status is kept, the body summarised.
    pub fn upstream_status(deployment: &str, status: StatusCode, detail: &str) -> Self {
        ApiError::new(
            status,
            "api_error",
            Some("upstream_error"),
            format!("The upstream of deployment {deployment:?} answered {status}: {detail}"),
        )
    }

    /// 504.
    pub fn upstream_timeout(deployment: &str, timeout: std::time::Duration) -> Self {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "api_error",
            Some("upstream_timeout"),
            format!(
                "The upstream of deployment {deployment:?} did not answer within {timeout:?}; \
                 retry, or ask the operator to raise the deployment's timeout"
            ),
        )
    }

    /// A path this data plane does not serve (OpenAI answers these with a
    /// null code too).
    pub fn unknown_route(method: &str, path: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            None,
            format!("Invalid URL ({method} {path}): this Sluice data plane does not serve it"),
        )
    }

    pub fn method_not_allowed(method: &str, path: &str, allowed: &str) -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            Some("method_not_allowed"),
            format!("{path} does not accept {method}; use {allowed}"),
        )
    }

    /// 401 `invalid_api_key`, for endpoints that want the data-plane token.
    pub fn data_plane_token_required() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("invalid_api_key"),
            "this endpoint needs `Authorization: Bearer <data-plane token>` \
             (the SLUICE_DATA_PLANE_TOKEN this data plane runs with)"
                .into(),
        )
    }

    /// 503: no configuration to answer from yet.
    pub fn no_configuration(reason: &str) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            Some("no_configuration"),
            format!(
                "No configuration loaded yet ({reason}); retry shortly, \
                 GET /health/readiness says when this data plane is ready"
            ),
        )
    }

    /// A bug on our side, said plainly rather than as a bare 500.
    pub fn internal(what: &str) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            Some("internal_error"),
            format!("{what}; this is a bug in the data plane, see its log"),
        )
    }

    /// The body in Anthropic's envelope, the type its status has there.
    pub fn anthropic_body(&self) -> String {
        formats::anthropic::error::envelope(
            formats::anthropic::error::type_for_status(self.status.as_u16()),
            &self.message,
        )
    }

    /// The body, in OpenAI's shape ([`formats::openai::Error`]).
    pub fn body(&self) -> String {
        formats::openai::Error {
            message: &self.message,
            kind: self.kind,
            param: self.param.as_deref(),
            code: self.code,
            available_models: self.available_models.as_deref(),
        }
        .body()
    }
}

/// micro-USD as dollars, exactly: `$0.000250`.
fn dollars(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    format!("{sign}${}.{:06}", m / 1_000_000, m % 1_000_000)
}
