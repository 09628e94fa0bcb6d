//! Bedrock's Converse API, the one shape it serves every chat model in
//! (Nova, Llama, Cohere, AI21, Writer, …), both ways with OpenAI's chat
//! completions: [`request`] (chat → Converse), [`answer`] (Converse →
//! `chat.completion`) and [`ConverseStream`] (Converse's stream events,
//! read as server-sent events named by their type, → `chat.completion.chunk`
//! events).
//!
//! The request:
//! - `system` and `developer` messages → `system` text blocks, in order;
//!   `user` and `assistant` turns → turns of the same role, consecutive ones
//!   merged (Converse wants them alternating); `tool` messages →
//!   `toolResult` blocks (`toolUseId` = `tool_call_id`, the content as
//!   text) in a user turn.
//! - Parts: text → `text` blocks (empty ones left out); an `image_url`
//!   with a `data:` URL → an `image` block (`png`, `jpeg`, `gif`, `webp`)
//!   with its bytes; an `http(s)` URL is refused, naming the part (Converse
//!   takes an image's bytes, never a URL); other kinds are refused.
//! - Assistant turns: text, then `tool_calls` → `toolUse` blocks
//!   (`arguments` parsed into `input`; `""` reads as `{}`; anything but a
//!   JSON object is refused, naming the call).
//! - `max_completion_tokens`, else `max_tokens` → `inferenceConfig.maxTokens`;
//!   `temperature`, `top_p` → `temperature`, `topP`; `stop` →
//!   `stopSequences`.
//! - `tools` (functions) → `toolConfig.tools[].toolSpec` (`name`,
//!   `description`, `inputSchema.json`: the `parameters`, or an empty object
//!   schema); `tool_choice` `auto` → `auto`, `required` → `any`, a named
//!   function → `tool`; `none` has no equivalent: the tools stay (a history
//!   with tool calls needs them) with no choice, which Converse reads as
//!   `auto`.
//! - Refused, naming the parameter, as Converse cannot honour them: `n` >
//!   1, `logprobs`, `top_logprobs`, `logit_bias`, a `response_format` other
//!   than `text`, `audio`, `modalities` other than text, `functions` /
//!   `function_call`.
//! - Ignored: `stream` (the URL says it), `stream_options` (the translated
//!   stream always ends with its usage, stripped when not asked for),
//!   `user`, `safety_identifier`, `store`, `metadata`, `seed`,
//!   `service_tier`, `parallel_tool_calls`, `prompt_cache_key`,
//!   `reasoning_effort`, `verbosity`, `prediction`.
//! - Any other member (`top_k`, `presence_penalty`, a model's own
//!   parameter) goes into `additionalModelRequestFields` as sent, where
//!   Converse passes it to the model.
//!
//! The answer: `text` blocks → `content` (joined), `toolUse` → `tool_calls`
//! (`arguments` the input's JSON), `reasoningContent` → `reasoning_content`;
//! `stopReason` → `finish_reason` ([`finish_reason`]); `usage` as
//! Anthropic's is read ([`crate::formats::anthropic::to_chat::usage`]):
//! `prompt_tokens` = `inputTokens` + `cacheWriteInputTokens` +
//! `cacheReadInputTokens`.

use serde_json::{Map, Value, json};

use super::TranslateError;
use super::anthropic::error::write_stream_error;
use super::anthropic::to_chat::usage;
use super::sse::EventReader;

/// The `finish_reason` for a Converse `stopReason`.
pub fn finish_reason(stop_reason: &str) -> &str {
    match stop_reason {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        other => other,
    }
}

fn invalid(param: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError::Invalid {
        param: Some(param.into()),
        message: message.into(),
    }
}

/// The members ignored on purpose (see the module doc).
const IGNORED: &[&str] = &[
    "model",
    "stream",
    "stream_options",
    "user",
    "safety_identifier",
    "store",
    "metadata",
    "seed",
    "service_tier",
    "parallel_tool_calls",
    "prompt_cache_key",
    "prompt_cache_retention",
    "reasoning_effort",
    "verbosity",
    "prediction",
];

/// A chat completions request → a Converse request body.
pub fn request(chat_body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    let Ok(Value::Object(chat)) = serde_json::from_slice::<Value>(chat_body) else {
        return Err(TranslateError::Invalid {
            param: None,
            message: "the request body is not a JSON object".into(),
        });
    };
    let mut system = Vec::new();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    let mut push = |role: &str, blocks: Vec<Value>| {
        if blocks.is_empty() {
            return;
        }
        match turns.last_mut() {
            Some((last, content)) if last == role => content.extend(blocks),
            _ => turns.push((role.to_owned(), blocks)),
        }
    };
    let messages = chat
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("messages", "is required, a list of messages"))?;
    for (i, message) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = message["role"].as_str().unwrap_or_default();
        match role {
            "system" | "developer" => {
                for text in texts(&message["content"], &at)? {
                    system.push(json!({"text": text}));
                }
            }
            "user" => push("user", user_blocks(&message["content"], &at)?),
            "assistant" => {
                let mut blocks: Vec<Value> = texts(&message["content"], &at)?
                    .into_iter()
                    .map(|t| json!({"text": t}))
                    .collect();
                for (j, call) in message["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let arguments = call["function"]["arguments"].as_str().unwrap_or("");
                    let input = if arguments.trim().is_empty() {
                        json!({})
                    } else {
                        match serde_json::from_str::<Value>(arguments) {
                            Ok(input @ Value::Object(_)) => input,
                            _ => {
                                return Err(invalid(
                                    format!("{at}.tool_calls[{j}].function.arguments"),
                                    "must be a JSON object",
                                ));
                            }
                        }
                    };
                    blocks.push(json!({"toolUse": {
                        "toolUseId": call["id"],
                        "name": call["function"]["name"],
                        "input": input,
                    }}));
                }
                push("assistant", blocks);
            }
            "tool" => {
                let text = texts(&message["content"], &at)?.concat();
                push(
                    "user",
                    vec![json!({"toolResult": {
                        "toolUseId": message["tool_call_id"],
                        "content": [{"text": text}],
                    }})],
                );
            }
            other => {
                return Err(invalid(
                    format!("{at}.role"),
                    format!("{other:?} is not a role"),
                ));
            }
        }
    }
    let mut out = Map::new();
    out.insert(
        "messages".into(),
        Value::Array(
            turns
                .into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect(),
        ),
    );
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    let mut inference = Map::new();
    if let Some(max) = chat
        .get("max_completion_tokens")
        .or_else(|| chat.get("max_tokens"))
        .filter(|v| !v.is_null())
    {
        inference.insert("maxTokens".into(), max.clone());
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = chat.get(from).filter(|v| !v.is_null()) {
            inference.insert(to.into(), v.clone());
        }
    }
    match chat.get("stop") {
        Some(Value::String(s)) => {
            inference.insert("stopSequences".into(), json!([s]));
        }
        Some(list @ Value::Array(_)) => {
            inference.insert("stopSequences".into(), list.clone());
        }
        _ => {}
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if let Some(config) = tool_config(&chat)? {
        out.insert("toolConfig".into(), config);
    }
    refuse_unsupported(&chat)?;
    let mut additional = Map::new();
    for (key, value) in &chat {
        let handled = matches!(
            key.as_str(),
            "messages"
                | "max_completion_tokens"
                | "max_tokens"
                | "temperature"
                | "top_p"
                | "stop"
                | "tools"
                | "tool_choice"
                | "n"
                | "logprobs"
                | "top_logprobs"
                | "response_format"
                | "modalities"
        );
        if !handled && !IGNORED.contains(&key.as_str()) && !value.is_null() {
            additional.insert(key.clone(), value.clone());
        }
    }
    if !additional.is_empty() {
        out.insert(
            "additionalModelRequestFields".into(),
            Value::Object(additional),
        );
    }
    Ok(serde_json::to_vec(&Value::Object(out)).unwrap_or_default())
}

/// What Converse cannot honour, refused naming it.
fn refuse_unsupported(chat: &Map<String, Value>) -> Result<(), TranslateError> {
    if chat.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(invalid("n", "Bedrock's Converse API answers one choice"));
    }
    if chat.get("logprobs") == Some(&Value::Bool(true)) || chat.contains_key("top_logprobs") {
        return Err(invalid(
            "logprobs",
            "Bedrock's Converse API gives no log probabilities",
        ));
    }
    if chat.get("logit_bias").is_some_and(|v| !v.is_null()) {
        return Err(invalid(
            "logit_bias",
            "Bedrock's Converse API takes no logit bias",
        ));
    }
    if let Some(format) = chat.get("response_format").filter(|v| !v.is_null())
        && format["type"] != "text"
    {
        return Err(invalid(
            "response_format",
            "Bedrock's Converse API constrains no output format: only \"text\"",
        ));
    }
    if chat.get("audio").is_some_and(|v| !v.is_null()) {
        return Err(invalid("audio", "Bedrock's Converse API answers no audio"));
    }
    if let Some(modalities) = chat.get("modalities").and_then(Value::as_array)
        && modalities.iter().any(|m| m != "text")
    {
        return Err(invalid(
            "modalities",
            "Bedrock's Converse API answers text only",
        ));
    }
    for old in ["functions", "function_call"] {
        if chat.contains_key(old) {
            return Err(invalid(old, "is deprecated: use tools and tool_choice"));
        }
    }
    Ok(())
}

/// `toolConfig` from `tools` and `tool_choice`.
fn tool_config(chat: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let Some(tools) = chat
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
    else {
        return Ok(None);
    };
    let mut specs = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        if tool["type"] != "function" {
            return Err(invalid(
                format!("tools[{i}].type"),
                "only function tools reach Bedrock's Converse API",
            ));
        }
        let function = &tool["function"];
        let mut spec = Map::new();
        spec.insert("name".into(), function["name"].clone());
        if let Some(description) = function.get("description").filter(|d| d.is_string()) {
            spec.insert("description".into(), description.clone());
        }
        let schema = match function.get("parameters") {
            Some(p @ Value::Object(_)) => p.clone(),
            _ => json!({"type": "object", "properties": {}}),
        };
        spec.insert("inputSchema".into(), json!({"json": schema}));
        specs.push(json!({"toolSpec": spec}));
    }
    let mut config = json!({"tools": specs});
    let choice = match chat.get("tool_choice") {
        Some(Value::String(c)) if c == "required" => Some(json!({"any": {}})),
        Some(Value::String(c)) if c == "auto" => Some(json!({"auto": {}})),
        Some(Value::Object(named)) => Some(json!({"tool": {"name": named["function"]["name"]}})),
        _ => None,
    };
    if let Some(choice) = choice {
        config["toolChoice"] = choice;
    }
    Ok(Some(config))
}

/// The texts of a message's `content`: a string, or text parts.
fn texts(content: &Value, at: &str) -> Result<Vec<String>, TranslateError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                match part["type"].as_str() {
                    Some("text") | Some("refusal") => {
                        let text = part["text"]
                            .as_str()
                            .or_else(|| part["refusal"].as_str())
                            .unwrap_or_default();
                        if !text.is_empty() {
                            out.push(text.to_owned());
                        }
                    }
                    _ => {
                        return Err(invalid(
                            format!("{at}.content[{j}]"),
                            "only text parts are taken here",
                        ));
                    }
                }
            }
            Ok(out)
        }
        _ => Err(invalid(
            format!("{at}.content"),
            "must be a string or a list of parts",
        )),
    }
}

/// A user turn's blocks: text and images.
fn user_blocks(content: &Value, at: &str) -> Result<Vec<Value>, TranslateError> {
    let Value::Array(parts) = content else {
        return Ok(texts(content, at)?
            .into_iter()
            .map(|t| json!({"text": t}))
            .collect());
    };
    let mut blocks = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let here = format!("{at}.content[{j}]");
        match part["type"].as_str() {
            Some("text") => {
                if let Some(text) = part["text"].as_str().filter(|t| !t.is_empty()) {
                    blocks.push(json!({"text": text}));
                }
            }
            Some("image_url") => {
                let url = part["image_url"]["url"]
                    .as_str()
                    .or_else(|| part["image_url"].as_str())
                    .unwrap_or_default();
                let Some((format, data)) = data_url_image(url) else {
                    return Err(invalid(
                        here,
                        "Bedrock's Converse API takes an image's bytes: send it as a data: URL \
                         (image/png, image/jpeg, image/gif or image/webp, base64)",
                    ));
                };
                blocks.push(json!({"image": {"format": format, "source": {"bytes": data}}}));
            }
            _ => {
                return Err(invalid(
                    here,
                    "only text and image parts reach Bedrock's Converse API",
                ));
            }
        }
    }
    Ok(blocks)
}

/// `data:image/png;base64,…` → (`png`, the base64 text).
fn data_url_image(url: &str) -> Option<(&'static str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    let format = match media {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => return None,
    };
    Some((format, data))
}

/// A Converse answer → a `chat.completion` body with this `id`, `created`
/// and `model`.
pub fn answer(body: &[u8], id: &str, created: u64, model: &str) -> Result<Vec<u8>, TranslateError> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| TranslateError::Invalid {
        param: None,
        message: format!("Bedrock's answer is not JSON: {e}"),
    })?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in answer["output"]["message"]["content"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(t) = block["text"].as_str() {
            text.push_str(t);
        } else if let Some(tool) = block.get("toolUse") {
            calls.push(json!({
                "id": tool["toolUseId"],
                "type": "function",
                "function": {
                    "name": tool["name"],
                    "arguments": tool.get("input").map_or("{}".to_owned(), Value::to_string),
                },
            }));
        } else if let Some(t) = block["reasoningContent"]["reasoningText"]["text"].as_str() {
            reasoning.push_str(t);
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) },
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    let stop = answer["stopReason"].as_str().map(finish_reason);
    let u = &answer["usage"];
    let usage = usage(
        u["inputTokens"].as_u64().unwrap_or(0),
        u["outputTokens"].as_u64().unwrap_or(0),
        u["cacheWriteInputTokens"].as_u64(),
        u["cacheReadInputTokens"].as_u64(),
    );
    let completion = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": stop}],
        "usage": usage,
    });
    Ok(serde_json::to_vec(&completion).unwrap_or_default())
}

/// Converse's stream → `chat.completion.chunk` events: a role chunk at
/// `messageStart`; text deltas as `content`, reasoning as
/// `reasoning_content`; tool calls as OpenAI streams them (`index` counting
/// tool calls, the first delta with `id`, `type`, `name` and `arguments:
/// ""`, then argument fragments); at `messageStop` the `finish_reason`
/// chunk, at `metadata` one usage chunk (`"choices": []`, always: the
/// gateway strips it when not asked for) and `data: [DONE]`. An `error`
/// event (an exception, made Anthropic's shape by the event-stream reader),
/// an event that is not JSON, or an end before `messageStop` writes one
/// OpenAI error event and ends the stream ([`ConverseStream::failed`]).
#[derive(Debug)]
pub struct ConverseStream {
    reader: EventReader,
    id: String,
    model: String,
    created: u64,
    state: State,
    /// Converse's block index → the tool call's index, for tool blocks.
    tools: Vec<(u64, u32)>,
    calls: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Streaming,
    /// After `messageStop`, waiting for `metadata`.
    Stopped,
    Done,
    Failed,
}

impl ConverseStream {
    pub fn new(id: String, created: u64, model: String) -> Self {
        ConverseStream {
            reader: EventReader::new(),
            id,
            model,
            created,
            state: State::Waiting,
            tools: Vec::new(),
            calls: 0,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.ended() {
            return out;
        }
        self.reader.push(chunk);
        self.drain(&mut out);
        out
    }

    /// The upstream's body has ended.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.ended() {
            return out;
        }
        self.reader.finish();
        self.drain(&mut out);
        match self.state {
            // The answer is whole; only its usage is missing.
            State::Stopped => {
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.state = State::Done;
            }
            State::Done | State::Failed => {}
            _ => self.fail(
                &mut out,
                "api_error",
                "the upstream's stream ended before messageStop; the answer is incomplete, retry the request",
            ),
        }
        out
    }

    pub fn failed(&self) -> bool {
        self.state == State::Failed
    }

    fn ended(&self) -> bool {
        matches!(self.state, State::Done | State::Failed)
    }

    fn fail(&mut self, out: &mut Vec<u8>, kind: &str, message: &str) {
        write_stream_error(out, kind, message);
        self.state = State::Failed;
    }

    fn drain(&mut self, out: &mut Vec<u8>) {
        loop {
            let (name, data) = match self.reader.next_event() {
                None => return,
                Some(Err(too_long)) => {
                    let message = format!("the upstream's stream is malformed: {too_long}");
                    return self.fail(out, "api_error", &message);
                }
                Some(Ok(event)) => (
                    String::from_utf8_lossy(event.name).into_owned(),
                    serde_json::from_slice::<Value>(event.data),
                ),
            };
            let Ok(data) = data else {
                return self.fail(
                    out,
                    "api_error",
                    "the upstream's stream is malformed: an event is not valid JSON",
                );
            };
            self.event(&name, &data, out);
            if self.ended() {
                return;
            }
        }
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(chunk.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    fn event(&mut self, name: &str, data: &Value, out: &mut Vec<u8>) {
        match (name, self.state) {
            ("error", _) => {
                let kind = data["error"]["type"]
                    .as_str()
                    .unwrap_or("api_error")
                    .to_owned();
                let message = data["error"]["message"].as_str().unwrap_or("").to_owned();
                self.fail(out, &kind, &message);
            }
            ("messageStart", State::Waiting) => {
                self.state = State::Streaming;
                self.chunk(out, json!({"role": "assistant", "content": ""}), None);
            }
            (_, State::Waiting) => self.fail(
                out,
                "api_error",
                "the upstream's stream is malformed: content before messageStart",
            ),
            ("contentBlockStart", State::Streaming) => {
                if let Some(tool) = data["start"].get("toolUse") {
                    let index = self.calls;
                    self.calls += 1;
                    self.tools
                        .push((data["contentBlockIndex"].as_u64().unwrap_or(0), index));
                    self.chunk(
                        out,
                        json!({"tool_calls": [{
                            "index": index,
                            "id": tool["toolUseId"],
                            "type": "function",
                            "function": {"name": tool["name"], "arguments": ""},
                        }]}),
                        None,
                    );
                }
            }
            ("contentBlockDelta", State::Streaming) => {
                let delta = &data["delta"];
                if let Some(text) = delta["text"].as_str() {
                    self.chunk(out, json!({"content": text}), None);
                } else if let Some(input) = delta["toolUse"]["input"].as_str() {
                    let block = data["contentBlockIndex"].as_u64().unwrap_or(0);
                    let index = self
                        .tools
                        .iter()
                        .find(|(b, _)| *b == block)
                        .map_or(self.calls.saturating_sub(1), |(_, i)| *i);
                    self.chunk(
                        out,
                        json!({"tool_calls": [{"index": index, "function": {"arguments": input}}]}),
                        None,
                    );
                } else if let Some(text) = delta["reasoningContent"]["text"].as_str() {
                    self.chunk(out, json!({"reasoning_content": text}), None);
                }
            }
            ("messageStop", State::Streaming) => {
                let reason = data["stopReason"].as_str().map(finish_reason);
                self.chunk(out, json!({}), Some(reason.unwrap_or("stop")));
                self.state = State::Stopped;
            }
            ("metadata", State::Stopped | State::Streaming) => {
                let u = &data["usage"];
                let usage = usage(
                    u["inputTokens"].as_u64().unwrap_or(0),
                    u["outputTokens"].as_u64().unwrap_or(0),
                    u["cacheWriteInputTokens"].as_u64(),
                    u["cacheReadInputTokens"].as_u64(),
                );
                let chunk = json!({
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": usage,
                });
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(chunk.to_string().as_bytes());
                out.extend_from_slice(b"\n\ndata: [DONE]\n\n");
                self.state = State::Done;
            }
            // contentBlockStop, and what it does not know: nothing.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn converse(chat: Value) -> Value {
        serde_json::from_slice(&request(chat.to_string().as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn a_chat_request_becomes_a_converse_request() {
        let png = "iVBORw0KGgo=";
        let got = converse(json!({
            "model": "nova",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}},
                ]},
                {"role": "user", "content": "And the weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            ],
            "max_completion_tokens": 300,
            "temperature": 0.2,
            "stop": "END",
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required",
            "top_k": 40,
            "stream": true,
            "user": "u-1",
        }));
        assert_eq!(
            got,
            json!({
                "messages": [
                    {"role": "user", "content": [
                        {"text": "What is this?"},
                        {"image": {"format": "png", "source": {"bytes": png}}},
                        {"text": "And the weather?"},
                    ]},
                    {"role": "assistant", "content": [
                        {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
                    ]},
                    {"role": "user", "content": [
                        {"toolResult": {"toolUseId": "call_1", "content": [{"text": "18C"}]}},
                    ]},
                ],
                "system": [{"text": "Be brief."}],
                "inferenceConfig": {"maxTokens": 300, "temperature": 0.2, "stopSequences": ["END"]},
                "toolConfig": {
                    "tools": [{"toolSpec": {"name": "get_weather", "description": "Weather", "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}],
                    "toolChoice": {"any": {}},
                },
                "additionalModelRequestFields": {"top_k": 40},
            })
        );
    }

    #[test]
    fn what_converse_cannot_take_is_refused_naming_it() {
        let refused = |chat: Value| match request(chat.to_string().as_bytes()) {
            Err(TranslateError::Invalid { param, .. }) => param.unwrap_or_default(),
            other => panic!("{other:?}"),
        };
        let hi = json!([{"role": "user", "content": "Hi"}]);
        assert_eq!(refused(json!({"messages": hi, "n": 2})), "n");
        assert_eq!(
            refused(json!({"messages": hi, "response_format": {"type": "json_object"}})),
            "response_format"
        );
        assert_eq!(
            refused(
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]})
            ),
            "messages[0].content[0]"
        );
        assert_eq!(
            refused(
                json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}]})
            ),
            "messages[0].tool_calls[0].function.arguments"
        );
        assert!(request(b"[1]").is_err());
        assert_eq!(refused(json!({"model": "x"})), "messages");
    }

    #[test]
    fn an_answer_becomes_a_chat_completion() {
        let body = json!({
            "output": {"message": {"role": "assistant", "content": [
                {"reasoningContent": {"reasoningText": {"text": "Hmm."}}},
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}},
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 20, "outputTokens": 9, "totalTokens": 29},
        });
        let got: Value = serde_json::from_slice(
            &answer(
                body.to_string().as_bytes(),
                "chatcmpl-1",
                7,
                "us.amazon.nova-pro-v1:0",
            )
            .unwrap(),
        )
        .unwrap();
        let choice = &got["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "Let me check.");
        assert_eq!(choice["message"]["reasoning_content"], "Hmm.");
        assert_eq!(choice["message"]["tool_calls"][0]["id"], "tooluse_1");
        assert_eq!(
            choice["message"]["tool_calls"][0]["function"]["arguments"],
            r#"{"city":"Paris"}"#
        );
        assert_eq!(got["usage"]["prompt_tokens"], 20);
        assert_eq!(got["usage"]["completion_tokens"], 9);
        assert_eq!(got["model"], "us.amazon.nova-pro-v1:0");
        assert_eq!(finish_reason("max_tokens"), "length");
        assert_eq!(finish_reason("guardrail_intervened"), "content_filter");
    }

    fn event(name: &str, data: Value) -> String {
        format!("event: {name}\ndata: {data}\n\n")
    }

    fn chunks(text: &str) -> Vec<Value> {
        text.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn a_stream_becomes_chat_chunks_split_anywhere() {
        let stream = [
            event("messageStart", json!({"role": "assistant"})),
            event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "lo"}})),
            event("contentBlockStop", json!({"contentBlockIndex": 0})),
            event("contentBlockStart", json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"a\":"}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "1}"}}})),
            event("messageStop", json!({"stopReason": "tool_use"})),
            event("metadata", json!({"usage": {"inputTokens": 5, "outputTokens": 3}, "metrics": {"latencyMs": 10}})),
        ]
        .concat();
        for split in [1, 7, stream.len()] {
            let mut s = ConverseStream::new("chatcmpl-1".into(), 1, "m".into());
            let mut out = Vec::new();
            for piece in stream.as_bytes().chunks(split) {
                out.extend(s.feed(piece));
            }
            out.extend(s.finish());
            let text = String::from_utf8(out).unwrap();
            assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
            assert!(!s.failed());
            let all = chunks(&text);
            let content: String = all
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                .collect();
            assert_eq!(content, "Hello");
            let args: String = all
                .iter()
                .filter_map(|c| {
                    c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
                })
                .collect();
            assert_eq!(args, "{\"a\":1}");
            assert_eq!(all[0]["choices"][0]["delta"]["role"], "assistant");
            let finish: Vec<&Value> = all
                .iter()
                .map(|c| &c["choices"][0]["finish_reason"])
                .filter(|f| !f.is_null())
                .collect();
            assert_eq!(finish, [&json!("tool_calls")]);
            assert_eq!(all.last().unwrap()["usage"]["completion_tokens"], 3);
        }
    }

    #[test]
    fn errors_and_cut_streams_end_with_an_error_event() {
        let mut s = ConverseStream::new("c".into(), 1, "m".into());
        let out = s.feed(
            [
                event("messageStart", json!({"role": "assistant"})),
                event("error", json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})),
            ]
            .concat()
            .as_bytes(),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("stream_interrupted") && text.contains("slow down"),
            "{text}"
        );
        assert!(s.failed());
        let mut cut = ConverseStream::new("c".into(), 1, "m".into());
        cut.feed(event("messageStart", json!({"role": "assistant"})).as_bytes());
        let text = String::from_utf8(cut.finish()).unwrap();
        assert!(text.contains("before messageStop"), "{text}");
        assert!(cut.failed());
        // Stopped but no usage: whole, no usage chunk.
        let mut stopped = ConverseStream::new("c".into(), 1, "m".into());
        stopped.feed(
            [
                event("messageStart", json!({"role": "assistant"})),
                event("messageStop", json!({"stopReason": "end_turn"})),
            ]
            .concat()
            .as_bytes(),
        );
        assert_eq!(stopped.finish(), b"data: [DONE]\n\n");
        assert!(!stopped.failed());
    }
}
