//! Amazon Bedrock's runtime, each model through the API that serves it
//! ([`sluice_proto::providers::bedrock_api`], [`Bedrock`]): the open-weight
//! ones through its OpenAI-compatible API, Nova, Llama, Cohere and the like
//! through Converse; Claude through `InvokeModel` at
//! `https://bedrock-runtime.{region}.amazonaws.com/model/{model id}/invoke`
//! (`/invoke-with-response-stream` for a stream; the deployment's
//! `api_base` in place of the host when it names one, LiteLLM's
//! `aws_bedrock_runtime_endpoint`), the body Anthropic's Messages request
//! with `anthropic_version: bedrock-2023-05-31` in it and the model (and
//! whether it streams) only in the URL ([`crate::formats::anthropic::hosted`]),
//! a client's `anthropic-beta` flags as its `anthropic_beta` list; streams
//! come in AWS's event stream ([`crate::formats::bedrock`]). The model id is LiteLLM's
//! after `bedrock/` (`anthropic.claude-…-v1:0`, an inference profile
//! `us.anthropic.…`, or an ARN), its `invoke/` or `converse/` route prefix
//! dropped.
//!
//! Authentication: a Bedrock API key (`api_key`, else
//! `AWS_BEARER_TOKEN_BEDROCK`) as a bearer token; else every request signed
//! with AWS Signature Version 4 ([`super::sigv4`]) with the deployment's
//! (or the environment's) access key, secret and session token, or with
//! temporary keys fetched from the pod's or container's identity
//! ([`super::aws_credentials`]).
//! Bedrock counts no tokens the way `/v1/messages/count_tokens` asks: they
//! are estimated.

use std::time::SystemTime;

use hyper::Request;
use hyper::body::Bytes;
use hyper::header::{self, HeaderName};
use percent_encoding::utf8_percent_encode;

use sluice_proto::providers::BedrockApi;

use super::target::AwsKeys;
use super::{
    Address, Fetches, Provider, ProviderError, Speaks, Target, aws_credentials, secret_header,
    sigv4,
};
use crate::config::snapshot::ResolvedDeployment;
use crate::formats::anthropic::betas::Cloud;
use crate::formats::anthropic::hosted;
use crate::formats::{Format, TranslateError, converse};

/// The `anthropic_version` Bedrock takes.
pub const VERSION: &str = "bedrock-2023-05-31";
/// The service requests are signed for.
const SERVICE: &str = "bedrock";
const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");

/// Bedrock through one of its APIs, chosen per model
/// ([`sluice_proto::providers::bedrock_api`]):
/// - [`BedrockApi::Invoke`], Claude: the URLs and body above.
/// - [`BedrockApi::Chat`], the open-weight models (`openai.gpt-oss-120b-1:0`,
///   `deepseek.…`, `qwen.…`) through its OpenAI-compatible API,
///   `{runtime}/openai/v1/chat/completions`, the body OpenAI's with the
///   model id in it; chat completions only.
/// - [`BedrockApi::Converse`], Nova, Llama, Cohere, …:
///   `{runtime}/model/{id}/converse` (`/converse-stream`), a chat request
///   made Converse's ([`crate::formats::converse`]) and the answer made
///   chat's again, so chat, Messages and Responses clients reach them
///   through the chat translations.
///
/// All three authenticate alike.
pub struct Bedrock(pub BedrockApi);

/// The three, for [`super::backend`].
pub static INVOKE: Bedrock = Bedrock(BedrockApi::Invoke);
pub static CHAT: Bedrock = Bedrock(BedrockApi::Chat);
pub static CONVERSE: Bedrock = Bedrock(BedrockApi::Converse);

/// Where Bedrock serves OpenAI's API, under the runtime's URL.
const OPENAI_PATH: &str = "/openai/v1";

impl Provider for Bedrock {
    fn address(
        &self,
        deployment: &ResolvedDeployment,
        upstream_model: &str,
        format: Format,
        stream: bool,
    ) -> Result<Address, ProviderError> {
        let secrets = deployment.secrets();
        let base = endpoint(secrets.api_base.expose(), secrets.aws_region.expose())?;
        let url = match (self.0, stream) {
            (BedrockApi::Invoke, false) => model_url(&base, upstream_model, "invoke")?,
            (BedrockApi::Invoke, true) => {
                model_url(&base, upstream_model, "invoke-with-response-stream")?
            }
            (BedrockApi::Converse, false) => model_url(&base, upstream_model, "converse")?,
            (BedrockApi::Converse, true) => model_url(&base, upstream_model, "converse-stream")?,
            (BedrockApi::Chat, _) => format!("{base}{OPENAI_PATH}{}", format.path()),
        };
        Ok(Address {
            url,
            headers: authentication(deployment)?,
        })
    }

    fn speaks(&self) -> Speaks {
        match self.0 {
            BedrockApi::Invoke => Speaks::Anthropic,
            BedrockApi::Chat | BedrockApi::Converse => Speaks::OpenAi,
        }
    }

    fn serves(&self, format: Format) -> bool {
        self.0 == BedrockApi::Invoke || format == Format::ChatCompletions
    }

    fn streams_elsewhere(&self) -> bool {
        self.0 != BedrockApi::Chat
    }

    fn speaks_converse(&self) -> bool {
        self.0 == BedrockApi::Converse
    }

    fn counts_tokens(&self) -> bool {
        false
    }

    fn adapt_body(
        &self,
        body: Bytes,
        _format: Format,
        _upstream_model: &str,
        betas: &[&str],
    ) -> Result<Bytes, TranslateError> {
        match self.0 {
            BedrockApi::Invoke => {
                hosted::body(&body, VERSION, hosted::BEDROCK_DROPS, betas).map(Bytes::from)
            }
            BedrockApi::Converse => converse::request(&body).map(Bytes::from),
            BedrockApi::Chat => Ok(body),
        }
    }

    fn beta_cloud(&self) -> Option<Cloud> {
        Some(Cloud::Bedrock)
    }

    fn fetches(&self, deployment: &ResolvedDeployment) -> Fetches {
        if deployment.secrets().api_key.is_empty() && !has_keys(deployment) {
            Fetches::AwsKeys
        } else {
            Fetches::Nothing
        }
    }

    /// Signs the request (SigV4), unless the deployment sends an API key:
    /// with the `keys` fetched, else the deployment's (or the environment's).
    fn sign(
        &self,
        deployment: &ResolvedDeployment,
        target: &Target,
        request: &mut Request<Bytes>,
        keys: Option<&AwsKeys>,
    ) -> Result<(), ProviderError> {
        sign(deployment, target, request, keys)
    }
}

/// The headers every request of the deployment carries: a Bedrock API key
/// as a bearer token, or none when each request is signed (checked here to
/// have what to sign with).
fn authentication(
    deployment: &ResolvedDeployment,
) -> Result<Vec<(HeaderName, hyper::header::HeaderValue)>, ProviderError> {
    let secrets = deployment.secrets();
    if !secrets.api_key.is_empty() {
        return Ok(vec![(
            header::AUTHORIZATION,
            secret_header(&format!("Bearer {}", secrets.api_key.expose()), "api_key")?,
        )]);
    }
    if secrets.aws_region.is_empty() {
        return Err(ProviderError::Credentials(
            "no AWS region to sign for: set aws_region_name (or AWS_REGION on the data plane)"
                .into(),
        ));
    }
    if !has_keys(deployment)
        && aws_credentials::source(|name| std::env::var(name).ok(), "").is_none()
    {
        return Err(ProviderError::Credentials(
            "no AWS credentials: set aws_access_key_id and aws_secret_access_key (or \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY on the data plane), run it with a \
             pod's, container's or instance's identity (EKS Pod Identity, a service \
             account's role, an EC2 instance's role, which AWS_EC2_METADATA_DISABLED turns \
             off), or give an api_key holding a Bedrock API key"
                .into(),
        ));
    }
    Ok(Vec::new())
}

/// Signs `request` (SigV4), unless the deployment sends an API key: with
/// the `keys` fetched, else the deployment's (or the environment's).
fn sign(
    deployment: &ResolvedDeployment,
    target: &Target,
    request: &mut Request<Bytes>,
    keys: Option<&AwsKeys>,
) -> Result<(), ProviderError> {
    let secrets = deployment.secrets();
    if !secrets.api_key.is_empty() {
        // The bearer token is among the target's headers.
        return Ok(());
    }
    let credentials = match keys {
        Some(keys) => sigv4::Credentials {
            access_key_id: &keys.access_key_id,
            secret_access_key: &keys.secret_access_key,
            session_token: (!keys.session_token.is_empty()).then_some(&*keys.session_token),
        },
        None => {
            let token = secrets.aws_session_token.expose();
            sigv4::Credentials {
                access_key_id: secrets.aws_access_key_id.expose(),
                secret_access_key: secrets.aws_secret_access_key.expose(),
                session_token: (!token.is_empty()).then_some(token),
            }
        }
    };
    let host = target
        .host()
        .to_str()
        .map_err(|_| ProviderError::InvalidHeader("host"))?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let signed = sigv4::sign(
        &credentials,
        secrets.aws_region.expose(),
        SERVICE,
        &sigv4::Request {
            method: request.method().as_str(),
            uri: target.uri(),
            host,
            content_type,
            body: request.body(),
        },
        SystemTime::now(),
    )?;
    let headers = request.headers_mut();
    headers.insert(X_AMZ_DATE, signed.date);
    headers.insert(header::AUTHORIZATION, signed.authorization);
    if let Some(token) = signed.security_token {
        headers.insert(X_AMZ_SECURITY_TOKEN, token);
    }
    Ok(())
}

/// Whether the deployment signs with static keys (its own, or the
/// environment's `AWS_ACCESS_KEY_ID`).
fn has_keys(deployment: &ResolvedDeployment) -> bool {
    let secrets = deployment.secrets();
    !secrets.aws_access_key_id.is_empty() && !secrets.aws_secret_access_key.is_empty()
}

/// The runtime's URL: `api_base` when given, else the region's.
fn endpoint(api_base: &str, region: &str) -> Result<String, ProviderError> {
    let api_base = api_base.trim().trim_end_matches('/');
    if !api_base.is_empty() {
        return Ok(api_base.to_owned());
    }
    let region = region.trim();
    if region.is_empty() {
        return Err(ProviderError::MissingApiBase("bedrock"));
    }
    if !region
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ProviderError::InvalidUrl(
            "aws_region_name may hold only lower-case letters, digits and '-'".into(),
        ));
    }
    Ok(format!("https://bedrock-runtime.{region}.amazonaws.com"))
}

/// `{base}/model/{model}/{verb}`, the id percent-encoded as one path
/// segment (`:` and an ARN's `/` too).
fn model_url(base: &str, model: &str, verb: &str) -> Result<String, ProviderError> {
    if model.is_empty() {
        return Err(ProviderError::InvalidUrl(
            "the Bedrock model id is empty".into(),
        ));
    }
    Ok(format!(
        "{base}/model/{}/{verb}",
        utf8_percent_encode(model, sigv4::UNRESERVED)
    ))
}

/// The model id as Bedrock names it: LiteLLM's `invoke/` or `converse/`
/// route prefix dropped.
pub fn upstream_model(model: &str) -> String {
    model
        .strip_prefix("invoke/")
        .or_else(|| model.strip_prefix("converse/"))
        .unwrap_or(model)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_is_the_regions_unless_named() {
        assert_eq!(
            endpoint("", "us-east-1").unwrap(),
            "https://bedrock-runtime.us-east-1.amazonaws.com"
        );
        assert_eq!(
            endpoint(
                "https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com/",
                ""
            )
            .unwrap(),
            "https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com"
        );
        assert_eq!(
            endpoint("", ""),
            Err(ProviderError::MissingApiBase("bedrock"))
        );
        assert!(matches!(
            endpoint("", "evil.com/x"),
            Err(ProviderError::InvalidUrl(_))
        ));
    }

    #[test]
    fn model_ids_are_one_encoded_segment() {
        let base = "https://bedrock-runtime.us-east-1.amazonaws.com";
        assert_eq!(
            model_url(base, "anthropic.claude-3-5-sonnet-20240620-v1:0", "invoke").unwrap(),
            format!("{base}/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke")
        );
        assert_eq!(
            model_url(
                base,
                "us.anthropic.claude-sonnet-4-20250514-v1:0",
                "invoke-with-response-stream"
            )
            .unwrap(),
            format!(
                "{base}/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/invoke-with-response-stream"
            )
        );
        assert_eq!(
            model_url(
                base,
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc",
                "invoke"
            )
            .unwrap(),
            format!(
                "{base}/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc/invoke"
            )
        );
        assert!(model_url(base, "", "invoke").is_err());
        assert_eq!(
            upstream_model("invoke/anthropic.claude-3-haiku-20240307-v1:0"),
            "anthropic.claude-3-haiku-20240307-v1:0"
        );
        assert_eq!(upstream_model("converse/us.anthropic.x"), "us.anthropic.x");
        assert_eq!(upstream_model("anthropic.x"), "anthropic.x");
    }

    #[test]
    fn claudes_body_carries_bedrocks_version_and_not_the_model() {
        let body =
            Bytes::from_static(br#"{"model":"c","max_tokens":5,"messages":[],"stream":true}"#);
        let adapted = INVOKE
            .adapt_body(body, Format::Messages, "m", &["context-1m-2025-08-07"])
            .unwrap();
        assert_eq!(
            &adapted[..],
            br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[],"anthropic_beta":["context-1m-2025-08-07"]}"#
        );
    }
}
