//! Stage 5 of the request path: account for the request once it is over.
//!
//! A [`Meter`] is created when an OpenAI API request arrives and filled in as
//! the request passes the stages. When it is dropped (when the handler
//! returns, or, riding in the answer's body ([`Meter::relay`]), when the last
//! byte is sent or the client goes away) it records `sluice_requests_total`,
//! the request duration and the in-flight gauge, and writes the request's one
//! log line: in a task of its own, so that this happens after the answer's
//! last bytes are written rather than before. The in-flight gauge goes down
//! last: none in flight means every request is recorded.
//!
//! A client that leaves before its answer is complete is recorded with code
//! `client_closed_request`, and with status 499 (nginx's convention) if it
//! left before the status was known, so a cancelled request never counts as
//! a success.
//!
//! The log line names the key by alias or prefix, never by the key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use hyper::header::HeaderValue;
use sluice_proto::admin::v1::Key;

use crate::auth;

use crate::http::{Body, Carried, carrying};
use crate::metrics::{Metrics, RequestLabels};

/// The target of the request's log line, which [`crate::log_writer`] batches
/// and [`crate::log_format`] writes directly.
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
}

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
        }
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
    fn ended(&mut self, outcome: Result<(), ()>) {
        self.finished = true;
        if outcome.is_err() {
            // The upstream broke off mid-answer.
            self.code = "upstream_error".to_owned();
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        let (status, left) = self.outcome();
        let over = Over {
            metrics: Arc::clone(&self.metrics),
            took,
            status,
            code: left.map_or_else(|| std::mem::take(&mut self.code), str::to_owned),
            known: std::mem::replace(&mut self.known, Known::new(HeaderValue::from_static(""))),
        };
        // hyper drops a body as soon as it has buffered the last bytes,
        // before it writes them out: recording here would put the log line
        // and the metrics between the answer and the client. A task of its
        // own runs once the connection's task has written and yielded. A
        // task dropped unrun (its runtime shutting down) records as it
        // drops, so no request goes unrecorded either way.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(async move { drop(over) })),
            Err(_) => drop(over),
        }
    }
}

/// A request that is over, recorded (metrics and log line) when dropped.
struct Over {
    metrics: Arc<Metrics>,
    took: Duration,
    status: StatusCode,
    code: String,
    known: Known,
}

impl Drop for Over {
    fn drop(&mut self) {
        let status = self.status.as_u16();
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
            latency_ms = u64::try_from(self.took.as_millis()).unwrap_or(u64::MAX),
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
            self.took,
        );
        // Last: no request in flight means every one is recorded.
        self.metrics.request_ended();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::BoxError;
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

    #[tokio::test]
    async fn a_request_is_recorded_once_the_task_that_answered_it_yields() {
        // That task writes the answer out before it yields.
        let metrics = Arc::new(Metrics::new());
        let mut meter = Meter::start(metrics.clone(), &HeaderValue::from_static("r1"));
        meter.answered(StatusCode::OK, "");
        drop(meter);
        assert!(!requests(&metrics, "200", ""), "recorded before the yield");
        assert!(metrics.encode().contains("sluice_requests_in_flight 1"));
        tokio::task::yield_now().await;
        assert!(requests(&metrics, "200", ""), "{}", metrics.encode());
        assert!(metrics.encode().contains("sluice_requests_in_flight 0"));
    }

    #[test]
    fn a_request_over_as_its_runtime_stops_is_still_recorded() {
        let metrics = Arc::new(Metrics::new());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut meter = Meter::start(metrics.clone(), &HeaderValue::from_static("r1"));
            meter.answered(StatusCode::OK, "");
        });
        drop(runtime);
        assert!(requests(&metrics, "200", ""), "{}", metrics.encode());
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
        tokio::task::yield_now().await;
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
        tokio::task::yield_now().await;
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
        tokio::task::yield_now().await;
        assert!(
            requests(&metrics, "200", CLIENT_CLOSED),
            "{}",
            metrics.encode()
        );
    }
}
