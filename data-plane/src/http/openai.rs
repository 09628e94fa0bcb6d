//! The request path, top to bottom, for OpenAI's API and Anthropic's.
//!
//! `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, and
//! Anthropic's `/v1/messages` and `/v1/messages/count_tokens` (a
//! [`Route`]): config → [`auth`] →
//! [`parse`] checks → [`access`] → budgets and credits
//! ([`crate::usage`]) → [`router`] → [`forward`] (which translates when the
//! deployment speaks the other API) → the answer watched for its usage
//! ([`crate::usage::tap`]) → [`meter`](crate::meter). The route decides only
//! the shapes the client is answered in; `count_tokens` is not metered.
//!
//! `GET /v1/models` and `GET /v1/models/{model}`: only what the key may use,
//! in Anthropic's shape when asked with `anthropic-version`.
//!
//! Each failure becomes exactly one [`ApiError`] (one row of DESIGN §4's
//! table) here, in the client's API's shape, except an upstream error in
//! OpenAI's or Anthropic's shape, which is relayed as the upstream sent it
//! to a client of its API and translated for the other. An upstream error,
//! relayed or not, keeps the upstream's advice on when to retry
//! (`retry-after`, `retry-after-ms`).

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use sluice_proto::admin::v1::Key;
use tracing::Instrument;

use super::{ApiError, HttpState, json_response};
use crate::body::{Body, Interruption, carrying};
use crate::config::snapshot::{Config, ResolvedDeployment};
use crate::formats::usage::Dialect;
use crate::formats::{self, ErrorShape, Format};
use crate::forward::{self, Answer, Call};
use crate::meter::Meter;
use crate::providers;
use crate::request::Route;
use crate::request::access::{self, Decision};
use crate::request::auth::{self, AuthError};
use crate::request::parse::{self, ReadError, RequestError};
use crate::router::affinity::{self, Account, Home};
use crate::router::{Router, attempts, policy};
use crate::upstream::UpstreamError;
use crate::usage::Who;
use crate::usage::ledger::{Refusal, Scope};
use crate::usage::limits::{Exceeded, Kind, Standing, Window};
use crate::usage::price::Prices;
use crate::usage::tap::{Bill, tap};

/// Answers a completion or embedding request.
pub async fn completion(
    state: &HttpState,
    route: Route,
    req: Request<Incoming>,
    request_id: &HeaderValue,
) -> Response<Body> {
    let mut meter = Meter::start(state.metrics.clone(), request_id);
    // Room for what routing and the rate limits write (group, deployment,
    // attempts, fallback, six `x-ratelimit-*`): allocated once, not grown.
    let mut routed = HeaderMap::with_capacity(12);
    let format = route.format();
    let resp = match complete(state, route, req, request_id, &mut meter, &mut routed).await {
        Ok(answer) => relay(answer, meter),
        Err(Failure::Api(e)) => {
            meter.answered(e.status, e.code.unwrap_or_default());
            meter.ride(super::error_response_in(format, &e))
        }
        Err(Failure::Summarised { error, relayed }) => {
            meter.answered(error.status, error.code.unwrap_or_default());
            with_headers(
                meter.ride(super::error_response_in(format, &error)),
                *relayed,
            )
        }
        Err(Failure::Relayed {
            status,
            body,
            relayed,
        }) => {
            meter.answered(status, "upstream_error");
            // The upstream's body, as it sent it.
            with_headers(meter.ride(json_response(status, body)), *relayed)
        }
    };
    with_headers(resp, routed)
}

/// Why a request got no upstream answer to relay.
enum Failure {
    Api(ApiError),
    /// An upstream error not in OpenAI's shape: answered as ours, with the
    /// upstream's status and advice on when to retry (`relayed`, from
    /// [`forward::RELAYED_ERROR_HEADERS`]).
    Summarised {
        error: ApiError,
        relayed: Box<HeaderMap>,
    },
    /// An upstream error in the client's API's shape (as the upstream sent
    /// it, or translated from the other API's): relayed with its status and
    /// advice on when to retry.
    Relayed {
        status: StatusCode,
        body: Bytes,
        relayed: Box<HeaderMap>,
    },
}

fn with_headers(mut resp: Response<Body>, headers: HeaderMap) -> Response<Body> {
    if !headers.is_empty() {
        let map = resp.headers_mut();
        map.reserve(headers.len());
        map.extend(headers);
    }
    resp
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

async fn complete(
    state: &HttpState,
    route: Route,
    req: Request<Incoming>,
    request_id: &HeaderValue,
    meter: &mut Meter,
    routed: &mut HeaderMap,
) -> Result<Answer, Failure> {
    let config = current_config(state)?;
    // Checked to be printable ASCII.
    let id = request_id.to_str().unwrap_or_default();
    let key = {
        let _span = tracing::debug_span!("auth", request_id = id).entered();
        authenticate(&config, req.headers())?
    };
    let key = &key;
    meter.known.key = Some(Arc::clone(key));

    let limits = state.limits;
    parse::check_headers(req.headers(), limits.max_body_bytes).map_err(request_error)?;
    let anthropic_beta = req.headers().get(&providers::anthropic::BETA).cloned();
    let mut reading = std::pin::pin!(parse::read_body(req.into_body(), limits.max_body_bytes));
    // A small body comes in the same packets as its headers: read it without
    // arming a timer; only a body still on its way is timed.
    let read = match std::future::poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await {
        Poll::Ready(read) => read,
        Poll::Pending => tokio::time::timeout(limits.body_read_timeout, reading)
            .await
            .map_err(|_| ApiError::request_timeout(limits.body_read_timeout))?,
    };
    let body = read.map_err(|e| match e {
        ReadError::Request(e) => request_error(e),
        // The client's connection broke mid-body: nobody will read the
        // answer, but it still gets one in the right shape.
        ReadError::Io(detail) => ApiError::invalid_request(None, detail),
    })?;
    let parsed = parse::parse(route.format(), body).map_err(|refused| {
        // A body refused for another field still names its model in the
        // request's log line.
        if let Some(model) = refused.model {
            meter.known.model = model;
        }
        request_error(refused.error)
    })?;
    meter.known.model = parsed.model.clone();
    meter.known.stream = parsed.stream;

    let group = {
        let _span =
            tracing::debug_span!("access", request_id = id, model = %parsed.model).entered();
        match access::check(&config, key, &parsed.model) {
            Decision::Allowed { group, .. } => group,
            Decision::Denied {
                model,
                available_models,
            } => {
                return Err(ApiError::model_access_denied(
                    &model,
                    &holder(&config, key),
                    available_models,
                )
                .into());
            }
            Decision::NotFound { model } => return Err(ApiError::model_not_found(&model).into()),
        }
    };
    meter.known.model_group = group.name().to_owned();

    // Rate limits, budgets and credits (DESIGN §7): decided here from what
    // this data plane knows, never by asking anyone. Counting a prompt's
    // tokens costs nothing upstream and generates nothing: not metered.
    let quota = if route == Route::CountTokens {
        None
    } else {
        let limits = state
            .usage
            .limit(&config, key, &parsed)
            .map_err(|exceeded| limit_failure(&config, key, &exceeded))?;
        rate_limit_headers(&limits.standing, routed);
        let reservation = state
            .usage
            .admit(&config, key, group, &parsed, route.format())
            .map_err(|refusal| quota_failure(&config, key, &refusal))?;
        Some((limits, reservation))
    };

    let table = state.router.tables().for_config(&config);
    // A fallback is subject to the caller's access (DESIGN §3.4): one the
    // key may not use is skipped, never called.
    let allowed = |name: &str| match access::check(&config, key, name) {
        Decision::Allowed { group, .. } => Some(group),
        _ => None,
    };
    // A Responses request continuing a stored response goes only where
    // upstreams keep state (README, "The Responses API"): to the account
    // that answered it when this data plane saw that and the group has it,
    // else to any deployment that keeps state; with none, the translation
    // refuses it with a 400 saying why. A compaction goes only to those
    // too: nothing else can make one.
    let responses = matches!(route, Route::Responses | Route::ResponsesCompact);
    let owner = responses.then(|| affinity::owner(&key.key_id));
    let continuing = parsed
        .previous_response_id
        .as_deref()
        .filter(|_| owner.is_some());
    let home = continuing
        .and_then(|id| state.router.affinity().home(id))
        .filter(|home| Some(home.owner) == owner)
        .map(|home| home.account)
        .filter(|home| {
            group
                .deployments()
                .iter()
                .any(|d| providers::serves_responses(d.deployment()) && Account::of(d) == *home)
        });
    let stateful = |d: &ResolvedDeployment| {
        providers::serves_responses(d.deployment())
            && home.is_none_or(|home| Account::of(d) == home)
    };
    // A compaction too, which only a Responses upstream makes, and an
    // input holding such an upstream's items (its compaction, a reference
    // to what it stored), which only it can read.
    let needs_state = continuing.is_some()
        || route == Route::ResponsesCompact
        || (responses && parsed.upstream_items);
    // The legacy completions, moderations and image generations go only
    // to the deployments that serve them, when the group mixes them with
    // others: one that does not would refuse the request (400, not
    // retried) rather than pass it on.
    let serves = |d: &ResolvedDeployment| providers::takes(d.deployment(), route.format());
    let by_state = needs_state && group.deployments().iter().any(stateful);
    let by_route =
        group.deployments().iter().any(serves) && !group.deployments().iter().all(serves);
    let fits = |d: &ResolvedDeployment| (!by_state || stateful(d)) && (!by_route || serves(d));
    let eligible: Option<&(dyn Fn(&ResolvedDeployment) -> bool + Sync)> =
        (by_state || by_route).then_some(&fits);
    let request = attempts::Request {
        config: &config,
        requested: &parsed.model,
        group,
        fallbacks: &parsed.fallbacks,
        prompt_tokens: parsed.prompt_tokens,
        allowed: &allowed,
        eligible,
    };
    let events = state.router.events(&state.metrics);
    let interruption = Interruption::default();
    let (parsed, interruption_ref) = (&parsed, &interruption);
    let anthropic_beta = anthropic_beta.as_ref();
    let result = attempts::run(&table, Router::clock, &request, &events, |a| {
        let deployment = a.deployment.deployment();
        let requested = a.fallback_name.as_deref().unwrap_or(&parsed.model);
        let upstream_model = providers::upstream_model(deployment, requested);
        let stream_timeout = deployment.stream_timeout.as_ref().and_then(policy::duration);
        let span = tracing::debug_span!("upstream", request_id = id, deployment = %deployment.id, attempt = a.number);
        async move {
            let call = Call {
                deployment: a.deployment,
                // Sent in the client's format, or translated for the
                // deployment's API.
                format: route.format(),
                request: parsed,
                upstream_model: &upstream_model,
                request_id,
                timeout: a.timeout,
                stream_timeout,
                // Metering needs a stream's usage: ask for it (and strip it
                // from the answer when the client did not).
                ask_usage: true,
                interruption: interruption_ref,
                anthropic_beta,
            };
            // A passed-through Responses answer's id is remembered with its
            // account, for requests that continue it.
            let home = owner
                .filter(|_| providers::serves_responses(deployment))
                .map(|owner| Home {
                    account: Account::of(a.deployment),
                    owner,
                });
            let priced = Priced {
                prices: Prices::of(deployment),
                credits_per_call: deployment.credits_per_call,
            };
            forward::forward(&state.upstream, &state.metrics, call)
                .instrument(span)
                .await
                .map(|mut answer| {
                    if let Some(home) = home {
                        answer.body = super::remember::remembering(
                            answer.body,
                            Arc::clone(&state.router),
                            home,
                        );
                    }
                    (answer, priced)
                })
        }
    })
    .await;
    match result {
        Ok(served) => {
            routed.insert(GROUP, header_value(served.group));
            routed.insert(DEPLOYMENT, header_value(served.deployment));
            routed.insert(ATTEMPTS, HeaderValue::from(served.attempts));
            if let Some(fallback) = served.fallback {
                routed.insert(FALLBACK, header_value(fallback));
            }
            served.group.clone_into(&mut meter.known.model_group);
            served.deployment.clone_into(&mut meter.known.deployment);
            let (mut answer, priced) = served.value;
            if answer.event_stream {
                meter.watch(interruption);
            }
            if let Some((limits, reservation)) = quota {
                let bill = Bill {
                    reservation,
                    limits,
                    who: Who::new(&config, key, served.group),
                    deployment_id: served.deployment.to_owned(),
                    prices: priced.prices,
                    credits_per_call: priced.credits_per_call,
                    prompt_estimate: parsed.prompt_tokens,
                    completes: route.format().completes(),
                    images: (route == Route::ImageGenerations).then_some(parsed.n),
                };
                // The answer is in the client's API's shape, translated or not.
                let dialect = if route.format().is_anthropic() {
                    Dialect::Anthropic
                } else if responses || route == Route::ImageGenerations {
                    // The GPT image models count as the Responses API does.
                    Dialect::Responses
                } else {
                    Dialect::OpenAi
                };
                // Sluice asked for the usage chunk itself when the client did not.
                let strip = answer.event_stream && !parsed.include_usage;
                answer.body = tap(
                    Arc::clone(&state.usage),
                    answer.body,
                    dialect,
                    answer.event_stream,
                    strip,
                    bill,
                );
            }
            answer.body = carrying(answer.body, served.in_flight);
            Ok(answer)
        }
        Err(exhausted) => {
            routed.insert(GROUP, header_value(exhausted.group));
            routed.insert(ATTEMPTS, HeaderValue::from(exhausted.attempts));
            if let Some(d) = exhausted.last_deployment {
                routed.insert(DEPLOYMENT, header_value(d));
            }
            if let Some(d) = exhausted.last_deployment {
                d.clone_into(&mut meter.known.deployment);
            }
            Err(exhausted_failure(exhausted, route.format(), &state.metrics))
        }
    }
}

/// A deployment's prices, kept from the attempt that answered.
struct Priced {
    prices: Prices,
    credits_per_call: i64,
}

/// How a refusal names a scope: a key by alias or prefix (never the key),
/// a team by alias, an organization by name, else by id.
fn scope_name(config: &Config, key: &Key, scope: Scope, id: &str) -> String {
    let named = match scope {
        Scope::Key => return auth::key_label(key).into_owned(),
        Scope::Team => config.team(id).map(|t| t.team_alias.as_str()),
        Scope::Organization => config.organization(id).map(|o| o.name.as_str()),
    };
    named.filter(|n| !n.is_empty()).unwrap_or(id).to_owned()
}

/// A 429 `insufficient_quota`, naming the budget or the credits; with
/// `Retry-After` when the budget's window resets, and `x-should-retry:
/// false` (which OpenAI's SDKs obey) when retrying within a minute cannot
/// help. A budget only paced (this data plane's share of what is left is
/// in use) is a 429 `rate_limit_exceeded` with `Retry-After: 1`.
fn quota_failure(config: &Config, key: &Key, refusal: &Refusal) -> Failure {
    let now = now_s();
    let name = match refusal {
        Refusal::Budget { scope, id, .. } | Refusal::Pacing { scope, id, .. } => {
            scope_name(config, key, *scope, id)
        }
        Refusal::Credits { team_id, .. } => scope_name(config, key, Scope::Team, team_id),
    };
    let error = ApiError::insufficient_quota(refusal, &name, now);
    let mut relayed = Box::new(HeaderMap::new());
    let wait = match refusal {
        Refusal::Budget {
            resets_at: Some(at),
            ..
        } => Some(at.saturating_sub(now).max(1)),
        Refusal::Pacing { .. } => Some(1),
        _ => None,
    };
    if let Some(secs) = wait {
        relayed.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if wait.is_none_or(|s| s > 60) {
        relayed.insert(SHOULD_RETRY, HeaderValue::from_static("false"));
    }
    Failure::Summarised { error, relayed }
}

/// A 429 `rate_limit_exceeded` with `Retry-After` and OpenAI's
/// `x-ratelimit-*` headers for the limit reached.
fn limit_failure(config: &Config, key: &Key, exceeded: &Exceeded) -> Failure {
    let name = scope_name(config, key, exceeded.scope, &exceeded.id);
    let error = ApiError::rate_limited(exceeded, &name);
    let mut relayed = Box::new(HeaderMap::new());
    let reset = exceeded.reset_s.unwrap_or(1);
    relayed.insert(header::RETRY_AFTER, HeaderValue::from(reset.max(1)));
    let window = Window {
        limit: exceeded.limit,
        remaining: 0,
        reset_s: reset,
    };
    let standing = match exceeded.kind {
        Kind::Tpm => Standing {
            requests: None,
            tokens: Some(window),
        },
        Kind::Rpm => Standing {
            requests: Some(window),
            tokens: None,
        },
        Kind::Parallel => Standing::default(),
    };
    rate_limit_headers(&standing, &mut relayed);
    Failure::Summarised { error, relayed }
}

/// OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`: the
/// tightest limit of each kind; `remaining` is of this data plane's share.
fn rate_limit_headers(standing: &Standing, headers: &mut HeaderMap) {
    use std::fmt::Write as _;
    let windows = [
        (standing.requests, RATE_LIMIT_REQUESTS),
        (standing.tokens, RATE_LIMIT_TOKENS),
    ];
    if windows.iter().all(|(w, _)| w.is_none()) {
        return;
    }
    // Every value written into one buffer and each header a slice of it:
    // two allocations on the request path, not one per value.
    let mut text = String::with_capacity(72);
    let mut ends: smallvec::SmallVec<[(HeaderName, usize); 6]> = smallvec::SmallVec::new();
    for (window, [limit, remaining, reset]) in windows {
        if let Some(w) = window {
            let _ = write!(text, "{}", w.limit);
            ends.push((limit, text.len()));
            let _ = write!(text, "{}", w.remaining);
            ends.push((remaining, text.len()));
            let _ = write!(text, "{}s", w.reset_s);
            ends.push((reset, text.len()));
        }
    }
    let bytes = Bytes::from(text);
    let mut start = 0;
    for (name, end) in ends {
        // Digits and `s`: always a valid value.
        if let Ok(v) = HeaderValue::from_maybe_shared(bytes.slice(start..end)) {
            headers.insert(name, v);
        }
        start = end;
    }
}

const RATE_LIMIT_REQUESTS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
const RATE_LIMIT_TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

const SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Where an answer went (DESIGN §4): the group that answered, its
/// deployment, the attempts made, and the fallback group when one answered.
const GROUP: HeaderName = HeaderName::from_static("x-sluice-model-group");
const DEPLOYMENT: HeaderName = HeaderName::from_static("x-sluice-deployment");
const ATTEMPTS: HeaderName = HeaderName::from_static("x-sluice-attempts");
const FALLBACK: HeaderName = HeaderName::from_static("x-sluice-fallback");

/// Names from the config are checked printable when loaded; one that is not
/// is left out rather than refused.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static(""))
}

/// The answer when no attempt succeeded: the last upstream error (its
/// status and advice on when to retry), with every attempt listed when there
/// was more than one; with no attempt made, 503 `no_healthy_deployment`
/// (with `Retry-After` when a deployment is only resting), or 400 when the
/// prompt fits no deployment.
fn exhausted_failure(
    exhausted: attempts::Exhausted<'_, UpstreamError>,
    format: Format,
    metrics: &crate::metrics::Metrics,
) -> Failure {
    let summary = exhausted.summary();
    let listed = exhausted.records.len() > 1;
    let Some(last) = exhausted.last else {
        if exhausted.too_small {
            return ApiError::prompt_too_large(exhausted.group, &summary).into();
        }
        metrics.router_no_healthy(exhausted.group);
        let retry_after = exhausted.retry_at.map(|at| {
            let ms = at.saturating_sub(Router::clock());
            ms.div_ceil(1000).max(1)
        });
        let error = ApiError::no_healthy_deployment(exhausted.group, retry_after);
        let mut relayed = Box::new(HeaderMap::new());
        if let Some(secs) = retry_after {
            relayed.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        return Failure::Summarised { error, relayed };
    };
    let deployment = exhausted.last_deployment.unwrap_or_default();
    match upstream_failure(deployment, last, format) {
        Failure::Relayed {
            status,
            body,
            relayed,
        } if listed => Failure::Relayed {
            status,
            body: with_attempts(&body, &summary),
            relayed,
        },
        Failure::Summarised { mut error, relayed } if listed => {
            error.message = format!("{} (attempts: {summary})", error.message);
            Failure::Summarised { error, relayed }
        }
        Failure::Api(mut error) if listed => {
            error.message = format!("{} (attempts: {summary})", error.message);
            Failure::Api(error)
        }
        other => other,
    }
}

/// An upstream's error body (OpenAI's shape or Anthropic's: both keep the
/// message at `/error/message`) with the attempt list added to its
/// message; every other field as the upstream sent it.
fn with_attempts(body: &Bytes, summary: &str) -> Bytes {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return body.clone();
    };
    let Some(message) = value.pointer_mut("/error/message") else {
        return body.clone();
    };
    let text = message.as_str().unwrap_or_default();
    *message = serde_json::Value::from(format!("{text} (attempts: {summary})"));
    Bytes::from(value.to_string())
}

pub(super) fn current_config(state: &HttpState) -> Result<Arc<Config>, ApiError> {
    state.applied.current().ok_or_else(|| {
        let reason = match state.applied.readiness() {
            crate::config::applied::Readiness::NotReady { reason } => reason,
            crate::config::applied::Readiness::Ready { .. } => "none applied".into(),
        };
        ApiError::no_configuration(&reason)
    })
}

pub(super) fn authenticate(config: &Config, headers: &HeaderMap) -> Result<Arc<Key>, ApiError> {
    auth::authenticate(config, headers, SystemTime::now()).map_err(|e| match e {
        AuthError::Missing => ApiError::invalid_api_key(false),
        AuthError::Unknown => ApiError::invalid_api_key(true),
        AuthError::Rejected(r) => ApiError::key_rejected(r),
    })
}

fn request_error(e: RequestError) -> ApiError {
    match e {
        RequestError::TooLarge { limit } => ApiError::request_too_large(limit),
        RequestError::Invalid { param, message } => ApiError::invalid_request(param, message),
    }
}

/// How a 403 names who is asking: the key's alias or prefix, and its team.
fn holder(config: &Config, key: &Key) -> String {
    let mut holder = format!("Key {:?}", auth::key_label(key));
    if !key.team_id.is_empty() {
        let team = config
            .team(&key.team_id)
            .map(|t| t.team_alias.as_str())
            .filter(|a| !a.is_empty())
            .unwrap_or(&key.team_id);
        holder.push_str(&format!(" (team {team:?})"));
    }
    holder
}

fn upstream_failure(deployment: &str, e: UpstreamError, format: Format) -> Failure {
    tracing::warn!(deployment, error = %e, retryable = e.is_retryable(), "upstream failed");
    match e {
        // The deployment's own credentials were refused: relayed, the 401
        // would tell the client its Sluice key is wrong. The upstream's
        // words are left out too: some quote the credential back.
        UpstreamError::Status {
            status: status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
            body,
            ..
        } => {
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let kind = value
                .pointer("/error/type")
                .or_else(|| value.pointer("/error/code"))
                .and_then(|t| t.as_str())
                .filter(|t| {
                    t.len() <= 64 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                })
                .map(|t| format!(" {t}"))
                .unwrap_or_default();
            let detail = format!(
                "the upstream refused the deployment's credentials ({}{kind}); its api_key needs fixing",
                status.as_u16()
            );
            ApiError::upstream_error(deployment, &detail).into()
        }
        UpstreamError::Status {
            status,
            body,
            shape,
            relayed,
        } if shape != ErrorShape::Other => match in_clients_shape(format, shape, status, &body) {
            Some(body) => Failure::Relayed {
                status,
                body,
                relayed,
            },
            None => summarised(deployment, status, &body, relayed),
        },
        UpstreamError::Status {
            status,
            body,
            relayed,
            ..
        } => summarised(deployment, status, &body, relayed),
        UpstreamError::Timeout(after) => ApiError::upstream_timeout(deployment, after).into(),
        UpstreamError::Connection(detail) | UpstreamError::UnreadableAnswer(detail) => {
            ApiError::upstream_error(deployment, &detail).into()
        }
        UpstreamError::Misconfigured(p) => {
            ApiError::upstream_error(deployment, &p.to_string()).into()
        }
        UpstreamError::Untranslatable { param, message } => {
            ApiError::invalid_request(param.as_deref(), message).into()
        }
    }
}

/// An upstream's error body, in OpenAI's, Anthropic's, Google's or AWS's shape, in
/// the client's: as sent when the client speaks the upstream's API,
/// translated otherwise (the message kept, the type mapped); `None` when it
/// cannot be.
fn in_clients_shape(
    format: Format,
    shape: ErrorShape,
    status: StatusCode,
    body: &Bytes,
) -> Option<Bytes> {
    match (format.is_anthropic(), shape) {
        (false, ErrorShape::OpenAi) | (true, ErrorShape::Anthropic) => Some(body.clone()),
        (false, ErrorShape::Anthropic) => {
            formats::anthropic::error::to_openai(body).map(Bytes::from)
        }
        (true, ErrorShape::OpenAi) => {
            let value: serde_json::Value = serde_json::from_slice(body).ok()?;
            let message = value.pointer("/error/message")?.as_str()?;
            let kind = formats::anthropic::error::type_for_status(status.as_u16());
            Some(Bytes::from(formats::anthropic::error::envelope(
                kind, message,
            )))
        }
        (false, ErrorShape::Google) => {
            formats::google::to_openai(body, status.as_u16()).map(Bytes::from)
        }
        (true, ErrorShape::Google) => {
            let error = formats::google::error(body)?;
            let kind = formats::anthropic::error::type_for_status(status.as_u16());
            Some(Bytes::from(formats::anthropic::error::envelope(
                kind,
                &error.message,
            )))
        }
        (false, ErrorShape::Aws) => {
            formats::bedrock::to_openai(body, status.as_u16()).map(Bytes::from)
        }
        (true, ErrorShape::Aws) => {
            formats::bedrock::to_anthropic(body, status.as_u16()).map(Bytes::from)
        }
        (_, ErrorShape::Other) => None,
    }
}

/// An upstream error not in a shape Sluice can relay: summarised as ours,
/// with the start of its body.
fn summarised(
    deployment: &str,
    status: StatusCode,
    body: &[u8],
    relayed: Box<HeaderMap>,
) -> Failure {
    let text = String::from_utf8_lossy(body);
    let snippet: String = text.chars().take(300).collect();
    let snippet = if snippet.trim().is_empty() {
        "no body".to_owned()
    } else {
        snippet
    };
    Failure::Summarised {
        error: ApiError::upstream_status(deployment, status, &snippet),
        relayed,
    }
}

/// The answer with the meter riding along in its body, so the request counts
/// as finished when the last byte is sent (or the client leaves).
fn relay(answer: Answer, meter: Meter) -> Response<Body> {
    let body = meter.relay(answer.status, answer.body);
    let mut resp = Response::new(body);
    *resp.status_mut() = answer.status;
    let headers = resp.headers_mut();
    if answer.event_stream {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    } else {
        headers.insert(header::CONTENT_TYPE, answer.content_type);
    }
    resp
}

/// `GET /v1/models`, in OpenAI's shape, or Anthropic's for `format`
/// [`Format::Messages`] (asked with `anthropic-version`, as Claude Code
/// does): `data`, `has_more` (always false: one page), `first_id`,
/// `last_id`.
pub fn list_models(
    state: &HttpState,
    headers: &HeaderMap,
    format: Format,
) -> Result<Response<Body>, ApiError> {
    let config = current_config(state)?;
    let key = &authenticate(&config, headers)?;
    let models = access::available_models(&config, key);
    let data: Vec<_> = models.iter().map(|m| model_object(m, format)).collect();
    let body = if format.is_anthropic() {
        json!({
            "data": data,
            "has_more": false,
            "first_id": models.first(),
            "last_id": models.last(),
        })
    } else {
        json!({ "object": "list", "data": data })
    };
    Ok(json_response(StatusCode::OK, body.to_string()))
}

/// `GET /v1/models/{model}`: 403 for a name the key may not use, 404 for an
/// allowed name nothing serves.
pub fn get_model(
    state: &HttpState,
    headers: &HeaderMap,
    model: &str,
    format: Format,
) -> Result<Response<Body>, ApiError> {
    let config = current_config(state)?;
    let key = &authenticate(&config, headers)?;
    match access::check(&config, key, model) {
        Decision::Allowed { .. } => Ok(json_response(
            StatusCode::OK,
            model_object(model, format).to_string(),
        )),
        Decision::Denied {
            model,
            available_models,
        } => Err(ApiError::model_access_denied(
            &model,
            &holder(&config, key),
            available_models,
        )),
        Decision::NotFound { model } => Err(ApiError::model_not_found(&model)),
    }
}

fn model_object(id: &str, format: Format) -> serde_json::Value {
    if format.is_anthropic() {
        let at = UNIX_EPOCH + std::time::Duration::from_secs(created());
        let created_at = humantime::format_rfc3339_seconds(at).to_string();
        json!({ "type": "model", "id": id, "display_name": id, "created_at": created_at })
    } else {
        json!({ "id": id, "object": "model", "created": created(), "owned_by": "sluice" })
    }
}

/// Model objects carry the time they are listed: the config does not record
/// when a model group appeared, and clients only display it.
fn created() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(standing: Standing) -> Vec<(String, String)> {
        let mut headers = HeaderMap::new();
        rate_limit_headers(&standing, &mut headers);
        let mut out: Vec<_> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn rate_limit_headers_say_each_window_that_applies() {
        let w = |limit, remaining, reset_s| Window {
            limit,
            remaining,
            reset_s,
        };
        assert!(written(Standing::default()).is_empty());
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            written(Standing {
                requests: Some(w(60, 19, 7)),
                tokens: Some(w(100_000, 99_989, 53)),
            }),
            [
                pair("x-ratelimit-limit-requests", "60"),
                pair("x-ratelimit-limit-tokens", "100000"),
                pair("x-ratelimit-remaining-requests", "19"),
                pair("x-ratelimit-remaining-tokens", "99989"),
                pair("x-ratelimit-reset-requests", "7s"),
                pair("x-ratelimit-reset-tokens", "53s"),
            ]
        );
        assert_eq!(
            written(Standing {
                requests: None,
                tokens: Some(w(5, 0, 60)),
            }),
            [
                pair("x-ratelimit-limit-tokens", "5"),
                pair("x-ratelimit-remaining-tokens", "0"),
                pair("x-ratelimit-reset-tokens", "60s"),
            ]
        );
    }
}
