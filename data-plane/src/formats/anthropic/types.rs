//! The Messages API's wire types, for both directions: what a client sends
//! (`MessagesRequest`, also the `count_tokens` body), what Anthropic answers
//! ([`Message`]), its stream events ([`StreamEvent`]) and errors
//! ([`ErrorEnvelope`]).
//!
//! Conventions:
//! - Every struct keeps the members it does not know in `extra` (written
//!   back in place), so parsing and writing a body loses nothing; an absent
//!   option stays absent (`skip_serializing_if`), so nothing is injected.
//! - Tagged unions (content blocks, stream events, deltas) have an `Other`
//!   variant holding the raw JSON of a `type` this module does not know,
//!   written back byte for byte.
//! - Strings borrow from the body when they have no escapes (`Cow`); tool
//!   `input`, `input_schema` and unknown blocks stay raw JSON ([`RawJson`]).
//!   So these types must be parsed from a whole buffer (`serde_json::from_slice`
//!   / `from_str`), not from a reader or a `Value`.

use std::borrow::Cow;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Members a struct does not know, kept as they came.
pub type Extra = Map<String, Value>;

/// A JSON value kept as its text: borrowed from the body it was parsed from,
/// or owned when built.
#[derive(Debug, Clone)]
pub struct RawJson<'a>(pub Cow<'a, RawValue>);

impl<'a> RawJson<'a> {
    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// `text` as a raw value, when it is valid JSON.
    pub fn from_string(text: String) -> Result<RawJson<'static>, serde_json::Error> {
        RawValue::from_string(text).map(|raw| RawJson(Cow::Owned(raw)))
    }

    /// `value` written as JSON.
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> RawJson<'static> {
        // Serializing a `Serialize` value to a string cannot fail for the
        // types used here (no maps with non-string keys).
        let raw = serde_json::value::to_raw_value(value)
            .unwrap_or_else(|_| RawValue::from_string("null".to_owned()).expect("valid JSON"));
        RawJson(Cow::Owned(raw))
    }

    /// Parses the raw value as `T`, borrowing from it.
    pub fn parse<T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// An owned copy, free of the body's lifetime.
    pub fn into_owned(self) -> RawJson<'static> {
        RawJson(Cow::Owned(self.0.into_owned()))
    }
}

impl PartialEq for RawJson<'_> {
    /// The same JSON text (not the same value written differently).
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Serialize for RawJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawJson<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'de RawValue>::deserialize(deserializer).map(|raw| RawJson(Cow::Borrowed(raw)))
    }
}

/// `Option<Cow<str>>` that borrows when it can (serde's own `Option<Cow>`
/// always copies).
pub(crate) fn borrow_opt<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Option::<Borrowed<'a>>::deserialize(deserializer).map(|o| o.map(|b| b.0))
}

/// The `type` member of a tagged object, read before the object itself.
#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(rename = "type", borrow, default, deserialize_with = "borrow_opt")]
    kind: Option<Cow<'a, str>>,
}

/// Reads a tagged object from `raw` into `T`, dropping the `type` member its
/// variant's struct would otherwise keep among its unknown members.
fn variant<'a, T, E>(raw: &'a RawValue, extra: impl FnOnce(&mut T) -> &mut Extra) -> Result<T, E>
where
    T: Deserialize<'a>,
    E: serde::de::Error,
{
    let mut value: T = serde_json::from_str(raw.get()).map_err(E::custom)?;
    extra(&mut value).remove("type");
    Ok(value)
}

// ---------------------------------------------------------------------------
// Requests

/// A Messages request (`POST /v1/messages`), also the body of
/// `/v1/messages/count_tokens` (which has no `max_tokens`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MessagesRequest<'a> {
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    #[serde(borrow)]
    pub messages: Vec<InputMessage<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub system: Option<Content<'a>>,
    /// Required by `/v1/messages`; absent from `count_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub stop_sequences: Option<Vec<Cow<'a, str>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub tools: Option<Vec<Tool<'a>>>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub tool_choice: Option<ToolChoice<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub thinking: Option<Thinking<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub metadata: Option<Metadata<'a>>,
    /// `auto` or `standard_only`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        borrow,
        deserialize_with = "borrow_opt"
    )]
    pub service_tier: Option<Cow<'a, str>>,
    /// Structured outputs and effort: `{"format": {"type": "json_schema",
    /// "schema": …}, "effort": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub output_config: Option<OutputConfig<'a>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `output_config`: the answer's JSON format (structured outputs) and
/// effort.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OutputConfig<'a> {
    /// `{"type": "json_schema", "schema": {…}}`.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub format: Option<OutputFormat<'a>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `output_config.format`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputFormat<'a> {
    /// `json_schema`.
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub schema: Option<RawJson<'a>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One turn of the conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputMessage<'a> {
    pub role: Role,
    #[serde(borrow)]
    pub content: Content<'a>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// A turn's content (and `system`): a string, or content blocks.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Content<'a> {
    Text(Cow<'a, str>),
    Blocks(Vec<ContentBlock<'a>>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(deserializer)?;
        let text = raw.get();
        if text.starts_with('"') {
            #[derive(Deserialize)]
            struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
            let Text(t) = serde_json::from_str(text).map_err(D::Error::custom)?;
            Ok(Content::Text(t))
        } else {
            serde_json::from_str(text)
                .map(Content::Blocks)
                .map_err(D::Error::custom)
        }
    }
}

/// A content block, by its `type`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock<'a> {
    Text(TextBlock<'a>),
    Image(ImageBlock<'a>),
    Document(DocumentBlock<'a>),
    ToolUse(ToolUseBlock<'a>),
    ToolResult(ToolResultBlock<'a>),
    Thinking(ThinkingBlock<'a>),
    RedactedThinking(RedactedThinkingBlock<'a>),
    /// A block of a type not listed here (`server_tool_use`,
    /// `web_search_tool_result`, `search_result`, …), as it came.
    #[serde(untagged)]
    Other(RawJson<'a>),
}

impl<'de: 'a, 'a> Deserialize<'de> for ContentBlock<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(deserializer)?;
        let tag: Tag<'de> = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        Ok(match tag.kind.as_deref() {
            Some("text") => ContentBlock::Text(variant(raw, |b: &mut TextBlock| &mut b.extra)?),
            Some("image") => ContentBlock::Image(variant(raw, |b: &mut ImageBlock| &mut b.extra)?),
            Some("document") => {
                ContentBlock::Document(variant(raw, |b: &mut DocumentBlock| &mut b.extra)?)
            }
            Some("tool_use") => {
                ContentBlock::ToolUse(variant(raw, |b: &mut ToolUseBlock| &mut b.extra)?)
            }
            Some("tool_result") => {
                ContentBlock::ToolResult(variant(raw, |b: &mut ToolResultBlock| &mut b.extra)?)
            }
            Some("thinking") => {
                ContentBlock::Thinking(variant(raw, |b: &mut ThinkingBlock| &mut b.extra)?)
            }
            Some("redacted_thinking") => {
                ContentBlock::RedactedThinking(variant(raw, |b: &mut RedactedThinkingBlock| {
                    &mut b.extra
                })?)
            }
            Some(_) => ContentBlock::Other(RawJson(Cow::Borrowed(raw))),
            None => return Err(D::Error::missing_field("type")),
        })
    }
}

/// `{"type": "text", "text", "citations"?, "cache_control"?}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TextBlock<'a> {
    #[serde(borrow)]
    pub text: Cow<'a, str>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `{"type": "image", "source"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageBlock<'a> {
    #[serde(borrow)]
    pub source: Source<'a>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `{"type": "document", "source", "title"?, "context"?, "citations"?}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocumentBlock<'a> {
    #[serde(borrow)]
    pub source: Source<'a>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An image's or document's `source`: `base64` (`media_type`, `data`),
/// `url` (`url`), `text` (`media_type`, `data`), `file` (`file_id`),
/// `content` (`content`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        borrow,
        deserialize_with = "borrow_opt"
    )]
    pub media_type: Option<Cow<'a, str>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        borrow,
        deserialize_with = "borrow_opt"
    )]
    pub data: Option<Cow<'a, str>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        borrow,
        deserialize_with = "borrow_opt"
    )]
    pub url: Option<Cow<'a, str>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `{"type": "tool_use", "id", "name", "input"}`: a call of a client tool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolUseBlock<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// The arguments, a JSON object.
    #[serde(borrow)]
    pub input: RawJson<'a>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `{"type": "tool_result", "tool_use_id", "content"?, "is_error"?}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolResultBlock<'a> {
    #[serde(borrow)]
    pub tool_use_id: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub content: Option<Content<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `{"type": "thinking", "thinking", "signature"}`: the signature must come
/// back unchanged with the block on a later turn.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ThinkingBlock<'a> {
    #[serde(borrow)]
    pub thinking: Cow<'a, str>,
    #[serde(default, borrow)]
    pub signature: Cow<'a, str>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `{"type": "redacted_thinking", "data"}`: encrypted thinking, sent back
/// as is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RedactedThinkingBlock<'a> {
    #[serde(borrow)]
    pub data: Cow<'a, str>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tool: a client tool (`name`, `description`, `input_schema`, no `type`
/// or `"type": "custom"`), or a server / versioned tool (`type` such as
/// `web_search_20250305`, `name`, its own members in `extra`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tool<'a> {
    #[serde(
        rename = "type",
        default,
        skip_serializing_if = "Option::is_none",
        borrow,
        deserialize_with = "borrow_opt"
    )]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        borrow,
        deserialize_with = "borrow_opt"
    )]
    pub description: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub input_schema: Option<RawJson<'a>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `tool_choice`: `{"type": "auto" | "any" | "tool" | "none", "name"?,
/// "disable_parallel_tool_use"?}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ToolChoice<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// With `"type": "tool"`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        borrow,
        deserialize_with = "borrow_opt"
    )]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_parallel_tool_use: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `thinking`: `{"type": "enabled", "budget_tokens"}`, `{"type":
/// "disabled"}`, `{"type": "adaptive"}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Thinking<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `metadata`: `{"user_id"}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metadata<'a> {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        borrow,
        deserialize_with = "borrow_opt"
    )]
    pub user_id: Option<Cow<'a, str>>,
    #[serde(flatten)]
    pub extra: Extra,
}

// ---------------------------------------------------------------------------
// Answers

/// A Messages answer (`"type": "message"`); also `message_start`'s message,
/// with empty `content` and null `stop_reason`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// `message`.
    #[serde(rename = "type", borrow, default = "message_type")]
    pub kind: Cow<'a, str>,
    pub role: Role,
    #[serde(borrow, default)]
    pub content: Vec<ContentBlock<'a>>,
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    /// `end_turn`, `max_tokens`, `stop_sequence`, `tool_use`, `pause_turn`,
    /// `refusal`, `model_context_window_exceeded`, or one added later; null
    /// in `message_start`.
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    pub stop_reason: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    pub stop_sequence: Option<Cow<'a, str>>,
    #[serde(default)]
    pub usage: Usage,
    #[serde(flatten)]
    pub extra: Extra,
}

fn message_type() -> Cow<'static, str> {
    Cow::Borrowed("message")
}

/// An answer's tokens. `input_tokens` counts only the tokens after the last
/// cache breakpoint: the prompt is `input_tokens +
/// cache_creation_input_tokens + cache_read_input_tokens`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    /// `cache_creation` (by TTL), `server_tool_use`, `service_tier`, ….
    #[serde(flatten)]
    pub extra: Extra,
}

// ---------------------------------------------------------------------------
// Stream events

/// One event of a Messages stream (the SSE `event:` name is the same as the
/// data's `type`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent<'a> {
    MessageStart(MessageStart<'a>),
    ContentBlockStart(ContentBlockStart<'a>),
    ContentBlockDelta(ContentBlockDelta<'a>),
    ContentBlockStop(ContentBlockStop),
    MessageDelta(MessageDelta<'a>),
    MessageStop(MessageStop),
    Ping(Ping),
    Error(ErrorEvent<'a>),
    /// An event type not listed here, as it came (the API may add some).
    #[serde(untagged)]
    Other(RawJson<'a>),
}

impl<'de: 'a, 'a> Deserialize<'de> for StreamEvent<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(deserializer)?;
        let tag: Tag<'de> = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        Ok(match tag.kind.as_deref() {
            Some("message_start") => {
                StreamEvent::MessageStart(variant(raw, |e: &mut MessageStart| &mut e.extra)?)
            }
            Some("content_block_start") => {
                StreamEvent::ContentBlockStart(variant(raw, |e: &mut ContentBlockStart| {
                    &mut e.extra
                })?)
            }
            Some("content_block_delta") => {
                StreamEvent::ContentBlockDelta(variant(raw, |e: &mut ContentBlockDelta| {
                    &mut e.extra
                })?)
            }
            Some("content_block_stop") => {
                StreamEvent::ContentBlockStop(variant(raw, |e: &mut ContentBlockStop| {
                    &mut e.extra
                })?)
            }
            Some("message_delta") => {
                StreamEvent::MessageDelta(variant(raw, |e: &mut MessageDelta| &mut e.extra)?)
            }
            Some("message_stop") => {
                StreamEvent::MessageStop(variant(raw, |e: &mut MessageStop| &mut e.extra)?)
            }
            Some("ping") => StreamEvent::Ping(variant(raw, |e: &mut Ping| &mut e.extra)?),
            Some("error") => StreamEvent::Error(variant(raw, |e: &mut ErrorEvent| &mut e.extra)?),
            Some(_) => StreamEvent::Other(RawJson(Cow::Borrowed(raw))),
            None => return Err(D::Error::missing_field("type")),
        })
    }
}

impl StreamEvent<'_> {
    /// The event's `type`, also its SSE `event:` name; `None` for
    /// [`StreamEvent::Other`].
    pub fn name(&self) -> Option<&'static str> {
        Some(match self {
            StreamEvent::MessageStart(_) => "message_start",
            StreamEvent::ContentBlockStart(_) => "content_block_start",
            StreamEvent::ContentBlockDelta(_) => "content_block_delta",
            StreamEvent::ContentBlockStop(_) => "content_block_stop",
            StreamEvent::MessageDelta(_) => "message_delta",
            StreamEvent::MessageStop(_) => "message_stop",
            StreamEvent::Ping(_) => "ping",
            StreamEvent::Error(_) => "error",
            StreamEvent::Other(_) => return None,
        })
    }
}

/// `message_start`: the message, with no content yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageStart<'a> {
    #[serde(borrow)]
    pub message: Message<'a>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `content_block_start`: a block at `index`, empty (`text: ""`, tool use
/// with `input: {}`, thinking with `thinking: ""`), or whole (redacted
/// thinking, server tool results).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContentBlockStart<'a> {
    pub index: u64,
    #[serde(borrow)]
    pub content_block: ContentBlock<'a>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `content_block_delta`: more of the block at `index`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContentBlockDelta<'a> {
    pub index: u64,
    #[serde(borrow)]
    pub delta: Delta<'a>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A block's delta, by its `type`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Delta<'a> {
    TextDelta(TextDelta<'a>),
    /// A fragment of a tool call's `input` JSON text.
    InputJsonDelta(InputJsonDelta<'a>),
    ThinkingDelta(ThinkingDelta<'a>),
    SignatureDelta(SignatureDelta<'a>),
    /// `citations_delta` and types added later, as they came.
    #[serde(untagged)]
    Other(RawJson<'a>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Delta<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(deserializer)?;
        let tag: Tag<'de> = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        Ok(match tag.kind.as_deref() {
            Some("text_delta") => Delta::TextDelta(variant(raw, |d: &mut TextDelta| &mut d.extra)?),
            Some("input_json_delta") => {
                Delta::InputJsonDelta(variant(raw, |d: &mut InputJsonDelta| &mut d.extra)?)
            }
            Some("thinking_delta") => {
                Delta::ThinkingDelta(variant(raw, |d: &mut ThinkingDelta| &mut d.extra)?)
            }
            Some("signature_delta") => {
                Delta::SignatureDelta(variant(raw, |d: &mut SignatureDelta| &mut d.extra)?)
            }
            Some(_) => Delta::Other(RawJson(Cow::Borrowed(raw))),
            None => return Err(D::Error::missing_field("type")),
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TextDelta<'a> {
    #[serde(borrow)]
    pub text: Cow<'a, str>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InputJsonDelta<'a> {
    #[serde(borrow)]
    pub partial_json: Cow<'a, str>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ThinkingDelta<'a> {
    #[serde(borrow)]
    pub thinking: Cow<'a, str>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SignatureDelta<'a> {
    #[serde(borrow)]
    pub signature: Cow<'a, str>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `content_block_stop`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContentBlockStop {
    pub index: u64,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `message_delta`: the stop reason, and the usage so far (cumulative).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MessageDelta<'a> {
    #[serde(borrow, default)]
    pub delta: MessageDeltaBody<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<DeltaUsage>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `message_delta.delta`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MessageDeltaBody<'a> {
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    pub stop_reason: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    pub stop_sequence: Option<Cow<'a, str>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `message_delta.usage`: cumulative counts; `output_tokens` always, the
/// input and cache counts in newer API versions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeltaUsage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `message_stop`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MessageStop {
    #[serde(flatten)]
    pub extra: Extra,
}

/// `ping`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ping {
    #[serde(flatten)]
    pub extra: Extra,
}

/// An `error` event in a stream: `{"type": "error", "error": {…}}`, the
/// same shape as [`ErrorEnvelope`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorEvent<'a> {
    #[serde(borrow)]
    pub error: ErrorBody<'a>,
    #[serde(flatten)]
    pub extra: Extra,
}

// ---------------------------------------------------------------------------
// Errors

/// An error answer: `{"type": "error", "error": {"type", "message"},
/// "request_id"?}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorEnvelope<'a> {
    /// `error`.
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub error: ErrorBody<'a>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `error`: `{"type": "invalid_request_error" | …, "message"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub message: Cow<'a, str>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Parses `body` as `T`, owning everything (for a caller that keeps the
/// value past the body).
pub fn parse_owned<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `json` as `T` and writes it back: the same JSON value.
    fn round_trip<'a, T: Deserialize<'a> + Serialize>(json: &'a str) -> T {
        let value: T = serde_json::from_str(json).unwrap();
        let written = serde_json::to_value(&value).unwrap();
        let expected: Value = serde_json::from_str(json).unwrap();
        assert_eq!(written, expected, "{json}");
        value
    }

    #[test]
    fn requests_round_trip_with_every_block_and_unknown_members() {
        let json = r#"{
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Hmm", "signature": "EqQBCgIYAhIM"},
                    {"type": "redacted_thinking", "data": "EmwKAhgBEgy"},
                    {"type": "text", "text": "Let me check.", "citations": null},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris", "n": [1, 2.5]}},
                    {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {"query": "x"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": [{"type": "text", "text": "15°C"}], "is_error": false},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}, "title": "A"},
                    {"type": "search_result", "source": "https://x", "title": "t", "content": []}
                ]}
            ],
            "stop_sequences": ["\n\nHuman:"],
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "stream": true,
            "tools": [
                {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}, "cache_control": {"type": "ephemeral"}},
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
            ],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "metadata": {"user_id": "u-1"},
            "service_tier": "auto",
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}, "effort": "high"},
            "context_management": {"edits": []}
        }"#;
        let request: MessagesRequest = round_trip(json);
        assert_eq!(request.messages.len(), 3);
        let Content::Blocks(blocks) = &request.messages[1].content else {
            panic!("blocks")
        };
        assert!(matches!(&blocks[0], ContentBlock::Thinking(t) if t.signature == "EqQBCgIYAhIM"));
        assert!(matches!(&blocks[4], ContentBlock::Other(_)));
        let ContentBlock::ToolUse(tool_use) = &blocks[3] else {
            panic!("tool_use")
        };
        assert_eq!(tool_use.input.get(), r#"{"city": "Paris", "n": [1, 2.5]}"#);
        assert!(request.extra.contains_key("context_management"));
        // Strings without escapes are borrowed.
        assert!(matches!(request.model, Cow::Borrowed(_)));
    }

    #[test]
    fn absent_options_stay_absent() {
        let json = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let request: MessagesRequest = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&request).unwrap(), json);
    }

    #[test]
    fn answers_and_errors_round_trip() {
        let message: Message = round_trip(
            r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5",
                "content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","stop_sequence":null,
                "usage":{"input_tokens":10,"output_tokens":3,"cache_creation_input_tokens":0,
                         "cache_read_input_tokens":5,"service_tier":"standard"},"container":null}"#,
        );
        assert_eq!(message.usage.cache_read_input_tokens, Some(5));
        let error: ErrorEnvelope = round_trip(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#,
        );
        assert_eq!(error.error.kind, "overloaded_error");
    }

    #[test]
    fn every_stream_event_round_trips() {
        let events = [
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"ci"}}"#,
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"thinking_delta","thinking":"Let"}}"#,
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"signature_delta","signature":"EqQB"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{"type":"char_location"}}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
            r#"{"type":"message_stop"}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            r#"{"type":"brand_new_event","x":1}"#,
        ];
        for json in events {
            let event: StreamEvent = round_trip(json);
            let name = event.name();
            assert!(name.is_none_or(|n| json.contains(n)), "{json}");
        }
        let bad: Result<StreamEvent, _> = serde_json::from_str(r#"{"index":0}"#);
        assert!(bad.is_err());
        let bad: Result<StreamEvent, _> = serde_json::from_str(r#"{"type":"message_stop""#);
        assert!(bad.is_err());
    }
}
