//! What a failed attempt was, decided once from what the upstream said (its
//! status, the start of its error body, its advice on when to retry), so
//! that retries, cooldowns and fallbacks all decide from the same kind and
//! never from an error's text.
//!
//! The classes are LiteLLM's (its `retry_policy` and `allowed_fails_policy`
//! name them), plus the two that pick a special fallback list:
//!
//! | upstream said | class |
//! |---|---|
//! | 429 | [`ErrorClass::RateLimit`] |
//! | 529 (Anthropic's `overloaded_error`) | [`ErrorClass::Overloaded`] |
//! | 408, or no answer in time | [`ErrorClass::Timeout`] |
//! | 5xx | [`ErrorClass::InternalServer`] |
//! | connecting, sending or reading failed | [`ErrorClass::Connection`] |
//! | 401, 403 | [`ErrorClass::Authentication`] |
//! | 404 | [`ErrorClass::NotFound`] |
//! | 400/413/422 whose body says the prompt is too long ([`CONTEXT_WINDOW_MARKERS`]) | [`ErrorClass::ContextWindow`] |
//! | 400 whose body is a content-filter refusal ([`CONTENT_POLICY_MARKERS`]) | [`ErrorClass::ContentPolicy`] |
//! | other 4xx | [`ErrorClass::BadRequest`] |
//! | the deployment cannot make a request (its URL, its provider) | [`ErrorClass::Misconfigured`] |

use std::time::{Duration, SystemTime};

use hyper::StatusCode;
use hyper::header::{self, HeaderMap, HeaderName};

/// What kind of failure an attempt met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    RateLimit,
    /// Anthropic's 529 `overloaded_error`: the provider as a whole is
    /// busy, not this account's quota; kept apart from 429 in metrics.
    Overloaded,
    Timeout,
    InternalServer,
    Connection,
    Authentication,
    NotFound,
    ContextWindow,
    ContentPolicy,
    BadRequest,
    Misconfigured,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 11] = [
        ErrorClass::RateLimit,
        ErrorClass::Overloaded,
        ErrorClass::Timeout,
        ErrorClass::InternalServer,
        ErrorClass::Connection,
        ErrorClass::Authentication,
        ErrorClass::NotFound,
        ErrorClass::ContextWindow,
        ErrorClass::ContentPolicy,
        ErrorClass::BadRequest,
        ErrorClass::Misconfigured,
    ];

    /// A short name for metrics labels, logs and attempt lists.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::RateLimit => "rate_limited",
            ErrorClass::Overloaded => "overloaded",
            ErrorClass::Timeout => "timeout",
            ErrorClass::InternalServer => "server_error",
            ErrorClass::Connection => "connection",
            ErrorClass::Authentication => "auth",
            ErrorClass::NotFound => "not_found",
            ErrorClass::ContextWindow => "context_window",
            ErrorClass::ContentPolicy => "content_policy",
            ErrorClass::BadRequest => "bad_request",
            ErrorClass::Misconfigured => "misconfigured",
        }
    }

    /// Whether, by default, another attempt may follow (DESIGN §5: 429, 5xx,
    /// timeouts and connection errors; never other 4xx, which the next
    /// deployment would refuse too, nor a misconfiguration).
    pub fn retryable_by_default(self) -> bool {
        matches!(
            self,
            ErrorClass::RateLimit
                | ErrorClass::Overloaded
                | ErrorClass::Timeout
                | ErrorClass::InternalServer
                | ErrorClass::Connection
        )
    }

    /// Whether one such answer cools the deployment at once (LiteLLM's rule:
    /// 429, 401 and 404 say the deployment itself cannot serve right now;
    /// 403 is an authentication failure too; Anthropic's 529 says the same
    /// as a 429).
    pub fn cools_at_once(self) -> bool {
        matches!(
            self,
            ErrorClass::RateLimit
                | ErrorClass::Overloaded
                | ErrorClass::Authentication
                | ErrorClass::NotFound
        )
    }

    /// Whether it counts towards `allowed_fails`: failures of the
    /// deployment, not of the request (a bad request, a long prompt or a
    /// refusal would fail on any deployment).
    pub fn counts_as_failure(self) -> bool {
        matches!(
            self,
            ErrorClass::Timeout | ErrorClass::InternalServer | ErrorClass::Connection
        ) || self.cools_at_once()
    }

    /// Index into per-class counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A failed attempt, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub class: ErrorClass,
    /// The upstream's status when it answered one.
    pub status: Option<StatusCode>,
    /// The upstream's advice on when to try again ([`retry_after`]).
    pub retry_after: Option<Duration>,
}

/// Phrases in an error body that say the prompt does not fit the model's
/// context window, matched case-insensitively: OpenAI's
/// `context_length_exceeded` code (also Azure's), and the messages of
/// OpenAI ("maximum context length"), Anthropic ("prompt is too long"),
/// vLLM ("is longer than the model's context length", "maximum context
/// length"), Mistral and Together ("too large for model", "exceeds the
/// model's"), Ollama/llama.cpp ("exceeds the context window", "context
/// size"), Gemini ("The input token count (…) exceeds the maximum number of
/// tokens allowed") and LiteLLM's own wording ("contextwindowexceeded").
pub const CONTEXT_WINDOW_MARKERS: &[&str] = &[
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "contextwindowexceeded",
    "prompt is too long",
    "input is too long",
    "too many tokens",
    "reduce the length of the messages",
    "too large for model",
    "exceeds the model's",
    "context size",
    "exceeds the maximum number of tokens",
];

/// Phrases in an error body that say the request was refused by a content
/// filter: OpenAI's `content_policy_violation` code, Azure's
/// `content_filter` code and `ResponsibleAIPolicyViolation` inner code, and
/// Azure's "content management policy" message.
pub const CONTENT_POLICY_MARKERS: &[&str] = &[
    "content_policy_violation",
    "content_filter",
    "responsibleaipolicyviolation",
    "content management policy",
];

/// Classifies an upstream's error answer from its status, the start of its
/// body and its headers.
pub fn classify_status(
    status: StatusCode,
    body: &[u8],
    headers: &HeaderMap,
    now: SystemTime,
) -> Failure {
    let class = match status.as_u16() {
        429 => ErrorClass::RateLimit,
        529 => ErrorClass::Overloaded,
        408 => ErrorClass::Timeout,
        401 | 403 => ErrorClass::Authentication,
        404 => ErrorClass::NotFound,
        400 | 413 | 422 if mentions(body, CONTEXT_WINDOW_MARKERS) => ErrorClass::ContextWindow,
        400 if mentions(body, CONTENT_POLICY_MARKERS) => ErrorClass::ContentPolicy,
        500..=599 => ErrorClass::InternalServer,
        _ => ErrorClass::BadRequest,
    };
    Failure {
        class,
        status: Some(status),
        retry_after: retry_after(headers, now).or_else(|| retry_delay(body)),
    }
}

/// A failure without an answer: the upstream did not answer in time, could
/// not be reached, or the deployment could not make the request.
pub fn without_answer(class: ErrorClass) -> Failure {
    Failure {
        class,
        status: None,
        retry_after: None,
    }
}

/// Whether `body` contains any of `markers`, ignoring ASCII case. Only the
/// first 64 KiB are looked at: an error body longer than that is not an
/// error message.
fn mentions(body: &[u8], markers: &[&str]) -> bool {
    let body = &body[..body.len().min(64 * 1024)];
    markers.iter().any(|m| {
        let m = m.as_bytes();
        body.windows(m.len()).any(|w| w.eq_ignore_ascii_case(m))
    })
}

const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");

/// Google's advice on when to try again, which it gives in the error body
/// rather than a header: a `google.rpc.RetryInfo` detail's `retryDelay`, a
/// protobuf duration in JSON (`"33s"`, `"1.5s"`). Looked for in the first
/// 64 KiB only; capped at a day as [`retry_after`] is.
pub fn retry_delay(body: &[u8]) -> Option<Duration> {
    const FIELD: &[u8] = b"\"retryDelay\"";
    let body = &body[..body.len().min(64 * 1024)];
    let at = memchr::memmem::find(body, FIELD)? + FIELD.len();
    let rest = std::str::from_utf8(&body[at..body.len().min(at + 64)])
        .or_else(|e| std::str::from_utf8(&body[at..at + e.valid_up_to()]))
        .ok()?;
    let value = rest.trim_start().strip_prefix(':')?.trim_start();
    let value = value.strip_prefix('"')?;
    let seconds = &value[..value.find('"')?];
    let seconds: f64 = seconds.strip_suffix('s')?.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds.min(24.0 * 3600.0)))
}

/// The upstream's advice on when to try again: `retry-after-ms` (OpenAI,
/// Azure) in milliseconds, else `retry-after` as seconds (fractions
/// allowed) or an HTTP date. Unparsable or past values are no advice.
/// Capped at a day: a value beyond that is a mistake, not advice.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    const CAP: Duration = Duration::from_secs(24 * 3600);
    let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let seconds = |s: &str, scale: f64| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| Duration::from_secs_f64((v / scale).min(CAP.as_secs_f64())))
    };
    if let Some(d) = text(&RETRY_AFTER_MS).and_then(|s| seconds(s, 1000.0)) {
        return Some(d);
    }
    let value = text(&header::RETRY_AFTER)?;
    if let Some(d) = seconds(value, 1.0) {
        return Some(d);
    }
    let at = httpdate::parse_http_date(value.trim()).ok()?;
    at.duration_since(now).ok().map(|d| d.min(CAP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn class(status: u16, body: &str) -> ErrorClass {
        classify_status(
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
            &HeaderMap::new(),
            SystemTime::now(),
        )
        .class
    }

    #[test]
    fn statuses() {
        assert_eq!(class(429, ""), ErrorClass::RateLimit);
        assert_eq!(
            class(
                529,
                r#"{"type":"error","error":{"type":"overloaded_error"}}"#
            ),
            ErrorClass::Overloaded
        );
        assert_eq!(
            class(
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}}"#
            ),
            ErrorClass::ContextWindow
        );
        assert_eq!(class(408, ""), ErrorClass::Timeout);
        assert_eq!(class(500, ""), ErrorClass::InternalServer);
        assert_eq!(class(502, ""), ErrorClass::InternalServer);
        assert_eq!(class(503, ""), ErrorClass::InternalServer);
        assert_eq!(class(401, ""), ErrorClass::Authentication);
        assert_eq!(class(403, ""), ErrorClass::Authentication);
        assert_eq!(class(404, ""), ErrorClass::NotFound);
        assert_eq!(
            class(400, r#"{"error":{"message":"bad"}}"#),
            ErrorClass::BadRequest
        );
        assert_eq!(class(422, "nope"), ErrorClass::BadRequest);
    }

    #[test]
    fn context_window_errors_of_common_servers() {
        for body in [
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
            r#"{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens","type":"BadRequestError","code":400}"#,
            r#"{"error":{"code":"context_length_exceeded","message":"..."}}"#,
            // Gemini's OpenAI-compatible API wraps its error in an array.
            r#"[{"error":{"code":400,"message":"The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}]"#,
        ] {
            assert_eq!(class(400, body), ErrorClass::ContextWindow, "{body}");
        }
        assert_eq!(class(413, "Input is too long"), ErrorClass::ContextWindow);
        // A 5xx that mentions it is still the server's failure.
        assert_eq!(class(500, "context length"), ErrorClass::InternalServer);
    }

    #[test]
    fn content_filter_refusals() {
        for body in [
            r#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","code":"content_policy_violation"}}"#,
            r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#,
        ] {
            assert_eq!(class(400, body), ErrorClass::ContentPolicy, "{body}");
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "3")]), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "0.5")]), now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after-ms", "250"), ("retry-after", "9")]),
                now
            ),
            Some(Duration::from_millis(250)),
            "the precise one wins"
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(20));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &date)]), now),
            Some(Duration::from_secs(20))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(20));
        assert_eq!(retry_after(&headers(&[("retry-after", &past)]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")]), now), None);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "99999999")]), now),
            Some(Duration::from_secs(24 * 3600))
        );
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn googles_retry_delay_is_read_from_the_body() {
        let quota = r#"[{"error":{"code":429,"message":"You exceeded your current quota.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure"},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay": "33s"}]}}]"#;
        let failure = classify_status(
            StatusCode::TOO_MANY_REQUESTS,
            quota.as_bytes(),
            &HeaderMap::new(),
            SystemTime::now(),
        );
        assert_eq!(failure.class, ErrorClass::RateLimit);
        assert_eq!(failure.retry_after, Some(Duration::from_secs(33)));
        // A header, when there is one, is the advice.
        let failure = classify_status(
            StatusCode::TOO_MANY_REQUESTS,
            quota.as_bytes(),
            &headers(&[("retry-after", "2")]),
            SystemTime::now(),
        );
        assert_eq!(failure.retry_after, Some(Duration::from_secs(2)));
        assert_eq!(
            retry_delay(br#"{"retryDelay":"1.5s"}"#),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_delay(br#"{"retryDelay":"99999999s"}"#),
            Some(Duration::from_secs(24 * 3600))
        );
        for bad in [
            r#"{"retryDelay":"soon"}"#,
            r#"{"retryDelay":"-3s"}"#,
            r#"{"retryDelay":33}"#,
            r#"{"retryDelay":"33"#,
            r#"{"retryDelay""#,
            "{}",
        ] {
            assert_eq!(retry_delay(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn which_classes_retry_cool_and_count() {
        use ErrorClass::*;
        for c in ErrorClass::ALL {
            assert_eq!(
                c.retryable_by_default(),
                matches!(
                    c,
                    RateLimit | Overloaded | Timeout | InternalServer | Connection
                ),
                "{c:?}"
            );
        }
        assert!(RateLimit.cools_at_once() && NotFound.cools_at_once());
        assert!(Overloaded.cools_at_once() && Overloaded.counts_as_failure());
        assert!(!InternalServer.cools_at_once());
        assert!(InternalServer.counts_as_failure());
        assert!(!BadRequest.counts_as_failure());
        assert!(!ContextWindow.counts_as_failure());
        assert!(!Misconfigured.counts_as_failure());
    }
}
