//! Stage 5 of the request path: account for the request once it is over.
//!
//! A [`Meter`] is created when an OpenAI API request arrives and filled in as
//! the request passes the stages. When it is dropped (when the handler
//! returns, or for a streamed answer when the last byte is sent or the client
//! goes away) it records `sluice_requests_total`, the request duration and
//! the in-flight gauge, and writes the request's one log line.
//!
//! The log line names the key by alias or prefix, never by the key.

use std::sync::Arc;
use std::time::Instant;

use hyper::StatusCode;

use crate::metrics::{Metrics, RequestLabels};

/// What is known about one request so far.
pub struct Meter {
    metrics: Arc<Metrics>,
    started: Instant,
    pub request_id: String,
    pub key: String,
    pub team: String,
    pub model: String,
    pub model_group: String,
    pub deployment: String,
    pub status: StatusCode,
    /// The error code answered, empty on success.
    pub code: String,
    pub stream: bool,
}

impl Meter {
    pub fn start(metrics: Arc<Metrics>, request_id: &str) -> Meter {
        metrics.request_started();
        Meter {
            metrics,
            started: Instant::now(),
            request_id: request_id.to_owned(),
            key: String::new(),
            team: String::new(),
            model: String::new(),
            model_group: String::new(),
            deployment: String::new(),
            status: StatusCode::OK,
            code: String::new(),
            stream: false,
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        self.metrics.request_ended();
        self.metrics.request_done(
            &RequestLabels {
                model_group: self.model_group.clone(),
                deployment: self.deployment.clone(),
                status: self.status.as_u16(),
                code: self.code.clone(),
            },
            took,
        );
        tracing::info!(
            request_id = %self.request_id,
            key = %self.key,
            team = %self.team,
            model = %self.model,
            model_group = %self.model_group,
            deployment = %self.deployment,
            status = self.status.as_u16(),
            code = %self.code,
            stream = self.stream,
            latency_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            "request"
        );
    }
}
