//! Tool and response schemas as Gemini takes them. Gemini reads a
//! function's `parameters`, and a `json_schema` response format, as its own
//! `Schema`: a subset of OpenAPI 3.0's, checked strictly, through its
//! OpenAI-compatible API too. One keyword outside it (`$schema`,
//! `additionalProperties`, `exclusiveMinimum`, `propertyNames`, `const`,
//! `$ref`), a `required` name its `properties` lack, an enum of numbers, an
//! array without `items` or an object with empty `properties` and the whole
//! request is refused ("Invalid JSON payload received. Unknown name …").
//! Agents' tools carry all of these (Zod's and Pydantic's schemas, MCP
//! servers'), so before a chat request reaches Gemini its schemas are made
//! that subset, their meaning kept where Gemini can say it:
//!
//! - `$ref`s to the schema's own definitions (`#/$defs/…`, `#/definitions/…`)
//!   are inlined, what sits beside a `$ref` (a description) winning; a
//!   definition that refers to itself becomes `{"type": "object"}` where it
//!   recurs.
//! - `allOf` is merged into one schema; `oneOf` is `anyOf`; a `null` branch
//!   of an `anyOf`, or `"null"` in a list of types, is `nullable: true`; an
//!   `anyOf` left with one branch is that branch; a list of several types is
//!   an `anyOf` of one per type.
//! - `const` is a one-value `enum`; an enum of other than strings is taken
//!   out, its values named in the description instead; an enum without a
//!   type is a string's.
//! - `exclusiveMinimum`/`exclusiveMaximum` are `minimum`/`maximum` (for an
//!   integer, one step inside); `examples` is its first `example`.
//! - A missing `type` is inferred from `properties`, `items` or `enum`; an
//!   array without `items` (or with empty ones) has string items; empty
//!   `properties` are dropped (the object stays an object); `required` and
//!   `propertyOrdering` keep only names `properties` has; `format` only
//!   Gemini's (`enum`, `date-time`; `int32`, `int64`; `float`, `double`).
//! - Every other keyword is dropped.
//!
//! Only what needs it is rewritten: members are kept in their order, and a
//! body whose schemas are already Gemini's passes byte for byte.

use serde_json::value::RawValue;

use crate::formats::members::Members;
use crate::formats::ordered::{Json, Object};

/// The keywords that belong to one type, moved to its branch when a list
/// of types is made an `anyOf`.
const OF_TYPE: &[(&str, &[&str])] = &[
    (
        "object",
        &[
            "properties",
            "required",
            "minProperties",
            "maxProperties",
            "propertyOrdering",
        ],
    ),
    ("array", &["items", "minItems", "maxItems"]),
    (
        "string",
        &["enum", "format", "pattern", "minLength", "maxLength"],
    ),
    ("number", &["minimum", "maximum", "format"]),
    ("integer", &["minimum", "maximum", "format"]),
];

/// How many `$ref`s deep a schema is followed.
const MAX_REFS: usize = 16;
/// How many schemas one cleaning writes at most: `$ref`s that each name
/// another twice would otherwise grow a small body into billions (past
/// it, a `$ref` is `{"type": "object"}`).
const MAX_SCHEMAS: usize = 20_000;
/// How deep schemas nest, `$ref`s followed, before the rest is dropped: the
/// request's task has a bounded stack.
const MAX_DEPTH: usize = 64;

/// `body`, a chat completions request, with the schemas of its `tools` and
/// its `json_schema` response format made Gemini's; `None` when nothing in
/// it needs that (or it is not an object: the upstream answers it).
pub fn chat_body(body: &[u8]) -> Option<Vec<u8>> {
    let finder = |needle: &str| memchr::memmem::find(body, needle.as_bytes()).is_some();
    if !finder("\"tools\"") && !finder("\"response_format\"") {
        return None;
    }
    let Members(members) = serde_json::from_slice(body).ok()?;
    let rewritten: Vec<Option<Json>> = members
        .iter()
        .map(|(key, value)| match key.as_str() {
            "tools" => tools(value),
            "response_format" => response_format(value),
            _ => None,
        })
        .collect();
    if rewritten.iter().all(Option::is_none) {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    out.push(b'{');
    for (i, ((key, value), new)) in members.iter().zip(&rewritten).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, key);
        out.push(b':');
        match new {
            Some(new) => {
                let _ = serde_json::to_writer(&mut out, new);
            }
            None => out.extend_from_slice(value.get().as_bytes()),
        }
    }
    out.push(b'}');
    Some(out)
}

/// The `tools` with each function's `parameters` made Gemini's, when any
/// changed.
fn tools(raw: &RawValue) -> Option<Json> {
    let mut tools: Json = serde_json::from_str(raw.get()).ok()?;
    let Json::Array(list) = &mut tools else {
        return None;
    };
    let mut changed = false;
    for tool in list {
        let Json::Object(tool) = tool else { continue };
        let Some(Json::Object(function)) = tool.get_mut("function") else {
            continue;
        };
        if let Some(parameters) = function.get_mut("parameters") {
            changed |= replace_with_clean(parameters);
        }
    }
    changed.then_some(tools)
}

/// A `json_schema` response format with its schema made Gemini's, when it
/// changed.
fn response_format(raw: &RawValue) -> Option<Json> {
    let mut format: Json = serde_json::from_str(raw.get()).ok()?;
    let Json::Object(object) = &mut format else {
        return None;
    };
    if object.get("type")?.as_str()? != "json_schema" {
        return None;
    }
    let Json::Object(json_schema) = object.get_mut("json_schema")? else {
        return None;
    };
    replace_with_clean(json_schema.get_mut("schema")?).then_some(format)
}

/// Makes `schema` Gemini's; whether it changed.
fn replace_with_clean(schema: &mut Json) -> bool {
    let clean = Json::Object(clean(schema));
    let changed = clean != *schema;
    *schema = clean;
    changed
}

/// `schema` as Gemini's `Schema` (the rules in the module doc).
pub fn clean(schema: &Json) -> Object {
    Cleaner {
        root: schema,
        following: Vec::new(),
        written: 0,
        depth: 0,
    }
    .schema(schema)
}

struct Cleaner<'a> {
    /// The schema `$ref`s point into.
    root: &'a Json,
    /// The `$ref`s being followed, outermost first.
    following: Vec<String>,
    /// Schemas written so far ([`MAX_SCHEMAS`]).
    written: usize,
    /// How deep the schema being cleaned is ([`MAX_DEPTH`]).
    depth: usize,
}

impl Cleaner<'_> {
    fn schema(&mut self, node: &Json) -> Object {
        // `true` (anything) and `false` (nothing) have no Gemini words.
        let Json::Object(node) = node else {
            return Object::default();
        };
        if self.depth >= MAX_DEPTH {
            return Object::default();
        }
        self.written += 1;
        self.depth += 1;
        let out = self.object(node);
        self.depth -= 1;
        out
    }

    fn object(&mut self, node: &Object) -> Object {
        if let Some(reference) = node.get("$ref").and_then(Json::as_str) {
            return self.reference(reference, node);
        }
        let mut out = self.keywords(node);
        if let Some(Json::Array(all)) = node.get("allOf") {
            for branch in all {
                let branch = self.schema(branch);
                merge(&mut out, branch);
            }
        }
        finish(&mut out);
        out
    }

    /// A `$ref` followed, and what sits beside it laid over.
    fn reference(&mut self, reference: &str, node: &Object) -> Object {
        let recurs = self.following.iter().any(|r| r == reference);
        let spent = self.following.len() >= MAX_REFS || self.written >= MAX_SCHEMAS;
        let mut out = if recurs || spent {
            Object(vec![("type".into(), Json::str("object"))])
        } else if let Some(target) = pointer(self.root, reference) {
            self.following.push(reference.to_owned());
            let out = self.schema(target);
            self.following.pop();
            out
        } else {
            Object::default()
        };
        let beside = Object(
            node.0
                .iter()
                .filter(|(k, _)| k != "$ref")
                .cloned()
                .collect(),
        );
        if !beside.is_empty() {
            for (key, value) in self.schema(&Json::Object(beside)).0 {
                out.insert(&key, value);
            }
        }
        out
    }

    /// The keywords of `node` Gemini has, or that [`finish`] turns into
    /// them, in their order; nested schemas cleaned.
    fn keywords(&mut self, node: &Object) -> Object {
        let mut out = Object::default();
        for (key, value) in &node.0 {
            let key = key.as_str();
            match (key, value) {
                ("type", Json::String(_) | Json::Array(_)) => out.insert(key, value.clone()),
                ("anyOf" | "oneOf", Json::Array(branches)) => {
                    let mut branches: Vec<Json> = branches
                        .iter()
                        .map(|b| Json::Object(self.schema(b)))
                        .collect();
                    match out.get_mut("anyOf") {
                        Some(Json::Array(any)) => any.append(&mut branches),
                        _ => out.insert("anyOf", Json::Array(branches)),
                    }
                }
                ("properties", Json::Object(properties)) => {
                    let properties = properties
                        .0
                        .iter()
                        .map(|(name, s)| (name.clone(), Json::Object(self.schema(s))))
                        .collect();
                    out.insert(key, Json::Object(Object(properties)));
                }
                ("items", Json::Object(_)) => {
                    out.insert(key, Json::Object(self.schema(value)));
                }
                // A tuple: its elements' schemas, one of them per element
                // (unless `items` gives one for all).
                ("items" | "prefixItems", Json::Array(elements))
                    if node.get("items").is_none_or(|i| i.as_object().is_none()) =>
                {
                    let element = match elements.as_slice() {
                        [one] => self.schema(one),
                        _ => Object(vec![(
                            "anyOf".into(),
                            Json::Array(
                                elements
                                    .iter()
                                    .map(|e| Json::Object(self.schema(e)))
                                    .collect(),
                            ),
                        )]),
                    };
                    out.insert("items", Json::Object(element));
                }
                ("const", _) if !node.contains("enum") => {
                    out.insert("enum", Json::Array(vec![value.clone()]))
                }
                ("enum", Json::Array(_)) => out.insert(key, value.clone()),
                ("examples", Json::Array(examples)) if !node.contains("example") => {
                    if let Some(first) = examples.first() {
                        out.insert("example", first.clone());
                    }
                }
                ("exclusiveMinimum" | "exclusiveMaximum", Json::Number(_)) => {
                    out.insert(key, value.clone())
                }
                ("description" | "title" | "pattern" | "format", Json::String(_))
                | ("required" | "propertyOrdering", Json::Array(_))
                | ("nullable", Json::Bool(_))
                | ("default" | "example", _)
                | (
                    "minItems" | "maxItems" | "minLength" | "maxLength" | "minProperties"
                    | "maxProperties" | "minimum" | "maximum",
                    Json::Number(_),
                ) => out.insert(key, value.clone()),
                _ => {}
            }
        }
        out
    }
}

/// `schema` at the JSON pointer `reference` (`#/$defs/Name`) into `root`.
fn pointer<'a>(root: &'a Json, reference: &str) -> Option<&'a Json> {
    let path = reference.strip_prefix('#')?;
    if path.is_empty() {
        return Some(root);
    }
    let mut at = root;
    for token in path.strip_prefix('/')?.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        at = match at {
            Json::Object(object) => object.get(&token)?,
            Json::Array(items) => items.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

/// `branch`, one of an `allOf`, merged into `out`: properties and required
/// names joined, other keywords kept where `out` has none.
fn merge(out: &mut Object, branch: Object) {
    for (key, value) in branch.0 {
        match (key.as_str(), out.get_mut(&key), value) {
            ("properties", Some(Json::Object(mine)), Json::Object(theirs)) => {
                for (name, schema) in theirs.0 {
                    mine.insert_absent(&name, schema);
                }
            }
            ("required", Some(Json::Array(mine)), Json::Array(theirs)) => {
                for name in theirs {
                    if !mine.contains(&name) {
                        mine.push(name);
                    }
                }
            }
            (_, Some(_), _) => {}
            (_, None, value) => out.insert(&key, value),
        }
    }
}

/// The rules that read a schema's keywords together, its nested schemas
/// already clean.
fn finish(out: &mut Object) {
    let mut nullable = out.get("nullable") == Some(&Json::Bool(true));
    let type_at = out.0.iter().position(|(k, _)| k == "type").unwrap_or(0);

    // A list of types: `null` out of it, one type as it is.
    let mut types = Vec::new();
    match out.remove("type") {
        Some(Json::String(t)) if t == "null" => nullable = true,
        Some(Json::String(t)) => types.push(t),
        Some(Json::Array(list)) => {
            for t in list {
                match t.as_str() {
                    Some("null") => nullable = true,
                    Some(t) if !types.iter().any(|have| have == t) => types.push(t.to_owned()),
                    _ => {}
                }
            }
        }
        _ => {}
    }

    bounds(out, types.first().map(String::as_str));

    // `null` branches (clean, a bare `nullable`) and empty ones out of an
    // `anyOf`; one branch left is the schema itself.
    if let Some(Json::Array(branches)) = out.remove("anyOf") {
        let mut kept = Vec::new();
        for branch in branches {
            match branch {
                Json::Object(b) if b.is_empty() => {}
                Json::Object(b) if b.0 == [("nullable".to_owned(), Json::Bool(true))] => {
                    nullable = true
                }
                branch => kept.push(branch),
            }
        }
        if let Some(values) = one_enum(&kept) {
            let one = Object(vec![
                ("type".into(), Json::str("string")),
                ("enum".into(), Json::Array(values)),
            ]);
            kept = vec![Json::Object(one)];
        }
        match kept.len() {
            0 => {}
            1 => {
                if let Some(Json::Object(only)) = kept.pop() {
                    if let Some(Json::String(t)) = only.get("type")
                        && types.is_empty()
                    {
                        types.push(t.clone());
                    }
                    for (key, value) in only.0 {
                        if key != "type" {
                            out.insert_absent(&key, value);
                        }
                    }
                }
            }
            _ => out.insert("anyOf", Json::Array(kept)),
        }
    }

    if types.len() > 1 && !out.contains("anyOf") {
        let branches = types
            .iter()
            .map(|t| {
                let mut branch = Object(vec![("type".into(), Json::str(t))]);
                let owned = OF_TYPE.iter().find(|(of, _)| of == t).map(|(_, k)| *k);
                for key in owned.unwrap_or_default() {
                    if let Some(value) = out.get(key) {
                        branch.insert(key, value.clone());
                    }
                }
                finish(&mut branch);
                Json::Object(branch)
            })
            .collect();
        for (_, keys) in OF_TYPE {
            for key in *keys {
                out.remove(key);
            }
        }
        out.insert("anyOf", Json::Array(branches));
        types.clear();
    }
    types.truncate(1);

    if types.is_empty() && !out.contains("anyOf") {
        if out.contains("properties") {
            types.push("object".into());
        } else if out.contains("items") {
            types.push("array".into());
        } else if let Some(Json::Array(values)) = out.get("enum") {
            types.extend(type_of_values(values).map(str::to_owned));
        }
    }
    let kind = types.first().map(String::as_str);

    enumeration(out, kind);
    let keep_format = matches!(
        (kind, out.get("format").and_then(Json::as_str)),
        (Some("string"), Some("enum" | "date-time"))
            | (Some("integer"), Some("int32" | "int64"))
            | (Some("number"), Some("float" | "double"))
    );
    if !keep_format {
        out.remove("format");
    }

    let names: Vec<String> = match out.get("properties") {
        Some(Json::Object(p)) => p.0.iter().map(|(n, _)| n.clone()).collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        out.remove("properties");
    }
    for key in ["required", "propertyOrdering"] {
        if let Some(Json::Array(listed)) = out.get_mut(key) {
            listed.retain(|n| n.as_str().is_some_and(|n| names.iter().any(|m| m == n)));
            if listed.is_empty() {
                out.remove(key);
            }
        }
    }

    if kind == Some("array") {
        let typed = |items: &Json| {
            items
                .as_object()
                .is_some_and(|i| i.contains("type") || i.contains("anyOf"))
        };
        if !out.get("items").is_some_and(typed) {
            let mut items = match out.remove("items") {
                Some(Json::Object(items)) => items,
                _ => Object::default(),
            };
            items.insert("type", Json::str("string"));
            out.insert("items", Json::Object(items));
        }
    }

    // Where it was (so a clean schema comes out as it went in), else first.
    if let Some(kind) = kind {
        let at = type_at.min(out.0.len());
        out.0.insert(at, ("type".into(), Json::str(kind)));
    }
    if nullable {
        out.insert("nullable", Json::Bool(true));
    }
}

/// The values of an `anyOf` of string enums (`const`s, as Zod writes a
/// union of literals), as one enum.
fn one_enum(branches: &[Json]) -> Option<Vec<Json>> {
    let mut values = Vec::new();
    for branch in branches {
        let branch = branch.as_object()?;
        if branch.get("type").and_then(Json::as_str) != Some("string") || branch.0.len() != 2 {
            return None;
        }
        let Some(Json::Array(these)) = branch.get("enum") else {
            return None;
        };
        values.extend(these.iter().cloned());
    }
    (branches.len() > 1).then_some(values)
}

/// The type an enum's values share, when they share one.
fn type_of_values(values: &[Json]) -> Option<&'static str> {
    let of = |v: &Json| match v {
        Json::String(_) => Some("string"),
        Json::Bool(_) => Some("boolean"),
        Json::Number(n) if n.is_i64() || n.is_u64() => Some("integer"),
        Json::Number(_) => Some("number"),
        _ => None,
    };
    let first = of(values.iter().find(|v| **v != Json::Null)?)?;
    values
        .iter()
        .filter(|v| **v != Json::Null)
        .all(|v| of(v) == Some(first))
        .then_some(first)
}

/// `exclusiveMinimum`/`exclusiveMaximum` (numbers, as JSON Schema since
/// draft 6 writes them) as `minimum`/`maximum`, an integer's one step in.
fn bounds(out: &mut Object, kind: Option<&str>) {
    for (exclusive, inclusive, step) in [
        ("exclusiveMinimum", "minimum", 1),
        ("exclusiveMaximum", "maximum", -1),
    ] {
        let Some(Json::Number(bound)) = out.remove(exclusive) else {
            continue;
        };
        let bound = match (kind, bound.as_i64()) {
            (Some("integer"), Some(n)) => n.saturating_add(step).into(),
            _ => bound,
        };
        out.insert_absent(inclusive, Json::Number(bound));
    }
}

/// An enum Gemini takes: strings only (a `null` among them makes the schema
/// nullable). One with other values is taken out and its values named in
/// the description, so the model still reads them.
fn enumeration(out: &mut Object, kind: Option<&str>) {
    let Some(Json::Array(values)) = out.get_mut("enum") else {
        return;
    };
    let had_null = values.contains(&Json::Null);
    values.retain(|v| *v != Json::Null);
    if had_null {
        out.insert("nullable", Json::Bool(true));
    }
    let Some(Json::Array(values)) = out.get("enum") else {
        return;
    };
    let strings = values.iter().all(|v| v.as_str().is_some());
    if strings && !values.is_empty() && kind.is_none_or(|k| k == "string") {
        return;
    }
    let named: Vec<String> = values
        .iter()
        .map(|v| serde_json::to_string(v).unwrap_or_default())
        .collect();
    out.remove("enum");
    if named.is_empty() {
        return;
    }
    let note = format!("One of: {}.", named.join(", "));
    let description = match out.get("description").and_then(Json::as_str) {
        Some(d) if !d.is_empty() => format!("{d} ({note})"),
        _ => note,
    };
    out.insert("description", Json::String(description));
}

#[cfg(test)]
mod tests;
