//! Anthropic's errors: the envelope `{"type": "error", "error": {"type",
//! "message"}}`, its error types and their HTTP statuses (Anthropic's
//! errors reference), and an Anthropic error turned into OpenAI's shape for
//! an OpenAI client of a Claude deployment.
//!
//! | status | type |
//! |---|---|
//! | 400 (and other 4xx) | `invalid_request_error` |
//! | 401 | `authentication_error` |
//! | 402 | `billing_error` |
//! | 403 | `permission_error` |
//! | 404 | `not_found_error` |
//! | 409 | `conflict_error` |
//! | 413 | `request_too_large` |
//! | 429 | `rate_limit_error` |
//! | 500 (and other 5xx) | `api_error` |
//! | 504 | `timeout_error` |
//! | 529 | `overloaded_error` |

use serde::{Deserialize, Serialize};

use super::types::ErrorEnvelope;

/// Every error type with its status, in the table's order.
const TYPES: [(&str, u16); 11] = [
    ("invalid_request_error", 400),
    ("authentication_error", 401),
    ("billing_error", 402),
    ("permission_error", 403),
    ("not_found_error", 404),
    ("conflict_error", 409),
    ("request_too_large", 413),
    ("rate_limit_error", 429),
    ("api_error", 500),
    ("timeout_error", 504),
    ("overloaded_error", 529),
];

/// An error body in Anthropic's shape.
pub fn envelope(kind: &str, message: &str) -> String {
    #[derive(Serialize)]
    struct Envelope<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        error: Body<'a>,
    }
    #[derive(Serialize)]
    struct Body<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        message: &'a str,
    }
    serde_json::to_string(&Envelope {
        kind: "error",
        error: Body { kind, message },
    })
    .unwrap_or_default()
}

/// The Anthropic error type for an HTTP status: what Sluice's own errors
/// carry on the `/v1/messages` routes. Sluice's 503 (every deployment
/// cooling down, no configuration yet) is `overloaded_error`, a temporary
/// lack of capacity the SDKs retry; a 502 is `api_error`.
pub fn type_for_status(status: u16) -> &'static str {
    if let Some((kind, _)) = TYPES.iter().find(|(_, s)| *s == status) {
        return kind;
    }
    match status {
        503 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The HTTP status of an Anthropic error type; `None` for a type this
/// module does not know.
pub fn status_for_type(kind: &str) -> Option<u16> {
    TYPES.iter().find(|(k, _)| *k == kind).map(|(_, s)| *s)
}

/// The OpenAI error `type` for an Anthropic error type, as Sluice's own
/// OpenAI errors name them: `rate_limit_error` → `requests`,
/// `billing_error` → `insufficient_quota`, `overloaded_error` →
/// `service_unavailable`, `api_error` and `timeout_error` → `server_error`,
/// the client's faults → `invalid_request_error` (`permission_error` kept);
/// a type this module does not know is kept as it is.
pub fn openai_type(kind: &str) -> &str {
    match kind {
        "invalid_request_error"
        | "authentication_error"
        | "not_found_error"
        | "conflict_error"
        | "request_too_large" => "invalid_request_error",
        "permission_error" => "permission_error",
        "billing_error" => "insufficient_quota",
        "rate_limit_error" => "requests",
        "api_error" | "timeout_error" => "server_error",
        "overloaded_error" => "service_unavailable",
        other => other,
    }
}

/// An Anthropic error body → OpenAI's `{"error": {"message", "type",
/// "param": null, "code"}}`, with `code` the Anthropic type and `type`
/// [`openai_type`]'s; `None` when `body` is not Anthropic's error shape.
pub fn to_openai(body: &[u8]) -> Option<Vec<u8>> {
    let envelope: ErrorEnvelope = serde_json::from_slice(body).ok()?;
    if envelope.kind != "error" {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + 64);
    write_openai(
        &mut out,
        &envelope.error.message,
        &envelope.error.kind,
        None,
    );
    Some(out)
}

/// Writes `{"error": {"message", "type", "param": null, "code"}}` with
/// `code` = `kind` (or `code` when given) and `type` = [`openai_type`].
fn write_openai(out: &mut Vec<u8>, message: &str, kind: &str, code: Option<&str>) {
    #[derive(Serialize)]
    struct Outer<'a> {
        error: Inner<'a>,
    }
    #[derive(Serialize)]
    struct Inner<'a> {
        message: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        param: Option<&'a str>,
        code: &'a str,
    }
    let outer = Outer {
        error: Inner {
            message,
            kind: openai_type(kind),
            param: None,
            code: code.unwrap_or(kind),
        },
    };
    // Writing plain strings into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &outer);
}

/// The code of the OpenAI error event that ends a translated stream cut by
/// an error (the same as Sluice's other interrupted streams).
pub const STREAM_INTERRUPTED: &str = "stream_interrupted";

/// Appends the OpenAI SSE error event that ends a translated stream:
/// `data: {"error": {"message": "<kind>: <message>", "type": <mapped>,
/// "param": null, "code": "stream_interrupted"}}` and its blank line.
pub fn write_stream_error(out: &mut Vec<u8>, kind: &str, message: &str) {
    let text = format!("{kind}: {message}");
    out.extend_from_slice(b"data: ");
    write_openai(out, &text, kind, Some(STREAM_INTERRUPTED));
    out.extend_from_slice(b"\n\n");
}

/// The OpenAI SSE error event for the data of an Anthropic `error` event
/// (`{"type": "error", "error": {"type", "message"}}`); `None` when `data`
/// is not that shape.
pub fn stream_error(data: &str) -> Option<Vec<u8>> {
    #[derive(Deserialize)]
    struct Event<'a> {
        #[serde(borrow)]
        error: super::types::ErrorBody<'a>,
    }
    let event: Event = serde_json::from_str(data).ok()?;
    let mut out = Vec::with_capacity(data.len() + 96);
    write_stream_error(&mut out, &event.error.kind, &event.error.message);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn envelopes_are_anthropics_shape() {
        assert_eq!(
            parse(envelope("permission_error", "no \"x\"").as_bytes()),
            json!({"type": "error", "error": {"type": "permission_error", "message": "no \"x\""}})
        );
    }

    #[test]
    fn statuses_and_types_agree_both_ways() {
        for (kind, status) in TYPES {
            assert_eq!(type_for_status(status), kind);
            assert_eq!(status_for_type(kind), Some(status));
        }
        assert_eq!(type_for_status(422), "invalid_request_error");
        assert_eq!(type_for_status(503), "overloaded_error");
        assert_eq!(type_for_status(502), "api_error");
        assert_eq!(type_for_status(200), "api_error");
        assert_eq!(status_for_type("new_error"), None);
    }

    #[test]
    fn anthropic_errors_become_openai_errors() {
        let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
        assert_eq!(
            parse(&to_openai(body).unwrap()),
            json!({"error": {"message": "Overloaded", "type": "service_unavailable",
                             "param": null, "code": "overloaded_error"}})
        );
        let body = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
        let openai = parse(&to_openai(body).unwrap());
        assert_eq!(openai["error"]["type"], "invalid_request_error");
        assert_eq!(openai["error"]["code"], "invalid_request_error");
        for (kind, expected) in [
            ("rate_limit_error", "requests"),
            ("authentication_error", "invalid_request_error"),
            ("billing_error", "insufficient_quota"),
            ("api_error", "server_error"),
            ("timeout_error", "server_error"),
            ("permission_error", "permission_error"),
            ("brand_new_error", "brand_new_error"),
        ] {
            let body = envelope(kind, "m");
            let openai = parse(&to_openai(body.as_bytes()).unwrap());
            assert_eq!(openai["error"]["type"], expected, "{kind}");
            assert_eq!(openai["error"]["code"], kind);
        }
        for not_anthropic in [
            &br#"{"error":{"message":"x","type":"y"}}"#[..],
            br#"{"type":"message","error":{"type":"x","message":"y"}}"#,
            b"<html>",
            b"",
        ] {
            assert_eq!(to_openai(not_anthropic), None);
        }
    }

    #[test]
    fn stream_errors_are_one_openai_event() {
        let event = stream_error(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        )
        .unwrap();
        let text = String::from_utf8(event).unwrap();
        let data = text
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        assert_eq!(
            parse(data.as_bytes()),
            json!({"error": {"message": "overloaded_error: Overloaded",
                             "type": "service_unavailable", "param": null,
                             "code": "stream_interrupted"}})
        );
        assert_eq!(stream_error("{}"), None);
    }
}
