//! Why an upstream call failed, by kind: the router decides from the kind
//! whether to try again ([`UpstreamError::is_retryable`]), and
//! `http::openai` which answer the client gets.

use std::time::Duration;

use hyper::StatusCode;
use hyper::body::Bytes;
use hyper::header::HeaderMap;

use crate::providers::ProviderError;

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The deployment cannot make a request (502).
    #[error("deployment misconfigured: {0}")]
    Provider(#[from] ProviderError),
    /// Connecting, sending or reading failed (502).
    #[error("{0}")]
    Connection(String),
    /// No answer within the deployment's timeout (504).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The upstream answered an error status. `openai_error` tells whether
    /// `body` is OpenAI's error shape, which is then relayed as is;
    /// `relayed` holds its
    /// [`RELAYED_ERROR_HEADERS`](crate::forward::RELAYED_ERROR_HEADERS).
    #[error("the upstream answered {status}")]
    Status {
        status: StatusCode,
        body: Bytes,
        openai_error: bool,
        /// Boxed: only error answers carry it, and inline it would make
        /// every `Result` holding an `UpstreamError` twice as large.
        relayed: Box<HeaderMap>,
    },
}

impl UpstreamError {
    /// Whether another deployment may be tried (DESIGN §5): 429, 5xx,
    /// timeouts and connection errors; never other 4xx, which the next
    /// deployment would refuse too.
    pub fn is_retryable(&self) -> bool {
        match self {
            UpstreamError::Provider(_) | UpstreamError::Connection(_) => true,
            UpstreamError::Timeout(_) => true,
            UpstreamError::Status { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_classification() {
        let status = |s: u16| UpstreamError::Status {
            status: StatusCode::from_u16(s).expect("status"),
            body: Bytes::new(),
            openai_error: false,
            relayed: Box::default(),
        };
        assert!(status(429).is_retryable());
        assert!(status(503).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(UpstreamError::Timeout(Duration::from_secs(600)).is_retryable());
    }
}
