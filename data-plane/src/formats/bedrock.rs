//! Bedrock's shapes around Claude's: a streamed answer is an event stream
//! ([`super::eventstream`]) whose `chunk` events carry each of Anthropic's
//! events base64-encoded in `{"bytes": "…"}`, and whose `exception`
//! messages are errors; an error answer is AWS's `{"message": "…"}`, its
//! kind in the `x-amzn-errortype` header. [`sse`] makes Anthropic's
//! server-sent events of the messages, so everything after (pass-through,
//! translation, usage) reads Claude's stream as Anthropic sends it; the
//! Converse API's events (`messageStart`, `contentBlockDelta`, …) become
//! events of their type's name with their JSON, for
//! [`super::converse::ConverseStream`].

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::anthropic::error::{envelope, openai_type, type_for_status};
use super::eventstream::Message;
use super::openai;

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow)]
    bytes: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Typed<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
struct AwsError<'a> {
    #[serde(borrow, alias = "Message")]
    message: Cow<'a, str>,
}

/// Anthropic's server-sent event for one message of Bedrock's stream: a
/// chunk's event as Claude wrote it, an exception as Anthropic's `error`
/// event; `None` for a message that carries neither (skipped).
pub fn sse(message: &Message) -> Option<Vec<u8>> {
    match message.header(":message-type") {
        Some("exception") | Some("error") => {
            let kind = message
                .header(":exception-type")
                .or_else(|| message.header(":error-code"))
                .unwrap_or("internalServerException");
            let text = serde_json::from_slice::<AwsError<'_>>(&message.payload)
                .map(|e| e.message.into_owned())
                .or_else(|_| {
                    message
                        .header(":error-message")
                        .map(str::to_owned)
                        .ok_or(())
                })
                .unwrap_or_else(|_| format!("Bedrock's stream failed: {kind}"));
            let data = envelope(anthropic_type(kind), &text);
            Some(event("error", data.as_bytes()))
        }
        _ => match message.header(":event-type") {
            // InvokeModel's: Claude's own event, base64-encoded.
            Some("chunk") | None => {
                let chunk: Chunk<'_> = serde_json::from_slice(&message.payload).ok()?;
                let data = STANDARD.decode(chunk.bytes.as_bytes()).ok()?;
                let typed: Typed<'_> = serde_json::from_slice(&data).ok()?;
                Some(event(&typed.kind, &data))
            }
            // Converse's: the event's JSON, named by its type.
            Some(kind) => Some(event(kind, &message.payload)),
        },
    }
}

fn event(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + data.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    out
}

/// Anthropic's error type for one of Bedrock's exceptions.
fn anthropic_type(exception: &str) -> &'static str {
    // `throttlingException`, `ThrottlingException:http://…`: the name only.
    let name = exception.split(':').next().unwrap_or(exception);
    match name.to_ascii_lowercase().as_str() {
        "throttlingexception" => "rate_limit_error",
        "serviceunavailableexception" => "overloaded_error",
        "validationexception" => "invalid_request_error",
        "accessdeniedexception" => "permission_error",
        "resourcenotfoundexception" => "not_found_error",
        _ => "api_error",
    }
}

/// The message of AWS's error body `{"message": "…"}` (or `"Message"`),
/// when `body` is one and not another API's.
pub fn error_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object()?;
    if object.contains_key("error") || object.contains_key("type") {
        return None;
    }
    let error: AwsError<'_> = serde_json::from_slice(body).ok()?;
    Some(error.message.into_owned())
}

/// AWS's error `body`, answered with HTTP `status`, in OpenAI's shape.
pub fn to_openai(body: &[u8], status: u16) -> Option<Vec<u8>> {
    let message = error_message(body)?;
    Some(
        openai::Error {
            message: &message,
            kind: openai_type(type_for_status(status)),
            param: None,
            code: None,
            available_models: None,
        }
        .body()
        .into_bytes(),
    )
}

/// AWS's error `body`, answered with HTTP `status`, in Anthropic's
/// envelope.
pub fn to_anthropic(body: &[u8], status: u16) -> Option<Vec<u8>> {
    let message = error_message(body)?;
    Some(envelope(type_for_status(status), &message).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::eventstream::{Decoder, encode};
    use serde_json::{Value, json};

    fn message(headers: &[(&str, &str)], payload: &Value) -> Message {
        let mut decoder = Decoder::default();
        decoder.push(&encode(headers, payload.to_string().as_bytes()));
        decoder.next_message().unwrap().unwrap()
    }

    #[test]
    fn chunks_become_anthropics_events_as_claude_wrote_them() {
        let claude = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi \u00e9"}}"#;
        let chunk = message(
            &[(":message-type", "event"), (":event-type", "chunk")],
            &json!({"bytes": STANDARD.encode(claude), "p": "abcd"}),
        );
        assert_eq!(
            String::from_utf8(sse(&chunk).unwrap()).unwrap(),
            format!("event: content_block_delta\ndata: {claude}\n\n")
        );
        let odd = message(&[(":event-type", "chunk")], &json!({"other": 1}));
        assert_eq!(sse(&odd), None);
        let converse = message(
            &[(":message-type", "event"), (":event-type", "messageStop")],
            &json!({"stopReason": "end_turn"}),
        );
        assert_eq!(
            String::from_utf8(sse(&converse).unwrap()).unwrap(),
            "event: messageStop\ndata: {\"stopReason\":\"end_turn\"}\n\n"
        );
    }

    #[test]
    fn exceptions_become_error_events() {
        let e = message(
            &[
                (":message-type", "exception"),
                (":exception-type", "throttlingException"),
            ],
            &json!({"message": "Too many tokens, please wait before trying again."}),
        );
        let text = String::from_utf8(sse(&e).unwrap()).unwrap();
        let data: Value =
            serde_json::from_str(text.strip_prefix("event: error\ndata: ").unwrap().trim())
                .unwrap();
        assert_eq!(data["type"], "error");
        assert_eq!(data["error"]["type"], "rate_limit_error");
        assert_eq!(
            data["error"]["message"],
            "Too many tokens, please wait before trying again."
        );
        let e = message(
            &[
                (":message-type", "exception"),
                (":exception-type", "modelStreamErrorException"),
            ],
            &json!({}),
        );
        let text = String::from_utf8(sse(&e).unwrap()).unwrap();
        assert!(text.contains(r#""type":"api_error""#), "{text}");
    }

    #[test]
    fn aws_errors_are_told_from_the_others_and_rewritten() {
        let body = br#"{"message":"Input is too long for requested model."}"#;
        assert_eq!(
            error_message(body).as_deref(),
            Some("Input is too long for requested model.")
        );
        assert_eq!(error_message(br#"{"Message":"x"}"#).as_deref(), Some("x"));
        assert_eq!(
            error_message(br#"{"type":"error","error":{"type":"x","message":"m"}}"#),
            None
        );
        assert_eq!(error_message(br#"{"error":{"message":"m"}}"#), None);
        let openai: Value = serde_json::from_slice(&to_openai(body, 400).unwrap()).unwrap();
        assert_eq!(
            openai["error"]["message"],
            "Input is too long for requested model."
        );
        assert_eq!(openai["error"]["type"], "invalid_request_error");
        let anthropic: Value = serde_json::from_slice(&to_anthropic(body, 429).unwrap()).unwrap();
        assert_eq!(anthropic["error"]["type"], "rate_limit_error");
    }
}
