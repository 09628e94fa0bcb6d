use serde_json::json;

use super::*;

/// The keywords of Gemini's `Schema`, as its reference lists them.
const KEYWORDS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

/// Whether Gemini's schema checks, as its errors describe them, would
/// take `schema`.
fn gemini_takes(schema: &Json) -> Result<(), String> {
    fn walk(schema: &Json, at: &str) -> Result<(), String> {
        let Json::Object(node) = schema else {
            return Err(format!("{at}: not an object"));
        };
        for (key, value) in &node.0 {
            if !KEYWORDS.contains(&key.as_str()) {
                return Err(format!("{at}: Unknown name \"{key}\""));
            }
            match (key.as_str(), value) {
                ("properties", Json::Object(p)) => {
                    if p.is_empty() {
                        return Err(format!("{at}.properties: should be non-empty"));
                    }
                    for (name, s) in &p.0 {
                        walk(s, &format!("{at}.properties[{name}]"))?;
                    }
                }
                ("items", s) => walk(s, &format!("{at}.items"))?,
                ("anyOf", Json::Array(branches)) => {
                    for (i, b) in branches.iter().enumerate() {
                        walk(b, &format!("{at}.anyOf[{i}]"))?;
                    }
                }
                ("enum", Json::Array(values)) if values.iter().any(|v| v.as_str().is_none()) => {
                    return Err(format!("{at}.enum: Invalid value (TYPE_STRING)"));
                }
                ("type", Json::String(_)) => {}
                ("type", _) => return Err(format!("{at}.type: Invalid value")),
                _ => {}
            }
        }
        if let Some(Json::Array(required)) = node.get("required") {
            let properties = node.get("properties").and_then(Json::as_object);
            for name in required {
                let name = name.as_str().unwrap_or_default();
                if !properties.is_some_and(|p| p.contains(name)) {
                    return Err(format!("{at}.required: property {name:?} is not defined"));
                }
            }
        }
        if node.get("type").and_then(Json::as_str) == Some("array") && !node.contains("items") {
            return Err(format!("{at}.items: missing field"));
        }
        Ok(())
    }
    walk(schema, "parameters")
}

fn parse(value: serde_json::Value) -> Json {
    serde_json::from_value(value).unwrap()
}

/// `schema` cleaned, as JSON, after checking Gemini would take it.
fn cleaned(schema: serde_json::Value) -> serde_json::Value {
    let clean = Json::Object(clean(&parse(schema)));
    gemini_takes(&clean)
        .unwrap_or_else(|e| panic!("{e}: {}", serde_json::to_string(&clean).unwrap()));
    serde_json::to_value(&clean).unwrap()
}

fn chat(tools: serde_json::Value) -> String {
    json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}], "tools": tools})
        .to_string()
}

fn function(parameters: serde_json::Value) -> serde_json::Value {
    json!([{"type": "function", "function": {"name": "f", "description": "d", "parameters": parameters}}])
}

#[test]
fn a_body_gemini_takes_passes_byte_for_byte() {
    let body = r#"{"model":"gemini-2.5-flash", "messages":[{"role":"user","content":"hi \u00e9"}],
      "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
      "description":"Where","properties":{"city":{"type":"string","enum":["Paris","Oslo"]},
      "days":{"type":"integer","minimum":1,"format":"int32"},"when":{"format":"date-time","type":"string"}},
      "required":["city"],"propertyOrdering":["city","days"]}}}],
      "response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object",
      "properties":{"a":{"type":"array","items":{"type":"number","nullable":true}}}}}}}"#;
    assert_eq!(chat_body(body.as_bytes()), None);
    assert_eq!(chat_body(br#"{"model":"m","messages":[]}"#), None);
    // Not ours to refuse: the upstream answers what it cannot read.
    assert_eq!(chat_body(br#"{"tools": 3"#), None);
    assert_eq!(chat_body(br#"{"tools": 3}"#), None);
}

#[test]
fn only_the_schemas_change_the_rest_keeps_its_bytes_and_order() {
    let body = r#"{"model":"gemini-2.5-flash",  "messages":[{"role":"user","content":"hi \u00e9"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"z":{"type":"string"},"a":{"type":"string"}},"additionalProperties":false}}}],"temperature":0.5}"#;
    let out = String::from_utf8(chat_body(body.as_bytes()).unwrap()).unwrap();
    assert_eq!(
        out,
        r#"{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"hi \u00e9"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"z":{"type":"string"},"a":{"type":"string"}}}}}],"temperature":0.5}"#
    );
}

#[test]
fn a_zod_schema_as_agents_send_it() {
    // The shape zod-to-json-schema gives a coding agent's tool.
    let schema = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "file_path": {"type": "string", "description": "The absolute path", "format": "uri"},
            "limit": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 2000},
            "ratio": {"type": "number", "exclusiveMinimum": 0.5},
            "mode": {"anyOf": [{"const": "read"}, {"const": "write"}]},
            "tags": {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"},
                     "additionalProperties": {"type": "string"}},
            "edits": {"type": "array", "minItems": 1, "uniqueItems": true,
                      "items": {"type": "object", "additionalProperties": false,
                                "properties": {"old": {"type": "string"}, "new": {"type": "string"}},
                                "required": ["old", "new"]}}
        },
        "required": ["file_path", "edits", "missing"],
        "additionalProperties": false
    });
    assert_eq!(
        cleaned(schema),
        json!({
            "type": "object",
            "properties": {
                "file_path": {"type": "string", "description": "The absolute path"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 1999},
                "ratio": {"type": "number", "minimum": 0.5},
                "mode": {"type": "string", "enum": ["read", "write"]},
                "tags": {"type": "object"},
                "edits": {"type": "array", "minItems": 1,
                          "items": {"type": "object",
                                    "properties": {"old": {"type": "string"}, "new": {"type": "string"}},
                                    "required": ["old", "new"]}}
            },
            "required": ["file_path", "edits"]
        })
    );
}

#[test]
fn a_pydantic_schema_with_definitions_and_optional_fields() {
    let schema = json!({
        "title": "Order",
        "type": "object",
        "$defs": {
            "Item": {"title": "Item", "type": "object",
                     "properties": {"sku": {"title": "Sku", "type": "string"},
                                    "qty": {"title": "Qty", "type": "integer", "default": 1}},
                     "required": ["sku"]},
            "Size": {"enum": ["S", "M", "L"], "title": "Size", "type": "string"}
        },
        "properties": {
            "items": {"title": "Items", "type": "array", "items": {"$ref": "#/$defs/Item"}},
            "size": {"$ref": "#/$defs/Size", "description": "Which size"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null, "title": "Note"},
            "gift": {"allOf": [{"$ref": "#/$defs/Item"}], "description": "A gift"}
        },
        "required": ["items"]
    });
    assert_eq!(
        cleaned(schema),
        json!({
            "title": "Order",
            "type": "object",
            "properties": {
                "items": {"title": "Items", "type": "array", "items": {
                    "title": "Item", "type": "object",
                    "properties": {"sku": {"title": "Sku", "type": "string"},
                                   "qty": {"title": "Qty", "type": "integer", "default": 1}},
                    "required": ["sku"]}},
                "size": {"enum": ["S", "M", "L"], "title": "Size", "type": "string", "description": "Which size"},
                "note": {"default": null, "title": "Note", "type": "string", "nullable": true},
                "gift": {"type": "object", "description": "A gift", "title": "Item",
                         "properties": {"sku": {"title": "Sku", "type": "string"},
                                        "qty": {"title": "Qty", "type": "integer", "default": 1}},
                         "required": ["sku"]}
            },
            "required": ["items"]
        })
    );
}

#[test]
fn a_definition_that_refers_to_itself_stops_where_it_recurs() {
    let schema = json!({
        "type": "object",
        "properties": {"root": {"$ref": "#/definitions/Node"}},
        "definitions": {"Node": {"type": "object", "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#/definitions/Node"}}}}}
    });
    assert_eq!(
        cleaned(schema),
        json!({"type": "object", "properties": {"root": {"type": "object", "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"type": "object"}}}}}})
    );
    // A reference out of the document, or to nothing, leaves what sits
    // beside it.
    assert_eq!(
        cleaned(json!({"type": "object", "properties": {
            "a": {"$ref": "https://example.com/s.json", "description": "elsewhere"},
            "b": {"$ref": "#/nothing/here"}}})),
        json!({"type": "object", "properties": {"a": {"description": "elsewhere"}, "b": {}}})
    );
}

#[test]
fn lists_of_types_and_unions() {
    assert_eq!(
        cleaned(json!({"type": ["string", "null"], "description": "maybe"})),
        json!({"type": "string", "description": "maybe", "nullable": true})
    );
    assert_eq!(
        cleaned(json!({"type": ["string", "array"], "items": {"type": "integer"}, "maxLength": 9})),
        json!({"anyOf": [{"type": "string", "maxLength": 9},
                         {"type": "array", "items": {"type": "integer"}}]})
    );
    assert_eq!(
        cleaned(json!({"oneOf": [{"type": "string"}, {"type": "integer"}], "description": "id"})),
        json!({"anyOf": [{"type": "string"}, {"type": "integer"}], "description": "id"})
    );
    assert_eq!(cleaned(json!({"type": "null"})), json!({"nullable": true}));
}

#[test]
fn enums_are_strings_or_move_to_the_description() {
    assert_eq!(
        cleaned(json!({"type": "integer", "enum": [1, 2, 3], "description": "Level"})),
        json!({"type": "integer", "description": "Level (One of: 1, 2, 3.)"})
    );
    assert_eq!(
        cleaned(json!({"enum": [true, false]})),
        json!({"type": "boolean", "description": "One of: true, false."})
    );
    assert_eq!(
        cleaned(json!({"enum": ["a", null]})),
        json!({"type": "string", "enum": ["a"], "nullable": true})
    );
    assert_eq!(
        cleaned(json!({"const": "only"})),
        json!({"type": "string", "enum": ["only"]})
    );
}

#[test]
fn objects_arrays_and_formats_gemini_can_name() {
    // No parameters: the object stays one (Gemini refuses empty
    // `properties`, and a function without `parameters` under
    // `tool_choice: required`).
    assert_eq!(
        cleaned(json!({"type": "object", "properties": {}, "required": []})),
        json!({"type": "object"})
    );
    assert_eq!(
        cleaned(json!({"type": "array"})),
        json!({"type": "array", "items": {"type": "string"}})
    );
    assert_eq!(
        cleaned(json!({"type": "array", "items": {"type": "array"}})),
        json!({"type": "array", "items": {"type": "array", "items": {"type": "string"}}})
    );
    assert_eq!(
        cleaned(json!({"type": "array", "items": true, "description": "x"})),
        json!({"type": "array", "description": "x", "items": {"type": "string"}})
    );
    assert_eq!(
        cleaned(json!({"type": "array", "prefixItems": [{"type": "number"}, {"type": "string"}]})),
        json!({"type": "array", "items": {"anyOf": [{"type": "number"}, {"type": "string"}]}})
    );
    assert_eq!(
        cleaned(
            json!({"properties": {"a": {"type": "string", "format": "email"}}, "examples": [{"a": "x"}]})
        ),
        json!({"type": "object", "properties": {"a": {"type": "string"}}, "example": {"a": "x"}})
    );
    assert_eq!(
        cleaned(json!({"type": "number", "format": "double", "multipleOf": 0.5})),
        json!({"type": "number", "format": "double"})
    );
}

#[test]
fn tools_and_the_response_format_are_both_made_geminis() {
    let body = chat(function(
        json!({"type": "object", "properties": {"q": {"type": "string"}},
                                      "additionalProperties": false}),
    ));
    let out: serde_json::Value =
        serde_json::from_slice(&chat_body(body.as_bytes()).unwrap()).unwrap();
    assert_eq!(
        out["tools"][0]["function"],
        json!({"name": "f", "description": "d",
               "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}})
    );

    let body = json!({"model": "m", "messages": [], "response_format": {"type": "json_schema",
        "json_schema": {"name": "answer", "strict": true, "schema": {"type": "object",
            "properties": {"n": {"type": ["integer", "null"]}}, "required": ["n"],
            "additionalProperties": false}}}})
    .to_string();
    let out: serde_json::Value =
        serde_json::from_slice(&chat_body(body.as_bytes()).unwrap()).unwrap();
    assert_eq!(
        out["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "answer", "strict": true, "schema": {
            "type": "object", "properties": {"n": {"type": "integer", "nullable": true}},
            "required": ["n"]}}})
    );

    // Tools that are not functions, a function without parameters, and a
    // `json_object` format are left alone.
    let body = json!({"model": "m", "messages": [], "tools": [{"type": "web_search"},
        {"type": "function", "function": {"name": "now"}}], "response_format": {"type": "json_object"}})
    .to_string();
    assert_eq!(chat_body(body.as_bytes()), None);
}

#[test]
fn what_comes_out_is_clean_already() {
    for schema in [
        json!({"type": ["object", "null"], "properties": {"a": {"allOf": [{"type": "string"}, {"minLength": 2}]}}}),
        json!({"anyOf": [{"type": "null"}, {"$ref": "#/$defs/A"}], "$defs": {"A": {"type": ["array"]}}}),
        json!({"type": "object", "properties": {"x": {"type": "integer", "enum": [1]}}, "required": ["x", "y"]}),
    ] {
        let once = Json::Object(clean(&parse(schema)));
        gemini_takes(&once).unwrap();
        assert_eq!(
            Json::Object(clean(&once)),
            once,
            "cleaning twice changes nothing"
        );
    }
}

#[test]
fn references_that_multiply_and_deep_nesting_stay_bounded() {
    // Each definition names the next twice: 2^30 schemas, followed naively.
    let mut defs = serde_json::Map::new();
    for i in 0..30 {
        let next = json!({"$ref": format!("#/$defs/D{}", i + 1)});
        defs.insert(
            format!("D{i}"),
            json!({"type": "object", "properties": {"a": next, "b": next}}),
        );
    }
    defs.insert("D30".into(), json!({"type": "string"}));
    let schema =
        json!({"$defs": defs, "type": "object", "properties": {"x": {"$ref": "#/$defs/D0"}}});
    let started = std::time::Instant::now();
    let out = cleaned(schema);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(serde_json::to_string(&out).unwrap().len() < 4_000_000);

    // As deep as a body can nest (serde_json reads 128 levels, two a
    // schema), and deeper than that when made in memory.
    let mut deep = json!({"type": "string", "format": "uri"});
    for _ in 0..60 {
        deep = json!({"type": "object", "properties": {"a": deep}});
    }
    let text = chat(function(deep));
    let out = chat_body(text.as_bytes()).expect("the format goes");
    assert!(!String::from_utf8(out).unwrap().contains("uri"));
    let mut deeper = Json::Object(Object(vec![("type".into(), Json::str("string"))]));
    for _ in 0..500 {
        deeper = Json::Object(Object(vec![
            ("type".into(), Json::str("object")),
            (
                "properties".into(),
                Json::Object(Object(vec![("a".into(), deeper)])),
            ),
        ]));
    }
    let mut levels = 0;
    let mut at = &Json::Object(clean(&deeper));
    while let Some(next) = at
        .as_object()
        .and_then(|o| o.get("properties"))
        .and_then(|p| p.as_object())
        .and_then(|p| p.get("a"))
    {
        levels += 1;
        at = next;
    }
    assert_eq!(levels, MAX_DEPTH, "the rest dropped");
}
