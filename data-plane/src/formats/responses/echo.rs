//! The request's parameters a `response` object repeats.
//!
//! A `response` object carries, beside its output, most of the request
//! that made it: `instructions`, `max_output_tokens`, `model`,
//! `parallel_tool_calls`, `previous_response_id`, `reasoning`,
//! `temperature`, `top_p`, `text`, `tool_choice`, `tools`, `truncation`,
//! `metadata`, `user` and `store`. [`Echo`] keeps them as the client wrote
//! them (what it left out gets the API's default) and writes them into
//! each `response` object [`super::to_responses`] makes. `store` is always
//! `false`: a translated deployment stores nothing.

use serde_json::{Map, Value, json};

/// What a `response` object echoes of its request.
#[derive(Debug, Clone, Default)]
pub struct Echo {
    instructions: Option<Value>,
    max_output_tokens: Option<Value>,
    model: Option<String>,
    parallel_tool_calls: Option<Value>,
    previous_response_id: Option<Value>,
    reasoning: Option<Value>,
    temperature: Option<Value>,
    top_p: Option<Value>,
    text: Option<Value>,
    tool_choice: Option<Value>,
    tools: Option<Value>,
    truncation: Option<Value>,
    metadata: Option<Value>,
    user: Option<Value>,
    /// The names of the request's `custom` tools: the answer's calls of
    /// them are `custom_tool_call`s.
    custom_tools: Vec<String>,
    /// The tools declared in a `namespace`, by name, with its name: the
    /// answer's calls of them name it again.
    namespaced: Vec<(String, String)>,
}

impl Echo {
    /// Read from a Responses request body; what cannot be read is left out.
    pub fn from_request(body: &[u8]) -> Echo {
        let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(body) else {
            return Echo::default();
        };
        let input = request.remove("input");
        // `null` is as good as absent: the default is written instead.
        let mut take = |key: &str| request.remove(key).filter(|v| !v.is_null());
        let reasoning = take("reasoning").filter(Value::is_object).map(|r| {
            json!({
                "effort": r.get("effort").cloned().unwrap_or(Value::Null),
                "summary": r.get("summary").cloned().unwrap_or(Value::Null),
            })
        });
        let tools = take("tools").filter(Value::is_array);
        let (custom_tools, namespaced) = declared_tools(tools.as_ref(), input.as_ref());
        Echo {
            instructions: take("instructions"),
            max_output_tokens: take("max_output_tokens").filter(Value::is_u64),
            model: take("model").and_then(|m| m.as_str().map(str::to_owned)),
            parallel_tool_calls: take("parallel_tool_calls").filter(Value::is_boolean),
            previous_response_id: take("previous_response_id").filter(Value::is_string),
            reasoning,
            temperature: take("temperature").filter(Value::is_number),
            top_p: take("top_p").filter(Value::is_number),
            text: take("text").filter(Value::is_object),
            tool_choice: take("tool_choice"),
            tools,
            truncation: take("truncation").filter(Value::is_string),
            metadata: take("metadata").filter(Value::is_object),
            user: take("user").filter(Value::is_string),
            custom_tools,
            namespaced,
        }
    }

    /// Whether `name` is one of the request's `custom` tools.
    pub(crate) fn is_custom(&self, name: &str) -> bool {
        self.custom_tools.iter().any(|t| t == name)
    }

    /// The namespace the tool `name` was declared in, if any.
    pub(crate) fn namespace_of(&self, name: &str) -> Option<&str> {
        self.namespaced
            .iter()
            .find(|(tool, _)| tool == name)
            .map(|(_, namespace)| namespace.as_str())
    }

    /// Writes the echoed members into `response`; `model` is the
    /// upstream's when it named one, else the request's.
    pub(crate) fn write(&self, response: &mut Map<String, Value>, model: Option<&str>) {
        let or = |v: &Option<Value>, default: Value| v.clone().unwrap_or(default);
        let model = model
            .map(str::to_owned)
            .or_else(|| self.model.clone())
            .map_or(Value::Null, Value::String);
        let text = self
            .text
            .clone()
            .map(|mut t| {
                if let Some(t) = t.as_object_mut() {
                    t.entry("format").or_insert(json!({"type": "text"}));
                }
                t
            })
            .unwrap_or(json!({"format": {"type": "text"}}));
        for (key, value) in [
            ("instructions", or(&self.instructions, Value::Null)),
            (
                "max_output_tokens",
                or(&self.max_output_tokens, Value::Null),
            ),
            ("model", model),
            (
                "parallel_tool_calls",
                or(&self.parallel_tool_calls, Value::Bool(true)),
            ),
            (
                "previous_response_id",
                or(&self.previous_response_id, Value::Null),
            ),
            (
                "reasoning",
                or(&self.reasoning, json!({"effort": null, "summary": null})),
            ),
            ("temperature", or(&self.temperature, Value::Null)),
            ("top_p", or(&self.top_p, Value::Null)),
            ("text", text),
            ("tool_choice", or(&self.tool_choice, json!("auto"))),
            ("tools", or(&self.tools, json!([]))),
            ("truncation", or(&self.truncation, json!("disabled"))),
            ("metadata", or(&self.metadata, json!({}))),
            ("user", or(&self.user, Value::Null)),
            ("store", Value::Bool(false)),
        ] {
            response.insert(key.to_owned(), value);
        }
    }
}

/// The names of the `custom` tools among `tools` and those of `input`'s
/// `additional_tools` items, and each tool declared in a `namespace` with
/// that namespace's name.
fn declared_tools(
    tools: Option<&Value>,
    input: Option<&Value>,
) -> (Vec<String>, Vec<(String, String)>) {
    let added = input
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|item| item["type"] == "additional_tools")
        .filter_map(|item| item["tools"].as_array());
    let mut declared = Vec::new();
    for list in tools.and_then(Value::as_array).into_iter().chain(added) {
        for tool in list {
            if tool["type"] == "namespace" {
                let namespace = tool["name"].as_str().unwrap_or_default();
                for inner in tool["tools"].as_array().into_iter().flatten() {
                    declared.push((Some(namespace), inner));
                }
            } else {
                declared.push((None, tool));
            }
        }
    }
    let named = |t: &Value| t["name"].as_str().map(str::to_owned);
    let custom = declared
        .iter()
        .filter(|(_, t)| t["type"] == "custom")
        .filter_map(|(_, t)| named(t))
        .collect();
    let namespaced = declared
        .iter()
        .filter_map(|(ns, t)| Some((named(t)?, (*ns)?.to_owned())))
        .collect();
    (custom, namespaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(body: &str, model: Option<&str>) -> Value {
        let mut map = Map::new();
        Echo::from_request(body.as_bytes()).write(&mut map, model);
        Value::Object(map)
    }

    #[test]
    fn defaults_when_the_request_says_nothing_or_is_not_json() {
        for body in ["{}", "not json", "[1]", r#"{"model":null,"tools":"x"}"#] {
            let got = written(body, None);
            assert_eq!(got["parallel_tool_calls"], true, "{body}");
            assert_eq!(got["tool_choice"], "auto");
            assert_eq!(got["text"], json!({"format": {"type": "text"}}));
            assert_eq!(got["truncation"], "disabled");
            assert_eq!(got["metadata"], json!({}));
            assert_eq!(got["tools"], json!([]));
            assert_eq!(got["reasoning"], json!({"effort": null, "summary": null}));
            assert_eq!(got["store"], false);
            assert_eq!(got["model"], Value::Null);
        }
    }

    #[test]
    fn echoes_what_the_request_sent() {
        let body = r#"{"model":"gpt-4o","input":"hi","instructions":"be brief","max_output_tokens":64,
            "parallel_tool_calls":false,"reasoning":{"effort":"low"},"temperature":0.5,"top_p":0.9,
            "text":{"verbosity":"low"},"tool_choice":"required","store":true,
            "tools":[{"type":"function","name":"f","parameters":{}}],"truncation":"auto",
            "metadata":{"k":"v"},"user":"u1"}"#;
        let got = written(body, Some("gpt-4o-2024-08-06"));
        assert_eq!(got["model"], "gpt-4o-2024-08-06");
        assert_eq!(written(body, None)["model"], "gpt-4o");
        assert_eq!(got["instructions"], "be brief");
        assert_eq!(got["max_output_tokens"], 64);
        assert_eq!(got["parallel_tool_calls"], false);
        assert_eq!(got["reasoning"], json!({"effort": "low", "summary": null}));
        assert_eq!(got["temperature"], 0.5);
        assert_eq!(got["top_p"], 0.9);
        assert_eq!(
            got["text"],
            json!({"verbosity": "low", "format": {"type": "text"}})
        );
        assert_eq!(got["tool_choice"], "required");
        assert_eq!(got["tools"][0]["name"], "f");
        assert_eq!(got["truncation"], "auto");
        assert_eq!(got["metadata"], json!({"k": "v"}));
        assert_eq!(got["user"], "u1");
        assert_eq!(got["store"], false);
    }

    #[test]
    fn knows_which_tools_are_custom() {
        let echo = Echo::from_request(
            br#"{"tools":[{"type":"function","name":"f"},{"type":"custom","name":"apply_patch"}]}"#,
        );
        assert!(echo.is_custom("apply_patch"));
        assert!(!echo.is_custom("f"));
        assert!(!Echo::from_request(b"{}").is_custom("apply_patch"));
    }
}
