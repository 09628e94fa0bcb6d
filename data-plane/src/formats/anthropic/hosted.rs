//! A Messages request as a cloud that hosts Claude takes it (Vertex AI's
//! `rawPredict`, Bedrock's `InvokeModel`): the model is in the URL, not the
//! body, and the API version is a body member, `anthropic_version`, not a
//! header; Bedrock takes no `stream` member either (the URL says it). The
//! other members go through as they came, values byte for byte, in their
//! order.

use super::TranslateError;
use crate::formats::members::Members;

/// Vertex AI's `anthropic_version`.
pub const VERTEX_VERSION: &str = "vertex-2023-10-16";

/// The members Vertex AI takes out: the model (but for `count-tokens`,
/// which reads it from the body).
pub const VERTEX_DROPS: &[&str] = &["model"];
/// The members Bedrock takes out: it refuses both ("extraneous key").
pub const BEDROCK_DROPS: &[&str] = &["model", "stream"];

/// `messages_body` with `anthropic_version` first and without the members
/// named in `drop`. A client's own `anthropic_version` is replaced. `betas`
/// (a client's `anthropic-beta` flags, as the cloud takes them:
/// [`super::betas`]) join it last as the list the clouds read,
/// `anthropic_beta`, unless the body has one.
pub fn body(
    messages_body: &[u8],
    anthropic_version: &str,
    drop: &[&str],
    betas: &[&str],
) -> Result<Vec<u8>, TranslateError> {
    let Members(members) =
        serde_json::from_slice(messages_body).map_err(|e| TranslateError::Invalid {
            param: None,
            message: format!("the request body is not a JSON object: {e}"),
        })?;
    let mut out = Vec::with_capacity(messages_body.len() + 48);
    out.extend_from_slice(b"{\"anthropic_version\":");
    // Writing a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, anthropic_version);
    let mut has_betas = false;
    for (key, value) in &members {
        if key == "anthropic_version" || drop.contains(&key.as_str()) {
            continue;
        }
        has_betas |= key == "anthropic_beta";
        out.push(b',');
        let _ = serde_json::to_writer(&mut out, key);
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
    }
    if !betas.is_empty() && !has_betas {
        out.extend_from_slice(b",\"anthropic_beta\":");
        let _ = serde_json::to_writer(&mut out, &betas);
    }
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosted(body: &str, keep_model: bool) -> String {
        let drop = if keep_model { &[][..] } else { VERTEX_DROPS };
        String::from_utf8(super::body(body.as_bytes(), VERTEX_VERSION, drop, &[]).unwrap()).unwrap()
    }

    #[test]
    fn the_model_leaves_the_body_and_the_version_joins_it() {
        let body = r#"{"model":"claude-sonnet-4@20250514", "max_tokens": 1024,
            "messages":[{"role":"user","content":"Hi \u00e9"}],"thinking":{"type":"enabled","budget_tokens":2048}}"#;
        assert_eq!(
            hosted(body, false),
            r#"{"anthropic_version":"vertex-2023-10-16","max_tokens":1024,"messages":[{"role":"user","content":"Hi \u00e9"}],"thinking":{"type":"enabled","budget_tokens":2048}}"#
        );
        assert_eq!(
            hosted(
                r#"{"anthropic_version":"bedrock-2023-05-31","model":"m","messages":[]}"#,
                true
            ),
            r#"{"anthropic_version":"vertex-2023-10-16","model":"m","messages":[]}"#
        );
    }

    #[test]
    fn bedrock_takes_the_stream_member_out_too() {
        let body = r#"{"stream":true,"model":"m","max_tokens":5,"messages":[]}"#;
        assert_eq!(
            String::from_utf8(
                super::body(body.as_bytes(), "bedrock-2023-05-31", BEDROCK_DROPS, &[]).unwrap()
            )
            .unwrap(),
            r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[]}"#
        );
    }

    #[test]
    fn bedrock_takes_the_beta_flags_in_the_body() {
        let hosted = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5}"#.to_vec();
        let with_betas = |body: &[u8], version: &str, betas: &[&str]| {
            super::body(body, version, BEDROCK_DROPS, betas).unwrap()
        };
        assert_eq!(
            String::from_utf8(with_betas(
                &hosted,
                "bedrock-2023-05-31",
                &["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"]
            ))
            .unwrap(),
            r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"anthropic_beta":["interleaved-thinking-2025-05-14","context-1m-2025-08-07"]}"#
        );
        assert_eq!(with_betas(&hosted, "bedrock-2023-05-31", &[]), hosted);
        let own = br#"{"anthropic_version":"v","anthropic_beta":["x"]}"#.to_vec();
        assert_eq!(
            with_betas(&own, "v", &["y"]),
            own,
            "the client's own list kept"
        );
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused() {
        for bad in ["[1]", "\"x\"", "{", ""] {
            assert!(
                super::body(bad.as_bytes(), VERTEX_VERSION, VERTEX_DROPS, &[]).is_err(),
                "{bad}"
            );
        }
    }
}
