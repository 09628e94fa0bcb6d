//! OpenAI's error shape: `{"error": {"message", "type", "param", "code"}}`,
//! which every OpenAI SDK parses.

use serde_json::json;

/// One error in OpenAI's shape.
#[derive(Debug, Clone, Copy)]
pub struct Error<'a> {
    pub message: &'a str,
    /// OpenAI's `type`: `invalid_request_error`, `api_error`, ….
    pub kind: &'a str,
    /// The request field at fault.
    pub param: Option<&'a str>,
    pub code: Option<&'a str>,
    /// Sluice's addition to a 403: the models the key may use.
    pub available_models: Option<&'a [String]>,
}

impl Error<'_> {
    /// The error as a JSON body.
    pub fn body(&self) -> String {
        let mut error = json!({
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        });
        if let (Some(models), Some(object)) = (self.available_models, error.as_object_mut()) {
            object.insert("available_models".into(), json!(models));
        }
        json!({ "error": error }).to_string()
    }
}

/// Whether `body` is `{"error": {...}}`, OpenAI's error shape.
pub fn is_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .is_some_and(|v| v.get("error").is_some_and(serde_json::Value::is_object))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_error_shape() {
        assert!(is_error(br#"{"error":{"message":"x"}}"#));
        assert!(!is_error(br#"{"error":"x"}"#));
        assert!(!is_error(b"<html>"));
    }

    #[test]
    fn bodies_carry_every_field_and_models_only_when_listed() {
        let error = Error {
            message: "no",
            kind: "permission_error",
            param: Some("model"),
            code: Some("model_access_denied"),
            available_models: None,
        };
        let body: serde_json::Value = serde_json::from_str(&error.body()).unwrap();
        assert_eq!(
            body,
            json!({"error": {"message": "no", "type": "permission_error",
                             "param": "model", "code": "model_access_denied"}})
        );
        let models = ["a".to_owned()];
        let listed = Error {
            available_models: Some(&models),
            param: None,
            ..error
        };
        let body: serde_json::Value = serde_json::from_str(&listed.body()).unwrap();
        assert_eq!(body["error"]["available_models"], json!(["a"]));
        assert_eq!(body["error"]["param"], json!(null));
    }
}
