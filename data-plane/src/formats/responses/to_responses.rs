//! A chat completions answer and stream → the Responses API's.

use super::echo::Echo;
use crate::formats::TranslateError;

/// The `response` object for a `chat.completion` body. `id` is the base of
/// every id written (`resp_{id}`, `msg_{id}`, …).
pub fn answer(chat: &[u8], echo: &Echo, id: &str) -> Result<Vec<u8>, TranslateError> {
    let _ = (chat, echo, id);
    Err(TranslateError::Answer("not yet translated".into()))
}

/// A chat completions event stream in, the Responses event sequence out.
#[derive(Debug)]
pub struct ResponsesStream {
    failed: bool,
}

impl ResponsesStream {
    pub fn new(echo: Echo, id: String) -> Self {
        let _ = (echo, id);
        ResponsesStream { failed: false }
    }

    /// Reads upstream bytes, however split; returns the client's bytes.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let _ = chunk;
        Vec::new()
    }

    /// The upstream's body ended: what is still owed.
    pub fn finish(&mut self) -> Vec<u8> {
        Vec::new()
    }

    /// Whether the stream met an error (an upstream error event, or a
    /// stream that ended before its answer did).
    pub fn failed(&self) -> bool {
        self.failed
    }
}
