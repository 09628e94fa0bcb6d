//! Anthropic's Messages API: `{api_base}/v1/messages` (and
//! `/v1/messages/count_tokens`), with the deployment's key in `x-api-key`
//! and `anthropic-version` set to the deployment's `api_version`, else
//! [`DEFAULT_VERSION`]. The bodies are in Anthropic's own shape: an OpenAI
//! client's request is translated to it and its answer back
//! ([`crate::formats::anthropic`]); an Anthropic client's passes through.

use hyper::header::{HeaderName, HeaderValue};

use super::{Address, Provider, ProviderError, Speaks, api_base, secret_header};
use crate::config::snapshot::ResolvedDeployment;
use crate::formats::Format;

/// The API version sent when the deployment names none: the one every
/// current Messages API feature is available under (newer features are
/// switched on by `anthropic-beta`, which a client's request passes on).
pub const DEFAULT_VERSION: &str = "2023-06-01";

pub const API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub const VERSION: HeaderName = HeaderName::from_static("anthropic-version");
pub const BETA: HeaderName = HeaderName::from_static("anthropic-beta");

pub struct Anthropic;

impl Provider for Anthropic {
    fn address(
        &self,
        deployment: &ResolvedDeployment,
        _upstream_model: &str,
        format: Format,
        _stream: bool,
    ) -> Result<Address, ProviderError> {
        let path = match format {
            Format::CountTokens => "/v1/messages/count_tokens",
            // Everything else reaches Anthropic as a Messages request.
            _ => "/v1/messages",
        };
        let base = api_base(deployment)?;
        // An `api_base` written with the version path (`…/v1`), as some
        // LiteLLM configs do, is not doubled.
        let base = base.strip_suffix("/v1").unwrap_or(&base);
        let url = format!("{base}{path}");
        let secrets = deployment.secrets();
        let mut headers = Vec::new();
        let key = secrets.api_key.expose();
        if !key.is_empty() {
            headers.push((API_KEY, secret_header(key, "api_key")?));
        }
        let version = secrets.api_version.expose().trim();
        let version = if version.is_empty() {
            DEFAULT_VERSION
        } else {
            version
        };
        headers.push((
            VERSION,
            HeaderValue::from_str(version)
                .map_err(|_| ProviderError::InvalidHeader("api_version"))?,
        ));
        Ok(Address { url, headers })
    }

    fn speaks(&self) -> Speaks {
        Speaks::Anthropic
    }
}
