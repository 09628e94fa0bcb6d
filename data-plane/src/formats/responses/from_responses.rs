//! A Responses request → a chat completions request.

use crate::formats::TranslateError;

/// The chat completions request for a Responses request `body`, asking the
/// upstream for `model`.
pub fn request(body: &[u8], model: &str) -> Result<Vec<u8>, TranslateError> {
    let _ = (body, model);
    Err(TranslateError::Invalid {
        param: None,
        message: "not yet translated".into(),
    })
}
