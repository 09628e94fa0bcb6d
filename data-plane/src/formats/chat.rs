//! OpenAI's chat completions on the wire, both ways: the request
//! ([`ChatRequest`]), the whole answer ([`ChatCompletion`]), the streamed
//! chunk ([`ChatChunk`]), their [`Usage`], and the error body
//! ([`ErrorBody`]).
//!
//! The types borrow from the body they are read from (`Cow`: borrowed unless
//! a string has escapes) and are written back with `serde_json`. Every
//! struct keeps the members it does not name in `extra`, and every option
//! is left out when absent, so a body read and written again loses nothing
//! and gains nothing (the order of members aside). A translation builds
//! these values from another format; it sets only what the client sent.
//!
//! Leniency on reading, as OpenAI-compatible servers vary: a count written
//! `null` reads as 0, `choices: null` (or none) reads as no choices, and a
//! content part, tool or tool choice of a kind not named here is kept whole
//! as JSON.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// The members a struct does not name, kept as they came.
pub type Extra = Map<String, Value>;

/// The `object` of a whole answer.
pub const OBJECT_COMPLETION: &str = "chat.completion";
/// The `object` of a streamed chunk.
pub const OBJECT_CHUNK: &str = "chat.completion.chunk";

/// Whether `model` is one of OpenAI's reasoning models (`o1`, `o3`,
/// `o4-mini`, `gpt-5`, `gpt-5.1-codex`, …), which refuse `max_tokens` and
/// take a cap only as `max_completion_tokens`. A translation writes the
/// cap the first way for every other model: it is the one every
/// OpenAI-compatible server reads. Read from the name alone, as the upstream
/// knows it; a name with a path (`openai/o3` at a router) is a router's,
/// which takes `max_tokens`.
pub fn caps_completion_tokens_only(model: &str) -> bool {
    let starts = |prefix: &str| {
        model
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    let o_series = starts("o") && model[1..].starts_with(|c: char| c.is_ascii_digit());
    !model.contains('/') && (o_series || starts("gpt-5") || starts("codex-"))
}

/// The token cap of a translated request, in the member `model` reads:
/// `(max_tokens, max_completion_tokens)`. `reasoning`: the client asked for
/// reasoning, which OpenAI's reasoning models count in the cap only as
/// `max_completion_tokens`.
pub fn token_cap(model: &str, cap: Option<u64>, reasoning: bool) -> (Option<u64>, Option<u64>) {
    if reasoning || caps_completion_tokens_only(model) {
        (None, cap)
    } else {
        (cap, None)
    }
}

/// A `POST /chat/completions` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest<'a> {
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    #[serde(borrow)]
    pub messages: Vec<Message<'a>>,
    /// Deprecated by OpenAI in favour of `max_completion_tokens` (which
    /// counts reasoning tokens too), still what most compatible servers read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool<'a>>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// `minimal`, `low`, `medium`, `high` (and whatever a server adds).
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<Cow<'a, str>>,
    /// `{"type": "text" | "json_object" | "json_schema", …}`, kept whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub user: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Anything else (`logit_bias`, `metadata`, `store`, `service_tier`,
    /// `modalities`, `prediction`, a server's own parameters, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// `stop`: one sequence or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
}

impl<'a> Stop<'a> {
    /// The sequences, one or several.
    pub fn sequences(&self) -> &[Cow<'a, str>] {
        match self {
            Stop::One(one) => std::slice::from_ref(one),
            Stop::Many(many) => many,
        }
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Asks for a last chunk with `"choices": []` and the whole usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One message of a request, by its `role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message<'a> {
    System(#[serde(borrow)] InstructionMessage<'a>),
    /// What newer OpenAI models read instead of `system`.
    Developer(#[serde(borrow)] InstructionMessage<'a>),
    User(#[serde(borrow)] UserMessage<'a>),
    Assistant(#[serde(borrow)] AssistantMessage<'a>),
    Tool(#[serde(borrow)] ToolMessage<'a>),
}

/// A `system` or `developer` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstructionMessage<'a> {
    #[serde(borrow)]
    pub content: Content<'a>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A `user` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserMessage<'a> {
    #[serde(borrow)]
    pub content: Content<'a>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An `assistant` message of an earlier turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage<'a> {
    /// Absent or `null` when the turn only called tools.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content<'a>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall<'a>>>,
    /// The reasoning an upstream returned (DeepSeek, vLLM, LiteLLM's name).
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<Cow<'a, str>>,
    /// LiteLLM's Anthropic thinking blocks with their signatures
    /// (`{"type": "thinking", "thinking", "signature"}`), kept whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_blocks: Option<Vec<Value>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A `tool` message: a tool's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolMessage<'a> {
    #[serde(borrow)]
    pub content: Content<'a>,
    #[serde(borrow)]
    pub tool_call_id: Cow<'a, str>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A message's content: a string, or parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Parts(#[serde(borrow)] Vec<ContentPart<'a>>),
}

impl Content<'_> {
    /// The text of the string or of its text parts, joined without a
    /// separator; `None` when a part is not text.
    pub fn text_only(&self) -> Option<Cow<'_, str>> {
        match self {
            Content::Text(text) => Some(Cow::Borrowed(text)),
            Content::Parts(parts) => {
                let mut all = String::new();
                for part in parts {
                    match part {
                        ContentPart::Text { text, .. } => all.push_str(text),
                        _ => return None,
                    }
                }
                Some(Cow::Owned(all))
            }
        }
    }
}

/// One part of a content array, by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart<'a> {
    Text {
        #[serde(borrow)]
        text: Cow<'a, str>,
        #[serde(flatten)]
        extra: Extra,
    },
    ImageUrl {
        #[serde(borrow)]
        image_url: ImageUrl<'a>,
        #[serde(flatten)]
        extra: Extra,
    },
    /// `input_audio`, `file`, `refusal`, or a kind not known here, whole.
    #[serde(untagged)]
    Other(Extra),
}

/// An image part's `image_url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl<'a> {
    /// An `http(s)` URL or a `data:<media type>;base64,<data>` URL.
    #[serde(borrow)]
    pub url: Cow<'a, str>,
    /// `auto`, `low` or `high`.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Cow<'a, str>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tool the model may call: a function, or another kind kept whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Tool<'a> {
    Function {
        #[serde(borrow)]
        function: FunctionDef<'a>,
        #[serde(flatten)]
        extra: Extra,
    },
    /// `custom` tools, or a kind not known here.
    #[serde(untagged)]
    Other(Extra),
}

/// A function tool's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub description: Option<Cow<'a, str>>,
    /// A JSON Schema. A `Value`, not a `RawValue`: serde cannot read a raw
    /// value inside a struct that also collects its other members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `tool_choice`: `"none"`, `"auto"`, `"required"`, or a named tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice<'a> {
    Mode(#[serde(borrow)] Cow<'a, str>),
    /// `{"type": "function", "function": {"name": …}}`.
    Function(#[serde(borrow)] NamedToolChoice<'a>),
    /// `allowed_tools`, `custom`, or a kind not known here, whole.
    Other(Extra),
}

/// A `tool_choice` naming the function to call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedToolChoice<'a> {
    /// `"function"`.
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub function: FunctionName<'a>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `{"name": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionName<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tool call the model made, whole (an answer's or an earlier turn's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// `"function"`.
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub function: FunctionCall<'a>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The function a tool call calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// The arguments as a JSON string, as the model wrote them: not always
    /// valid JSON.
    #[serde(borrow)]
    pub arguments: Cow<'a, str>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A whole (not streamed) answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// [`OBJECT_COMPLETION`].
    #[serde(borrow)]
    pub object: Cow<'a, str>,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    pub choices: Vec<Choice<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<Cow<'a, str>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One choice of a whole answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Choice<'a> {
    #[serde(default)]
    pub index: u32,
    #[serde(borrow)]
    pub message: AnswerMessage<'a>,
    /// `stop`, `length`, `tool_calls`, `content_filter`, `function_call`
    /// (deprecated), or a server's own; written `null` when absent.
    #[serde(default, borrow)]
    pub finish_reason: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The message of an answer's choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerMessage<'a> {
    /// `"assistant"`.
    #[serde(borrow)]
    pub role: Cow<'a, str>,
    /// `null` when the model only called tools; written `null` then.
    #[serde(default, borrow)]
    pub content: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall<'a>>>,
    /// The model's reasoning, as DeepSeek, vLLM and LiteLLM name it.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<Cow<'a, str>>,
    /// The same, as OpenRouter and newer vLLM name it.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Cow<'a, str>>,
    /// Anthropic thinking blocks with their signatures, as LiteLLM writes
    /// them, whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_blocks: Option<Vec<Value>>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for AnswerMessage<'_> {
    fn default() -> Self {
        AnswerMessage {
            role: Cow::Borrowed("assistant"),
            content: None,
            refusal: None,
            tool_calls: None,
            reasoning_content: None,
            reasoning: None,
            thinking_blocks: None,
            extra: Extra::new(),
        }
    }
}

/// One streamed chunk: `data: <ChatChunk>` in the event stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk<'a> {
    #[serde(default, borrow)]
    pub id: Cow<'a, str>,
    /// [`OBJECT_CHUNK`].
    #[serde(default, borrow)]
    pub object: Cow<'a, str>,
    #[serde(default)]
    pub created: u64,
    #[serde(default, borrow)]
    pub model: Cow<'a, str>,
    /// Empty on the last chunk of a stream that asked for usage.
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    pub choices: Vec<ChunkChoice<'a>>,
    /// `null` on every chunk but the last when usage was asked for: written
    /// `null` when it is `None`, as OpenAI does, so a client that looks for
    /// the key finds it.
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<Cow<'a, str>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One choice of a chunk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice<'a> {
    #[serde(default)]
    pub index: u32,
    #[serde(default, borrow)]
    pub delta: Delta<'a>,
    /// Set on the choice's last chunk; written `null` before.
    #[serde(default, borrow)]
    pub finish_reason: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// What a chunk adds to its choice's message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta<'a> {
    /// `"assistant"`, on the first chunk only.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub role: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub content: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta<'a>>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A piece of a tool call: the first piece of a call carries its `id`,
/// `type` and name; later ones only argument fragments. `index` says which
/// of the parallel calls a piece belongs to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta<'a> {
    pub index: u32,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub id: Option<Cow<'a, str>>,
    #[serde(
        rename = "type",
        default,
        borrow,
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta<'a>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A piece of a tool call's function.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallDelta<'a> {
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    /// A fragment of the arguments' JSON string, cut anywhere.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Cow<'a, str>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An answer's tokens. `prompt_tokens` includes the cached ones and
/// `completion_tokens` the reasoning ones: the details are parts, not
/// additions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default, deserialize_with = "null_as_default")]
    pub prompt_tokens: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub completion_tokens: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Usage {
    /// The prompt tokens read from a cache (0 when not said).
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0)
    }

    /// The completion tokens spent reasoning (0 when not said).
    pub fn reasoning_tokens(&self) -> u64 {
        self.completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0)
    }
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    /// Written to the prompt cache (OpenAI's newer field; Anthropic's
    /// `cache_creation_input_tokens` when translated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_tokens: Option<u64>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_prediction_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_prediction_tokens: Option<u64>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// OpenAI's error body, `{"error": {…}}`, as an answer or as a stream's
/// event (which Sluice also writes when it cuts a stream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody<'a> {
    #[serde(borrow)]
    pub error: ErrorDetail<'a>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The error itself. Compatible servers leave out any member but
/// `message`, and some write `code` as a number.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail<'a> {
    #[serde(default, borrow)]
    pub message: Cow<'a, str>,
    /// `invalid_request_error`, `api_error`, `rate_limit_error`, ….
    #[serde(rename = "type", default, borrow)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(default)]
    pub param: Option<Value>,
    #[serde(default)]
    pub code: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl<'a> ErrorBody<'a> {
    /// Reads `body` as an OpenAI error; `None` when it is not one.
    pub fn read(body: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }
}

/// A value written `null` reads as its default.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openai_reasoning_models_take_the_cap_as_max_completion_tokens() {
        for model in [
            "o1",
            "o1-mini",
            "o3",
            "o3-pro",
            "o4-mini",
            "gpt-5",
            "GPT-5-mini",
            "gpt-5.1-codex",
            "gpt-5.5",
            "codex-mini-latest",
        ] {
            assert!(caps_completion_tokens_only(model), "{model}");
            assert_eq!(token_cap(model, Some(9), false), (None, Some(9)), "{model}");
        }
        for model in [
            "gpt-4o",
            "gpt-4.1-mini",
            "llama-3.1-8b",
            "openai/o3",
            "omni",
            "o",
            "claude-sonnet-4-5",
        ] {
            assert!(!caps_completion_tokens_only(model), "{model}");
            assert_eq!(token_cap(model, Some(9), false), (Some(9), None), "{model}");
            assert_eq!(token_cap(model, Some(9), true), (None, Some(9)), "{model}");
        }
        assert_eq!(token_cap("gpt-4o", None, false), (None, None));
    }

    /// Reads `body` as `T`, writes it back, and checks the JSON is the same.
    fn round_trip<'a, T>(body: &'a str) -> T
    where
        T: Deserialize<'a> + Serialize,
    {
        let value: T = serde_json::from_str(body).unwrap();
        let again: Value = serde_json::to_value(&value).unwrap();
        let original: Value = serde_json::from_str(body).unwrap();
        assert_eq!(again, original);
        value
    }

    #[test]
    fn requests_round_trip_with_every_kind_of_message_and_unknown_fields() {
        let body = json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Really."}]},
                {"role": "user", "name": "ann", "content": [
                    {"type": "text", "text": "What is this?", "cache_control": {"type": "ephemeral"}},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "high"}},
                    {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}
                ]},
                {"role": "assistant", "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ], "reasoning_content": "thinking", "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "assistant", "content": "It is 18C.", "audio": null}
            ],
            "max_tokens": 100,
            "max_completion_tokens": 200,
            "stop": ["\n\n", "END"],
            "temperature": 0.5,
            "top_p": 0.9,
            "n": 1,
            "stream": true,
            "stream_options": {"include_usage": true},
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}},
                {"type": "custom", "custom": {"name": "grammar"}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": false,
            "reasoning_effort": "low",
            "response_format": {"type": "json_object"},
            "user": "u-1",
            "logprobs": true,
            "top_logprobs": 2,
            "seed": 7,
            "logit_bias": {"50256": -100},
            "a_new_parameter": {"nested": [1, 2]}
        })
        .to_string();
        let request: ChatRequest = round_trip(&body);
        assert_eq!(request.messages.len(), 6);
        assert!(matches!(request.stop, Some(Stop::Many(ref s)) if s.len() == 2));
        assert!(request.extra.contains_key("a_new_parameter"));
        let Message::User(user) = &request.messages[2] else {
            panic!("a user message")
        };
        let Content::Parts(parts) = &user.content else {
            panic!("parts")
        };
        assert!(
            matches!(&parts[1], ContentPart::ImageUrl { image_url, .. } if image_url.detail.as_deref() == Some("high"))
        );
        assert!(matches!(&parts[2], ContentPart::Other(raw) if raw["type"] == "input_audio"));
        assert!(matches!(
            &request.tools.as_ref().unwrap()[1],
            Tool::Other(_)
        ));
        // Strings without escapes are borrowed from the body.
        assert!(matches!(request.model, Cow::Borrowed(_)));
    }

    #[test]
    fn minimal_requests_gain_nothing() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let request: ChatRequest = serde_json::from_str(body).unwrap();
        assert_eq!(serde_json::to_string(&request).unwrap(), body);
        for choice in [r#""auto""#, r#""none""#, r#""required""#] {
            let body = format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"stop":"x","tool_choice":{choice}}}"#
            );
            let request: ChatRequest = round_trip(&body);
            assert!(matches!(request.tool_choice, Some(ToolChoice::Mode(_))));
            assert_eq!(request.stop.unwrap().sequences(), ["x"]);
        }
        let other = r#"{"model":"m","messages":[],"tool_choice":{"type":"allowed_tools","allowed_tools":{"mode":"auto","tools":[]}}}"#;
        let request: ChatRequest = round_trip(other);
        assert!(matches!(request.tool_choice, Some(ToolChoice::Other(_))));
    }

    #[test]
    fn unknown_roles_and_missing_fields_are_refused() {
        for bad in [
            r#"{"model":"m","messages":[{"role":"wizard","content":"hi"}]}"#,
            r#"{"model":"m","messages":[{"role":"tool","content":"hi"}]}"#,
            r#"{"messages":[]}"#,
            r#"{"model":"m","messages":[],"stop":3}"#,
        ] {
            assert!(serde_json::from_str::<ChatRequest>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_round_trip_and_read_their_usage() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000u64,
            "model": "gpt-4o-2024-08-06",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": null, "refusal": null,
                    "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "f", "arguments": "{}"}}],
                    "annotations": []},
                "logprobs": null,
                "finish_reason": "tool_calls"
            }],
            "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30,
                "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 4, "audio_tokens": 0,
                    "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
            "system_fingerprint": "fp_1",
            "service_tier": "default"
        })
        .to_string();
        // `refusal: null` and `logprobs: null` are not written back.
        let answer: ChatCompletion = serde_json::from_str(&body).unwrap();
        let usage = answer.usage.as_ref().unwrap();
        assert_eq!((usage.cached_tokens(), usage.reasoning_tokens()), (8, 4));
        assert_eq!(
            answer.choices[0].finish_reason.as_deref(),
            Some("tool_calls")
        );
        let again = serde_json::to_value(&answer).unwrap();
        assert_eq!(again["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(again["choices"][0]["message"]["annotations"], json!([]));
        assert_eq!(
            again["usage"],
            serde_json::from_str::<Value>(&body).unwrap()["usage"]
        );
    }

    #[test]
    fn chunks_round_trip_and_tolerate_compatible_servers() {
        let body = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":null}],"usage":null,"obfuscation":"xyz"}"#;
        let chunk: ChatChunk = serde_json::from_str(body).unwrap();
        assert_eq!(serde_json::to_string(&chunk).unwrap(), body);
        let call = &chunk.choices[0].delta.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.index, 1);
        // vLLM's usage chunk with `choices: null`, counts written null.
        let chunk: ChatChunk = serde_json::from_str(
            r#"{"id":"c","choices":null,"usage":{"prompt_tokens":3,"completion_tokens":null,"total_tokens":3}}"#,
        )
        .unwrap();
        assert!(chunk.choices.is_empty());
        assert_eq!(chunk.usage.unwrap().completion_tokens, 0);
    }

    #[test]
    fn errors_are_read_with_whatever_members_they_have() {
        let error = ErrorBody::read(
            br#"{"error":{"message":"Rate limit","type":"rate_limit_error","param":null,"code":429}}"#,
        )
        .unwrap();
        assert_eq!(error.error.kind.as_deref(), Some("rate_limit_error"));
        assert_eq!(error.error.code, Some(json!(429)));
        let bare = ErrorBody::read(br#"{"error":{"message":"no"}}"#).unwrap();
        assert_eq!(bare.error.message, "no");
        assert!(ErrorBody::read(br#"{"error":"no"}"#).is_none());
        assert!(ErrorBody::read(b"<html>").is_none());
    }
}

/// Chat completions stream pieces for the translations' tests.
#[cfg(test)]
pub mod fixtures {
    use serde_json::{Value, json};

    /// A streamed `tool_calls[]` delta: the first of a call carries its id
    /// and name, the others only argument bytes.
    pub fn call(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> Value {
        let mut call = json!({"index": index, "function": {"arguments": arguments}});
        if let Some(id) = id {
            call["id"] = json!(id);
            call["type"] = json!("function");
        }
        if let Some(name) = name {
            call["function"]["name"] = json!(name);
        }
        call
    }

    /// The events as an upstream writes them, ended by `[DONE]`.
    pub fn sse(chunks: &[Value]) -> String {
        let mut out: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
        out.push_str("data: [DONE]\n\n");
        out
    }
}
