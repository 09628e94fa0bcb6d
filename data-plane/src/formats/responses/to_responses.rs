//! A chat completions answer and stream → the Responses API's: the
//! `response` object ([`answer`]) and the event sequence
//! ([`ResponsesStream`]) that say the same, as OpenAI's SDKs read them.
//!
//! How an answer maps (only `choices[0]` is read: the request asked for one):
//!
//! - `id`: `resp_{id}`, with `{id}` the gateway's; `created_at`: the
//!   upstream's `created`; `model`: the upstream's, else the request's.
//!   The rest of the request's parameters are echoed ([`Echo`]).
//! - `output`, in this order: `reasoning_content` (else `reasoning`) → a
//!   `reasoning` item (`rs_{id}`) with one `summary_text`, and the
//!   signature of a `thinking_blocks` entry (Sluice's Anthropic path puts
//!   Claude's there) as its `encrypted_content`; `content` → an
//!   `output_text` part and `refusal` → a `refusal` part of one `message`
//!   item (`msg_{id}`); each `tool_calls` entry, in order → a
//!   `function_call` item (`fc_{id}_{n}`) whose `call_id` is the upstream's
//!   call id (with Gemini's thought signature joined:
//!   [`crate::formats::thought`]); a call of one of the request's `custom` tools → a
//!   `custom_tool_call` item (`ctc_{id}_{n}`) whose `input` is the
//!   arguments' `input` string. Empty strings make nothing.
//! - `status`: `completed`; `incomplete` for `finish_reason` `length`
//!   (`incomplete_details.reason` `max_output_tokens`) and `content_filter`
//!   (reason `content_filter`), and then the items are `incomplete` too.
//! - `usage`: `input_tokens` = `prompt_tokens` (cached included, as
//!   OpenAI counts both), `output_tokens` = `completion_tokens` (reasoning
//!   included), their details, and `total_tokens`. `null` when the
//!   upstream sent none.
//!
//! The stream: see [`ResponsesStream`].

use serde_json::{Map, Value, json};

use super::echo::Echo;
use crate::formats::TranslateError;
use crate::formats::sse::EventReader;
use crate::formats::thought;

// ---- Shared: items and the response object. ----

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A non-empty string member.
fn text_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    str_of(v, key).filter(|s| !s.is_empty())
}

/// `status` and `incomplete_details` for a `finish_reason`.
fn outcome(finish_reason: Option<&str>) -> (&'static str, Value) {
    match finish_reason {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// The Responses `usage` for a chat `usage`; `null` when there is none.
fn usage_out(usage: Option<&Value>) -> Value {
    let Some(u) = usage.filter(|u| u.is_object()) else {
        return Value::Null;
    };
    let count = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let input = count(u.get("prompt_tokens"));
    let output = count(u.get("completion_tokens"));
    let cached = count(u.pointer("/prompt_tokens_details/cached_tokens"));
    // The current openai SDK reads it; chat usage seldom carries it (a
    // Claude deployment's cache writes are inside `input_tokens`, as
    // Anthropic's chat translation counts them), so it is mostly 0.
    let cache_writes = count(u.pointer("/prompt_tokens_details/cache_write_tokens"));
    let reasoning = count(u.pointer("/completion_tokens_details/reasoning_tokens"));
    let total = u
        .get("total_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(input.saturating_add(output));
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": cache_writes},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": total,
    })
}

fn reasoning_item(item_id: &str, text: &str, signature: Option<&str>) -> Value {
    let mut item = json!({
        "type": "reasoning",
        "id": item_id,
        "summary": [{"type": "summary_text", "text": text}],
    });
    if let Some(signature) = signature {
        item["encrypted_content"] = json!(signature);
    }
    item
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn refusal_part(refusal: &str) -> Value {
    json!({"type": "refusal", "refusal": refusal})
}

fn message_item(item_id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": content,
    })
}

fn call_item(
    echo: &Echo,
    item_id: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
    status: &str,
) -> Value {
    let mut item = json!({
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    });
    with_namespace(echo, &mut item, name);
    item
}

/// A call of a `custom` tool (a function of one string upstream, see
/// [`super::from_responses`]): the model's `input`.
fn custom_item(echo: &Echo, item_id: &str, call_id: &str, name: &str, input: &str) -> Value {
    let mut item = json!({
        "type": "custom_tool_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "input": input,
    });
    with_namespace(echo, &mut item, name);
    item
}

/// A call of a tool declared in a `namespace` names it, as OpenAI's do:
/// upstream its tools were functions of their own names.
fn with_namespace(echo: &Echo, item: &mut Value, name: &str) {
    if let (Some(namespace), Some(item)) = (echo.namespace_of(name), item.as_object_mut()) {
        item.insert("namespace".into(), Value::String(namespace.to_owned()));
    }
}

/// A custom tool's `input` from its function's arguments: the `input`
/// string of `{"input": …}`; arguments of another shape (a model that did
/// not keep to the schema) are given as they came.
fn custom_input(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(mut args)) => match args.remove(super::from_responses::CUSTOM_INPUT) {
            Some(Value::String(input)) => input,
            _ => arguments.to_owned(),
        },
        Ok(Value::String(input)) => input,
        _ => arguments.to_owned(),
    }
}

/// A chat tool call's id for the client: the upstream's (a made-up one
/// when it gave none, so the client's `function_call_output` can still
/// name it), with Gemini's thought signature joined when the call has one
/// ([`thought`]).
fn call_id(call: &Value, n: usize) -> String {
    let id = match str_of(call, "id") {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => format!("call_{n}"),
    };
    match call
        .pointer("/extra_content/google/thought_signature")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        Some(signature) => thought::sign(&id, signature),
        None => id,
    }
}

/// What a `response` object is made of besides the echo.
struct Outcome<'a> {
    status: &'a str,
    output: Vec<Value>,
    usage: Value,
    incomplete_details: Value,
    error: Value,
}

fn response_object(
    id: &str,
    created: &Value,
    model: Option<&str>,
    echo: &Echo,
    o: Outcome<'_>,
) -> Value {
    let mut map = Map::new();
    map.insert("id".into(), json!(format!("resp_{id}")));
    map.insert("object".into(), json!("response"));
    map.insert("created_at".into(), created.clone());
    map.insert("status".into(), json!(o.status));
    map.insert("error".into(), o.error);
    map.insert("incomplete_details".into(), o.incomplete_details);
    map.insert("output".into(), Value::Array(o.output));
    map.insert("usage".into(), o.usage);
    echo.write(&mut map, model);
    Value::Object(map)
}

/// The upstream's `created`, else now.
fn created_of(v: &Value) -> Value {
    match v.get("created").filter(|c| c.is_u64()) {
        Some(c) => c.clone(),
        None => json!(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        ),
    }
}

/// The first signature among `thinking_blocks`.
fn signature_of(v: &Value) -> Option<&str> {
    v.get("thinking_blocks")?
        .as_array()?
        .iter()
        .find_map(|b| text_of(b, "signature"))
}

// ---- The whole answer. ----

/// The `response` object for a `chat.completion` body. `id` is the base of
/// every id written (`resp_{id}`, `msg_{id}`, …).
pub fn answer(chat: &[u8], echo: &Echo, id: &str) -> Result<Vec<u8>, TranslateError> {
    let chat: Value = serde_json::from_slice(chat)
        .map_err(|e| TranslateError::Answer(format!("not JSON: {e}")))?;
    if !chat.is_object() {
        return Err(TranslateError::Answer("not a JSON object".into()));
    }
    let choice = chat
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| TranslateError::Answer("no choices".into()))?;
    let message = choice
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| TranslateError::Answer("choices[0] has no message".into()))?;
    let (status, incomplete_details) = outcome(str_of(choice, "finish_reason"));

    let mut output = Vec::new();
    if let Some(reasoning) =
        text_of(message, "reasoning_content").or_else(|| text_of(message, "reasoning"))
    {
        output.push(reasoning_item(
            &format!("rs_{id}"),
            reasoning,
            signature_of(message),
        ));
    }
    let mut content = Vec::new();
    if let Some(text) = text_of(message, "content") {
        content.push(text_part(text));
    }
    if let Some(refusal) = text_of(message, "refusal") {
        content.push(refusal_part(refusal));
    }
    if !content.is_empty() {
        output.push(message_item(&format!("msg_{id}"), status, content));
    }
    let mut calls: Vec<&Value> = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    // The deprecated single call, as if it were the only tool call.
    let single;
    if calls.is_empty()
        && let Some(function) = message.get("function_call").filter(|f| f.is_object())
    {
        single = json!({"function": function});
        calls.push(&single);
    }
    for (n, call) in calls.into_iter().enumerate() {
        let function = call.get("function").unwrap_or(&Value::Null);
        let name = str_of(function, "name").unwrap_or("");
        let arguments = str_of(function, "arguments").unwrap_or("");
        let call_id = call_id(call, n);
        output.push(if echo.is_custom(name) {
            custom_item(
                echo,
                &format!("ctc_{id}_{n}"),
                &call_id,
                name,
                &custom_input(arguments),
            )
        } else {
            call_item(
                echo,
                &format!("fc_{id}_{n}"),
                &call_id,
                name,
                arguments,
                status,
            )
        });
    }

    let response = response_object(
        id,
        &created_of(&chat),
        str_of(&chat, "model"),
        echo,
        Outcome {
            status,
            output,
            usage: usage_out(chat.get("usage")),
            incomplete_details,
            error: Value::Null,
        },
    );
    Ok(response.to_string().into_bytes())
}

// ---- The stream. ----

/// A chat completions event stream in, the Responses event sequence out.
///
/// Every event is written `event: {type}` and `data: {json}`, its JSON with
/// `type` and a `sequence_number` counting from 0; there is no `[DONE]`.
///
/// - The first upstream chunk → `response.created`, `response.in_progress`
///   (the response with status `in_progress` and no output).
/// - Reasoning deltas → a `reasoning` item: `output_item.added`,
///   `reasoning_summary_part.added`, `reasoning_summary_text.delta`s; on
///   closing `reasoning_summary_text.done`, `reasoning_summary_part.done`,
///   `output_item.done` (with `encrypted_content` from a delta's
///   `thinking_blocks` signature).
/// - Text and refusal deltas → a `message` item: `output_item.added`, then
///   per part `content_part.added`, `output_text.delta`s (or
///   `refusal.delta`s), `output_text.done` (`refusal.done`),
///   `content_part.done`; then `output_item.done`.
/// - Each chat `tool_calls[].index` → its own `function_call` item and
///   `output_index`: `output_item.added` (arguments `""`),
///   `function_call_arguments.delta`s, `.done`, `output_item.done`. Calls
///   stay open side by side (parallel calls interleave). A call of a
///   `custom` tool → a `custom_tool_call` item: `output_item.added` (input
///   `""`), then, once its arguments have ended, one
///   `custom_tool_call_input.delta` with the whole input, `.done`,
///   `output_item.done` (the input is a string inside the arguments' JSON,
///   so it is not relayed piece by piece).
/// - An item is closed when an item of another kind starts, or at the end.
/// - After the upstream's `[DONE]` (or the end of its body, once a
///   `finish_reason` was seen): `response.completed`, or
///   `response.incomplete` for `length` and `content_filter`, with the whole
///   response: output and usage (the usage chunk's).
/// - An upstream error event, or a stream that ends before any
///   `finish_reason` → open items closed `incomplete`, then
///   `response.failed` (`error.code` `server_error`); [`Self::failed`].
///   Nothing is written after a terminal event.
#[derive(Debug)]
pub struct ResponsesStream {
    reader: EventReader,
    echo: Echo,
    id: String,
    out: Vec<u8>,
    seq: u64,
    started: bool,
    ended: bool,
    failed: bool,
    created: Value,
    model: Option<String>,
    /// Finished items, by output index.
    done: Vec<(usize, Value)>,
    next_index: usize,
    /// How many reasoning and message items were opened (their ids).
    reasonings: usize,
    messages: usize,
    reasoning: Option<OpenReasoning>,
    message: Option<OpenMessage>,
    /// Open calls, in the order they started.
    calls: Vec<OpenCall>,
    /// Every call's chat index seen, so a call is never opened twice.
    calls_seen: usize,
    finish_reason: Option<String>,
    usage: Option<Value>,
}

#[derive(Debug)]
struct OpenReasoning {
    index: usize,
    item_id: String,
    text: String,
    signature: Option<String>,
}

#[derive(Debug)]
struct OpenMessage {
    index: usize,
    item_id: String,
    parts: Vec<Value>,
    /// The part under way: whether a refusal, and its text.
    part: Option<(bool, String)>,
}

#[derive(Debug)]
struct OpenCall {
    chat_index: u64,
    index: usize,
    item_id: String,
    call_id: String,
    name: String,
    arguments: String,
    /// A call of a custom tool: its arguments are held, and its input
    /// written whole when they end.
    custom: bool,
}

impl ResponsesStream {
    pub fn new(echo: Echo, id: String) -> Self {
        ResponsesStream {
            reader: EventReader::new(),
            echo,
            id,
            out: Vec::new(),
            seq: 0,
            started: false,
            ended: false,
            failed: false,
            created: Value::Null,
            model: None,
            done: Vec::new(),
            next_index: 0,
            reasonings: 0,
            messages: 0,
            reasoning: None,
            message: None,
            calls: Vec::new(),
            calls_seen: 0,
            finish_reason: None,
            usage: None,
        }
    }

    /// Reads upstream bytes, however split; returns the client's bytes.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        if !self.ended {
            self.reader.push(chunk);
            self.drain();
        }
        std::mem::take(&mut self.out)
    }

    /// The upstream's body ended: what is still owed.
    pub fn finish(&mut self) -> Vec<u8> {
        if !self.ended {
            self.reader.finish();
            self.drain();
        }
        if !self.ended {
            if self.finish_reason.is_some() {
                self.complete();
            } else {
                self.fail("the upstream's stream ended before its answer did");
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Whether the stream met an error (an upstream error event, or a
    /// stream that ended before its answer did).
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn drain(&mut self) {
        while !self.ended {
            let data = match self.reader.next_event() {
                None => break,
                Some(Ok(event)) => event.data.to_vec(),
                Some(Err(e)) => {
                    self.fail(&e.to_string());
                    break;
                }
            };
            self.on_data(&data);
        }
    }

    fn emit(&mut self, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        self.out
            .extend_from_slice(format!("event: {kind}\ndata: {data}\n\n").as_bytes());
    }

    fn response(&self, o: Outcome<'_>) -> Value {
        response_object(
            &self.id,
            &self.created,
            self.model.as_deref(),
            &self.echo,
            o,
        )
    }

    fn start(&mut self, chunk: Option<&Value>) {
        if self.started {
            return;
        }
        self.started = true;
        self.created = created_of(chunk.unwrap_or(&Value::Null));
        self.model = chunk.and_then(|c| str_of(c, "model")).map(str::to_owned);
        for kind in ["response.created", "response.in_progress"] {
            let response = self.response(Outcome {
                status: "in_progress",
                output: Vec::new(),
                usage: Value::Null,
                incomplete_details: Value::Null,
                error: Value::Null,
            });
            self.emit(kind, json!({"response": response}));
        }
    }

    fn on_data(&mut self, data: &[u8]) {
        if data.trim_ascii() == b"[DONE]" {
            if self.finish_reason.is_some() {
                self.complete();
            } else {
                self.fail("the upstream's stream ended before its answer did");
            }
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<Value>(data) else {
            // Not JSON: nothing a client could be told.
            return;
        };
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            let message = str_of(error, "message")
                .map(str::to_owned)
                .unwrap_or_else(|| error.to_string());
            self.fail(&message);
            return;
        }
        if !chunk.is_object() {
            return;
        }
        self.start(Some(&chunk));
        if self.model.is_none() {
            self.model = str_of(&chunk, "model").map(str::to_owned);
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c["index"].as_u64().unwrap_or(0) == 0))
        else {
            return;
        };
        if let Some(delta) = choice.get("delta").filter(|d| d.is_object()) {
            self.on_delta(delta);
        }
        if let Some(reason) = text_of(choice, "finish_reason") {
            self.finish_reason = Some(reason.to_owned());
        }
    }

    fn on_delta(&mut self, delta: &Value) {
        if let Some(text) =
            text_of(delta, "reasoning_content").or_else(|| text_of(delta, "reasoning"))
        {
            self.reasoning_delta(text);
        }
        if let Some(signature) = signature_of(delta)
            && let Some(reasoning) = &mut self.reasoning
        {
            reasoning.signature = Some(signature.to_owned());
        }
        if let Some(text) = text_of(delta, "content") {
            self.message_delta(false, text);
        }
        if let Some(refusal) = text_of(delta, "refusal") {
            self.message_delta(true, refusal);
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                self.call_delta(call);
            }
        }
    }

    fn take_index(&mut self) -> usize {
        self.next_index += 1;
        self.next_index - 1
    }

    fn reasoning_delta(&mut self, text: &str) {
        if self.reasoning.is_none() {
            self.close_message("completed");
            self.close_calls("completed");
            let index = self.take_index();
            let item_id = match self.reasonings {
                0 => format!("rs_{}", self.id),
                n => format!("rs_{}_{n}", self.id),
            };
            self.reasonings += 1;
            self.emit(
                "response.output_item.added",
                json!({"output_index": index, "item": {"type": "reasoning", "id": item_id, "summary": []}}),
            );
            self.emit(
                "response.reasoning_summary_part.added",
                json!({"item_id": item_id, "output_index": index, "summary_index": 0,
                       "part": {"type": "summary_text", "text": ""}}),
            );
            self.reasoning = Some(OpenReasoning {
                index,
                item_id,
                text: String::new(),
                signature: None,
            });
        }
        let Some(r) = &mut self.reasoning else { return };
        r.text.push_str(text);
        let data = json!({"item_id": r.item_id, "output_index": r.index, "summary_index": 0, "delta": text});
        self.emit("response.reasoning_summary_text.delta", data);
    }

    fn close_reasoning(&mut self) {
        let Some(r) = self.reasoning.take() else {
            return;
        };
        self.emit(
            "response.reasoning_summary_text.done",
            json!({"item_id": r.item_id, "output_index": r.index, "summary_index": 0, "text": r.text}),
        );
        self.emit(
            "response.reasoning_summary_part.done",
            json!({"item_id": r.item_id, "output_index": r.index, "summary_index": 0,
                   "part": {"type": "summary_text", "text": r.text}}),
        );
        let item = reasoning_item(&r.item_id, &r.text, r.signature.as_deref());
        self.emit(
            "response.output_item.done",
            json!({"output_index": r.index, "item": item}),
        );
        self.done.push((r.index, item));
    }

    fn message_delta(&mut self, refusal: bool, text: &str) {
        if self.message.is_none() {
            self.close_reasoning();
            self.close_calls("completed");
            let index = self.take_index();
            let item_id = match self.messages {
                0 => format!("msg_{}", self.id),
                n => format!("msg_{}_{n}", self.id),
            };
            self.messages += 1;
            self.emit(
                "response.output_item.added",
                json!({"output_index": index, "item": message_item(&item_id, "in_progress", Vec::new())}),
            );
            self.message = Some(OpenMessage {
                index,
                item_id,
                parts: Vec::new(),
                part: None,
            });
        }
        if self
            .message
            .as_ref()
            .is_some_and(|m| m.part.as_ref().is_some_and(|(r, _)| *r != refusal))
        {
            self.close_part();
        }
        let Some(m) = &mut self.message else { return };
        let (index, item_id, content_index) = (m.index, m.item_id.clone(), m.parts.len());
        if m.part.is_none() {
            m.part = Some((refusal, String::new()));
            let part = if refusal {
                refusal_part("")
            } else {
                text_part("")
            };
            self.emit(
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": index, "content_index": content_index, "part": part}),
            );
        }
        if let Some(m) = &mut self.message
            && let Some((_, so_far)) = &mut m.part
        {
            so_far.push_str(text);
        }
        if refusal {
            self.emit(
                "response.refusal.delta",
                json!({"item_id": item_id, "output_index": index, "content_index": content_index, "delta": text}),
            );
        } else {
            self.emit(
                "response.output_text.delta",
                json!({"item_id": item_id, "output_index": index, "content_index": content_index,
                       "delta": text, "logprobs": []}),
            );
        }
    }

    /// Ends the open message's part under way.
    fn close_part(&mut self) {
        let Some(m) = &mut self.message else { return };
        let Some((refusal, text)) = m.part.take() else {
            return;
        };
        let (index, item_id, content_index) = (m.index, m.item_id.clone(), m.parts.len());
        let part = if refusal {
            refusal_part(&text)
        } else {
            text_part(&text)
        };
        m.parts.push(part.clone());
        if refusal {
            self.emit(
                "response.refusal.done",
                json!({"item_id": item_id, "output_index": index, "content_index": content_index, "refusal": text}),
            );
        } else {
            self.emit(
                "response.output_text.done",
                json!({"item_id": item_id, "output_index": index, "content_index": content_index,
                       "text": text, "logprobs": []}),
            );
        }
        self.emit(
            "response.content_part.done",
            json!({"item_id": item_id, "output_index": index, "content_index": content_index, "part": part}),
        );
    }

    fn close_message(&mut self, status: &str) {
        self.close_part();
        let Some(m) = self.message.take() else { return };
        let item = message_item(&m.item_id, status, m.parts);
        self.emit(
            "response.output_item.done",
            json!({"output_index": m.index, "item": item}),
        );
        self.done.push((m.index, item));
    }

    fn call_delta(&mut self, call: &Value) {
        let chat_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let function = call.get("function").unwrap_or(&Value::Null);
        let arguments = str_of(function, "arguments").unwrap_or("");
        let at = match self.calls.iter().position(|c| c.chat_index == chat_index) {
            Some(at) => at,
            None => {
                self.close_reasoning();
                self.close_message("completed");
                let index = self.take_index();
                let n = self.calls_seen;
                self.calls_seen += 1;
                let name = str_of(function, "name").unwrap_or("").to_owned();
                let custom = self.echo.is_custom(&name);
                let open = OpenCall {
                    chat_index,
                    index,
                    item_id: format!("{}_{}_{n}", if custom { "ctc" } else { "fc" }, self.id),
                    call_id: call_id(call, n),
                    name,
                    arguments: String::new(),
                    custom,
                };
                let item = if custom {
                    custom_item(&self.echo, &open.item_id, &open.call_id, &open.name, "")
                } else {
                    call_item(
                        &self.echo,
                        &open.item_id,
                        &open.call_id,
                        &open.name,
                        "",
                        "in_progress",
                    )
                };
                self.emit(
                    "response.output_item.added",
                    json!({"output_index": index, "item": item}),
                );
                self.calls.push(open);
                self.calls.len() - 1
            }
        };
        if arguments.is_empty() {
            return;
        }
        let c = &mut self.calls[at];
        c.arguments.push_str(arguments);
        // A custom tool's input is a string inside the arguments' JSON:
        // written once they are whole.
        if c.custom {
            return;
        }
        let data = json!({"item_id": c.item_id, "output_index": c.index, "delta": arguments});
        self.emit("response.function_call_arguments.delta", data);
    }

    fn close_calls(&mut self, status: &str) {
        for c in std::mem::take(&mut self.calls) {
            let item = if c.custom {
                let input = custom_input(&c.arguments);
                if !input.is_empty() {
                    self.emit(
                        "response.custom_tool_call_input.delta",
                        json!({"item_id": c.item_id, "output_index": c.index, "delta": input}),
                    );
                }
                self.emit(
                    "response.custom_tool_call_input.done",
                    json!({"item_id": c.item_id, "output_index": c.index, "input": input}),
                );
                custom_item(&self.echo, &c.item_id, &c.call_id, &c.name, &input)
            } else {
                self.emit(
                    "response.function_call_arguments.done",
                    json!({"item_id": c.item_id, "output_index": c.index, "arguments": c.arguments}),
                );
                call_item(
                    &self.echo,
                    &c.item_id,
                    &c.call_id,
                    &c.name,
                    &c.arguments,
                    status,
                )
            };
            self.emit(
                "response.output_item.done",
                json!({"output_index": c.index, "item": item}),
            );
            self.done.push((c.index, item));
        }
    }

    /// Closes every open item, in output order.
    fn close_all(&mut self, status: &str) {
        self.close_reasoning();
        self.close_message(status);
        self.close_calls(status);
    }

    fn output(&mut self) -> Vec<Value> {
        self.done.sort_by_key(|(index, _)| *index);
        self.done.iter().map(|(_, item)| item.clone()).collect()
    }

    fn complete(&mut self) {
        self.start(None);
        let (status, incomplete_details) = outcome(self.finish_reason.as_deref());
        self.close_all(status);
        let output = self.output();
        let response = self.response(Outcome {
            status,
            output,
            usage: usage_out(self.usage.as_ref()),
            incomplete_details,
            error: Value::Null,
        });
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(kind, json!({"response": response}));
        self.ended = true;
    }

    fn fail(&mut self, message: &str) {
        self.failed = true;
        self.start(None);
        self.close_all("incomplete");
        let output = self.output();
        let response = self.response(Outcome {
            status: "failed",
            output,
            usage: usage_out(self.usage.as_ref()),
            incomplete_details: Value::Null,
            error: json!({"code": "server_error", "message": message}),
        });
        self.emit("response.failed", json!({"response": response}));
        self.ended = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "0123abcd";

    // ---- Fixtures: OpenAI's published shapes. ----

    fn completion(message: Value, finish_reason: &str, usage: Value) -> Value {
        json!({
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
            "object": "chat.completion",
            "created": 1_741_570_283u64,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_fc9f1d7035"
        })
    }

    fn usage(prompt: u64, completion: u64, cached: u64, reasoning: u64) -> Value {
        json!({
            "prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        })
    }

    fn echo() -> Echo {
        Echo::from_request(
            br#"{"model":"gpt-4o","input":"hi","instructions":"Be brief.","max_output_tokens":256,
                "tools":[{"type":"function","name":"get_weather","parameters":{"type":"object"}}],
                "metadata":{"team":"a"}}"#,
        )
    }

    /// A request with a custom tool beside the function.
    fn custom_echo() -> Echo {
        Echo::from_request(
            br#"{"model":"gpt-5-codex","input":"hi","tools":[
                {"type":"function","name":"get_weather","parameters":{"type":"object"}},
                {"type":"custom","name":"apply_patch","description":"Edit files."}]}"#,
        )
    }

    fn translate(chat: &Value) -> Value {
        translate_with(chat, &echo())
    }

    fn translate_with(chat: &Value, echo: &Echo) -> Value {
        serde_json::from_slice(&answer(chat.to_string().as_bytes(), echo, ID).unwrap()).unwrap()
    }

    fn chunk(delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion.chunk",
            "created": 1_741_570_283u64, "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_fc9f1d7035",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
            "usage": null
        })
    }

    fn usage_chunk(prompt: u64, completion: u64, cached: u64, reasoning: u64) -> Value {
        json!({
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion.chunk",
            "created": 1_741_570_283u64, "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_fc9f1d7035", "choices": [],
            "usage": usage(prompt, completion, cached, reasoning)
        })
    }

    use crate::formats::chat::fixtures::{call, sse};

    fn stream_whole(input: &[u8], echo: &Echo) -> (String, bool) {
        let mut stream = ResponsesStream::new(echo.clone(), ID.to_owned());
        let mut out = stream.feed(input);
        out.extend(stream.finish());
        (String::from_utf8(out).unwrap(), stream.failed())
    }

    /// The same input split at every byte, and a byte at a time, gives the
    /// same bytes.
    fn stream(input: &str) -> (String, bool) {
        stream_with(input, &echo())
    }

    fn stream_with(input: &str, echo: &Echo) -> (String, bool) {
        let whole = stream_whole(input.as_bytes(), echo);
        let bytes = input.as_bytes();
        for at in 0..=bytes.len() {
            let mut stream = ResponsesStream::new(echo.clone(), ID.to_owned());
            let mut out = stream.feed(&bytes[..at]);
            out.extend(stream.feed(&bytes[at..]));
            out.extend(stream.finish());
            assert_eq!(String::from_utf8(out).unwrap(), whole.0, "split at {at}");
            assert_eq!(stream.failed(), whole.1);
        }
        let mut stream = ResponsesStream::new(echo.clone(), ID.to_owned());
        let mut out = Vec::new();
        for byte in bytes.chunks(1) {
            out.extend(stream.feed(byte));
        }
        out.extend(stream.finish());
        assert_eq!(String::from_utf8(out).unwrap(), whole.0, "byte by byte");
        assert_eq!(stream.failed(), whole.1);
        whole
    }

    /// The events of `sse` folded into a response, as the Python SDK's
    /// `ResponseStreamState.accumulate_event` does, checking on the way
    /// that the stream is well formed: sequence numbers from 0, each
    /// output index added once and done once, every delta naming an item
    /// that is open, and the terminal event's output equal to what was
    /// accumulated. Gives the terminal event's response.
    fn accumulate(sse: &str) -> Value {
        let mut snapshot = Value::Null;
        let mut items: std::collections::BTreeMap<u64, Value> = Default::default();
        let mut done: std::collections::BTreeMap<u64, Value> = Default::default();
        let mut terminal = Value::Null;
        for (seq, event) in sse.split_terminator("\n\n").enumerate() {
            let (name, data) = event
                .strip_prefix("event: ")
                .and_then(|e| e.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("not a Responses event: {event:?}"));
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name);
            assert_eq!(data["sequence_number"], seq as u64, "{name}");
            assert!(terminal.is_null(), "an event after the terminal one");
            let index = data["output_index"].as_u64();
            let open = |items: &mut std::collections::BTreeMap<u64, Value>| {
                let index = index.unwrap();
                assert!(!done.contains_key(&index), "{name} after its item was done");
                let item = items.get_mut(&index).expect("an event for no item");
                if let Some(id) = data.get("item_id") {
                    assert_eq!(&item["id"], id, "{name}");
                }
                item.clone()
            };
            match name {
                "response.created" | "response.in_progress" => {
                    assert_eq!(data["response"]["status"], "in_progress");
                    assert_eq!(data["response"]["output"], json!([]));
                    snapshot = data["response"].clone();
                }
                "response.output_item.added" => {
                    assert!(!snapshot.is_null());
                    let index = index.unwrap();
                    assert!(items.insert(index, data["item"].clone()).is_none());
                }
                "response.content_part.added" => {
                    open(&mut items);
                    let item = items.get_mut(&index.unwrap()).unwrap();
                    let content = item["content"].as_array_mut().unwrap();
                    assert_eq!(data["content_index"], content.len());
                    content.push(data["part"].clone());
                }
                "response.output_text.delta" | "response.refusal.delta" => {
                    open(&mut items);
                    let item = items.get_mut(&index.unwrap()).unwrap();
                    let at = data["content_index"].as_u64().unwrap() as usize;
                    let key = if name == "response.refusal.delta" {
                        "refusal"
                    } else {
                        "text"
                    };
                    let part = &mut item["content"][at][key];
                    *part = json!(format!(
                        "{}{}",
                        part.as_str().unwrap(),
                        data["delta"].as_str().unwrap()
                    ));
                }
                "response.function_call_arguments.delta"
                | "response.custom_tool_call_input.delta" => {
                    open(&mut items);
                    let item = items.get_mut(&index.unwrap()).unwrap();
                    let key = if name == "response.custom_tool_call_input.delta" {
                        "input"
                    } else {
                        "arguments"
                    };
                    let so_far = &mut item[key];
                    *so_far = json!(format!(
                        "{}{}",
                        so_far.as_str().unwrap(),
                        data["delta"].as_str().unwrap()
                    ));
                }
                "response.output_text.done" => {
                    let item = open(&mut items);
                    let at = data["content_index"].as_u64().unwrap() as usize;
                    assert_eq!(item["content"][at]["text"], data["text"]);
                }
                "response.refusal.done" => {
                    let item = open(&mut items);
                    let at = data["content_index"].as_u64().unwrap() as usize;
                    assert_eq!(item["content"][at]["refusal"], data["refusal"]);
                }
                "response.function_call_arguments.done" => {
                    let item = open(&mut items);
                    assert_eq!(item["arguments"], data["arguments"]);
                }
                "response.custom_tool_call_input.done" => {
                    let item = open(&mut items);
                    assert_eq!(item["input"], data["input"]);
                }
                "response.content_part.done" => {
                    let item = open(&mut items);
                    let at = data["content_index"].as_u64().unwrap() as usize;
                    assert_eq!(item["content"][at], data["part"]);
                }
                "response.reasoning_summary_part.added"
                | "response.reasoning_summary_text.delta"
                | "response.reasoning_summary_text.done"
                | "response.reasoning_summary_part.done" => {
                    let item = open(&mut items);
                    assert_eq!(item["type"], "reasoning");
                }
                "response.output_item.done" => {
                    let added = open(&mut items);
                    assert_eq!(added["id"], data["item"]["id"]);
                    assert_eq!(added["type"], data["item"]["type"]);
                    if added["type"] == "message" {
                        assert_eq!(added["content"], data["item"]["content"]);
                    }
                    if added["type"] == "function_call" {
                        assert_eq!(added["arguments"], data["item"]["arguments"]);
                    }
                    if added["type"] == "custom_tool_call" {
                        assert_eq!(added["input"], data["item"]["input"]);
                    }
                    done.insert(index.unwrap(), data["item"].clone());
                }
                "response.completed" | "response.incomplete" | "response.failed" => {
                    assert_eq!(data["response"]["id"], snapshot["id"]);
                    assert_eq!(done.len(), items.len(), "an item left open");
                    let output: Vec<Value> = done.values().cloned().collect();
                    assert_eq!(data["response"]["output"], json!(output));
                    terminal = data["response"].clone();
                }
                other => panic!("unknown event {other}"),
            }
        }
        assert!(!terminal.is_null(), "no terminal event");
        terminal
    }

    /// A stream and the whole answer that says the same: the snapshot of
    /// the events, and the accumulated response equal to `answer`'s.
    fn equivalent(name: &str, chunks: &[Value], whole: &Value) {
        equivalent_with(name, &echo(), chunks, whole);
    }

    fn equivalent_with(name: &str, echo: &Echo, chunks: &[Value], whole: &Value) {
        let (out, failed) = stream_with(&sse(chunks), echo);
        assert!(!failed);
        insta::assert_snapshot!(name, out);
        let mut got = accumulate(&out);
        let mut want = translate_with(whole, echo);
        // The one thing a stream cannot know of its answer before it ends.
        for v in [&mut got, &mut want] {
            v.as_object_mut().unwrap().remove("created_at");
        }
        assert_eq!(got, want, "{name}");
    }

    // ---- Answers ----

    #[test]
    fn geminis_thought_signatures_ride_in_the_call_id_and_go_back() {
        use crate::formats::responses::from_responses::{Target, request};
        let signed_call = json!({"id": "function-call-1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"},
            "extra_content": {"google": {"thought_signature": "CiQB0e2Kb+/x9w=="}}});
        let whole = translate(&completion(
            json!({"role": "assistant", "content": null, "tool_calls": [signed_call]}),
            "tool_calls",
            usage(20, 10, 0, 0),
        ));
        let item = &whole["output"][0];
        assert_eq!(item["type"], "function_call");
        assert_eq!(item["call_id"], "function-call-1__thought__CiQB0e2Kb-_x9w");

        let mut first = signed_call.clone();
        first["index"] = json!(0);
        let (out, failed) = stream(&sse(&[
            chunk(
                json!({"role": "assistant", "tool_calls": [first]}),
                Some("tool_calls"),
            ),
            usage_chunk(20, 10, 0, 0),
        ]));
        assert!(!failed);
        assert!(
            out.contains(r#""call_id":"function-call-1__thought__CiQB0e2Kb-_x9w""#),
            "{out}"
        );

        // Codex's next turn: the call and its output, ids as it got them.
        let next = json!({"model": "gemini", "input": [
            {"role": "user", "content": "Weather in Paris?"},
            item,
            {"type": "function_call_output", "call_id": item["call_id"], "output": "18C"}
        ]});
        let chat: Value = serde_json::from_slice(
            &request(next.to_string().as_bytes(), "gemini-3-pro", Target::Chat).unwrap(),
        )
        .unwrap();
        assert_eq!(
            chat["messages"][1]["tool_calls"][0],
            json!({"id": "function-call-1", "type": "function",
                   "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"},
                   "extra_content": {"google": {"thought_signature": "CiQB0e2Kb+/x9w=="}}})
        );
        assert_eq!(chat["messages"][2]["tool_call_id"], "function-call-1");
        // To Claude the id stays whole, on the call and its result alike.
        let messages: Value = serde_json::from_slice(
            &request(next.to_string().as_bytes(), "claude", Target::Messages).unwrap(),
        )
        .unwrap();
        let call = &messages["messages"][1]["tool_calls"][0];
        assert_eq!(call["id"], item["call_id"]);
        assert!(call.get("extra_content").is_none(), "{call}");
        assert_eq!(messages["messages"][2]["tool_call_id"], item["call_id"]);
    }

    #[test]
    fn answer_text() {
        let chat = completion(
            json!({"role": "assistant", "content": "Hello! How can I help?", "refusal": null, "annotations": []}),
            "stop",
            usage(19, 10, 0, 0),
        );
        insta::assert_json_snapshot!(translate(&chat));
    }

    #[test]
    fn answer_parallel_function_calls() {
        let chat = completion(
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_def", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]}),
            "tool_calls",
            usage(82, 40, 64, 0),
        );
        insta::assert_json_snapshot!(translate(&chat));
    }

    #[test]
    fn answer_refusal() {
        let chat = completion(
            json!({"role": "assistant", "content": null, "refusal": "I can't help with that."}),
            "stop",
            usage(12, 6, 0, 0),
        );
        insta::assert_json_snapshot!(translate(&chat));
    }

    #[test]
    fn answer_incomplete_by_max_tokens() {
        let chat = completion(
            json!({"role": "assistant", "content": "Once upon a"}),
            "length",
            usage(12, 3, 0, 0),
        );
        let got = translate(&chat);
        assert_eq!(got["status"], "incomplete");
        assert_eq!(got["incomplete_details"]["reason"], "max_output_tokens");
        insta::assert_json_snapshot!(got);
        let chat = completion(json!({"content": "x"}), "content_filter", usage(1, 1, 0, 0));
        let got = translate(&chat);
        assert_eq!(got["status"], "incomplete");
        assert_eq!(got["incomplete_details"]["reason"], "content_filter");
    }

    #[test]
    fn answer_reasoning_with_signature() {
        let chat = completion(
            json!({"role": "assistant", "content": "Paris.",
                   "reasoning_content": "The capital of France is Paris.",
                   "thinking_blocks": [{"type": "thinking", "thinking": "The capital of France is Paris.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA"}]}),
            "stop",
            usage(30, 20, 0, 12),
        );
        insta::assert_json_snapshot!(translate(&chat));
        // Without a signature there is no encrypted_content.
        let chat = completion(
            json!({"content": "Paris.", "reasoning_content": "Hmm."}),
            "stop",
            usage(30, 20, 0, 12),
        );
        let got = translate(&chat);
        assert_eq!(got["output"][0]["type"], "reasoning");
        assert!(got["output"][0].get("encrypted_content").is_none());
    }

    #[test]
    fn bad_answers_and_bare_ones() {
        for bad in [
            &b"not json"[..],
            b"[1]",
            br#"{"choices":[]}"#,
            br#"{"choices":[{"index":0}]}"#,
        ] {
            assert!(matches!(
                answer(bad, &Echo::default(), ID),
                Err(TranslateError::Answer(_))
            ));
        }
        let got: Value = serde_json::from_slice(
            &answer(
                br#"{"choices":[{"message":{"content":"hi"}}]}"#,
                &Echo::default(),
                ID,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(got["id"], "resp_0123abcd");
        assert_eq!(got["usage"], Value::Null);
        assert_eq!(got["store"], false);
        assert_eq!(got["output"][0]["content"][0]["text"], "hi");
    }

    // ---- Streams ----

    #[test]
    fn stream_text() {
        let chunks = [
            chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                None,
            ),
            chunk(json!({"content": "Hello"}), None),
            chunk(json!({"content": "! How can I help?"}), None),
            chunk(json!({}), Some("stop")),
            usage_chunk(19, 10, 0, 0),
        ];
        let whole = completion(
            json!({"role": "assistant", "content": "Hello! How can I help?"}),
            "stop",
            usage(19, 10, 0, 0),
        );
        equivalent("stream_text", &chunks, &whole);
    }

    #[test]
    fn stream_parallel_function_calls() {
        // Interleaved by index, as some servers send them.
        let chunks = [
            chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [
                call(0, Some("call_abc"), Some("get_weather"), "")]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [call(0, None, None, "{\"city\":")]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [call(1, Some("call_def"), Some("get_weather"), "{\"city\"")]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [call(0, None, None, "\"Paris\"}")]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [call(1, None, None, ":\"Rome\"}")]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            usage_chunk(82, 40, 64, 0),
        ];
        let whole = completion(
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_def", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]}),
            "tool_calls",
            usage(82, 40, 64, 0),
        );
        equivalent("stream_parallel_function_calls", &chunks, &whole);
    }

    /// A call of a custom tool, whole and streamed, beside a function call.
    #[test]
    fn custom_tool_calls_come_back_as_custom_tool_calls() {
        let patch = "*** Begin Patch\n*** Update File: a.rs\n-\"x\"\n+\"y\"\n*** End Patch";
        let arguments = json!({"input": patch}).to_string();
        let whole = completion(
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_abc", "type": "function", "function": {"name": "apply_patch", "arguments": arguments}},
                {"id": "call_def", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ]}),
            "tool_calls",
            usage(82, 40, 0, 0),
        );
        let got = translate_with(&whole, &custom_echo());
        assert_eq!(
            got["output"][0],
            json!({"type": "custom_tool_call", "id": format!("ctc_{ID}_0"), "call_id": "call_abc",
                   "name": "apply_patch", "input": patch})
        );
        assert_eq!(got["output"][1]["type"], "function_call");
        // Without the custom tool in the request, the same call is a function call.
        assert_eq!(translate(&whole)["output"][0]["type"], "function_call");

        let (head, tail) = arguments.split_at(arguments.len() / 2);
        let chunks = [
            chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [
                call(0, Some("call_abc"), Some("apply_patch"), "")]}),
                None,
            ),
            chunk(json!({"tool_calls": [call(0, None, None, head)]}), None),
            chunk(json!({"tool_calls": [call(0, None, None, tail)]}), None),
            chunk(
                json!({"tool_calls": [call(1, Some("call_def"), Some("get_weather"), "{}")]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            usage_chunk(82, 40, 0, 0),
        ];
        equivalent_with("stream_custom_tool_call", &custom_echo(), &chunks, &whole);
    }

    /// Calls of tools declared in a namespace (in `tools` or an
    /// `additional_tools` item) name it, whole and streamed.
    #[test]
    fn calls_of_namespaced_tools_name_their_namespace() {
        let echo = Echo::from_request(
            br#"{"model":"gpt-5-codex","tools":[
                {"type":"function","name":"get_weather","parameters":{"type":"object"}},
                {"type":"namespace","name":"crm","description":"The CRM.","tools":[
                    {"type":"function","name":"lookup","parameters":{"type":"object"}}]}],
               "input":[{"type":"additional_tools","role":"developer","tools":[
                {"type":"namespace","name":"functions","description":"Code mode.","tools":[
                    {"type":"custom","name":"exec"}]}]}]}"#,
        );
        let whole = completion(
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "exec", "arguments": "{\"input\":\"1+1\"}"}},
                {"id": "c3", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ]}),
            "tool_calls",
            usage(10, 5, 0, 0),
        );
        let got = translate_with(&whole, &echo);
        let output = got["output"].as_array().unwrap();
        assert_eq!(output[0]["namespace"], "crm", "{got}");
        assert_eq!(output[1]["type"], "custom_tool_call");
        assert_eq!(output[1]["namespace"], "functions");
        assert_eq!(output[1]["input"], "1+1");
        assert!(output[2].get("namespace").is_none(), "{got}");

        let chunks = [
            chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [
                    call(0, Some("c1"), Some("lookup"), "{}")]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [call(1, Some("c2"), Some("exec"), "{\"input\":\"1+1\"}")]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [call(2, Some("c3"), Some("get_weather"), "{}")]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            usage_chunk(10, 5, 0, 0),
        ];
        let (out, failed) = stream_with(&sse(&chunks), &echo);
        assert!(!failed);
        let mut streamed = accumulate(&out);
        let mut want = got;
        for v in [&mut streamed, &mut want] {
            v.as_object_mut().unwrap().remove("created_at");
        }
        assert_eq!(streamed, want);
        let added: Vec<Value> = out
            .split_terminator("\n\n")
            .filter_map(|e| e.strip_prefix("event: response.output_item.added\ndata: "))
            .map(|data| serde_json::from_str::<Value>(data).unwrap()["item"]["namespace"].clone())
            .collect();
        assert_eq!(added, [json!("crm"), json!("functions"), Value::Null]);
    }

    #[test]
    fn custom_input_of_arguments_of_another_shape_is_given_as_it_came() {
        assert_eq!(custom_input(r#"{"input":"a\nb"}"#), "a\nb");
        assert_eq!(custom_input(r#""just a string""#), "just a string");
        assert_eq!(custom_input(r#"{"patch":"x"}"#), r#"{"patch":"x"}"#);
        assert_eq!(custom_input("not json"), "not json");
        assert_eq!(custom_input(""), "");
    }

    #[test]
    fn stream_refusal() {
        let chunks = [
            chunk(
                json!({"role": "assistant", "content": null, "refusal": ""}),
                None,
            ),
            chunk(json!({"refusal": "I can't "}), None),
            chunk(json!({"refusal": "help with that."}), None),
            chunk(json!({}), Some("stop")),
            usage_chunk(12, 6, 0, 0),
        ];
        let whole = completion(
            json!({"role": "assistant", "content": null, "refusal": "I can't help with that."}),
            "stop",
            usage(12, 6, 0, 0),
        );
        equivalent("stream_refusal", &chunks, &whole);
    }

    /// Text then a refusal: two parts of one message, as in the answer.
    #[test]
    fn stream_text_then_refusal_is_one_message() {
        let chunks = [
            chunk(json!({"content": "Well"}), None),
            chunk(json!({"refusal": "No."}), None),
            chunk(json!({}), Some("stop")),
        ];
        let whole = completion(
            json!({"content": "Well", "refusal": "No."}),
            "stop",
            Value::Null,
        );
        let (out, failed) = stream(&sse(&chunks));
        assert!(!failed);
        let mut got = accumulate(&out);
        let mut want = translate(&whole);
        for v in [&mut got, &mut want] {
            v.as_object_mut().unwrap().remove("created_at");
        }
        assert_eq!(got, want);
        assert_eq!(got["output"][0]["content"][1]["type"], "refusal");
    }

    #[test]
    fn stream_length_is_incomplete() {
        let chunks = [
            chunk(json!({"role": "assistant", "content": "Once"}), None),
            chunk(json!({"content": " upon a"}), None),
            chunk(json!({}), Some("length")),
            usage_chunk(12, 3, 0, 0),
        ];
        let whole = completion(
            json!({"role": "assistant", "content": "Once upon a"}),
            "length",
            usage(12, 3, 0, 0),
        );
        equivalent("stream_length_is_incomplete", &chunks, &whole);
        let (out, _) = stream(&sse(&chunks));
        assert!(out.contains("event: response.incomplete\n"));
        assert!(!out.contains("response.completed"));
    }

    #[test]
    fn stream_reasoning_with_signature_then_text_then_a_call() {
        let chunks = [
            chunk(
                json!({"role": "assistant", "reasoning_content": "The capital"}),
                None,
            ),
            chunk(json!({"reasoning_content": " of France is Paris."}), None),
            chunk(
                json!({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA"}]}),
                None,
            ),
            chunk(json!({"content": "Paris."}), None),
            chunk(
                json!({"tool_calls": [call(0, Some("call_abc"), Some("get_weather"), "{\"city\":\"Paris\"}")]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            usage_chunk(30, 20, 0, 12),
        ];
        let whole = completion(
            json!({"role": "assistant", "content": "Paris.",
                   "reasoning_content": "The capital of France is Paris.",
                   "thinking_blocks": [{"type": "thinking", "thinking": "The capital of France is Paris.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA"}],
                   "tool_calls": [{"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}),
            "tool_calls",
            usage(30, 20, 0, 12),
        );
        equivalent("stream_reasoning_text_and_a_call", &chunks, &whole);
    }

    #[test]
    fn stream_upstream_error_mid_stream_fails() {
        let input = format!(
            "data: {}\n\ndata: {}\n\n",
            chunk(json!({"role": "assistant", "content": "Hel"}), None),
            json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error"}}),
        );
        let (out, failed) = stream(&input);
        assert!(failed);
        insta::assert_snapshot!("stream_upstream_error_mid_stream", out);
        let response = accumulate(&out);
        assert_eq!(response["status"], "failed");
        assert_eq!(response["error"]["code"], "server_error");
        assert_eq!(
            response["error"]["message"],
            "The server had an error while processing your request."
        );
        assert_eq!(response["output"][0]["status"], "incomplete");
    }

    #[test]
    fn stream_ending_early_fails() {
        // No finish_reason: the answer was cut.
        let input = format!(
            "data: {}\n\n",
            chunk(json!({"role": "assistant", "content": "Hel"}), None)
        );
        let (out, failed) = stream(&input);
        assert!(failed);
        assert_eq!(accumulate(&out)["status"], "failed");
        // Even [DONE] does not make it whole.
        let (out, failed) = stream(&format!("{input}data: [DONE]\n\n"));
        assert!(failed);
        assert_eq!(accumulate(&out)["status"], "failed");
        // Nothing at all: created, then failed.
        let (out, failed) = stream("");
        assert!(failed);
        assert_eq!(accumulate(&out)["status"], "failed");
        // A finish_reason without [DONE] is a whole answer.
        let input = format!("{input}data: {}\n\n", chunk(json!({}), Some("stop")));
        let (out, failed) = stream(&input);
        assert!(!failed);
        assert_eq!(accumulate(&out)["status"], "completed");
    }

    #[test]
    fn comments_crlf_and_input_after_the_end_are_harmless() {
        let chunks = [
            chunk(json!({"content": "Hi"}), Some("stop")),
            usage_chunk(1, 1, 0, 0),
        ];
        let plain = stream(&sse(&chunks)).0;
        let crlf = format!(": keep-alive\r\n\r\n{}", sse(&chunks).replace("\n", "\r\n"));
        assert_eq!(stream(&crlf).0, plain);
        let mut s = ResponsesStream::new(echo(), ID.to_owned());
        let out = s.feed(sse(&chunks).as_bytes());
        assert_eq!(String::from_utf8(out).unwrap(), plain);
        assert!(s.feed(b"data: {\"choices\":[]}\n\n").is_empty());
        assert!(s.finish().is_empty());
    }

    proptest! {
        #[test]
        fn no_bytes_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut s = ResponsesStream::new(Echo::default(), ID.to_owned());
            let mut out = s.feed(&bytes);
            out.extend(s.finish());
            let _ = answer(&bytes, &Echo::default(), ID);
            prop_assert!(String::from_utf8(out).is_ok());
        }
    }
}
