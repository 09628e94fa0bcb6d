//! Errors as OpenAI's clients expect them: `{"error": {"message", "type",
//! "param", "code"}}`. Every error the HTTP API answers is built here, one
//! constructor per row of DESIGN §4's table, so the wording and codes live in
//! one place.

use hyper::StatusCode;
use serde_json::json;

/// An error response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub code: Option<&'static str>,
}

impl ApiError {
    /// A path this data plane does not serve (OpenAI answers these with a
    /// null code too).
    pub fn unknown_route(method: &str, path: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "Invalid URL ({method} {path}): this Sluice data plane does not serve it"
            ),
            kind: "invalid_request_error",
            code: None,
        }
    }

    pub fn method_not_allowed(method: &str, path: &str, allowed: &str) -> Self {
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!("{path} does not accept {method}; use {allowed}"),
            kind: "invalid_request_error",
            code: Some("method_not_allowed"),
        }
    }

    /// 401 `invalid_api_key`, for endpoints that want the data-plane token.
    pub fn data_plane_token_required() -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "this endpoint needs `Authorization: Bearer <data-plane token>` \
                      (the SLUICE_DATA_PLANE_TOKEN this data plane runs with)"
                .into(),
            kind: "invalid_request_error",
            code: Some("invalid_api_key"),
        }
    }

    /// 503: no configuration to answer from yet.
    pub fn no_configuration(reason: &str) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("no configuration loaded yet: {reason}"),
            kind: "service_unavailable",
            code: Some("no_configuration"),
        }
    }

    /// A bug on our side, said plainly rather than as a bare 500.
    pub fn internal(what: &str) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("{what}; this is a bug in the data plane, see its log"),
            kind: "server_error",
            code: Some("internal_error"),
        }
    }

    pub fn body(&self) -> String {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": null,
                "code": self.code,
            }
        })
        .to_string()
    }
}
