//! Providers (DESIGN §4): how a request for one deployment reaches its
//! upstream. Chosen by the deployment's `provider` prefix through
//! [`sluice_proto::providers`]'s table:
//!
//! - [`openai`]: OpenAI and every OpenAI-compatible prefix (`groq`,
//!   `together_ai`, …): `{api_base}/chat/completions`, `Authorization: Bearer`.
//! - [`gemini`]: Gemini's OpenAI-compatible API, as OpenAI's but for the
//!   schemas of a request's tools, made the subset Gemini takes.
//! - [`azure`], Azure OpenAI: `{api_base}/openai/deployments/{model}/…?api-version=…`,
//!   or its v1 API's `{api_base}/openai/v1/…`; `api-key` header, else an
//!   Entra ID token for the data plane's identity ([`entra`]).
//! - [`anthropic`]: Anthropic's Messages API: `{api_base}/v1/messages`,
//!   `x-api-key`, `anthropic-version`.
//! - [`vertex`], Vertex AI: its OpenAI-compatible endpoint, or Claude
//!   through Anthropic's API there, with a Google OAuth token fetched from
//!   the deployment's credentials (kept with its targets,
//!   [`target::TokenCell`]).
//! - [`bedrock`], Amazon Bedrock: Claude through `InvokeModel`, its
//!   open-weight models through its OpenAI-compatible API, the others
//!   through Converse ([`crate::formats::converse`]), each request
//!   signed with AWS Signature Version 4 ([`sigv4`]) or a Bedrock
//!   API key as a bearer token; temporary keys from a pod's or a
//!   container's identity ([`aws_credentials`]).
//! - [`mock`]: answered in-process with canned OpenAI-shaped bodies; no
//!   network. Its knobs are in its module doc.
//!
//! Which API a backend [`Speaks`] decides the [`Exchange`]: the body passes
//! through when the client speaks it too, and is translated otherwise
//! ([`crate::formats::anthropic`]).
//!
//! An HTTP provider is a [`Provider`]: a pure function from (deployment,
//! upstream model, upstream format) to the URL and headers to send
//! ([`Address`]), made once into a [`Target`] ([`target`]: URL parsed,
//! `Host`, proxy decided) and kept with the deployment. Sending, timeouts
//! and relaying are [`crate::forward`]'s, the same for all.

pub mod anthropic;
pub mod aws_credentials;
pub mod azure;
pub mod bedrock;
pub mod entra;
pub mod gemini;
pub mod mock;
pub mod openai;
pub mod sigv4;
pub mod target;
pub mod vertex;

use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use sluice_proto::admin::v1::Deployment;
use sluice_proto::providers::{self, BedrockApi, Wire};

use crate::config::snapshot::ResolvedDeployment;
use crate::formats::anthropic::betas::Cloud;
use crate::formats::{Format, TranslateError};
pub use target::{ProviderError, Target, Targets};

/// Where and how to send one request upstream, as the provider writes it;
/// made into a [`Target`] once per deployment and upstream format.
#[derive(Debug)]
pub struct Address {
    pub url: String,
    /// Authentication headers; values are provider secrets, marked sensitive.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// An HTTP provider.
pub trait Provider: Send + Sync {
    /// `stream`: the request asks for a stream, which matters only to a
    /// provider that [`Provider::streams_elsewhere`].
    fn address(
        &self,
        deployment: &ResolvedDeployment,
        upstream_model: &str,
        format: Format,
        stream: bool,
    ) -> Result<Address, ProviderError>;

    /// Whether a streamed request goes to another URL than a whole one
    /// (Vertex AI's `:streamRawPredict`): its targets are kept apart.
    fn streams_elsewhere(&self) -> bool {
        false
    }

    /// Whether it takes requests in the upstream `format` at all (Bedrock's
    /// OpenAI-compatible API: chat completions only); others are refused
    /// before sending.
    fn serves(&self, _format: Format) -> bool {
        true
    }

    /// Whether it takes chat completions in Bedrock's Converse shape and
    /// answers in it: the body is made Converse's last
    /// ([`Provider::adapt_body`]) and the answer chat's first, so every
    /// exchange with chat completions reaches it.
    fn speaks_converse(&self) -> bool {
        false
    }

    /// Whether it answers `/v1/messages/count_tokens`; when not, the
    /// tokens are estimated (Bedrock).
    fn counts_tokens(&self) -> bool {
        true
    }

    /// Signs `request` to `target` just before it is sent, when the provider
    /// signs each request (Bedrock's SigV4): its headers and body are final.
    /// `keys`: the ones fetched, when it [`Fetches::AwsKeys`].
    fn sign(
        &self,
        _deployment: &ResolvedDeployment,
        _target: &Target,
        _request: &mut hyper::Request<Bytes>,
        _keys: Option<&target::AwsKeys>,
    ) -> Result<(), ProviderError> {
        Ok(())
    }

    /// The body as the provider takes it, made from the one in its API's
    /// `format` for `upstream_model` (Claude on Vertex AI: the model out of
    /// it, the version in; Gemini: its tools' schemas made Gemini's).
    /// `betas`: the client's `anthropic-beta` flags for the body, as the
    /// provider's [`Provider::beta_cloud`] takes them.
    fn adapt_body(
        &self,
        body: Bytes,
        _format: Format,
        _upstream_model: &str,
        _betas: &[&str],
    ) -> Result<Bytes, TranslateError> {
        Ok(body)
    }

    /// The cloud whose rules a client's `anthropic-beta` flags are sent by
    /// ([`crate::formats::anthropic::betas`]); `None` passes the header on
    /// as the client sent it (Anthropic's API ignores flags it does not
    /// know).
    fn beta_cloud(&self) -> Option<Cloud> {
        None
    }

    /// The API whose bodies the provider takes.
    fn speaks(&self) -> Speaks {
        Speaks::OpenAi
    }

    /// What it fetches to authenticate requests to `deployment`, rather
    /// than headers made once ([`target::Fetched`]).
    fn fetches(&self, _deployment: &ResolvedDeployment) -> Fetches {
        Fetches::Nothing
    }
}

/// What a provider fetches to authenticate a deployment's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetches {
    Nothing,
    /// A bearer token (Vertex AI's Google token).
    Token,
    /// A Microsoft Entra ID bearer token for the data plane's identity ([`entra`]):
    /// an `azure` deployment without `api_key`.
    EntraToken,
    /// Temporary AWS keys to sign with (Bedrock in a pod: EKS Pod Identity,
    /// a web identity's role).
    AwsKeys,
}

/// The path a deployment's `supported_endpoints` names the Responses API by.
pub const RESPONSES_ENDPOINT: &str = "/v1/responses";

/// The path a deployment's `supported_endpoints` names moderations by.
pub const MODERATIONS_ENDPOINT: &str = "/v1/moderations";

/// The path a deployment's `supported_endpoints` names image generation by.
pub const IMAGES_ENDPOINT: &str = "/v1/images/generations";

/// Whether `deployment`'s `supported_endpoints` lists `endpoint`; `None`
/// when it lists none (the provider's default then holds).
fn lists_endpoint(deployment: &Deployment, endpoint: &str) -> Option<bool> {
    (!deployment.supported_endpoints.is_empty()).then(|| {
        deployment
            .supported_endpoints
            .iter()
            .any(|e| e.trim_end_matches('/') == endpoint)
    })
}

/// The API whose bodies a backend takes and answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    /// OpenAI's (chat completions, completions, embeddings).
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
}

/// What serves a deployment.
pub enum Backend {
    Http(&'static dyn Provider),
    Mock,
}

impl Backend {
    /// Whether it takes requests in the upstream `format` ([`Provider::serves`]).
    pub fn serves(&self, format: Format) -> bool {
        match self {
            Backend::Http(provider) => provider.serves(format),
            Backend::Mock => true,
        }
    }

    /// Whether it answers a token count itself ([`Provider::counts_tokens`]).
    pub fn counts_tokens(&self) -> bool {
        match self {
            Backend::Http(provider) => provider.counts_tokens(),
            Backend::Mock => true,
        }
    }

    pub fn speaks(&self) -> Speaks {
        match self {
            Backend::Http(provider) => provider.speaks(),
            Backend::Mock => Speaks::OpenAi,
        }
    }

    /// Whether `deployment`'s upstream takes `/v1/responses` requests as
    /// they are: its `supported_endpoints` when it lists any, else the
    /// provider's default: OpenAI's and Azure's do, the other
    /// OpenAI-compatible providers (which mostly serve chat completions
    /// only) and the mock do not. Anthropic's never does.
    pub fn serves_responses(&self, deployment: &Deployment) -> bool {
        if self.speaks() != Speaks::OpenAi {
            return false;
        }
        lists_endpoint(deployment, RESPONSES_ENDPOINT)
            .unwrap_or_else(|| matches!(provider_prefix(deployment), "openai" | "azure"))
    }
}

/// How a client's request reaches a backend, and its answer comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    /// Client and upstream speak the same API: the body goes through byte
    /// for byte but `model`, and the answer comes back as sent.
    Same(Format),
    /// An OpenAI chat client, an Anthropic upstream
    /// ([`crate::formats::anthropic::from_chat`], `to_chat`).
    ChatToMessages,
    /// An Anthropic client, an OpenAI-compatible upstream
    /// ([`crate::formats::anthropic::from_messages`], `to_messages`).
    MessagesToChat,
    /// `count_tokens` for a deployment that is not Anthropic's: answered by
    /// the data plane with an estimate, nothing sent.
    EstimateTokens,
    /// A Responses API client, an upstream serving only chat completions
    /// ([`crate::formats::responses::from_responses`], `to_responses`).
    ResponsesToChat,
    /// A Responses API client, an Anthropic upstream: the Responses request
    /// is made a chat request and that a Messages request; the answer comes
    /// back the same way.
    ResponsesToMessages,
}

impl Exchange {
    /// The format the upstream is sent.
    pub fn upstream_format(self) -> Format {
        match self {
            Exchange::Same(format) => format,
            Exchange::ChatToMessages | Exchange::ResponsesToMessages => Format::Messages,
            Exchange::MessagesToChat | Exchange::EstimateTokens | Exchange::ResponsesToChat => {
                Format::ChatCompletions
            }
        }
    }
}

/// How a request in the client's `format` reaches a backend that `speaks`
/// an API (and, for OpenAI's, serves the Responses API itself when
/// `responses`); `None` when the backend does not serve that operation at
/// all (Anthropic has no completions or embeddings).
pub fn exchange(format: Format, speaks: Speaks, responses: bool) -> Option<Exchange> {
    use Format::*;
    Some(match (speaks, format) {
        (
            Speaks::OpenAi,
            ChatCompletions | Completions | Embeddings | Moderations | ImageGenerations,
        ) => Exchange::Same(format),
        (Speaks::OpenAi, Responses | ResponsesCompact) if responses => Exchange::Same(format),
        (Speaks::OpenAi, Responses) => Exchange::ResponsesToChat,
        // Compaction is the Responses API's own (its item is encrypted by
        // the upstream): nothing translates to it.
        (_, ResponsesCompact) => return None,
        (Speaks::OpenAi, Messages) => Exchange::MessagesToChat,
        (Speaks::OpenAi, CountTokens) => Exchange::EstimateTokens,
        (Speaks::Anthropic, Messages | CountTokens) => Exchange::Same(format),
        (Speaks::Anthropic, ChatCompletions) => Exchange::ChatToMessages,
        (Speaks::Anthropic, Responses) => Exchange::ResponsesToMessages,
        (Speaks::Anthropic, Completions | Embeddings | Moderations | ImageGenerations) => {
            return None;
        }
    })
}

/// Whether `deployment` takes `/v1/responses` requests as they are
/// ([`Backend::serves_responses`]); `false` for an unknown provider.
pub fn serves_responses(deployment: &Deployment) -> bool {
    backend(deployment).is_ok_and(|b| b.serves_responses(deployment))
}

/// Whether `deployment`'s provider serves the legacy `/completions`
/// (Gemini's OpenAI-compatible API and Anthropic's do not); `false` for an
/// unknown provider.
pub fn serves_legacy_completions(deployment: &Deployment) -> bool {
    providers::lookup(provider_prefix(deployment)).is_some_and(|p| p.legacy_completions)
}

/// Whether `deployment` serves `/moderations`: its `supported_endpoints`
/// when it lists any (an OpenAI-compatible server that has them), else its
/// provider's default (OpenAI's, Mistral's and the mock's do). Only an
/// OpenAI-compatible API can: nothing translates a moderation.
pub fn serves_moderations(deployment: &Deployment) -> bool {
    let Some(provider) = providers::lookup(provider_prefix(deployment)) else {
        return false;
    };
    matches!(provider.wire, Wire::OpenAi | Wire::Mock)
        && lists_endpoint(deployment, MODERATIONS_ENDPOINT).unwrap_or(provider.moderations)
}

/// Whether `deployment` serves `/images/generations`: its
/// `supported_endpoints` when it lists any, else its provider's default
/// (OpenAI's, Azure's and the mock's do). Only OpenAI's API and Azure's
/// can: nothing translates an image generation.
pub fn serves_images(deployment: &Deployment) -> bool {
    let Some(provider) = providers::lookup(provider_prefix(deployment)) else {
        return false;
    };
    matches!(provider.wire, Wire::OpenAi | Wire::Azure | Wire::Mock)
        && lists_endpoint(deployment, IMAGES_ENDPOINT).unwrap_or(provider.images)
}

/// Whether `deployment` takes requests in `format` at all: the legacy
/// completions, moderations and image generations only where it serves
/// them; every other format wherever a backend speaks or translates it.
pub fn takes(deployment: &Deployment, format: Format) -> bool {
    match format {
        Format::Completions => serves_legacy_completions(deployment),
        Format::Moderations => serves_moderations(deployment),
        Format::ImageGenerations => serves_images(deployment),
        _ => true,
    }
}

/// The backend for `deployment`, by its provider prefix (`openai` when it
/// names none, as LiteLLM does).
pub fn backend(deployment: &Deployment) -> Result<Backend, ProviderError> {
    let prefix = provider_prefix(deployment);
    let provider =
        providers::lookup(prefix).ok_or_else(|| ProviderError::UnknownProvider(prefix.into()))?;
    Ok(match provider.wire {
        Wire::OpenAi if prefix == "gemini" => Backend::Http(&gemini::Gemini),
        Wire::OpenAi => Backend::Http(&openai::OpenAi),
        Wire::Azure => Backend::Http(&azure::Azure),
        Wire::Anthropic => Backend::Http(&anthropic::Anthropic),
        Wire::Mock => Backend::Mock,
        Wire::Vertex if vertex::is_claude(model_of(deployment)) => {
            Backend::Http(&vertex::VertexClaude)
        }
        Wire::Vertex => Backend::Http(&vertex::Vertex),
        Wire::Bedrock => Backend::Http(match providers::bedrock_api(model_of(deployment)) {
            BedrockApi::Invoke => &bedrock::INVOKE,
            BedrockApi::Converse => &bedrock::CONVERSE,
            BedrockApi::Chat => &bedrock::CHAT,
        }),
    })
}

/// The model a deployment names, without its provider prefix.
fn model_of(d: &Deployment) -> &str {
    if d.provider.is_empty() {
        providers::split_model(&d.model).1
    } else {
        &d.model
    }
}

/// The provider prefix: `provider`, else the prefix of `model` as LiteLLM
/// writes it (`openai/gpt-4o`; [`providers::split_model`], the control
/// plane's rule too, which stores deployments already split).
fn provider_prefix(d: &Deployment) -> &str {
    if !d.provider.is_empty() {
        return &d.provider;
    }
    providers::split_model(&d.model).0
}

/// The model name the upstream is asked for. A deployment naming a concrete
/// model sends that; a wildcard deployment (`openai/*` → model `*`) sends the
/// requested name without the provider prefix (`openai/gpt-4o` → `gpt-4o`).
pub fn upstream_model(d: &Deployment, requested: &str) -> String {
    let prefix = provider_prefix(d);
    let model = if d.provider.is_empty() {
        providers::split_model(&d.model).1
    } else {
        &d.model
    };
    let model = if model.contains('*') || model.is_empty() {
        requested
            .strip_prefix(prefix)
            .and_then(|m| m.strip_prefix('/'))
            .unwrap_or(requested)
    } else {
        model
    };
    match prefix {
        "vertex_ai" => vertex::upstream_model(model),
        "bedrock" => bedrock::upstream_model(model),
        _ => model.to_owned(),
    }
}

/// The `api_base` to use: the deployment's, else the provider's default,
/// without a trailing `/` so paths can be appended.
fn api_base(deployment: &ResolvedDeployment) -> Result<String, ProviderError> {
    let configured = deployment.secrets().api_base.expose().trim();
    let base = if configured.is_empty() {
        let prefix = provider_prefix(deployment.deployment());
        let provider = providers::lookup(prefix)
            .ok_or_else(|| ProviderError::UnknownProvider(prefix.into()))?;
        provider
            .default_api_base
            .filter(|b| !b.is_empty())
            .ok_or(ProviderError::MissingApiBase(provider.prefix))?
    } else {
        configured
    };
    Ok(base.trim_end_matches('/').to_owned())
}

/// A header carrying a secret: marked sensitive so it is never logged or
/// HPACK-indexed.
fn secret_header(value: &str, field: &'static str) -> Result<HeaderValue, ProviderError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| ProviderError::InvalidHeader(field))?;
    v.set_sensitive(true);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(provider: &str, model: &str) -> Deployment {
        Deployment {
            provider: provider.into(),
            model: model.into(),
            ..Default::default()
        }
    }

    #[test]
    fn upstream_models() {
        assert_eq!(upstream_model(&d("openai", "gpt-4o"), "fast"), "gpt-4o");
        assert_eq!(upstream_model(&d("", "openai/gpt-4o"), "fast"), "gpt-4o");
        assert_eq!(upstream_model(&d("openai", "*"), "openai/gpt-4o"), "gpt-4o");
        assert_eq!(upstream_model(&d("groq", "*"), "llama-3"), "llama-3");
        assert_eq!(upstream_model(&d("", "gpt-4o"), "x"), "gpt-4o");
        assert_eq!(
            upstream_model(&d("vertex_ai", "gemini-2.5-pro"), "x"),
            "google/gemini-2.5-pro"
        );
        assert_eq!(
            upstream_model(&d("vertex_ai", "*"), "vertex_ai/gemini-2.5-flash"),
            "google/gemini-2.5-flash"
        );
    }

    #[test]
    fn exchanges_by_client_format_and_upstream_api() {
        use Format::*;
        assert_eq!(
            exchange(ChatCompletions, Speaks::OpenAi, false),
            Some(Exchange::Same(ChatCompletions))
        );
        assert_eq!(
            exchange(ChatCompletions, Speaks::Anthropic, false),
            Some(Exchange::ChatToMessages)
        );
        assert_eq!(
            exchange(Messages, Speaks::Anthropic, false),
            Some(Exchange::Same(Messages))
        );
        assert_eq!(
            exchange(CountTokens, Speaks::Anthropic, false),
            Some(Exchange::Same(CountTokens))
        );
        assert_eq!(
            exchange(Messages, Speaks::OpenAi, false),
            Some(Exchange::MessagesToChat)
        );
        assert_eq!(
            exchange(CountTokens, Speaks::OpenAi, false),
            Some(Exchange::EstimateTokens)
        );
        assert_eq!(exchange(Embeddings, Speaks::Anthropic, false), None);
        assert_eq!(exchange(Completions, Speaks::Anthropic, false), None);
        assert_eq!(
            exchange(Responses, Speaks::OpenAi, true),
            Some(Exchange::Same(Responses))
        );
        assert_eq!(
            exchange(Responses, Speaks::OpenAi, false),
            Some(Exchange::ResponsesToChat)
        );
        assert_eq!(
            exchange(Responses, Speaks::Anthropic, true),
            Some(Exchange::ResponsesToMessages)
        );
        assert_eq!(Exchange::ResponsesToMessages.upstream_format(), Messages);
        // A compaction only where the Responses API is served.
        assert_eq!(
            exchange(ResponsesCompact, Speaks::OpenAi, true),
            Some(Exchange::Same(ResponsesCompact))
        );
        assert_eq!(exchange(ResponsesCompact, Speaks::OpenAi, false), None);
        assert_eq!(exchange(ResponsesCompact, Speaks::Anthropic, true), None);
        assert_eq!(Exchange::ResponsesToChat.upstream_format(), ChatCompletions);
        assert_eq!(Exchange::ChatToMessages.upstream_format(), Messages);
        assert_eq!(Exchange::MessagesToChat.upstream_format(), ChatCompletions);
    }

    #[test]
    fn responses_are_served_by_openai_and_azure_unless_a_deployment_says() {
        let serves = |provider: &str, endpoints: &[&str]| {
            let mut deployment = d(provider, "x");
            deployment.supported_endpoints = endpoints.iter().map(|e| e.to_string()).collect();
            backend(&deployment)
                .expect("a known provider")
                .serves_responses(&deployment)
        };
        assert!(serves("openai", &[]));
        assert!(serves("azure", &[]));
        assert!(!serves("hosted_vllm", &[]));
        assert!(!serves("mock", &[]));
        assert!(!serves("anthropic", &[]));
        assert!(!serves("openai", &["/v1/chat/completions"]));
        assert!(serves(
            "hosted_vllm",
            &["/v1/chat/completions", "/v1/responses"]
        ));
        assert!(!serves("anthropic", &["/v1/responses"]));
    }

    #[test]
    fn moderations_where_the_provider_serves_them_unless_a_deployment_says() {
        let serves = |provider: &str, model: &str, endpoints: &[&str]| {
            let mut deployment = d(provider, model);
            deployment.supported_endpoints = endpoints.iter().map(|e| e.to_string()).collect();
            serves_moderations(&deployment)
        };
        assert!(serves("openai", "omni-moderation-latest", &[]));
        assert!(serves("", "mistral/mistral-moderation-latest", &[]));
        assert!(serves("mock", "x", &[]));
        assert!(!serves("groq", "x", &[]));
        assert!(!serves("azure", "x", &[]));
        assert!(serves("hosted_vllm", "x", &["/v1/moderations/"]));
        assert!(!serves("openai", "x", &["/v1/chat/completions"]));
        // Nothing translates a moderation to another API.
        assert!(!serves("anthropic", "claude", &["/v1/moderations"]));
        assert!(!serves(
            "bedrock",
            "openai.gpt-oss-20b-1:0",
            &["/v1/moderations"]
        ));
        assert!(!serves("nope", "x", &[]));
        assert_eq!(
            exchange(Format::Moderations, Speaks::OpenAi, false),
            Some(Exchange::Same(Format::Moderations))
        );
        assert_eq!(exchange(Format::Moderations, Speaks::Anthropic, true), None);
    }

    #[test]
    fn images_where_the_provider_serves_them_unless_a_deployment_says() {
        let serves = |provider: &str, endpoints: &[&str]| {
            let mut deployment = d(provider, "gpt-image-1");
            deployment.supported_endpoints = endpoints.iter().map(|e| e.to_string()).collect();
            serves_images(&deployment)
        };
        assert!(serves("openai", &[]));
        assert!(serves("azure", &[]));
        assert!(serves("mock", &[]));
        assert!(!serves("groq", &[]));
        assert!(!serves("gemini", &[]));
        assert!(serves("xai", &["/v1/images/generations"]));
        assert!(!serves("openai", &["/v1/chat/completions"]));
        assert!(!serves("anthropic", &["/v1/images/generations"]));
        assert!(!serves("vertex_ai", &["/v1/images/generations"]));
        assert_eq!(
            exchange(Format::ImageGenerations, Speaks::OpenAi, false),
            Some(Exchange::Same(Format::ImageGenerations))
        );
        assert_eq!(
            exchange(Format::ImageGenerations, Speaks::Anthropic, false),
            None
        );
    }

    #[test]
    fn legacy_completions_where_the_provider_serves_them() {
        assert!(serves_legacy_completions(&d(
            "openai",
            "gpt-3.5-turbo-instruct"
        )));
        assert!(serves_legacy_completions(&d("", "hosted_vllm/x")));
        assert!(serves_legacy_completions(&d("mock", "x")));
        assert!(!serves_legacy_completions(&d("gemini", "gemini-2.5-flash")));
        assert!(!serves_legacy_completions(&d(
            "",
            "gemini/gemini-2.5-flash"
        )));
        assert!(!serves_legacy_completions(&d("anthropic", "claude")));
        assert!(!serves_legacy_completions(&d("nope", "x")));
    }

    #[test]
    fn backends_by_prefix() {
        assert!(matches!(backend(&d("mock", "x")), Ok(Backend::Mock)));
        assert!(matches!(backend(&d("", "mock/x")), Ok(Backend::Mock)));
        assert!(matches!(backend(&d("groq", "x")), Ok(Backend::Http(_))));
        assert_eq!(
            backend(&d("nope", "x")).err(),
            Some(ProviderError::UnknownProvider("nope".into()))
        );
        // Split as the control plane splits (`sluice_proto::providers::split_model`):
        // an unknown prefix in `model` is refused, not sent to OpenAI.
        assert_eq!(
            backend(&d("", "nope/x")).err(),
            Some(ProviderError::UnknownProvider("nope".into()))
        );
    }
}
