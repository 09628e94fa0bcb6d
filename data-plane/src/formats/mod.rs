//! Wire formats: the shapes of request and answer bodies, errors and event
//! streams, as pure functions and types. Nothing here knows a route, a
//! deployment or a connection; it imports nothing of this crate but itself.
//!
//! - [`Format`]: which API's body shapes a body is in (what the client
//!   sent, and what an upstream is sent); [`ErrorShape`]: which API's error
//!   an upstream's error body is.
//! - [`anthropic`]: Anthropic's Messages API (types, errors) and the
//!   translations between it and chat completions, both ways.
//! - [`bedrock`]: Bedrock's stream of Claude's events and its errors;
//!   [`eventstream`]: AWS's binary event stream encoding it streams in.
//! - [`converse`]: Bedrock's Converse API, both ways with chat
//!   completions.
//! - [`chat`]: OpenAI's chat completions on the wire: request, answer,
//!   streamed chunk, usage and error, both ways.
//! - [`google`]: Google's error envelope (Gemini's OpenAI-compatible API),
//!   unwrapped into OpenAI's; tool and response schemas made the subset
//!   Gemini takes ([`google::schema`]).
//! - [`members`]: a JSON object's members in order, values as written;
//!   [`ordered`]: JSON values whose objects keep their order.
//! - [`openai`]: OpenAI's error shape.
//! - [`sse`]: server-sent events: writing OpenAI's, reading any
//!   ([`sse::EventReader`]).
//! - [`thought`]: Gemini's thought signatures, carried in a tool call's
//!   id through a translation (the client sends the id back unchanged).
//! - [`usage`]: the tokens an answer used, from a whole answer or a stream,
//!   written OpenAI's way or Anthropic's.
//!
//! - [`responses`]: OpenAI's Responses API (`/v1/responses`) and its
//!   translation to chat completions and back, both ways.
//! - [`TranslateError`]: why a translation between APIs could not be made;
//!   [`moved`]: the words that tie a tool result's images, moved out of its
//!   tool message, to their call.

pub mod anthropic;
pub mod bedrock;
pub mod chat;
pub mod converse;
pub mod eventstream;
pub mod google;
pub mod members;
pub mod openai;
pub mod ordered;
pub mod responses;
pub mod sse;
pub mod thought;
pub mod usage;

/// Why a translation could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The request asks for something the other API cannot express
    /// faithfully (or is not a valid request): the gateway answers 400 with
    /// this message, naming `param`, before any upstream call.
    #[error("{message}")]
    Invalid {
        /// The request member at fault, as the client wrote it
        /// (`n`, `messages[2].tool_calls[0].function.arguments`).
        param: Option<String>,
        message: String,
    },
    /// An upstream answer that is not what its API promises.
    #[error("the upstream's answer is malformed: {0}")]
    Answer(String),
}

impl TranslateError {
    /// An [`TranslateError::Invalid`] naming `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        TranslateError::Invalid {
            param: Some(param.into()),
            message: message.into(),
        }
    }
}

/// What a chat upstream cannot take in a `tool` message (images, files:
/// it reads them only from users) follows the turn's tool messages in a
/// user message; these are the words that tie them to their call, shared
/// by the translations that move them.
pub mod moved {
    /// The line before what tool call `call_id` returned: `n` of `noun`.
    pub fn heading(noun: &str, n: usize, call_id: &str) -> String {
        let plural = if n == 1 { "" } else { "s" };
        format!("The {noun}{plural} returned by tool call {call_id}:")
    }

    /// A tool message whose whole result was moved.
    pub fn placeholder(noun: &str) -> &'static str {
        match noun {
            "image" => "(an image: in the next message)",
            _ => "(a file: in the next message)",
        }
    }
}

/// The shape an upstream's error body is in, which decides how it reaches
/// a client: relayed as is to a client of the same API, translated to the
/// client's otherwise, summarised when it is neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    /// `{"error": {"message", "type", …}}`.
    OpenAi,
    /// `{"type": "error", "error": {"type", "message"}}`.
    Anthropic,
    /// `[{"error": {"code", "message", "status"}}]` ([`google`]).
    Google,
    /// AWS's `{"message": "…"}` ([`bedrock`]).
    Aws,
    /// Not JSON, or JSON of neither shape.
    Other,
}

impl ErrorShape {
    /// The shape of `body`. Anthropic's is told first: it has an `error`
    /// object too.
    pub fn of(body: &[u8]) -> ErrorShape {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return ErrorShape::Other;
        };
        if value.is_array() {
            return match google::error(body) {
                Some(_) => ErrorShape::Google,
                None => ErrorShape::Other,
            };
        }
        let error = value.get("error").filter(|e| e.is_object());
        match (value.get("type").and_then(|t| t.as_str()), error) {
            (Some("error"), Some(e)) if e.get("type").is_some_and(|t| t.is_string()) => {
                ErrorShape::Anthropic
            }
            (_, Some(_)) => ErrorShape::OpenAi,
            _ if bedrock::error_message(body).is_some() => ErrorShape::Aws,
            _ => ErrorShape::Other,
        }
    }
}

/// The API a request body (and its answer) is shaped for. The inbound route
/// ([`crate::request::Route`]) says which format the client speaks; the
/// format an upstream is sent is chosen per deployment, and is the client's
/// own while no provider translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// OpenAI's `/chat/completions`.
    ChatCompletions,
    /// OpenAI's legacy `/completions`.
    Completions,
    /// OpenAI's `/embeddings`.
    Embeddings,
    /// OpenAI's `/moderations`: a verdict per input, answered whole and
    /// without `usage`.
    Moderations,
    /// OpenAI's `/images/generations`: images for a prompt, answered whole
    /// (`usage` only from the GPT image models).
    ImageGenerations,
    /// Anthropic's `/v1/messages`.
    Messages,
    /// Anthropic's `/v1/messages/count_tokens`.
    CountTokens,
    /// OpenAI's `/responses`.
    Responses,
    /// OpenAI's `/responses/compact`: a conversation compacted into a
    /// `response.compaction` (the user's messages and one encrypted
    /// `compaction` item), which only a Responses upstream can make.
    ResponsesCompact,
}

impl Format {
    /// How many formats there are: what is kept per format is an array
    /// indexed by [`Format::index`].
    pub const COUNT: usize = 9;

    /// Every format, in [`Format::index`] order.
    pub const ALL: [Format; Format::COUNT] = [
        Format::ChatCompletions,
        Format::Completions,
        Format::Embeddings,
        Format::Moderations,
        Format::ImageGenerations,
        Format::Messages,
        Format::CountTokens,
        Format::Responses,
        Format::ResponsesCompact,
    ];

    /// A dense index, below [`Format::COUNT`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The path after the API base, as the API's own providers name it
    /// (OpenAI's after `/v1`, Anthropic's with it).
    pub fn path(self) -> &'static str {
        match self {
            Format::ChatCompletions => "/chat/completions",
            Format::Completions => "/completions",
            Format::Embeddings => "/embeddings",
            Format::Moderations => "/moderations",
            Format::ImageGenerations => "/images/generations",
            Format::Messages => "/v1/messages",
            Format::CountTokens => "/v1/messages/count_tokens",
            Format::Responses => "/responses",
            Format::ResponsesCompact => "/responses/compact",
        }
    }

    /// Whether an answer in the format writes text tokens of its own: not
    /// an embedding's or a moderation's, whose cost is the input's alone (so
    /// neither reserves a completion nor is billed one by estimate), nor an
    /// image generation's, whose images are not text to estimate tokens from
    /// (it reserves for its images instead).
    pub fn completes(self) -> bool {
        !matches!(
            self,
            Format::Embeddings | Format::Moderations | Format::ImageGenerations
        )
    }

    /// Whether the format is Anthropic's (its answers, streams and errors
    /// are in Anthropic's shapes).
    pub fn is_anthropic(self) -> bool {
        matches!(self, Format::Messages | Format::CountTokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shapes() {
        let of = |b: &str| ErrorShape::of(b.as_bytes());
        assert_eq!(of(r#"{"error":{"message":"x"}}"#), ErrorShape::OpenAi);
        assert_eq!(
            of(r#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#),
            ErrorShape::Anthropic
        );
        assert_eq!(of(r#"{"error":"x"}"#), ErrorShape::Other);
        assert_eq!(of("<html>"), ErrorShape::Other);
        assert_eq!(
            of(r#"[{"error":{"code":400,"message":"x","status":"INVALID_ARGUMENT"}}]"#),
            ErrorShape::Google
        );
        assert_eq!(of(r#"[{"message":"x"}]"#), ErrorShape::Other);
    }

    #[test]
    fn indexes_are_dense_and_in_order() {
        for (i, format) in Format::ALL.into_iter().enumerate() {
            assert_eq!(format.index(), i);
        }
    }
}
