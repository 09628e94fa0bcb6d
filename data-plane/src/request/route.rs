//! The inbound route: which API operation the client called, by its path.
//! Not the format an upstream is sent ([`Format`]): a route says which
//! format the client's body and answer are in, and a deployment's provider
//! may speak another.

use crate::formats::Format;

/// An API operation a client calls with a body naming a `model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/completions`.
    Completions,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/moderations`.
    Moderations,
    /// `POST /v1/images/generations`.
    ImageGenerations,
    /// `POST /v1/messages` (Anthropic's Messages API).
    Messages,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// `POST /v1/responses` (OpenAI's Responses API).
    Responses,
    /// `POST /v1/responses/compact` (Codex's remote compaction).
    ResponsesCompact,
}

impl Route {
    /// The route a path names, with or without `/v1`.
    pub fn from_path(path: &str) -> Option<Route> {
        match path.strip_prefix("/v1").unwrap_or(path) {
            "/chat/completions" => Some(Route::ChatCompletions),
            "/completions" => Some(Route::Completions),
            "/embeddings" => Some(Route::Embeddings),
            "/moderations" => Some(Route::Moderations),
            "/images/generations" => Some(Route::ImageGenerations),
            "/messages" => Some(Route::Messages),
            "/messages/count_tokens" => Some(Route::CountTokens),
            "/responses" => Some(Route::Responses),
            "/responses/compact" => Some(Route::ResponsesCompact),
            _ => None,
        }
    }

    /// The format the client's body is in, and its answer is owed in.
    pub fn format(self) -> Format {
        match self {
            Route::ChatCompletions => Format::ChatCompletions,
            Route::Completions => Format::Completions,
            Route::Embeddings => Format::Embeddings,
            Route::Moderations => Format::Moderations,
            Route::ImageGenerations => Format::ImageGenerations,
            Route::Messages => Format::Messages,
            Route::CountTokens => Format::CountTokens,
            Route::Responses => Format::Responses,
            Route::ResponsesCompact => Format::ResponsesCompact,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_or_without_v1() {
        assert_eq!(
            Route::from_path("/v1/chat/completions"),
            Some(Route::ChatCompletions)
        );
        assert_eq!(Route::from_path("/completions"), Some(Route::Completions));
        assert_eq!(Route::from_path("/v1/embeddings"), Some(Route::Embeddings));
        assert_eq!(Route::from_path("/moderations"), Some(Route::Moderations));
        assert_eq!(
            Route::from_path("/v1/images/generations"),
            Some(Route::ImageGenerations)
        );
        assert_eq!(Route::from_path("/v1/messages"), Some(Route::Messages));
        assert_eq!(
            Route::from_path("/v1/messages/count_tokens"),
            Some(Route::CountTokens)
        );
        assert_eq!(Route::from_path("/v1/responses"), Some(Route::Responses));
        assert_eq!(
            Route::from_path("/v1/responses/compact"),
            Some(Route::ResponsesCompact)
        );
        assert_eq!(Route::from_path("/v1/models"), None);
        assert_eq!(Route::from_path("/v2/embeddings"), None);
    }
}
