//! Why an upstream call failed, by kind: the router decides from the kind
//! whether to try again ([`UpstreamError::is_retryable`]), and
//! `http::openai` which answer the client gets.

use std::time::Duration;

use hyper::StatusCode;
use hyper::body::Bytes;
use hyper::header::HeaderMap;

use crate::formats::ErrorShape;
use crate::providers::target::ProviderError;

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The deployment cannot make a request (502): an unknown provider, no
    /// `api_base`, an upstream URL that is not one (invalid, not http or
    /// https, no host), a secret that is not a valid header value. Nothing
    /// was sent; the same request fails the same way until the config
    /// changes.
    #[error("deployment misconfigured: {0}")]
    Misconfigured(#[from] ProviderError),
    /// Connecting, sending or reading failed (502).
    #[error("{0}")]
    Connection(String),
    /// No answer within the deployment's timeout (504).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The request cannot be put in the deployment's API without changing
    /// what it asks (400): a parameter or content the translation cannot
    /// express, or an endpoint the provider does not serve. Nothing was
    /// sent; another deployment of the same provider would refuse it too.
    #[error("{message}")]
    Untranslatable {
        param: Option<String>,
        message: String,
    },
    /// The upstream answered success with a body its API does not allow
    /// (502): it could not be translated for the client.
    #[error("the upstream's answer could not be read: {0}")]
    UnreadableAnswer(String),
    /// The upstream answered an error status. `shape` tells whether `body`
    /// is in OpenAI's or Anthropic's error shape, which is then relayed to a
    /// client of the same API as is, and translated for the other;
    /// `relayed` holds its
    /// [`RELAYED_ERROR_HEADERS`](crate::forward::RELAYED_ERROR_HEADERS).
    #[error("the upstream answered {status}")]
    Status {
        status: StatusCode,
        body: Bytes,
        shape: ErrorShape,
        /// Boxed: only error answers carry it, and inline it would make
        /// every `Result` holding an `UpstreamError` twice as large.
        relayed: Box<HeaderMap>,
    },
}

impl UpstreamError {
    /// Whether the failure is the upstream's and may pass, so that another
    /// attempt may be made and the failure counts toward the deployment's
    /// cooldown (DESIGN §5): 429, 5xx, timeouts and connection errors; never
    /// other 4xx, which the next deployment would refuse too, and never a
    /// misconfiguration, which no attempt or cooldown mends.
    pub fn is_retryable(&self) -> bool {
        match self {
            UpstreamError::Misconfigured(_) | UpstreamError::Untranslatable { .. } => false,
            UpstreamError::Connection(_)
            | UpstreamError::Timeout(_)
            | UpstreamError::UnreadableAnswer(_) => true,
            UpstreamError::Status { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: u16) -> UpstreamError {
        UpstreamError::Status {
            status: StatusCode::from_u16(s).expect("status"),
            body: Bytes::new(),
            shape: ErrorShape::Other,
            relayed: Box::default(),
        }
    }

    #[test]
    fn a_misconfiguration_is_not_retried() {
        for e in [
            ProviderError::UnknownProvider("nope".into()),
            ProviderError::MissingApiBase("azure"),
            ProviderError::InvalidHeader("api_key"),
            ProviderError::InvalidUrl("relative URL without a base".into()),
            ProviderError::UnsupportedScheme,
            ProviderError::NoHost,
        ] {
            assert!(!UpstreamError::from(e).is_retryable());
        }
    }

    #[test]
    fn a_connection_failure_is_retried() {
        assert!(UpstreamError::Connection("connection refused".into()).is_retryable());
    }

    #[test]
    fn a_timeout_is_retried() {
        assert!(UpstreamError::Timeout(Duration::from_secs(600)).is_retryable());
    }

    #[test]
    fn statuses_are_retried_on_429_and_5xx_only() {
        for s in [429, 500, 502, 503, 504, 529] {
            assert!(status(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 408, 409, 413, 422] {
            assert!(!status(s).is_retryable(), "{s}");
        }
    }
}
