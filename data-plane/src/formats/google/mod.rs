//! Google's error envelope, in which Gemini's OpenAI-compatible API answers
//! its errors: an array of one, `[{"error": {"code": 400, "message": "…",
//! "status": "INVALID_ARGUMENT", "details": […]}}]`, which OpenAI's and
//! Anthropic's SDKs do not read as an error. Sluice unwraps it into the
//! client's shape: the message kept, Google's `status` as the `code`, the
//! `type` the one Sluice gives the HTTP status.
//!
//! [`schema`]: tool and response schemas made the subset Gemini takes.

pub mod schema;

use std::borrow::Cow;

use serde::Deserialize;

use super::anthropic::error::{openai_type, type_for_status};
use super::openai;

/// One Google error, as its envelope carries it.
#[derive(Debug, PartialEq, Eq)]
pub struct Error {
    pub message: String,
    /// Google's canonical code (`INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED`).
    pub status: Option<String>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    error: Inner<'a>,
}

#[derive(Deserialize)]
struct Inner<'a> {
    #[serde(borrow)]
    message: Cow<'a, str>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
}

/// The error in `body` when it is Google's envelope (an array whose first
/// element is `{"error": {"message": …}}`); `None` otherwise.
pub fn error(body: &[u8]) -> Option<Error> {
    let entries: Vec<Entry<'_>> = serde_json::from_slice(body).ok()?;
    let first = entries.into_iter().next()?;
    Some(Error {
        message: first.error.message.into_owned(),
        status: first.error.status.map(Cow::into_owned),
    })
}

/// Google's error `body`, answered with HTTP `status`, in OpenAI's shape:
/// `{"error": {"message", "type", "param": null, "code"}}` with `code`
/// Google's status in lower case (`invalid_argument`); `None` when `body`
/// is not Google's envelope.
pub fn to_openai(body: &[u8], status: u16) -> Option<Vec<u8>> {
    let error = error(body)?;
    let code = error.status.map(|s| s.to_ascii_lowercase());
    let body = openai::Error {
        message: &error.message,
        kind: openai_type(type_for_status(status)),
        param: None,
        code: code.as_deref(),
        available_models: None,
    }
    .body();
    Some(body.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TOO_LONG: &str = r#"[{
      "error": {
        "code": 400,
        "message": "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).",
        "errors": [{"message": "…", "domain": "global", "reason": "badRequest"}],
        "status": "INVALID_ARGUMENT"
      }
    }]"#;

    #[test]
    fn the_envelope_is_read() {
        assert_eq!(
            error(TOO_LONG.as_bytes()),
            Some(Error {
                message: "The input token count (1200293) exceeds the maximum number of tokens \
                          allowed (1048576)."
                    .into(),
                status: Some("INVALID_ARGUMENT".into()),
            })
        );
        assert_eq!(
            error(br#"[{"error":{"message":"no status"}}]"#).map(|e| e.status),
            Some(None)
        );
        for other in [
            r#"{"error":{"message":"OpenAI's"}}"#,
            "[]",
            r#"[{"error":"text"}]"#,
            r#"[{"detail":"x"}]"#,
            "<html>",
        ] {
            assert_eq!(error(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn openai_clients_get_openais_shape() {
        let body: serde_json::Value =
            serde_json::from_slice(&to_openai(TOO_LONG.as_bytes(), 400).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"error": {
                "message": "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).",
                "type": "invalid_request_error",
                "param": null,
                "code": "invalid_argument",
            }})
        );
        let quota = br#"[{"error":{"code":429,"message":"You exceeded your current quota.","status":"RESOURCE_EXHAUSTED"}}]"#;
        let body: serde_json::Value =
            serde_json::from_slice(&to_openai(quota, 429).unwrap()).unwrap();
        assert_eq!(body["error"]["type"], "requests");
        assert_eq!(body["error"]["code"], "resource_exhausted");
        assert_eq!(to_openai(b"{}", 400), None);
    }
}
