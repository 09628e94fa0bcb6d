//! Server-sent events as OpenAI-compatible APIs stream them: `data: <json>`
//! events, each ended by a blank line, closed by `data: [DONE]`.

/// The `content-type` of an event stream.
pub const CONTENT_TYPE: &str = "text/event-stream";

/// The event that ends an OpenAI stream.
pub const DONE: &str = "data: [DONE]\n\n";

/// One event carrying `data` (a JSON value, written on one line).
pub fn event(data: impl std::fmt::Display) -> String {
    format!("data: {data}\n\n")
}

/// Whether a `content-type` value is an event stream's.
pub fn is_event_stream(content_type: &str) -> bool {
    content_type.trim_start().starts_with(CONTENT_TYPE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_their_content_type() {
        assert_eq!(event(r#"{"a":1}"#), "data: {\"a\":1}\n\n");
        assert!(is_event_stream("text/event-stream; charset=utf-8"));
        assert!(is_event_stream(" text/event-stream"));
        assert!(!is_event_stream("application/json"));
    }
}
