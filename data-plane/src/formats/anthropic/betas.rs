//! A client's `anthropic-beta` flags as a cloud hosting Claude takes them.
//! Anthropic's API ignores a flag it does not know; Bedrock and Vertex AI
//! refuse the whole request over one ("invalid beta flag", "Unexpected
//! value(s) … for the `anthropic-beta` header"), and the clients that send
//! the most flags are the agents a gateway is for: Claude Code, pointed at
//! a base URL, believes it talks to Anthropic's own API and sends its
//! first-party flags (`claude-code-20250219`, `mcp-servers-…`,
//! `prompt-caching-scope-…`) with every request. So each cloud is sent only
//! the flags it documents, under its own names, where it reads them:
//!
//! - **Bedrock** (`InvokeModel`) reads them from the body's
//!   `anthropic_beta` and refuses unknown ones in its `anthropic-beta`
//!   header too: the body carries them, no header is sent.
//! - **Vertex AI** reads most from the header (a `context_management` body
//!   is refused without it) but refuses `context-1m-…` there, which it
//!   takes from the body: the body carries every kept flag, the header all
//!   but that one.
//!
//! Both name Anthropic's `advanced-tool-use-2025-11-20` (tool search)
//! `tool-search-tool-2025-10-19`. A flag a cloud does not list is left out
//! (the request goes on without that feature) and named in the debug log.
//! The lists are the clouds' documentation as of 2026-12.

/// A cloud that hosts Claude.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Bedrock,
    Vertex,
}

/// The flags Bedrock's `InvokeModel` takes for Claude.
const BEDROCK: &[&str] = &[
    "computer-use-2024-10-22",
    "computer-use-2025-01-24",
    "computer-use-2025-11-24",
    "token-efficient-tools-2025-02-19",
    "interleaved-thinking-2025-05-14",
    "output-128k-2025-02-19",
    "dev-full-thinking-2025-05-14",
    "context-1m-2025-08-07",
    "context-management-2025-06-27",
    "effort-2025-11-24",
    "tool-search-tool-2025-10-19",
    "tool-examples-2025-10-29",
    "compact-2026-01-12",
    "fine-grained-tool-streaming-2025-05-14",
];

/// The flags Vertex AI takes for Claude.
const VERTEX: &[&str] = &[
    "computer-use-2024-10-22",
    "computer-use-2025-01-24",
    "computer-use-2025-11-24",
    "interleaved-thinking-2025-05-14",
    "context-1m-2025-08-07",
    "context-management-2025-06-27",
    "tool-search-tool-2025-10-19",
    "compact-2026-01-12",
    "web-search-2025-03-05",
];

/// Vertex AI's flags it refuses in the header and reads from the body.
const VERTEX_BODY_ONLY: &[&str] = &["context-1m-2025-08-07"];

/// Anthropic's names the clouds know by another.
const RENAMED: &[(&str, &str)] = &[(
    "advanced-tool-use-2025-11-20",
    "tool-search-tool-2025-10-19",
)];

/// Where a cloud is sent a client's flags.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Placed {
    /// For the body's `anthropic_beta`.
    pub body: Vec<&'static str>,
    /// For the `anthropic-beta` header, comma-separated; empty for none.
    pub header: String,
}

/// The flags of `header` (a client's `anthropic-beta`, comma-separated) as
/// `cloud` takes them, each once, in the client's order.
pub fn place(cloud: Cloud, header: &str) -> Placed {
    let known = match cloud {
        Cloud::Bedrock => BEDROCK,
        Cloud::Vertex => VERTEX,
    };
    let mut placed = Placed::default();
    for flag in header.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let named = RENAMED
            .iter()
            .find(|(anthropic, _)| *anthropic == flag)
            .map_or(flag, |(_, cloud)| cloud);
        let Some(&kept) = known.iter().find(|k| **k == named) else {
            tracing::debug!(
                flag,
                ?cloud,
                "a beta flag the cloud does not take, left out"
            );
            continue;
        };
        if placed.body.contains(&kept) {
            continue;
        }
        placed.body.push(kept);
        if cloud == Cloud::Vertex && !VERTEX_BODY_ONLY.contains(&kept) {
            if !placed.header.is_empty() {
                placed.header.push(',');
            }
            placed.header.push_str(kept);
        }
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Claude Code sends with a request (2.1, first-party API).
    const CLAUDE_CODE: &str = "claude-code-20250219,interleaved-thinking-2025-05-14,\
        context-management-2025-06-27,prompt-caching-scope-2026-01-05,\
        mcp-servers-2025-12-04, advanced-tool-use-2025-11-20,effort-2025-11-24, context-1m-2025-08-07";

    #[test]
    fn bedrock_gets_the_flags_it_takes_in_the_body_only() {
        assert_eq!(
            place(Cloud::Bedrock, CLAUDE_CODE),
            Placed {
                body: vec![
                    "interleaved-thinking-2025-05-14",
                    "context-management-2025-06-27",
                    "tool-search-tool-2025-10-19",
                    "effort-2025-11-24",
                    "context-1m-2025-08-07",
                ],
                header: String::new(),
            }
        );
    }

    #[test]
    fn vertex_gets_them_in_the_header_but_the_long_context_in_the_body() {
        assert_eq!(
            place(Cloud::Vertex, CLAUDE_CODE),
            Placed {
                body: vec![
                    "interleaved-thinking-2025-05-14",
                    "context-management-2025-06-27",
                    "tool-search-tool-2025-10-19",
                    "context-1m-2025-08-07",
                ],
                header: "interleaved-thinking-2025-05-14,context-management-2025-06-27,tool-search-tool-2025-10-19"
                    .into(),
            }
        );
    }

    #[test]
    fn nothing_known_places_nothing_and_repeats_count_once() {
        assert_eq!(
            place(Cloud::Bedrock, " , claude-code-20250219"),
            Placed::default()
        );
        assert_eq!(
            place(
                Cloud::Vertex,
                "advanced-tool-use-2025-11-20,tool-search-tool-2025-10-19"
            )
            .body,
            vec!["tool-search-tool-2025-10-19"]
        );
    }
}
