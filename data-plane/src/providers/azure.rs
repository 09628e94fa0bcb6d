//! Azure OpenAI: the deployment name is in the URL,
//! `{api_base}/openai/deployments/{model}/chat/completions?api-version={api_version}`,
//! and the key goes in an `api-key` header (no `Authorization`). The
//! Responses API is `{api_base}/openai/responses?api-version=…` with the
//! deployment name as the body's `model`, its version defaulting to
//! [`RESPONSES_API_VERSION`].
//!
//! Without an `api_key`, a request carries a Microsoft Entra ID token as
//! `Authorization: Bearer`: the deployment's `azure_ad_token` as it is, or
//! one fetched for the identity the deployment or the data plane names (a
//! service principal, the pod's workload identity or the host's managed
//! identity: [`super::entra`]).
//!
//! `api_version` defaults to [`DEFAULT_API_VERSION`] when the deployment sets
//! none: Azure refuses requests without one.
//!
//! Azure's v1 API (since 2025-08) has no deployments path and no dated
//! version: `{api_base}/openai/v1/chat/completions`, the deployment name as
//! the body's `model`, as OpenAI's own API. A deployment takes it with
//! `api_version` `v1`, `latest` or `preview` (LiteLLM's spelling; `preview`
//! adds `?api-version=preview`, the v1 API's preview features), or with an
//! `api_base` that already ends in `/openai/v1` (Azure AI Foundry shows its
//! endpoints so).

use hyper::header::{self, HeaderName, HeaderValue};

use super::{Address, Fetches, Provider, ProviderError, api_base, secret_header};
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
        let base = api_base(deployment)?;
        let headers = key_header(deployment)?;
        if let Some(v1) = v1_base(&base, configured) {
            let url = match configured {
                "preview" => format!("{v1}{}?api-version=preview", format.path()),
                _ => format!("{v1}{}", format.path()),
            };
            return Ok(Address { url, headers });
        }
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
                base,
                format.path(),
                encode_component(version),
            )
        } else {
            format!(
                "{}/openai/deployments/{}{}?api-version={}",
                base,
                encode_component(upstream_model),
                format.path(),
                encode_component(version),
            )
        };
        Ok(Address { url, headers })
    }

    fn fetches(&self, deployment: &ResolvedDeployment) -> Fetches {
        let secrets = deployment.secrets();
        if secrets.api_key.is_empty() && secrets.azure.ad_token.is_empty() {
            Fetches::EntraToken
        } else {
            Fetches::Nothing
        }
    }
}

/// `{api_base}/openai/v1` when the deployment asks for the v1 API, by its
/// `api_version` or by a base already there; `None` for the dated API.
fn v1_base(base: &str, api_version: &str) -> Option<String> {
    if base.ends_with("/openai/v1") {
        return Some(base.to_owned());
    }
    matches!(api_version, "v1" | "latest" | "preview").then(|| format!("{base}/openai/v1"))
}

/// The key in Azure's `api-key` header (both APIs take it), or the
/// deployment's own Entra ID token, when one is set; without either, the
/// request carries a fetched token instead ([`Fetches`]).
fn key_header(
    deployment: &ResolvedDeployment,
) -> Result<Vec<(HeaderName, HeaderValue)>, ProviderError> {
    let secrets = deployment.secrets();
    let (key, token) = (secrets.api_key.expose(), secrets.azure.ad_token.expose());
    if !key.is_empty() {
        return Ok(vec![(
            HeaderName::from_static("api-key"),
            secret_header(key, "api_key")?,
        )]);
    }
    if !token.is_empty() {
        return Ok(vec![(
            header::AUTHORIZATION,
            secret_header(&format!("Bearer {token}"), "azure_ad_token")?,
        )]);
    }
    Ok(Vec::new())
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

    #[test]
    fn the_v1_api_is_chosen_by_version_or_by_base() {
        let base = "https://r.openai.azure.com";
        for v in ["v1", "latest", "preview"] {
            assert_eq!(
                v1_base(base, v).as_deref(),
                Some("https://r.openai.azure.com/openai/v1")
            );
        }
        for v in ["", "2024-10-21", "2025-04-01-preview", "V2"] {
            assert_eq!(v1_base(base, v), None, "{v:?} is a dated version");
        }
        let foundry = "https://p.services.ai.azure.com/openai/v1";
        assert_eq!(v1_base(foundry, "").as_deref(), Some(foundry));
        assert_eq!(
            v1_base(foundry, "v1").as_deref(),
            Some(foundry),
            "not twice"
        );
    }
}
