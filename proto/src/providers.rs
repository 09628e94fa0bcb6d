//! The provider prefixes Sluice knows (DESIGN §4), shared by the control plane
//! (which refuses unknown ones at create/import) and the data plane (which
//! forwards to them), and the one way a LiteLLM model string such as
//! `openai/gpt-4o` is split into provider and model ([`split_model`]).

/// How a provider is spoken to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI's API at `api_base` with `Authorization: Bearer`.
    OpenAi,
    /// Azure OpenAI: deployment URL, `api-version` query, `api-key` header.
    Azure,
    /// Anthropic's Messages API (`{api_base}/v1/messages`, `x-api-key`,
    /// `anthropic-version`): translated to and from OpenAI's shapes.
    Anthropic,
    /// Answered locally with a canned completion; no upstream.
    Mock,
    /// Vertex AI at a location's URL
    /// (`…/projects/{project}/locations/{location}`): its OpenAI-compatible
    /// endpoint, or Anthropic's API for Claude, with a Google OAuth access
    /// token made from the deployment's credentials.
    Vertex,
    /// Amazon Bedrock's runtime (`InvokeModel`) for Claude: Anthropic's
    /// Messages API with the model in the URL, signed with AWS Signature
    /// Version 4 (or a Bedrock API key), streamed in AWS's event stream.
    Bedrock,
}

/// A known provider prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Provider {
    pub prefix: &'static str,
    pub wire: Wire,
    /// Used when a deployment gives no `api_base`; `None` means one is required.
    pub default_api_base: Option<&'static str>,
    /// Whether it serves the legacy `/completions` (an OpenAI-compatible
    /// API that does not would answer 404, and a 404 cools the deployment
    /// for every other request too: refused before sending instead).
    pub legacy_completions: bool,
    /// Whether it serves `/moderations` (OpenAI's, and Mistral's of the
    /// same shape); a deployment's `supported_endpoints` may say otherwise.
    pub moderations: bool,
    /// Whether it serves `/images/generations` (OpenAI's and Azure's); a
    /// deployment's `supported_endpoints` may say otherwise.
    pub images: bool,
}

const fn openai_compatible(prefix: &'static str, base: &'static str) -> Provider {
    Provider {
        prefix,
        wire: Wire::OpenAi,
        default_api_base: Some(base),
        legacy_completions: true,
        moderations: false,
        images: false,
    }
}

/// `provider`, serving `/moderations` too.
const fn moderating(provider: Provider) -> Provider {
    Provider {
        moderations: true,
        ..provider
    }
}

/// `provider`, serving `/images/generations` too.
const fn imaging(provider: Provider) -> Provider {
    Provider {
        images: true,
        ..provider
    }
}

/// Every provider prefix Sluice accepts, sorted by prefix.
pub const PROVIDERS: &[Provider] = &[
    Provider {
        prefix: "anthropic",
        wire: Wire::Anthropic,
        default_api_base: Some("https://api.anthropic.com"),
        legacy_completions: false,
        moderations: false,
        images: false,
    },
    Provider {
        prefix: "azure",
        wire: Wire::Azure,
        default_api_base: None,
        legacy_completions: true,
        moderations: false,
        images: true,
    },
    // Its endpoint is made from `aws_region_name`.
    Provider {
        prefix: "bedrock",
        wire: Wire::Bedrock,
        default_api_base: Some(""),
        legacy_completions: false,
        moderations: false,
        images: false,
    },
    openai_compatible("deepinfra", "https://api.deepinfra.com/v1/openai"),
    openai_compatible("deepseek", "https://api.deepseek.com/v1"),
    openai_compatible("fireworks_ai", "https://api.fireworks.ai/inference/v1"),
    // Google's OpenAI-compatible endpoint for the Gemini API (chat
    // completions, embeddings; not the legacy completions), which takes the
    // Gemini API key as a bearer token. Through it the translations Sluice
    // already has (Anthropic's Messages, the Responses API) reach Gemini too.
    Provider {
        prefix: "gemini",
        wire: Wire::OpenAi,
        default_api_base: Some("https://generativelanguage.googleapis.com/v1beta/openai"),
        legacy_completions: false,
        moderations: false,
        images: false,
    },
    openai_compatible("groq", "https://api.groq.com/openai/v1"),
    openai_compatible("hosted_vllm", "http://localhost:8000/v1"),
    openai_compatible("lm_studio", "http://localhost:1234/v1"),
    moderating(openai_compatible("mistral", "https://api.mistral.ai/v1")),
    Provider {
        prefix: "mock",
        wire: Wire::Mock,
        default_api_base: Some(""),
        legacy_completions: true,
        moderations: true,
        images: true,
    },
    openai_compatible("ollama", "http://localhost:11434/v1"),
    imaging(moderating(openai_compatible(
        "openai",
        "https://api.openai.com/v1",
    ))),
    openai_compatible("openrouter", "https://openrouter.ai/api/v1"),
    openai_compatible("perplexity", "https://api.perplexity.ai"),
    openai_compatible("together_ai", "https://api.together.xyz/v1"),
    // Its endpoint is made from `vertex_project` and `vertex_location`.
    Provider {
        prefix: "vertex_ai",
        wire: Wire::Vertex,
        default_api_base: Some(""),
        legacy_completions: false,
        moderations: false,
        images: false,
    },
    openai_compatible("xai", "https://api.x.ai/v1"),
];

/// Which of Bedrock's APIs serves a model (DESIGN §4): the control plane
/// validates by it, the data plane sends by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BedrockApi {
    /// Claude, through `InvokeModel` with Anthropic's Messages body (an
    /// ARN, an inference profile of one's own, is taken for Claude's).
    Invoke,
    /// The families Bedrock serves only through Converse (Nova, Llama,
    /// Cohere, AI21, Writer), or a model LiteLLM names `converse/…`.
    Converse,
    /// The open-weight models, through its OpenAI-compatible API.
    Chat,
}

/// The prefixes of Bedrock's cross-region inference profiles
/// (`us.anthropic.claude-…`).
const CROSS_REGION_PROFILES: &[&str] = &["us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"];

/// The model families Bedrock serves through Converse, not its
/// OpenAI-compatible API.
const CONVERSE_FAMILIES: &[&str] = &["amazon", "meta", "cohere", "ai21", "writer"];

/// The API Bedrock serves `model` (a Bedrock model id, LiteLLM's route
/// prefix `invoke/` or `converse/` allowed) through.
pub fn bedrock_api(model: &str) -> BedrockApi {
    if let Some(rest) = model.strip_prefix("converse/") {
        return if rest.contains("anthropic.claude") {
            BedrockApi::Invoke
        } else {
            BedrockApi::Converse
        };
    }
    let model = model.strip_prefix("invoke/").unwrap_or(model);
    if model.contains("anthropic.claude") || model.starts_with("arn:") {
        return BedrockApi::Invoke;
    }
    let family = model
        .split_once('.')
        .filter(|(first, _)| CROSS_REGION_PROFILES.contains(first))
        .map_or(model, |(_, rest)| rest);
    let vendor = family.split('.').next().unwrap_or(family);
    if family.contains('.') && CONVERSE_FAMILIES.contains(&vendor) {
        BedrockApi::Converse
    } else {
        BedrockApi::Chat
    }
}

/// The provider a model string without a prefix means, as in LiteLLM.
pub const DEFAULT_PREFIX: &str = "openai";

/// Splits a LiteLLM model string into its provider prefix and the model the
/// provider is asked for, at the first `/`: `openai/gpt-4o` is (`openai`,
/// `gpt-4o`), `hosted_vllm/meta-llama/Llama-3` is (`hosted_vllm`,
/// `meta-llama/Llama-3`), and a bare `gpt-4o` is ([`DEFAULT_PREFIX`],
/// `gpt-4o`). Whether the prefix is known is [`lookup`]'s to say.
pub fn split_model(model: &str) -> (&str, &str) {
    model.split_once('/').unwrap_or((DEFAULT_PREFIX, model))
}

/// The provider named by `prefix`, if Sluice knows it.
pub fn lookup(prefix: &str) -> Option<&'static Provider> {
    PROVIDERS
        .binary_search_by(|p| p.prefix.cmp(prefix))
        .ok()
        .map(|i| &PROVIDERS[i])
}

/// The known prefixes, comma-separated, for error messages.
pub fn known_prefixes() -> String {
    PROVIDERS
        .iter()
        .map(|p| p.prefix)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bedrock_models_go_to_the_api_that_serves_them() {
        for (model, api) in [
            (
                "anthropic.claude-3-5-sonnet-20240620-v1:0",
                BedrockApi::Invoke,
            ),
            (
                "us.anthropic.claude-sonnet-4-20250514-v1:0",
                BedrockApi::Invoke,
            ),
            (
                "invoke/anthropic.claude-3-haiku-20240307-v1:0",
                BedrockApi::Invoke,
            ),
            (
                "converse/anthropic.claude-3-haiku-20240307-v1:0",
                BedrockApi::Invoke,
            ),
            (
                "arn:aws:bedrock:us-east-1:1:application-inference-profile/x",
                BedrockApi::Invoke,
            ),
            ("us.amazon.nova-pro-v1:0", BedrockApi::Converse),
            ("meta.llama3-3-70b-instruct-v1:0", BedrockApi::Converse),
            ("cohere.command-r-plus-v1:0", BedrockApi::Converse),
            ("converse/openai.gpt-oss-120b-1:0", BedrockApi::Converse),
            ("openai.gpt-oss-120b-1:0", BedrockApi::Chat),
            ("us.deepseek.r1-v1:0", BedrockApi::Chat),
            ("qwen.qwen3-32b-v1:0", BedrockApi::Chat),
        ] {
            assert_eq!(bedrock_api(model), api, "{model}");
        }
    }

    #[test]
    fn providers_are_sorted_so_lookup_finds_each() {
        for p in PROVIDERS {
            assert_eq!(lookup(p.prefix), Some(p));
        }
        assert_eq!(lookup("anthropic_typo"), None);
        assert!(lookup(DEFAULT_PREFIX).is_some());
    }

    #[test]
    fn model_strings_split_at_the_first_slash() {
        assert_eq!(split_model("openai/gpt-4o"), ("openai", "gpt-4o"));
        assert_eq!(
            split_model("hosted_vllm/meta-llama/Llama-3"),
            ("hosted_vllm", "meta-llama/Llama-3")
        );
        assert_eq!(split_model("gpt-4o"), ("openai", "gpt-4o"));
        assert_eq!(split_model("openai/*"), ("openai", "*"));
        assert_eq!(split_model("groq/"), ("groq", ""));
    }
}
