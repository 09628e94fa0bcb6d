//! The request's parameters a `response` object repeats.

/// What a `response` object echoes of its request.
#[derive(Debug, Clone, Default)]
pub struct Echo {}

impl Echo {
    /// Read from a Responses request body; what cannot be read is left out.
    pub fn from_request(body: &[u8]) -> Echo {
        let _ = body;
        Echo {}
    }
}
