//! Stage 6 of the request path: account for the request once it is over.
//!
//! A [`Meter`] is created when an OpenAI API request arrives and filled in as
//! the request passes the stages. It rides in the answer's body
//! ([`Meter::relay`], [`Meter::ride`]); when it is dropped (after the last
//! byte is written or the client went away: the connection lets an answer's
//! body go after the write, [`crate::body::carrying_released_after_write`];
//! or when the handler is dropped unanswered) it records
//! `sluice_requests_total`, the request duration and the in-flight gauge, and
//! writes the request's one log line. The in-flight gauge goes down last: none
//! in flight means every request is recorded.
//!
//! A client that leaves before its answer is complete is recorded with code
//! `client_closed_request`, and with status 499 (nginx's convention) if it
//! left before the status was known, so a cancelled request never counts as
//! a success.
//!
//! The log line names the key by alias or prefix, never by the key.

use std::sync::Arc;
use std::time::Instant;

use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use sluice_proto::admin::v1::Key;

use crate::request::auth;

use crate::body::{Body, BodyEnd, Carried, Interruption, carrying};
use crate::metrics::{Metrics, RequestLabels};

/// The target of the request's log line, which [`crate::serve::log_writer`] batches
/// and [`crate::serve::log_format`] writes directly.
pub const LOG_TARGET: &str = module_path!();

/// The code of a request whose client left before the whole answer was sent.
pub const CLIENT_CLOSED: &str = "client_closed_request";

/// The status of a request whose client left before it was answered.
fn client_closed_status() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

/// What the request's log line and metrics name, filled in as the request
/// passes the stages.
pub struct Known {
    request_id: HeaderValue,
    /// The key, once known: its label and team are logged.
    pub key: Option<Arc<Key>>,
    pub model: String,
    pub model_group: String,
    pub deployment: String,
    pub stream: bool,
}

impl Known {
    fn new(request_id: HeaderValue) -> Known {
        Known {
            request_id,
            key: None,
            model: String::new(),
            model_group: String::new(),
            deployment: String::new(),
            stream: false,
        }
    }
}

/// What is known about one request so far.
pub struct Meter {
    metrics: Arc<Metrics>,
    started: Instant,
    pub known: Known,
    /// The status answered; `None` until then.
    status: Option<StatusCode>,
    /// The error code answered, empty on success.
    code: String,
    /// Whether the whole answer has been sent.
    finished: bool,
    /// Set when the answer's stream was cut after its first event.
    interruption: Option<Interruption>,
}

/// The code of a stream cut after its first event reached the client.
pub const STREAM_INTERRUPTED: &str = "stream_interrupted";

impl Meter {
    pub fn start(metrics: Arc<Metrics>, request_id: &HeaderValue) -> Meter {
        metrics.request_started();
        Meter {
            metrics,
            started: Instant::now(),
            known: Known::new(request_id.clone()),
            status: None,
            code: String::new(),
            finished: false,
            interruption: None,
        }
    }

    /// The answer's stream may be cut after its first event: if `cut` is set
    /// by the time it ends, the request counts as `stream_interrupted`.
    pub fn watch(&mut self, cut: Interruption) {
        self.interruption = Some(cut);
    }

    /// The request was answered whole (an error, typically) with `status`
    /// and error `code` (empty for none).
    pub fn answered(&mut self, status: StatusCode, code: &str) {
        self.status = Some(status);
        self.code = code.to_owned();
        self.finished = true;
    }

    /// The request is answered with `status` and `body`: the meter rides in
    /// the body and records the request when it ends or is dropped.
    pub fn relay(mut self, status: StatusCode, body: Body) -> Body {
        self.status = Some(status);
        carrying(body, self)
    }

    /// An answer made whole (after [`Meter::answered`]), with the meter
    /// riding in its body.
    pub fn ride(self, resp: Response<Body>) -> Response<Body> {
        resp.map(|body| carrying(body, self))
    }

    /// The status, and the code when it is not the one recorded: a client
    /// that left shows.
    fn outcome(&self) -> (StatusCode, Option<&'static str>) {
        match self.status {
            None => (client_closed_status(), Some(CLIENT_CLOSED)),
            Some(status) if !self.finished && self.code.is_empty() => (status, Some(CLIENT_CLOSED)),
            Some(status) => (status, None),
        }
    }
}

impl Carried for Meter {
    fn ended(&mut self, end: BodyEnd) {
        match end {
            BodyEnd::Complete if self.interruption.as_ref().is_some_and(Interruption::is_set) => {
                self.finished = true;
                STREAM_INTERRUPTED.clone_into(&mut self.code);
            }
            BodyEnd::Complete => self.finished = true,
            BodyEnd::UpstreamFailed => {
                // The upstream broke off mid-answer.
                self.finished = true;
                self.code = "upstream_error".to_owned();
            }
            // Recorded as the client's leaving when dropped (`outcome`).
            BodyEnd::ClientLeft => {}
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        let (status, left) = self.outcome();
        let status = status.as_u16();
        if let Some(left) = left {
            left.clone_into(&mut self.code);
        }
        let known = &mut self.known;
        tracing::info!(
            request_id = known.request_id.to_str().unwrap_or_default(),
            key = known
                .key
                .as_deref()
                .map(auth::key_label)
                .unwrap_or_default()
                .as_ref(),
            team = known.key.as_deref().map_or("", |k| k.team_id.as_str()),
            model = known.model.as_str(),
            model_group = known.model_group.as_str(),
            deployment = known.deployment.as_str(),
            status,
            code = self.code.as_str(),
            stream = known.stream,
            latency_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            "request"
        );
        // The labels take the strings rather than copy them.
        self.metrics.request_done(
            &RequestLabels {
                model_group: std::mem::take(&mut known.model_group),
                deployment: std::mem::take(&mut known.deployment),
                status,
                code: std::mem::take(&mut self.code),
            },
            took,
        );
        // Last: no request in flight means every one is recorded.
        self.metrics.request_ended();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::BoxError;
    use http_body_util::{BodyExt, Full, StreamBody};
    use hyper::body::{Bytes, Frame};

    fn requests(metrics: &Metrics, status: &str, code: &str) -> bool {
        let want = format!("status=\"{status}\",code=\"{code}\"}} 1");
        metrics
            .encode()
            .lines()
            .any(|l| l.starts_with("sluice_requests_total{") && l.contains(&want))
    }

    #[test]
    fn a_request_dropped_before_its_answer_counts_as_client_closed() {
        let metrics = Arc::new(Metrics::new());
        drop(Meter::start(
            metrics.clone(),
            &HeaderValue::from_static("r1"),
        ));
        assert!(
            requests(&metrics, "499", CLIENT_CLOSED),
            "{}",
            metrics.encode()
        );
    }

    #[test]
    fn an_error_answer_counts_with_its_code() {
        let metrics = Arc::new(Metrics::new());
        let mut meter = Meter::start(metrics.clone(), &HeaderValue::from_static("r1"));
        meter.answered(StatusCode::FORBIDDEN, "model_access_denied");
        drop(meter);
        assert!(
            requests(&metrics, "403", "model_access_denied"),
            "{}",
            metrics.encode()
        );
    }

    #[test]
    fn an_answer_made_whole_counts_once_its_body_is_let_go() {
        let metrics = Arc::new(Metrics::new());
        let mut meter = Meter::start(metrics.clone(), &HeaderValue::from_static("r1"));
        meter.answered(StatusCode::NOT_FOUND, "model_not_found");
        let resp = meter.ride(Response::new(
            Full::new(Bytes::from("{}"))
                .map_err(|e| match e {})
                .boxed_unsync(),
        ));
        assert!(metrics.encode().contains("sluice_requests_in_flight 1"));
        drop(resp);
        assert!(
            requests(&metrics, "404", "model_not_found"),
            "{}",
            metrics.encode()
        );
        assert!(metrics.encode().contains("sluice_requests_in_flight 0"));
    }

    #[tokio::test]
    async fn a_relayed_answer_counts_once_sent_whole() {
        let metrics = Arc::new(Metrics::new());
        let meter = Meter::start(metrics.clone(), &HeaderValue::from_static("r1"));
        let body = meter.relay(
            StatusCode::OK,
            Full::new(Bytes::from("{}"))
                .map_err(|e| match e {})
                .boxed_unsync(),
        );
        assert!(!requests(&metrics, "200", ""), "counted before it was sent");
        body.collect().await.expect("body");
        assert!(requests(&metrics, "200", ""), "{}", metrics.encode());
        assert!(metrics.encode().contains("sluice_requests_in_flight 0"));
    }

    #[tokio::test]
    async fn an_answer_of_known_length_counts_once_its_last_frame_is_taken() {
        // As hyper sends it: it stops at `is_end_stream`, never asking for
        // the end.
        let metrics = Arc::new(Metrics::new());
        let meter = Meter::start(metrics.clone(), &HeaderValue::from_static("r1"));
        let mut body = meter.relay(
            StatusCode::OK,
            Full::new(Bytes::from("{}"))
                .map_err(|e| match e {})
                .boxed_unsync(),
        );
        body.frame().await.expect("a frame").expect("data");
        assert!(hyper::body::Body::is_end_stream(&body));
        drop(body);
        assert!(requests(&metrics, "200", ""), "{}", metrics.encode());
    }

    #[tokio::test]
    async fn a_stream_the_client_leaves_counts_as_client_closed() {
        let metrics = Arc::new(Metrics::new());
        let meter = Meter::start(metrics.clone(), &HeaderValue::from_static("r1"));
        let chunks = futures::stream::iter([
            Ok::<_, BoxError>(Frame::data(Bytes::from("data: 1\n\n"))),
            Ok(Frame::data(Bytes::from("data: 2\n\n"))),
        ]);
        let mut body = meter.relay(StatusCode::OK, StreamBody::new(chunks).boxed_unsync());
        body.frame().await.expect("a first chunk").expect("data");
        drop(body);
        assert!(
            requests(&metrics, "200", CLIENT_CLOSED),
            "{}",
            metrics.encode()
        );
    }
}
