//! Anthropic's Messages API (`/v1/messages`), and the translations between
//! it and OpenAI's chat completions, as pure functions over typed bodies.
//!
//! - [`types`]: the Messages API's wire types, both directions (requests,
//!   content blocks, the answer, usage, stream events, errors); every struct
//!   keeps the fields it does not know, so a parse and a write lose nothing.
//! - [`error`]: Anthropic's error envelope, its error types and statuses,
//!   and an Anthropic error turned into OpenAI's shape.
//! - [`from_chat`]: an OpenAI chat completions request → a Messages request
//!   (an OpenAI client, a Claude deployment).
//! - [`to_chat`]: a Messages answer → a `chat.completion`, and a Messages
//!   event stream → `chat.completion.chunk` events ([`to_chat::ChatStream`]).
//! - [`from_messages`]: a Messages request → a chat completions request (an
//!   Anthropic client, an OpenAI-compatible deployment).
//! - [`to_messages`]: a chat completions answer and stream → a Messages
//!   answer and stream.
//! - [`hosted`]: a Messages request as a cloud hosting Claude takes it
//!   (Vertex AI: `anthropic_version` in the body, the model in the URL);
//!   [`betas`]: a client's beta flags as such a cloud takes them.
//!
//! Nothing here performs I/O or knows a route or a deployment; the HTTP path
//! chooses the function.

pub mod betas;
pub mod error;
pub mod from_chat;
pub mod from_messages;
pub mod hosted;
pub mod to_chat;
pub mod to_messages;
pub mod types;

/// The `max_tokens` sent to Anthropic, which requires it, when an OpenAI
/// client sends neither `max_tokens` nor `max_completion_tokens`; the same
/// figure Sluice's usage reservation assumes for such a request.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

pub use super::TranslateError;
