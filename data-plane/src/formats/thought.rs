//! Gemini's thought signatures across a translation. Gemini (3 and later)
//! signs each function call it makes (`tool_calls[i].extra_content.google
//! .thought_signature` in its OpenAI-compatible API) and refuses the next
//! turn if the call comes back without its signature. A client of another
//! API (Anthropic's Messages, OpenAI's Responses) has nowhere to keep it
//! but the one thing it always sends back unchanged: the call's id. So a
//! signed call's id becomes `{id}__thought__{signature}` on the way to the
//! client, and is split again on the way back.
//!
//! The signature is standard base64; in the id it is written URL-safe and
//! unpadded, so the id stays within `[A-Za-z0-9_-]` (what Anthropic's API
//! accepts as a `tool_use` id, should the conversation move to Claude).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// Between a call's own id and its signature.
pub const SEPARATOR: &str = "__thought__";

/// A tool call's `extra_content`, as read from an answer: only Google's
/// signature is looked at.
#[derive(Debug, Default, Deserialize)]
pub struct ExtraContent<'a> {
    #[serde(default, borrow)]
    google: Option<Google<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Google<'a> {
    #[serde(default, borrow)]
    thought_signature: Option<Cow<'a, str>>,
}

impl ExtraContent<'_> {
    /// The call's thought signature, when it has a non-empty one.
    pub fn signature(&self) -> Option<&str> {
        let signature = self.google.as_ref()?.thought_signature.as_deref()?;
        (!signature.is_empty()).then_some(signature)
    }
}

/// A tool call's `extra_content` as sent back upstream.
#[derive(Debug, Serialize)]
pub struct ExtraContentOut {
    google: GoogleOut,
}

#[derive(Debug, Serialize)]
struct GoogleOut {
    thought_signature: String,
}

impl ExtraContentOut {
    /// As a JSON value, for a struct that keeps its other members in a map.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::json!({"google": {"thought_signature": self.google.thought_signature}})
    }
}

/// `id` carrying `signature`.
pub fn sign(id: &str, signature: &str) -> String {
    let mut out = String::with_capacity(id.len() + SEPARATOR.len() + signature.len());
    out.push_str(id);
    out.push_str(SEPARATOR);
    out.extend(signature.chars().filter(|&c| c != '=').map(|c| match c {
        '+' => '-',
        '/' => '_',
        c => c,
    }));
    out
}

/// A call id as the client sent it back: its own id, and the
/// `extra_content` to send upstream with the call when it carried a
/// signature ([`sign`]).
pub fn split(id: &str) -> (&str, Option<ExtraContentOut>) {
    let Some((own, signature)) = id.split_once(SEPARATOR) else {
        return (id, None);
    };
    if signature.is_empty() {
        return (own, None);
    }
    let mut standard: String = signature
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !standard.len().is_multiple_of(4) {
        standard.push('=');
    }
    (
        own,
        Some(ExtraContentOut {
            google: GoogleOut {
                thought_signature: standard,
            },
        }),
    )
}

/// A call id as the client sent it back, without its signature: what the
/// tool result that answers it names.
pub fn own_id(id: &str) -> &str {
    id.split_once(SEPARATOR).map_or(id, |(own, _)| own)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_signature_survives_the_round_trip_through_an_id() {
        for signature in ["CiQB0e2Kb+/x9w==", "Cg8B", "YWJj/+d", "a"] {
            let signed = sign("call_1", signature);
            assert!(
                signed
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "{signed}"
            );
            let (own, extra) = split(&signed);
            assert_eq!(own, "call_1");
            let back = serde_json::to_value(extra.unwrap()).unwrap();
            let padded = format!("{}{}", signature.trim_end_matches('='), {
                let n = signature.trim_end_matches('=').len();
                "=".repeat((4 - n % 4) % 4)
            });
            assert_eq!(back, json!({"google": {"thought_signature": padded}}));
            assert_eq!(own_id(&signed), "call_1");
        }
        assert!(split("toolu_01A").1.is_none());
        assert_eq!(split("toolu_01A").0, "toolu_01A");
        assert_eq!(own_id("toolu_01A"), "toolu_01A");
        let (own, extra) = split("call__thought__");
        assert_eq!((own, extra.is_none()), ("call", true));
    }

    #[test]
    fn only_a_google_signature_is_read() {
        let read = |v: serde_json::Value| {
            let text = v.to_string();
            let extra: ExtraContent<'_> = serde_json::from_str(&text).unwrap();
            extra.signature().map(str::to_owned)
        };
        assert_eq!(
            read(json!({"google": {"thought_signature": "abc="}})).as_deref(),
            Some("abc=")
        );
        assert_eq!(read(json!({"google": {"thought_signature": ""}})), None);
        assert_eq!(read(json!({"google": {}})), None);
        assert_eq!(read(json!({"other": 1})), None);
    }
}
