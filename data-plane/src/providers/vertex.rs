//! Vertex AI, at a location's URL,
//! `https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}`
//! (`https://aiplatform.googleapis.com/…/locations/global` for the global
//! location; the deployment's `api_base` when it names one), with
//! `Authorization: Bearer` and a Google OAuth access token. Two APIs there:
//! - [`Vertex`], the OpenAI-compatible endpoint, `{location}/endpoints/openapi/chat/completions`:
//!   Gemini models asked for as `google/{model}` (LiteLLM's
//!   `vertex_ai/gemini-2.5-pro` is `google/gemini-2.5-pro`), a model that
//!   names its publisher (`meta/llama-3.3-70b-instruct-maas`) as it is;
//! - [`VertexClaude`], Claude (a model named `claude…`) through Anthropic's
//!   Messages API: `{location}/publishers/anthropic/models/{model}:rawPredict`,
//!   `:streamRawPredict` for a stream, `…/models/count-tokens:rawPredict`;
//!   the body in Anthropic's shape with `anthropic_version` in it and the
//!   model in the URL ([`crate::formats::anthropic::hosted`]).
//!
//! The token comes from the deployment's credentials, its `api_key`
//! (LiteLLM's `vertex_credentials`), resolved on the data plane:
//! - a service account's JSON key, or the path of one: a JWT signed with its
//!   key (RS256) is exchanged at its `token_uri` (OAuth's JWT bearer grant);
//! - empty: Google's default credentials, the key file that
//!   `GOOGLE_APPLICATION_CREDENTIALS` names, else the metadata server's
//!   token for the machine's service account (`GCE_METADATA_HOST`, default
//!   `metadata.google.internal`: GKE's Workload Identity, Compute Engine).
//!
//! This module makes the requests and reads the answers, pure but for
//! reading a key file and the clock passed in; sending them, and keeping
//! the token, are [`crate::forward`]'s and [`super::target::TokenCell`]'s.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::body::Bytes;
use hyper::header::{self, HeaderName, HeaderValue};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;

pub use super::target::{TokenError, TokenRequest};
use super::{Address, Fetches, Provider, ProviderError, Speaks, secret_header};
use crate::config::snapshot::ResolvedDeployment;
use crate::formats::anthropic::betas::Cloud;
use crate::formats::anthropic::hosted;
use crate::formats::google;
use crate::formats::{Format, TranslateError};

/// The location when the deployment names none, as LiteLLM's default.
pub const DEFAULT_LOCATION: &str = "us-central1";
/// The scope the token is asked for.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Where a service account key without a `token_uri` exchanges its JWT.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The metadata server's host when `GCE_METADATA_HOST` names none.
pub const METADATA_HOST: &str = "metadata.google.internal";
/// The OpenAI-compatible endpoint, under a location's URL.
const OPENAI_ENDPOINT: &str = "/endpoints/openapi";
/// How long a signed JWT is good for: Google's maximum.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

pub struct Vertex;

impl Provider for Vertex {
    fn address(
        &self,
        deployment: &ResolvedDeployment,
        _upstream_model: &str,
        format: Format,
        _stream: bool,
    ) -> Result<Address, ProviderError> {
        Ok(Address {
            url: format!(
                "{}{OPENAI_ENDPOINT}{}",
                location_url(deployment)?,
                format.path()
            ),
            headers: Vec::new(),
        })
    }

    fn fetches(&self, _deployment: &ResolvedDeployment) -> Fetches {
        Fetches::Token
    }

    /// Gemini's chat requests with their schemas made Gemini's
    /// ([`google::schema`]); Model Garden's other publishers' as they are.
    fn adapt_body(
        &self,
        body: Bytes,
        format: Format,
        upstream_model: &str,
        _betas: &[&str],
    ) -> Result<Bytes, TranslateError> {
        Ok(match format {
            Format::ChatCompletions if upstream_model.starts_with("google/") => {
                google::schema::chat_body(&body).map_or(body, Bytes::from)
            }
            _ => body,
        })
    }
}

/// Claude on Vertex AI (see the module doc).
pub struct VertexClaude;

impl Provider for VertexClaude {
    fn address(
        &self,
        deployment: &ResolvedDeployment,
        upstream_model: &str,
        format: Format,
        stream: bool,
    ) -> Result<Address, ProviderError> {
        Ok(Address {
            url: claude_url(&location_url(deployment)?, upstream_model, format, stream)?,
            headers: Vec::new(),
        })
    }

    fn speaks(&self) -> Speaks {
        Speaks::Anthropic
    }

    fn fetches(&self, _deployment: &ResolvedDeployment) -> Fetches {
        Fetches::Token
    }

    fn streams_elsewhere(&self) -> bool {
        true
    }

    fn adapt_body(
        &self,
        body: Bytes,
        format: Format,
        _upstream_model: &str,
        betas: &[&str],
    ) -> Result<Bytes, TranslateError> {
        let drop = if format == Format::CountTokens {
            &[][..]
        } else {
            hosted::VERTEX_DROPS
        };
        hosted::body(&body, hosted::VERTEX_VERSION, drop, betas).map(Bytes::from)
    }

    fn beta_cloud(&self) -> Option<Cloud> {
        Some(Cloud::Vertex)
    }
}

/// Where Claude at the location `base` answers `format`, streamed or not.
fn claude_url(
    base: &str,
    model: &str,
    format: Format,
    stream: bool,
) -> Result<String, ProviderError> {
    let models = format!("{base}/publishers/anthropic/models");
    if format == Format::CountTokens {
        return Ok(format!("{models}/count-tokens:rawPredict"));
    }
    // `claude-sonnet-4@20250514`: a version after the `@`.
    if model.is_empty() || !model.split('@').all(plain) {
        return Err(ProviderError::InvalidUrl(
            "a Vertex AI model may hold only letters, digits, '-', '_', '.' and '@'".into(),
        ));
    }
    let verb = if stream {
        "streamRawPredict"
    } else {
        "rawPredict"
    };
    Ok(format!("{models}/{model}:{verb}"))
}

/// Whether `model` is Claude, which Vertex AI serves through Anthropic's
/// API rather than the OpenAI-compatible endpoint.
pub fn is_claude(model: &str) -> bool {
    model.starts_with("claude")
}

fn location_url(deployment: &ResolvedDeployment) -> Result<String, ProviderError> {
    let secrets = deployment.secrets();
    location(
        secrets.api_base.expose(),
        secrets.vertex_project.expose(),
        secrets.vertex_location.expose(),
    )
}

/// Only what Google's names use: they go into the URL's host and path.
fn plain(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The location's URL: `api_base` when given, else made from the project
/// and location.
pub fn location(api_base: &str, project: &str, location: &str) -> Result<String, ProviderError> {
    let api_base = api_base.trim().trim_end_matches('/');
    if !api_base.is_empty() {
        // The OpenAI-compatible endpoint's URL names its location too.
        let api_base = api_base.strip_suffix(OPENAI_ENDPOINT).unwrap_or(api_base);
        return Ok(api_base.to_owned());
    }
    let project = project.trim();
    if project.is_empty() {
        return Err(ProviderError::MissingApiBase("vertex_ai"));
    }
    let location = match location.trim() {
        "" => DEFAULT_LOCATION,
        l => l,
    };
    if !plain(project) || !plain(location) {
        return Err(ProviderError::InvalidUrl(
            "vertex_project and vertex_location may hold only letters, digits, '-', '_' and '.'"
                .into(),
        ));
    }
    let host = if location == "global" {
        "aiplatform.googleapis.com".to_owned()
    } else {
        format!("{location}-aiplatform.googleapis.com")
    };
    Ok(format!(
        "https://{host}/v1/projects/{project}/locations/{location}"
    ))
}

/// The model as Vertex names it: `google/{model}` unless it names its
/// publisher already, or is Claude (named in the URL as it is).
pub fn upstream_model(model: &str) -> String {
    if model.contains('/') || is_claude(model) {
        model.to_owned()
    } else {
        format!("google/{model}")
    }
}

/// Where a token comes from.
pub enum Credentials {
    ServiceAccount(ServiceAccount),
    /// The metadata server at this host (and port).
    MetadataServer(String),
}

/// The members of a service account's JSON key that make a token.
#[derive(Deserialize)]
pub struct ServiceAccount {
    #[serde(rename = "type", default)]
    kind: String,
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: String,
    #[serde(default)]
    token_uri: String,
}

/// The credentials a deployment's resolved `api_key` names, `env` being
/// the process environment: see the module doc.
pub fn credentials(
    api_key: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Credentials, ProviderError> {
    let api_key = api_key.trim();
    let key_json = if api_key.starts_with('{') {
        api_key.to_owned()
    } else {
        let path = if api_key.is_empty() {
            match env("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty()) {
                Some(path) => path,
                None => {
                    let host = env("GCE_METADATA_HOST").filter(|h| !h.is_empty());
                    return Ok(Credentials::MetadataServer(
                        host.unwrap_or_else(|| METADATA_HOST.to_owned()),
                    ));
                }
            }
        } else {
            api_key.to_owned()
        };
        // The path is the operator's and says nothing secret; the file's
        // contents never appear in an error.
        std::fs::read_to_string(&path).map_err(|e| {
            ProviderError::Credentials(format!("the key file {path:?} cannot be read: {e}"))
        })?
    };
    let account: ServiceAccount = serde_json::from_str(&key_json).map_err(|e| {
        ProviderError::Credentials(format!(
            "not a service account's JSON key (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if account.kind != "service_account" {
        return Err(ProviderError::Credentials(format!(
            "a key of type {:?}; Sluice takes a service account's (\"service_account\")",
            account.kind
        )));
    }
    Ok(Credentials::ServiceAccount(account))
}

/// The request that gets a token with `credentials` at `now` (seconds
/// since the Unix epoch).
pub fn token_request(credentials: &Credentials, now: u64) -> Result<TokenRequest, ProviderError> {
    match credentials {
        Credentials::MetadataServer(host) => Ok(TokenRequest {
            url: format!(
                "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
            ),
            method: hyper::Method::GET,
            form: None,
            headers: vec![(
                HeaderName::from_static("metadata-flavor"),
                HeaderValue::from_static("Google"),
            )],
        }),
        Credentials::ServiceAccount(account) => {
            let token_uri = if account.token_uri.is_empty() {
                DEFAULT_TOKEN_URI
            } else {
                &account.token_uri
            };
            let assertion = assertion(account, token_uri, now)?;
            Ok(TokenRequest {
                url: token_uri.to_owned(),
                method: hyper::Method::POST,
                form: Some(format!(
                    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
                )),
                headers: vec![(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                )],
            })
        }
    }
}

/// The JWT `account` signs to ask `token_uri` for a token (RFC 7523):
/// `iss` the account, `aud` the token URI, `scope` [`SCOPE`], valid an hour
/// from `now`.
fn assertion(account: &ServiceAccount, token_uri: &str, now: u64) -> Result<String, ProviderError> {
    let bad_key = |why: &str| ProviderError::Credentials(format!("its private_key {why}"));
    let der = PrivatePkcs8KeyDer::from_pem_slice(account.private_key.as_bytes())
        .map_err(|_| bad_key("is not a PKCS#8 PEM key"))?;
    let key = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
        .map_err(|_| bad_key("is not an RSA key ring can sign with"))?;
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": account.private_key_id});
    let claims = serde_json::json!({
        "iss": account.client_email,
        "scope": SCOPE,
        "aud": token_uri,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME.as_secs(),
    });
    let mut jwt = URL_SAFE_NO_PAD.encode(header.to_string());
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        jwt.as_bytes(),
        &mut signature,
    )
    .map_err(|_| bad_key("could not sign"))?;
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(jwt)
}

/// An OAuth 2.0 token endpoint's answer (Google's, Entra ID's, Azure's
/// managed identity endpoints'): the `Authorization` value (sensitive) and
/// how long it is good for: its `expires_in`, else (App Service's, which
/// may hand out a cached token) its `expires_on` in unix seconds less
/// `now_unix`, else an hour.
pub fn read_token(
    status: u16,
    body: &[u8],
    now_unix: u64,
) -> Result<(HeaderValue, Duration), TokenError> {
    /// Seconds, a number from OAuth endpoints, a string from Azure's
    /// instance metadata service.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Number(u64),
        Text(String),
    }
    #[derive(Deserialize)]
    struct Answer {
        access_token: Option<String>,
        expires_in: Option<Seconds>,
        expires_on: Option<Seconds>,
        error: Option<String>,
    }
    let seconds = |s: Option<Seconds>| match s {
        Some(Seconds::Number(n)) => Some(n),
        Some(Seconds::Text(t)) => t.trim().parse().ok(),
        None => None,
    };
    let answer: Option<Answer> = serde_json::from_slice(body).ok();
    if !(200..300).contains(&status) {
        let code = answer
            .and_then(|a| a.error)
            .filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .unwrap_or_else(|| status.to_string());
        return Err(if (400..500).contains(&status) && status != 429 {
            TokenError::Refused(code)
        } else {
            TokenError::Failed(format!("the token endpoint answered {status} ({code})"))
        });
    }
    let unreadable =
        || TokenError::Failed("the token endpoint's answer has no access_token".into());
    let answer = answer.ok_or_else(unreadable)?;
    let token = answer
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(unreadable)?;
    let authorization = secret_header(&format!("Bearer {token}"), "access token")
        .map_err(|_| TokenError::Failed("the access token is not a valid header value".into()))?;
    Ok((
        authorization,
        Duration::from_secs(
            seconds(answer.expires_in)
                .or_else(|| seconds(answer.expires_on).map(|on| on.saturating_sub(now_unix)))
                .unwrap_or(3600),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_by_name_or_as_given() {
        assert_eq!(
            location("", "my-proj", "").unwrap(),
            "https://us-central1-aiplatform.googleapis.com/v1/projects/my-proj/locations/us-central1"
        );
        assert_eq!(
            location("", "my-proj", "europe-west4").unwrap(),
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-proj/locations/europe-west4"
        );
        assert_eq!(
            location("", "my-proj", "global").unwrap(),
            "https://aiplatform.googleapis.com/v1/projects/my-proj/locations/global"
        );
        assert_eq!(
            location("http://127.0.0.1:9/v1/x/", "", "").unwrap(),
            "http://127.0.0.1:9/v1/x"
        );
        assert_eq!(
            location(
                "https://h/v1/projects/p/locations/l/endpoints/openapi",
                "",
                ""
            )
            .unwrap(),
            "https://h/v1/projects/p/locations/l",
            "the OpenAI-compatible endpoint's URL names the location"
        );
        assert_eq!(
            location("", "", "us-east5"),
            Err(ProviderError::MissingApiBase("vertex_ai"))
        );
        assert!(matches!(
            location("", "evil.com/x?", ""),
            Err(ProviderError::InvalidUrl(_))
        ));
    }

    #[test]
    fn claude_is_asked_by_verb_and_counted_apart() {
        let base = "https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/us-east5";
        let models = format!("{base}/publishers/anthropic/models");
        let model = "claude-sonnet-4@20250514";
        assert_eq!(
            claude_url(base, model, Format::Messages, false).unwrap(),
            format!("{models}/claude-sonnet-4@20250514:rawPredict")
        );
        assert_eq!(
            claude_url(base, model, Format::Messages, true).unwrap(),
            format!("{models}/claude-sonnet-4@20250514:streamRawPredict")
        );
        assert_eq!(
            claude_url(base, model, Format::CountTokens, false).unwrap(),
            format!("{models}/count-tokens:rawPredict")
        );
        for bad in ["", "claude/../x", "claude?x=1", "claude:streamRawPredict"] {
            assert!(
                claude_url(base, bad, Format::Messages, false).is_err(),
                "{bad:?}"
            );
        }
        assert!(is_claude("claude-opus-4-1@20250805"));
        assert!(!is_claude("gemini-2.5-pro"));
    }

    #[test]
    fn claudes_body_carries_the_version_and_not_the_model() {
        let body = Bytes::from_static(br#"{"model":"c","max_tokens":5,"messages":[]}"#);
        let adapted = VertexClaude
            .adapt_body(
                body.clone(),
                Format::Messages,
                "claude-sonnet-4@20250514",
                &[],
            )
            .unwrap();
        assert_eq!(
            &adapted[..],
            br#"{"anthropic_version":"vertex-2023-10-16","max_tokens":5,"messages":[]}"#
        );
        let counted = VertexClaude
            .adapt_body(body, Format::CountTokens, "claude-sonnet-4@20250514", &[])
            .unwrap();
        assert_eq!(
            &counted[..],
            br#"{"anthropic_version":"vertex-2023-10-16","model":"c","max_tokens":5,"messages":[]}"#
        );
    }

    #[test]
    fn geminis_tool_schemas_are_made_its_own_and_model_gardens_are_not() {
        let body = Bytes::from_static(
            br#"{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}}}]}"#,
        );
        let adapt = |model: &str, format: Format| {
            Vertex.adapt_body(body.clone(), format, model, &[]).unwrap()
        };
        assert_eq!(
            &adapt("google/gemini-2.5-pro", Format::ChatCompletions)[..],
            br#"{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"}}}}}]}"#
        );
        assert_eq!(
            adapt("meta/llama-3.3-70b-instruct-maas", Format::ChatCompletions),
            body
        );
        assert_eq!(adapt("google/gemini-2.5-pro", Format::Embeddings), body);
    }

    #[test]
    fn gemini_models_are_googles() {
        assert_eq!(upstream_model("gemini-2.5-pro"), "google/gemini-2.5-pro");
        assert_eq!(
            upstream_model("claude-sonnet-4@20250514"),
            "claude-sonnet-4@20250514"
        );
        assert_eq!(
            upstream_model("meta/llama-3.3-70b-instruct-maas"),
            "meta/llama-3.3-70b-instruct-maas"
        );
    }

    #[test]
    fn credentials_from_the_key_a_path_or_the_environment() {
        let none = |_: &str| None;
        assert!(matches!(
            credentials("", none),
            Ok(Credentials::MetadataServer(h)) if h == METADATA_HOST
        ));
        assert!(matches!(
            credentials("", |v: &str| (v == "GCE_METADATA_HOST").then(|| "127.0.0.1:8080".to_owned())),
            Ok(Credentials::MetadataServer(h)) if h == "127.0.0.1:8080"
        ));
        let missing = credentials("/nonexistent/key.json", none).err().unwrap();
        assert!(
            missing.to_string().contains("/nonexistent/key.json"),
            "{missing}"
        );
        let from_env = credentials("", |v: &str| {
            (v == "GOOGLE_APPLICATION_CREDENTIALS").then(|| "/nonexistent/adc.json".to_owned())
        });
        assert!(
            from_env
                .err()
                .unwrap()
                .to_string()
                .contains("/nonexistent/adc.json")
        );
        let user = r#"{"type": "authorized_user", "client_email": "a", "private_key": "b"}"#;
        assert!(
            credentials(user, none)
                .err()
                .unwrap()
                .to_string()
                .contains("authorized_user")
        );
        let secret = r#"{"type": "service_account", "private_key": "SECRET-KEY-MATERIAL"#;
        let refused = credentials(secret, none).err().unwrap().to_string();
        assert!(!refused.contains("SECRET"), "{refused}");
        let no_key =
            r#"{"type": "service_account", "client_email": "a@b", "private_key": "SECRET"}"#;
        let Ok(Credentials::ServiceAccount(account)) = credentials(no_key, none) else {
            panic!("a service account")
        };
        let refused = token_request(&Credentials::ServiceAccount(account), 0)
            .err()
            .unwrap()
            .to_string();
        assert!(
            refused.contains("PKCS#8") && !refused.contains("SECRET"),
            "{refused}"
        );
    }

    #[test]
    fn the_metadata_server_is_asked_with_its_header() {
        let request = token_request(&Credentials::MetadataServer("10.0.0.1".into()), 0).unwrap();
        assert_eq!(
            request.url,
            "http://10.0.0.1/computeMetadata/v1/instance/service-accounts/default/token"
        );
        assert!(request.form.is_none());
        assert_eq!(request.headers[0].0, "metadata-flavor");
        assert_eq!(request.headers[0].1, "Google");
    }

    #[test]
    fn token_answers_are_read_and_refusals_named() {
        let (authorization, life) = read_token(
            200,
            br#"{"access_token":"ya29.a0","expires_in":3599,"token_type":"Bearer"}"#,
            0,
        )
        .unwrap();
        assert_eq!(authorization, "Bearer ya29.a0");
        assert!(authorization.is_sensitive());
        assert_eq!(life, Duration::from_secs(3599));
        assert_eq!(
            read_token(
                400,
                br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
                0
            ),
            Err(TokenError::Refused("invalid_grant".into()))
        );
        assert_eq!(
            read_token(403, b"<html>", 0),
            Err(TokenError::Refused("403".into()))
        );
        assert!(matches!(
            read_token(503, b"", 0),
            Err(TokenError::Failed(_))
        ));
        assert!(matches!(
            read_token(429, b"", 0),
            Err(TokenError::Failed(_))
        ));
        assert!(matches!(
            read_token(200, b"{}", 0),
            Err(TokenError::Failed(_))
        ));
    }
}
