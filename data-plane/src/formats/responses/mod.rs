//! OpenAI's Responses API (`/v1/responses`), and its translation to chat
//! completions and back, as pure functions.
//!
//! - [`from_responses`]: a Responses request → a chat completions request
//!   (a Responses client, a deployment that serves only chat completions;
//!   an Anthropic deployment gets that request translated once more by
//!   [`crate::formats::anthropic::from_chat`]). What a stateless
//!   translation cannot honour (`previous_response_id`, `store: true`,
//!   built-in tools, background mode, …) is refused, naming it.
//! - [`echo`]: the request's parameters a `response` object repeats.
//! - [`to_responses`]: a chat completions answer → a `response` object,
//!   and a chat completions stream → the Responses event sequence
//!   ([`to_responses::ResponsesStream`]).
//!
//! Nothing here performs I/O or knows a route or a deployment.

pub mod echo;
pub mod from_responses;
pub mod to_responses;

/// The `id` of a `response` object (`resp_…`): what a stored response is
/// later named by (`previous_response_id`, `GET /v1/responses/{id}`).
/// `None` when `body` is not such an object.
pub fn response_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Object {
        id: Option<String>,
    }
    serde_json::from_slice::<Object>(body).ok()?.id
}
