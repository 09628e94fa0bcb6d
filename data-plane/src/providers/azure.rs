//! Azure OpenAI: the deployment name is in the URL,
//! `{api_base}/openai/deployments/{model}/chat/completions?api-version={api_version}`,
//! and the key goes in an `api-key` header (no `Authorization`). The
//! Responses API is `{api_base}/openai/responses?api-version=…` with the
//! deployment name as the body's `model`, its version defaulting to
//! [`RESPONSES_API_VERSION`].
//!
//! `api_version` defaults to [`DEFAULT_API_VERSION`] when the deployment sets
//! none: Azure refuses requests without one.

use hyper::header::HeaderName;

use super::{Address, Provider, ProviderError, api_base, secret_header};
use crate::config::snapshot::ResolvedDeployment;
use crate::formats::Format;

/// A GA Azure OpenAI API version that serves chat, completions and
/// embeddings.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

/// The `api-version` of a `/v1/responses` request when the deployment sets
/// none: the first that serves Azure's Responses API.
pub const RESPONSES_API_VERSION: &str = "2025-04-01-preview";

pub struct Azure;

impl Provider for Azure {
    fn address(
        &self,
        deployment: &ResolvedDeployment,
        upstream_model: &str,
        format: Format,
        _stream: bool,
    ) -> Result<Address, ProviderError> {
        let configured = deployment.secrets().api_version.expose().trim();
        let version = if configured.is_empty() {
            DEFAULT_API_VERSION
        } else {
            configured
        };
        let url = if matches!(format, Format::Responses | Format::ResponsesCompact) {
            // The Responses API is not under a deployment: the deployment
            // is the body's `model`, and it needs a newer version.
            let version = if configured.is_empty() {
                RESPONSES_API_VERSION
            } else {
                version
            };
            format!(
                "{}/openai{}?api-version={}",
                api_base(deployment)?,
                format.path(),
                encode_component(version),
            )
        } else {
            format!(
                "{}/openai/deployments/{}{}?api-version={}",
                api_base(deployment)?,
                encode_component(upstream_model),
                format.path(),
                encode_component(version),
            )
        };
        let key = deployment.secrets().api_key.expose();
        let mut headers = Vec::new();
        if !key.is_empty() {
            headers.push((
                HeaderName::from_static("api-key"),
                secret_header(key, "api_key")?,
            ));
        }
        Ok(Address { url, headers })
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so a
/// deployment name cannot change the URL's path or query.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_encoded() {
        assert_eq!(encode_component("gpt-4o_1.0"), "gpt-4o_1.0");
        assert_eq!(encode_component("a/b?c"), "a%2Fb%3Fc");
    }
}
