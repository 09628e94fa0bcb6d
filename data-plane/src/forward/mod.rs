//! Stage 5 of the request path: send the request to the picked deployment and
//! relay its answer.
//!
//! - Sent through [`Upstream`], the one pooled client (direct, or through
//!   the environment's proxy), to the deployment's target (URL and provider
//!   headers), made once and kept with the deployment.
//! - The body is the client's, byte for byte, with only `model` rewritten,
//!   and a stream asked for its usage chunk when the client did not
//!   ([`crate::request::parse::Parsed::upstream_body`]).
//! - `x-request-id` goes upstream with the request.
//! - The attempt's timeout (the router's choice: the deployment's
//!   `timeout`, cut to what is left of the request's) covers the whole
//!   exchange, streamed body included.
//! - A stream's first event is awaited before the answer is handed back, so
//!   a stream that fails before its first byte reaches the client fails the
//!   attempt and can be retried elsewhere. After it, a stream that breaks
//!   off, or is silent for the deployment's `stream_timeout`, is ended for
//!   the client with an error event in OpenAI's shape (code
//!   `stream_interrupted`) and a clean end of the body, and the call's
//!   [`Interruption`] is set.
//! - The answer's body is streamed to the client as it arrives (SSE chunk by
//!   chunk), with back-pressure: nothing reads the upstream faster than the
//!   client takes it, and nothing is buffered whole.
//! - Dropping the answer's body (the client went away) drops the upstream
//!   response, which closes that upstream connection: the upstream request
//!   is cancelled, not left running.
//!
//! Failures are [`UpstreamError`]s, by kind: the router classifies them and
//! decides on retries, cooldowns and fallbacks.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};

use crate::body::{Body, BoxError, Carried, Interruption, carrying};
use crate::config::snapshot::ResolvedDeployment;
use crate::formats::anthropic::betas;
use crate::formats::{self, Format};
use crate::headers::REQUEST_ID;
use crate::metrics::{Metrics, UpstreamMetrics};
use crate::providers::{self, Backend, Exchange, Fetches, Target, mock};
use crate::request::parse::Parsed;
use crate::upstream::{Upstream, UpstreamError};

mod eventstream;
pub mod token;
mod translate;

/// The most of an upstream's error body read to relay it.
const MAX_ERROR_BODY: usize = 1024 * 1024;

/// The headers of an upstream's error answer that are relayed with it: they
/// tell the client when to try again (OpenAI's SDKs wait that long before
/// retrying a 429 or 5xx). The upstream's other headers describe its account
/// (rate-limit counters) or connection, and stay here.
pub const RELAYED_ERROR_HEADERS: [HeaderName; 2] = [
    header::RETRY_AFTER,
    HeaderName::from_static("retry-after-ms"),
];

/// An upstream's answer, ready to relay.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: HeaderValue,
    /// Server-sent events: relayed with `cache-control: no-cache`.
    pub event_stream: bool,
    pub body: Body,
}

/// One upstream call.
pub struct Call<'a> {
    pub deployment: &'a ResolvedDeployment,
    /// The client's format (its route's): the upstream is sent it, or its
    /// translation for the deployment's API ([`providers::exchange`]).
    pub format: Format,
    pub request: &'a Parsed,
    pub upstream_model: &'a str,
    /// Checked to be printable ASCII ([`crate::http`]).
    pub request_id: &'a HeaderValue,
    pub timeout: Duration,
    /// The longest silence allowed between a stream's events.
    pub stream_timeout: Option<Duration>,
    /// Set if the answer's stream is cut after its first event.
    pub interruption: &'a Interruption,
    /// Ask a stream for its final usage chunk (`stream_options.include_usage`)
    /// when the client did not.
    pub ask_usage: bool,
    /// The client's `anthropic-beta`, passed on to an Anthropic upstream.
    pub anthropic_beta: Option<&'a HeaderValue>,
}

/// Sends `call` and returns the answer to relay. Metrics for the upstream
/// leg are recorded here, the end of the body included.
pub async fn forward(
    upstream: &Upstream,
    metrics: &Arc<Metrics>,
    call: Call<'_>,
) -> Result<Answer, UpstreamError> {
    let backend = providers::backend(call.deployment.deployment())?;
    let responses = backend.serves_responses(call.deployment.deployment());
    let served = providers::takes(call.deployment.deployment(), call.format);
    let exchange = providers::exchange(call.format, backend.speaks(), responses)
        .filter(|e| served && backend.serves(e.upstream_format()))
        .ok_or_else(|| UpstreamError::Untranslatable {
            param: None,
            message: format!(
                "Deployment {:?} ({}) does not serve {}; call a model group whose deployments do",
                call.deployment.deployment().id,
                call.deployment.deployment().model,
                call.format.path(),
            ),
        })?;
    // An upstream that speaks Anthropic but counts no tokens (Bedrock).
    let exchange = match exchange {
        Exchange::Same(Format::CountTokens) if !backend.counts_tokens() => Exchange::EstimateTokens,
        exchange => exchange,
    };
    if exchange == Exchange::EstimateTokens {
        return translate::estimate_tokens(call.request);
    }
    let body = translate::request_body(&call, exchange)?;
    let upstream_format = exchange.upstream_format();
    match backend {
        Backend::Mock => answer_mock(call, exchange, body).await,
        Backend::Http(provider) => {
            // A cloud hosting Claude is sent only the beta flags it takes.
            let placed = match (provider.beta_cloud(), call.anthropic_beta) {
                (Some(cloud), Some(header)) if upstream_format.is_anthropic() => {
                    Some(betas::place(cloud, header.to_str().unwrap_or_default()))
                }
                _ => None,
            };
            let body = provider
                .adapt_body(
                    body,
                    upstream_format,
                    call.upstream_model,
                    placed.as_ref().map_or(&[][..], |p| &p.body),
                )
                .map_err(translate::untranslatable)?;
            let stream = call.request.stream;
            let target = call.deployment.targets().get_or_make(
                upstream_format,
                stream && provider.streams_elsewhere(),
                call.upstream_model,
                || {
                    let address = provider.address(
                        call.deployment,
                        call.upstream_model,
                        upstream_format,
                        stream,
                    )?;
                    Target::new(&address.url, address.headers, |uri| {
                        upstream.is_proxied(uri)
                    })
                },
            )?;
            let mut request = Request::new(body);
            *request.method_mut() = Method::POST;
            let headers = request.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(REQUEST_ID, call.request_id.clone());
            if call.request.stream {
                headers.insert(
                    header::ACCEPT,
                    HeaderValue::from_static("text/event-stream"),
                );
            }
            match (&placed, call.anthropic_beta) {
                (Some(placed), _) => {
                    if let Ok(value) = HeaderValue::from_str(&placed.header)
                        && !placed.header.is_empty()
                    {
                        headers.insert(providers::anthropic::BETA, value);
                    }
                }
                (None, Some(beta)) if upstream_format.is_anthropic() => {
                    headers.insert(providers::anthropic::BETA, beta.clone());
                }
                _ => {}
            }
            for (name, value) in target.headers() {
                headers.insert(name.clone(), value.clone());
            }
            let secrets = call.deployment.secrets();
            let targets = call.deployment.targets();
            let keys = match provider.fetches(call.deployment) {
                Fetches::Nothing => None,
                Fetches::Token => {
                    let authorization =
                        token::authorization(targets.token(), &secrets.api_key, upstream, metrics)
                            .await?;
                    headers.insert(header::AUTHORIZATION, authorization);
                    None
                }
                Fetches::EntraToken => {
                    let authorization = token::entra_authorization(
                        targets.token(),
                        &secrets.azure,
                        upstream,
                        metrics,
                    )
                    .await?;
                    headers.insert(header::AUTHORIZATION, authorization);
                    None
                }
                Fetches::AwsKeys => Some(
                    token::aws_keys(targets.aws_keys(), &secrets.aws_region, upstream, metrics)
                        .await?,
                ),
            };
            provider.sign(call.deployment, &target, &mut request, keys.as_deref())?;
            let started = Instant::now();
            let response = upstream.send(&target, request, call.timeout).await?;
            let first_byte = started.elapsed();
            let leg = call.deployment.upstream_metrics(metrics);
            let (parts, body) = response.into_parts();
            let status = parts.status;
            if !status.is_success() {
                leg.first_byte(first_byte);
                let body = read_error_body(body).await;
                leg.done(started.elapsed());
                let shape = formats::ErrorShape::of(&body);
                let mut relayed = Box::new(HeaderMap::new());
                for name in RELAYED_ERROR_HEADERS {
                    if let Some(value) = parts.headers.get(&name) {
                        relayed.insert(name, value.clone());
                    }
                }
                return Err(UpstreamError::Status {
                    status,
                    body,
                    shape,
                    relayed,
                });
            }
            let mut content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .cloned()
                .unwrap_or_else(|| HeaderValue::from_static("application/json"));
            // Bedrock's binary event stream, read on as Anthropic's events.
            let body = if content_type == eventstream::CONTENT_TYPE {
                content_type = HeaderValue::from_static("text/event-stream");
                eventstream::as_sse(body)
            } else {
                body
            };
            let event_stream = content_type
                .to_str()
                .is_ok_and(formats::sse::is_event_stream);
            // A stream's time to first byte is news while it lasts; a whole
            // answer's is recorded with its end, after the answer is written.
            if event_stream {
                leg.first_byte(first_byte);
            }
            // Recorded when the body ends or is dropped, whichever comes
            // first: the timer travels with the body.
            let timer = UpstreamTimer {
                leg: leg.clone(),
                started,
                first_byte: (!event_stream).then_some(first_byte),
            };
            let answer = Answer {
                status,
                content_type,
                event_stream,
                body: carrying(body, timer),
            };
            let answer = if provider.speaks_converse() {
                translate::from_converse(answer, &call).await?
            } else {
                answer
            };
            for_client(answer, exchange, &call, started).await
        }
    }
}

/// The answer in the client's format: translated when the exchange says so
/// (a stream event by event, a whole answer once read), and a stream
/// awaited to its first event.
async fn for_client(
    mut answer: Answer,
    exchange: Exchange,
    call: &Call<'_>,
    started: Instant,
) -> Result<Answer, UpstreamError> {
    if answer.event_stream {
        let body = translate::stream(answer.body, exchange, call);
        answer.body = first_event(body, call, started).await?;
    } else if !matches!(exchange, Exchange::Same(_)) {
        answer.body = translate::whole(answer.body, exchange, call).await?;
        answer.content_type = HeaderValue::from_static("application/json");
    }
    Ok(answer)
}

/// Waits for a stream's first frame (within `stream_timeout` when set, and
/// the attempt's timeout in any case): a failure before it is the attempt's.
/// Returns the stream, guarded for what comes after.
async fn first_event(
    mut body: Body,
    call: &Call<'_>,
    started: Instant,
) -> Result<Body, UpstreamError> {
    let left = call.timeout.saturating_sub(started.elapsed());
    let wait = call.stream_timeout.map_or(left, |t| t.min(left));
    let first = match tokio::time::timeout(wait, body.frame()).await {
        Err(_) => return Err(UpstreamError::Timeout(wait)),
        Ok(None) => return Ok(body),
        Ok(Some(Err(e))) => {
            return Err(UpstreamError::Connection(format!(
                "the stream broke before its first event: {e}"
            )));
        }
        Ok(Some(Ok(frame))) => frame,
    };
    Ok(Guarded {
        first: Some(first),
        inner: body,
        idle: call.stream_timeout,
        silence: call.stream_timeout.map(|t| Box::pin(tokio::time::sleep(t))),
        interruption: call.interruption.clone(),
        deployment: call.deployment.deployment().id.clone(),
        format: call.format,
        done: false,
        events: Events::default(),
    }
    .boxed_unsync())
}

/// A stream after its first event: a break or a silence past `idle` ends it
/// for the client with an error event and a clean end.
struct Guarded {
    first: Option<Frame<Bytes>>,
    inner: Body,
    idle: Option<Duration>,
    silence: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    interruption: Interruption,
    deployment: String,
    /// The client's: the error event is written in its shape.
    format: Format,
    done: bool,
    /// The events relayed (counted for the Responses API only, whose
    /// error event carries the next `sequence_number`).
    events: Events,
}

/// Counts the SSE events that went by: the blank lines that end them,
/// however the frames split them (`\r` ignored, for CRLF streams).
#[derive(Debug, Default)]
struct Events {
    ended: u64,
    /// Whether the last byte read ended a line.
    newline: bool,
}

impl Events {
    fn read(&mut self, data: &[u8]) {
        for &b in data {
            match b {
                b'\n' if self.newline => {
                    self.ended += 1;
                    self.newline = false;
                }
                b'\n' => self.newline = true,
                b'\r' => {}
                _ => self.newline = false,
            }
        }
    }
}

impl Guarded {
    /// A frame on its way to the client.
    fn relay(&mut self, frame: Frame<Bytes>) -> Frame<Bytes> {
        self.heard();
        if self.format == Format::Responses
            && let Some(data) = frame.data_ref()
        {
            self.events.read(data);
        }
        frame
    }

    fn cut(&mut self, why: &str) -> Frame<Bytes> {
        self.done = true;
        self.interruption.set();
        let message = format!(
            "The stream from deployment {:?} was cut: {why}; the answer is incomplete, retry the request",
            self.deployment
        );
        if self.format.is_anthropic() {
            let data = formats::anthropic::error::envelope("api_error", &message);
            return Frame::data(Bytes::from(format!("event: error\ndata: {data}\n\n")));
        }
        if self.format == Format::Responses {
            // The Responses API's error event, numbered after the events
            // relayed (each of which had one number, from 0).
            let data = serde_json::json!({
                "type": "error",
                "code": "stream_interrupted",
                "message": message,
                "param": null,
                "sequence_number": self.events.ended,
            });
            return Frame::data(Bytes::from(format!("event: error\ndata: {data}\n\n")));
        }
        let error = formats::openai::Error {
            message: &message,
            kind: "api_error",
            param: None,
            code: Some("stream_interrupted"),
            available_models: None,
        };
        Frame::data(Bytes::from(formats::sse::event(error.body())))
    }

    fn heard(&mut self) {
        if let (Some(idle), Some(silence)) = (self.idle, self.silence.as_mut()) {
            silence.as_mut().reset(tokio::time::Instant::now() + idle);
        }
    }
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(this.relay(first))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(this.relay(frame)))),
            Poll::Ready(Some(Err(e))) => {
                let why = format!("the upstream broke off ({e})");
                Poll::Ready(Some(Ok(this.cut(&why))))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let silent = this
                    .silence
                    .as_mut()
                    .is_some_and(|s| s.as_mut().poll(cx).is_ready());
                if silent {
                    let why = format!(
                        "no event for {:?} (the deployment's stream_timeout)",
                        this.idle.unwrap_or_default()
                    );
                    return Poll::Ready(Some(Ok(this.cut(&why))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && (self.done || self.inner.is_end_stream())
    }
}

/// Records the upstream leg's duration when dropped (and its time to first
/// byte, when not recorded already).
struct UpstreamTimer {
    leg: UpstreamMetrics,
    started: Instant,
    first_byte: Option<Duration>,
}

impl Carried for UpstreamTimer {}

impl Drop for UpstreamTimer {
    fn drop(&mut self) {
        if let Some(first_byte) = self.first_byte {
            self.leg.first_byte(first_byte);
        }
        self.leg.done(self.started.elapsed());
    }
}

/// The start of an upstream's error answer, at most [`MAX_ERROR_BODY`].
async fn read_error_body(mut body: Body) -> Bytes {
    let mut read = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        let room = MAX_ERROR_BODY.saturating_sub(read.len());
        read.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if read.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    Bytes::from(read)
}

/// The mock's answer; a `fail=` status is an upstream error, as a real
/// upstream's would be, so the router retries, cools and falls back on it.
/// The mock speaks OpenAI's formats: an Anthropic client's request reaches
/// it translated (`body`), and its answer goes back the same way.
async fn answer_mock(
    call: Call<'_>,
    exchange: Exchange,
    body: Bytes,
) -> Result<Answer, UpstreamError> {
    let settings = mock::Settings::from_api_base(call.deployment.secrets().api_base.expose());
    if !settings.latency.is_zero() {
        tokio::time::sleep(settings.latency).await;
    }
    let translated;
    let (format, request) = match exchange {
        Exchange::Same(format) => (format, call.request),
        _ => {
            let format = exchange.upstream_format();
            translated = crate::request::parse::parse(format, body).map_err(|refused| {
                UpstreamError::UnreadableAnswer(format!(
                    "the translated request was refused: {:?}",
                    refused.error
                ))
            })?;
            (format, &translated)
        }
    };
    let started = Instant::now();
    let answer = match mock::answer(
        &settings,
        format,
        request,
        call.upstream_model,
        call.ask_usage,
    ) {
        mock::Reply::Json { status, body } if !status.is_success() => {
            return Err(UpstreamError::Status {
                status,
                body: Bytes::from(body),
                shape: formats::ErrorShape::OpenAi,
                relayed: Box::default(),
            });
        }
        mock::Reply::Json { status, body } => Answer {
            status,
            content_type: HeaderValue::from_static("application/json"),
            event_stream: false,
            body: crate::body::full(Bytes::from(body)),
        },
        mock::Reply::Stream { events } => {
            let delay = settings.chunk_delay;
            let chunks = futures::stream::iter(events.into_iter().enumerate()).then(
                move |(i, event)| async move {
                    if i > 0 && !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Ok::<_, BoxError>(Frame::data(Bytes::from(event)))
                },
            );
            Answer {
                status: StatusCode::OK,
                content_type: HeaderValue::from_static("text/event-stream"),
                event_stream: true,
                body: StreamBody::new(chunks).boxed_unsync(),
            }
        }
    };
    for_client(answer, exchange, &call, started).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_however_the_frames_split_them() {
        let stream = "event: a\ndata: {}\n\nevent: b\r\ndata: {}\r\n\r\nevent: c\ndata: {}\n\n";
        for at in 0..stream.len() {
            let mut events = Events::default();
            events.read(&stream.as_bytes()[..at]);
            events.read(&stream.as_bytes()[at..]);
            assert_eq!(events.ended, 3, "split at {at}");
        }
        let mut events = Events::default();
        events.read(b"event: a\ndata: {\"x\": 1}\n");
        assert_eq!(events.ended, 0, "an event not yet ended");
    }

    /// A Responses stream broken after two events ends with an error event
    /// numbered 2, in the API's shape.
    #[tokio::test]
    async fn a_cut_responses_stream_ends_with_the_next_sequence_number() {
        let event = |n: u64| {
            Frame::data(Bytes::from(format!(
                "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":{n}}}\n\n"
            )))
        };
        let rest: Vec<Result<Frame<Bytes>, BoxError>> =
            vec![Ok(event(1)), Err("connection reset".into())];
        let guarded = Guarded {
            first: Some(event(0)),
            inner: StreamBody::new(futures::stream::iter(rest)).boxed_unsync(),
            idle: None,
            silence: None,
            interruption: Interruption::default(),
            deployment: "d".into(),
            format: Format::Responses,
            done: false,
            events: Events::default(),
        };
        let text = guarded.collect().await.unwrap().to_bytes();
        let text = std::str::from_utf8(&text).unwrap();
        let last = text.trim_end().rsplit("\n\n").next().unwrap();
        let data = last.strip_prefix("event: error\ndata: ").expect(text);
        let error: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(error["type"], "error");
        assert_eq!(error["code"], "stream_interrupted");
        assert_eq!(error["sequence_number"], 2, "{text}");
    }
}
