//! An Anthropic Messages answer → an OpenAI `chat.completion` ([`answer`]),
//! and a Messages event stream → `chat.completion.chunk` events
//! ([`ChatStream`]): Claude behind the OpenAI API.
//!
//! The message:
//! - `text` blocks → `content`, joined as they come (no separator, as a
//!   stream delivers them); `null` when there is no text and the model
//!   called tools, `""` when there is neither.
//! - `tool_use` blocks → `tool_calls`, in order: `{"id", "type":
//!   "function", "function": {"name", "arguments"}}`, `arguments` the
//!   `input` object's JSON text exactly as Anthropic wrote it.
//! - `thinking` blocks → `reasoning_content` (their text, joined) and
//!   `thinking_blocks` (LiteLLM's member: `{"type": "thinking", "thinking",
//!   "signature"}`, and `{"type": "redacted_thinking", "data"}`), whole and
//!   in order, which a client sends back on its next assistant turn
//!   ([`super::from_chat`] turns them into blocks again, signature intact).
//! - Server tool blocks (`server_tool_use`, `web_search_tool_result`, …) and
//!   blocks of types added later have no chat equivalent and are left out.
//!
//! [`finish_reason`] maps `stop_reason`: `end_turn` and `stop_sequence` →
//! `stop`; `max_tokens` and `model_context_window_exceeded` → `length`;
//! `tool_use` → `tool_calls`; `refusal` → `content_filter`; `pause_turn`
//! (a long server-tool turn Anthropic paused, to be continued by sending
//! the answer back) is passed as `pause_turn`: neither `stop` nor `length`
//! would tell the client the turn is unfinished, and clients read an
//! unknown reason as a stop; any other value passes as it is; `null` stays
//! `null`.
//!
//! [`usage`]: Anthropic's `input_tokens` counts only the tokens after the
//! last cache breakpoint, so `prompt_tokens` = `input_tokens` +
//! `cache_creation_input_tokens` + `cache_read_input_tokens` (every prompt
//! token once), `prompt_tokens_details.cached_tokens` =
//! `cache_read_input_tokens` and `.cache_write_tokens` =
//! `cache_creation_input_tokens` (parts of `prompt_tokens`, as OpenAI counts
//! them; the second only when Anthropic said it), `completion_tokens` =
//! `output_tokens` (thinking included), and `total_tokens` their sum. Metering reads these as it reads OpenAI's, so
//! a deployment's cache prices apply to Claude answered in chat's shape.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::TranslateError;
use super::error::write_stream_error;
use super::types::{ContentBlock, Message};
use crate::formats::chat::{
    self, AnswerMessage, ChatChunk, ChatCompletion, Choice, ChunkChoice, FunctionCall,
    FunctionCallDelta, PromptTokensDetails, ToolCall, ToolCallDelta,
};
use crate::formats::sse::{self, EventReader};

/// The `finish_reason` for an Anthropic `stop_reason` (see the module doc).
pub fn finish_reason(stop_reason: &str) -> &str {
    match stop_reason {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => other,
    }
}

/// The chat `usage` for Anthropic's counts (see the module doc).
pub fn usage(
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
) -> chat::Usage {
    let cache_read = cache_read_input_tokens.unwrap_or(0);
    let prompt = input_tokens
        .saturating_add(cache_creation_input_tokens.unwrap_or(0))
        .saturating_add(cache_read);
    chat::Usage {
        prompt_tokens: prompt,
        completion_tokens: output_tokens,
        total_tokens: prompt.saturating_add(output_tokens),
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: Some(cache_read),
            cache_write_tokens: cache_creation_input_tokens,
            ..PromptTokensDetails::default()
        }),
        completion_tokens_details: None,
        extra: chat::Extra::new(),
    }
}

/// Unix seconds now: a translated answer's `created`.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An Anthropic Message (the body of a 200 from `/v1/messages`) → a
/// `chat.completion` body: the message's `id` kept, `created` now, `model`
/// the upstream's.
pub fn answer(messages_body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    answer_at(messages_body, now())
}

/// [`answer`] with `created` given.
pub fn answer_at(messages_body: &[u8], created: u64) -> Result<Vec<u8>, TranslateError> {
    let message: Message = serde_json::from_slice(messages_body)
        .map_err(|e| TranslateError::Answer(format!("not a Messages answer: {e}")))?;
    let mut text: Option<Cow<'_, str>> = None;
    let mut reasoning: Option<Cow<'_, str>> = None;
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    for block in &message.content {
        match block {
            ContentBlock::Text(t) => append(&mut text, &t.text),
            ContentBlock::Thinking(t) => {
                append(&mut reasoning, &t.thinking);
                thinking_blocks.push(thinking_block(&t.thinking, &t.signature));
            }
            ContentBlock::RedactedThinking(t) => thinking_blocks.push(redacted_block(&t.data)),
            ContentBlock::ToolUse(t) => tool_calls.push(ToolCall {
                id: Cow::Borrowed(&t.id),
                kind: Cow::Borrowed("function"),
                function: FunctionCall {
                    name: Cow::Borrowed(&t.name),
                    arguments: Cow::Borrowed(t.input.get()),
                    extra: chat::Extra::new(),
                },
                extra: chat::Extra::new(),
            }),
            // No chat equivalent (see the module doc).
            _ => {}
        }
    }
    let content = match text {
        Some(text) if !text.is_empty() => Some(text),
        _ if !tool_calls.is_empty() => None,
        _ => Some(Cow::Borrowed("")),
    };
    let completion = ChatCompletion {
        id: Cow::Borrowed(&message.id),
        object: Cow::Borrowed(chat::OBJECT_COMPLETION),
        created,
        model: Cow::Borrowed(&message.model),
        choices: vec![Choice {
            index: 0,
            message: AnswerMessage {
                content,
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                reasoning_content: reasoning,
                thinking_blocks: (!thinking_blocks.is_empty()).then_some(thinking_blocks),
                ..AnswerMessage::default()
            },
            finish_reason: message
                .stop_reason
                .as_deref()
                .map(|r| Cow::Borrowed(finish_reason(r))),
            logprobs: None,
            extra: chat::Extra::new(),
        }],
        usage: Some(usage(
            message.usage.input_tokens,
            message.usage.output_tokens,
            message.usage.cache_creation_input_tokens,
            message.usage.cache_read_input_tokens,
        )),
        ..ChatCompletion::default()
    };
    let mut out = Vec::with_capacity(messages_body.len() + 256);
    serde_json::to_writer(&mut out, &completion)
        .map_err(|e| TranslateError::Answer(e.to_string()))?;
    Ok(out)
}

/// Appends `more` to `all`, borrowing while there is one piece.
fn append<'a>(all: &mut Option<Cow<'a, str>>, more: &'a str) {
    match all {
        None => *all = Some(Cow::Borrowed(more)),
        Some(text) => text.to_mut().push_str(more),
    }
}

fn thinking_block(thinking: &str, signature: &str) -> Value {
    json!({"type": "thinking", "thinking": thinking, "signature": signature})
}

fn redacted_block(data: &str) -> Value {
    json!({"type": "redacted_thinking", "data": data})
}

// ---------------------------------------------------------------------------
// Streams

/// Translates a Messages event stream into OpenAI chat chunks as it comes,
/// holding only the event under way, the open blocks' state and (for a
/// thinking block) its text until the block ends.
///
/// What it writes, every chunk with the stream's `id` (the message's),
/// `object`, `created` and `model`:
/// 1. at `message_start`, one role chunk (`delta: {"role": "assistant",
///    "content": ""}`);
/// 2. text deltas as `delta.content`; thinking deltas as
///    `delta.reasoning_content`, and when a thinking block ends, the whole
///    block with its signature as `delta.thinking_blocks: [{…}]` (the same
///    entries as [`answer`]'s, so a client can send them back); a redacted
///    thinking block likewise when it ends;
/// 3. tool calls as OpenAI streams them: `index` counts tool calls only
///    (0, 1, 2… in the message's order), the call's first delta has `id`,
///    `type`, `function.name` and `arguments: ""`, then argument fragments
///    as they come; a call that got no fragment gets its start's `input`
///    (`{}`) when it ends, so its arguments are never empty;
/// 4. at `message_stop`, a `finish_reason` chunk ([`finish_reason`] of the
///    last `message_delta`'s `stop_reason`), one usage chunk with
///    `"choices": []` (always: the gateway strips it when the client did
///    not ask for it), then `data: [DONE]`.
///
/// `ping`, events of types it does not know, and deltas it cannot express
/// (`citations_delta`, server tool blocks) write nothing. An `error` event
/// writes one OpenAI error event (`code: "stream_interrupted"`, the message
/// naming Anthropic's type and message) and ends the stream: nothing more,
/// no `[DONE]`, and [`ChatStream::failed`] is true; so does an event that is
/// not valid JSON, one too long to hold, content before `message_start`, or
/// the upstream ending before `message_stop` ([`ChatStream::finish`]).
#[derive(Debug)]
pub struct ChatStream {
    reader: EventReader,
    translator: Translator,
}

impl Default for ChatStream {
    fn default() -> Self {
        ChatStream::new()
    }
}

impl ChatStream {
    pub fn new() -> Self {
        ChatStream::with_created(now())
    }

    /// A stream whose chunks have `created` = `created`.
    pub fn with_created(created: u64) -> Self {
        ChatStream {
            reader: EventReader::new(),
            translator: Translator {
                created,
                id: String::new(),
                model: String::new(),
                state: State::Waiting,
                input_tokens: 0,
                output_tokens: 0,
                cache_creation: None,
                cache_read: None,
                stop_reason: None,
                blocks: Vec::new(),
                tool_calls: 0,
            },
        }
    }

    /// Reads `chunk` (the upstream's bytes, cut anywhere) and returns the
    /// OpenAI event-stream bytes to send now, possibly none.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.feed_into(chunk, &mut out);
        out
    }

    /// [`ChatStream::feed`], appending to `out`.
    pub fn feed_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.translator.ended() {
            return;
        }
        self.reader.push(chunk);
        self.drain(out);
    }

    /// The upstream's body has ended: what is still owed, and when the
    /// stream had not reached `message_stop`, an error event.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.translator.ended() {
            return out;
        }
        self.reader.finish();
        self.drain(&mut out);
        if !self.translator.ended() {
            self.translator.fail(
                &mut out,
                "api_error",
                "the upstream's stream ended before message_stop; the answer is incomplete, retry the request",
            );
        }
        out
    }

    /// Whether the stream ended in an error event (the upstream's or
    /// Sluice's): the answer is incomplete.
    pub fn failed(&self) -> bool {
        matches!(self.translator.state, State::Failed)
    }

    fn drain(&mut self, out: &mut Vec<u8>) {
        while let Some(event) = self.reader.next_event() {
            match event {
                Ok(event) => self.translator.event(event.data, out),
                Err(too_long) => self.translator.fail(
                    out,
                    "api_error",
                    &format!("the upstream's stream is malformed: {too_long}"),
                ),
            }
            if self.translator.ended() {
                return;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before `message_start`.
    Waiting,
    Streaming,
    /// After `message_stop`.
    Done,
    Failed,
}

/// A content block under way.
#[derive(Debug)]
enum Block {
    Text,
    Tool {
        /// Its index among the message's tool calls.
        call: u32,
        /// Whether any of its arguments were written.
        written: bool,
        /// Its start's `input`, written at its end when nothing else was.
        input: String,
    },
    Thinking {
        text: String,
        signature: String,
    },
    Redacted {
        data: String,
    },
    /// A block with no chat equivalent.
    Skipped,
}

#[derive(Debug)]
struct Translator {
    created: u64,
    id: String,
    model: String,
    state: State,
    input_tokens: u64,
    output_tokens: u64,
    cache_creation: Option<u64>,
    cache_read: Option<u64>,
    stop_reason: Option<String>,
    /// Open blocks by their index (one at a time, in practice).
    blocks: Vec<(u64, Block)>,
    /// Tool calls seen so far.
    tool_calls: u32,
}

// The events as far as the translation reads them: one pass each, members
// not named here skipped unread.

#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: u64,
    #[serde(default, borrow)]
    message: Option<WireMessage<'a>>,
    #[serde(default, borrow)]
    content_block: Option<WireBlock<'a>>,
    #[serde(default, borrow)]
    delta: Option<WireDelta<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default, borrow)]
    error: Option<WireError<'a>>,
}

#[derive(Deserialize)]
struct WireMessage<'a> {
    #[serde(default, borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    model: Cow<'a, str>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

/// A `content_block_start`'s block, or a `content_block_delta`'s and
/// `message_delta`'s delta (`stop_reason`).
#[derive(Deserialize)]
struct WireBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Cow<'a, str>,
    #[serde(default, borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
    #[serde(default, borrow)]
    thinking: Cow<'a, str>,
    #[serde(default, borrow)]
    signature: Cow<'a, str>,
    #[serde(default, borrow)]
    data: Cow<'a, str>,
}

#[derive(Deserialize)]
struct WireDelta<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Cow<'a, str>,
    #[serde(default, borrow)]
    partial_json: Cow<'a, str>,
    #[serde(default, borrow)]
    thinking: Cow<'a, str>,
    #[serde(default, borrow)]
    signature: Cow<'a, str>,
    #[serde(default, borrow)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WireError<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    message: Cow<'a, str>,
}

impl Translator {
    fn ended(&self) -> bool {
        matches!(self.state, State::Done | State::Failed)
    }

    fn fail(&mut self, out: &mut Vec<u8>, kind: &str, message: &str) {
        write_stream_error(out, kind, message);
        self.state = State::Failed;
    }

    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let event: WireEvent = match serde_json::from_slice(data) {
            Ok(event) => event,
            Err(e) => {
                let message =
                    format!("the upstream's stream is malformed: an event is not valid: {e}");
                return self.fail(out, "api_error", &message);
            }
        };
        match (&*event.kind, self.state) {
            ("ping", _) => {}
            ("error", _) => {
                let error = event.error.unwrap_or(WireError {
                    kind: Cow::Borrowed("api_error"),
                    message: Cow::Borrowed(""),
                });
                self.fail(out, &error.kind, &error.message);
            }
            ("message_start", State::Waiting) => {
                let message = event.message.unwrap_or(WireMessage {
                    id: Cow::Borrowed(""),
                    model: Cow::Borrowed(""),
                    usage: None,
                });
                self.id = message.id.into_owned();
                self.model = message.model.into_owned();
                if let Some(usage) = message.usage {
                    self.count(&usage);
                }
                self.state = State::Streaming;
                self.chunk(
                    out,
                    chat::Delta {
                        role: Some(Cow::Borrowed("assistant")),
                        content: Some(Cow::Borrowed("")),
                        ..chat::Delta::default()
                    },
                    None,
                );
            }
            // A second `message_start` says nothing new.
            ("message_start", _) => {}
            (
                "content_block_start"
                | "content_block_delta"
                | "content_block_stop"
                | "message_delta"
                | "message_stop",
                State::Waiting,
            ) => self.fail(
                out,
                "api_error",
                "the upstream's stream is malformed: content before message_start",
            ),
            ("content_block_start", _) => {
                if let Some(block) = event.content_block {
                    self.block_start(event.index, block, out);
                }
            }
            ("content_block_delta", _) => {
                if let Some(delta) = event.delta {
                    self.block_delta(event.index, delta, out);
                }
            }
            ("content_block_stop", _) => self.block_stop(event.index, out),
            ("message_delta", _) => {
                if let Some(reason) = event.delta.and_then(|d| d.stop_reason) {
                    self.stop_reason = Some(reason.into_owned());
                }
                if let Some(usage) = event.usage {
                    self.count(&usage);
                }
            }
            ("message_stop", _) => self.stop(out),
            // Event types added later.
            _ => {}
        }
    }

    /// Takes the counts a usage has (the latest are cumulative).
    fn count(&mut self, usage: &WireUsage) {
        if let Some(n) = usage.input_tokens {
            self.input_tokens = n;
        }
        if let Some(n) = usage.output_tokens {
            self.output_tokens = n;
        }
        if let Some(n) = usage.cache_creation_input_tokens {
            self.cache_creation = Some(n);
        }
        if let Some(n) = usage.cache_read_input_tokens {
            self.cache_read = Some(n);
        }
    }

    fn block_start(&mut self, index: u64, block: WireBlock<'_>, out: &mut Vec<u8>) {
        let state = match &*block.kind {
            "text" => {
                if !block.text.is_empty() {
                    self.content(out, &block.text);
                }
                Block::Text
            }
            "tool_use" => {
                let call = self.tool_calls;
                self.tool_calls += 1;
                let input = block.input.map_or("{}", RawValue::get);
                let empty = is_empty_object(input);
                self.tool_delta(
                    out,
                    call,
                    Some((&block.id, &block.name)),
                    if empty { "" } else { input },
                );
                Block::Tool {
                    call,
                    written: !empty,
                    input: input.to_owned(),
                }
            }
            "thinking" => {
                if !block.thinking.is_empty() {
                    self.reasoning(out, &block.thinking);
                }
                Block::Thinking {
                    text: block.thinking.into_owned(),
                    signature: block.signature.into_owned(),
                }
            }
            "redacted_thinking" => Block::Redacted {
                data: block.data.into_owned(),
            },
            _ => Block::Skipped,
        };
        self.blocks.retain(|(i, _)| *i != index);
        self.blocks.push((index, state));
    }

    fn block_delta(&mut self, index: u64, delta: WireDelta<'_>, out: &mut Vec<u8>) {
        let position = self.blocks.iter().position(|(i, _)| *i == index);
        match &*delta.kind {
            "text_delta" if !delta.text.is_empty() => self.content(out, &delta.text),
            "thinking_delta" => {
                if let Some((_, Block::Thinking { text, .. })) =
                    position.map(|p| &mut self.blocks[p])
                {
                    text.push_str(&delta.thinking);
                }
                if !delta.thinking.is_empty() {
                    self.reasoning(out, &delta.thinking);
                }
            }
            "signature_delta" => {
                if let Some((_, Block::Thinking { signature, .. })) =
                    position.map(|p| &mut self.blocks[p])
                {
                    signature.push_str(&delta.signature);
                }
            }
            "input_json_delta" => {
                let Some((_, Block::Tool { call, written, .. })) =
                    position.map(|p| &mut self.blocks[p])
                else {
                    return;
                };
                if delta.partial_json.is_empty() {
                    return;
                }
                *written = true;
                let call = *call;
                self.tool_delta(out, call, None, &delta.partial_json);
            }
            // `citations_delta`, and types added later.
            _ => {}
        }
    }

    fn block_stop(&mut self, index: u64, out: &mut Vec<u8>) {
        let Some(position) = self.blocks.iter().position(|(i, _)| *i == index) else {
            return;
        };
        let (_, block) = self.blocks.swap_remove(position);
        match block {
            Block::Tool {
                call,
                written: false,
                input,
            } => self.tool_delta(out, call, None, &input),
            Block::Thinking { text, signature } => {
                self.thinking_blocks(out, thinking_block(&text, &signature));
            }
            Block::Redacted { data } => self.thinking_blocks(out, redacted_block(&data)),
            _ => {}
        }
    }

    fn stop(&mut self, out: &mut Vec<u8>) {
        // Blocks left open still give what they owe.
        let open: Vec<u64> = self.blocks.iter().map(|(i, _)| *i).collect();
        for index in open {
            self.block_stop(index, out);
        }
        let reason = self.stop_reason.as_deref().map(finish_reason);
        self.chunk(out, chat::Delta::default(), reason);
        let usage = usage(
            self.input_tokens,
            self.output_tokens,
            self.cache_creation,
            self.cache_read,
        );
        let chunk = ChatChunk {
            choices: Vec::new(),
            usage: Some(usage),
            ..self.chunk_head()
        };
        write_event(out, &chunk);
        out.extend_from_slice(sse::DONE.as_bytes());
        self.state = State::Done;
    }

    fn content(&self, out: &mut Vec<u8>, text: &str) {
        self.chunk(
            out,
            chat::Delta {
                content: Some(Cow::Borrowed(text)),
                ..chat::Delta::default()
            },
            None,
        );
    }

    fn reasoning(&self, out: &mut Vec<u8>, text: &str) {
        self.chunk(
            out,
            chat::Delta {
                reasoning_content: Some(Cow::Borrowed(text)),
                ..chat::Delta::default()
            },
            None,
        );
    }

    fn thinking_blocks(&self, out: &mut Vec<u8>, block: Value) {
        let mut delta = chat::Delta::default();
        delta
            .extra
            .insert("thinking_blocks".to_owned(), Value::Array(vec![block]));
        self.chunk(out, delta, None);
    }

    /// A tool call's delta: its first (`start`: id and name) or a fragment.
    fn tool_delta(
        &self,
        out: &mut Vec<u8>,
        call: u32,
        start: Option<(&str, &str)>,
        arguments: &str,
    ) {
        let (id, kind, name) = match start {
            Some((id, name)) => (
                Some(Cow::Borrowed(id)),
                Some(Cow::Borrowed("function")),
                Some(Cow::Borrowed(name)),
            ),
            None => (None, None, None),
        };
        self.chunk(
            out,
            chat::Delta {
                tool_calls: Some(vec![ToolCallDelta {
                    index: call,
                    id,
                    kind,
                    function: Some(FunctionCallDelta {
                        name,
                        arguments: Some(Cow::Borrowed(arguments)),
                        extra: chat::Extra::new(),
                    }),
                    extra: chat::Extra::new(),
                }]),
                ..chat::Delta::default()
            },
            None,
        );
    }

    fn chunk_head(&self) -> ChatChunk<'_> {
        ChatChunk {
            id: Cow::Borrowed(&self.id),
            object: Cow::Borrowed(chat::OBJECT_CHUNK),
            created: self.created,
            model: Cow::Borrowed(&self.model),
            ..ChatChunk::default()
        }
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: chat::Delta<'_>, finish: Option<&str>) {
        let chunk = ChatChunk {
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish.map(Cow::Borrowed),
                ..ChunkChoice::default()
            }],
            ..self.chunk_head()
        };
        write_event(out, &chunk);
    }
}

fn write_event(out: &mut Vec<u8>, chunk: &ChatChunk<'_>) {
    out.extend_from_slice(b"data: ");
    // Writing these types into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, chunk);
    out.extend_from_slice(b"\n\n");
}

/// Whether `json` is `{}` (spaces allowed).
fn is_empty_object(json: &str) -> bool {
    let inner = json.trim();
    inner
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .is_some_and(|s| s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Map;

    const CREATED: u64 = 1_700_000_000;

    fn translate(message: &str) -> Value {
        serde_json::from_slice(&answer_at(message.as_bytes(), CREATED).unwrap()).unwrap()
    }

    /// A Message with `content`, `stop_reason` and `usage`.
    fn message(content: &str, stop_reason: &str, usage: &str) -> String {
        format!(
            r#"{{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":{content},"stop_reason":{stop_reason},"stop_sequence":null,"usage":{usage}}}"#
        )
    }

    const USAGE: &str = r#"{"input_tokens":2095,"output_tokens":503}"#;

    /// The Messages answers of the fixtures, from Anthropic's reference.
    fn answers() -> Vec<(&'static str, String)> {
        vec![
            (
                "text",
                message(
                    r#"[{"type":"text","text":"Hi! My name is Claude."}]"#,
                    r#""end_turn""#,
                    USAGE,
                ),
            ),
            (
                "parallel_tools",
                message(
                    r#"[{"type":"text","text":"I'll check both."},
                        {"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"get_weather","input":{"location":"San Francisco, CA","unit":"celsius"}},
                        {"type":"tool_use","id":"toolu_01B09q90qw90lq917835lq9","name":"get_time","input":{"timezone": "America/Los_Angeles"}},
                        {"type":"tool_use","id":"toolu_01C09q90qw90lq917835lq9","name":"get_location","input":{}}]"#,
                    r#""tool_use""#,
                    USAGE,
                ),
            ),
            (
                "thinking_with_signatures",
                message(
                    r#"[{"type":"thinking","thinking":"Let me analyze this step by step...","signature":"WaUjzkypQ2mUEVM36O2TxuC06KN8xyfbJwyem2dw3URve/op91XWHOEBLLqIOMfFG/UvLEczmEsUjavL...."},
                        {"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB5URj2pabFG..."},
                        {"type":"text","text":"Based on my analysis..."}]"#,
                    r#""end_turn""#,
                    USAGE,
                ),
            ),
            (
                "refusal",
                message(
                    r#"[{"type":"text","text":"I can't help"}]"#,
                    r#""refusal""#,
                    USAGE,
                ),
            ),
            (
                "pause_turn",
                message(
                    r#"[{"type":"server_tool_use","id":"srvtoolu_01","name":"web_search","input":{"query":"weather"}},
                        {"type":"web_search_tool_result","tool_use_id":"srvtoolu_01","content":[]},
                        {"type":"text","text":"Searching..."}]"#,
                    r#""pause_turn""#,
                    r#"{"input_tokens":10,"output_tokens":20,"server_tool_use":{"web_search_requests":1}}"#,
                ),
            ),
            (
                "max_tokens",
                message(
                    r#"[{"type":"text","text":"Once upon a"}]"#,
                    r#""max_tokens""#,
                    USAGE,
                ),
            ),
            (
                "stop_sequence",
                message(
                    r#"[{"type":"text","text":"1, 2, 3"}]"#,
                    r#""stop_sequence""#,
                    USAGE,
                ),
            ),
            (
                "context_window_exceeded",
                message(
                    r#"[{"type":"text","text":"and so"}]"#,
                    r#""model_context_window_exceeded""#,
                    USAGE,
                ),
            ),
            (
                "unknown_stop_reason",
                message(
                    r#"[{"type":"text","text":"x"}]"#,
                    r#""brand_new_reason""#,
                    USAGE,
                ),
            ),
            ("null_stop_reason", message("[]", "null", USAGE)),
            (
                "cache_usage",
                message(
                    r#"[{"type":"text","text":"Cached."}]"#,
                    r#""end_turn""#,
                    r#"{"input_tokens":50,"cache_creation_input_tokens":1000,"cache_read_input_tokens":20000,"output_tokens":120,"cache_creation":{"ephemeral_5m_input_tokens":1000,"ephemeral_1h_input_tokens":0},"service_tier":"standard"}"#,
                ),
            ),
        ]
    }

    #[test]
    fn answers_translate_as_reviewed() {
        for (name, body) in answers() {
            insta::assert_json_snapshot!(format!("answer_{name}"), translate(&body));
        }
    }

    #[test]
    fn stop_reasons_and_usage_map_as_documented() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("pause_turn", "pause_turn"),
            ("new_one", "new_one"),
        ] {
            assert_eq!(finish_reason(stop), finish);
        }
        let usage = usage(50, 120, Some(1000), Some(20_000));
        assert_eq!(usage.prompt_tokens, 21_050);
        assert_eq!(usage.total_tokens, 21_170);
        assert_eq!(usage.cached_tokens(), 20_000);
        // No text but tool calls: null content; neither: "".
        let tools = translate(&answers()[1].1);
        assert_eq!(
            tools["choices"][0]["message"]["content"],
            "I'll check both."
        );
        let only_tool = message(
            r#"[{"type":"tool_use","id":"t","name":"f","input":{}}]"#,
            r#""tool_use""#,
            USAGE,
        );
        assert_eq!(
            translate(&only_tool)["choices"][0]["message"]["content"],
            Value::Null
        );
        let empty = translate(&message("[]", r#""end_turn""#, USAGE));
        assert_eq!(empty["choices"][0]["message"]["content"], "");
    }

    #[test]
    fn bad_answers_are_refused() {
        for bad in [
            &b""[..],
            b"{}",
            br#"{"type":"error","error":{"type":"api_error","message":"x"}}"#,
            br#"{"id":"m","role":"assistant","model":"c","content":[{"text":"no type"}]}"#,
            br#"{"id":"m","role":"assistant","model":"c","content":[{"type":"tool_use","id":"t","name":"f"}]}"#,
        ] {
            assert!(
                matches!(answer(bad), Err(TranslateError::Answer(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    // -- Streams ------------------------------------------------------------

    /// An event stream of `events` (their data), each named by its `type`.
    fn sse_stream(events: &[&str], eol: &str) -> String {
        let mut out = String::new();
        for data in events {
            let value: Value = serde_json::from_str(data).unwrap();
            let name = value["type"].as_str().unwrap();
            out.push_str(&format!("event: {name}{eol}data: {data}{eol}{eol}"));
        }
        out
    }

    fn start(usage: &str) -> String {
        format!(
            r#"{{"type":"message_start","message":{{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{usage}}}}}"#
        )
    }

    fn block_start(index: u32, block: &str) -> String {
        format!(r#"{{"type":"content_block_start","index":{index},"content_block":{block}}}"#)
    }

    fn delta(index: u32, delta: &str) -> String {
        format!(r#"{{"type":"content_block_delta","index":{index},"delta":{delta}}}"#)
    }

    fn text(index: u32, text: &str) -> String {
        delta(
            index,
            &format!(r#"{{"type":"text_delta","text":{}}}"#, json!(text)),
        )
    }

    fn json_delta(index: u32, partial: &str) -> String {
        delta(
            index,
            &format!(
                r#"{{"type":"input_json_delta","partial_json":{}}}"#,
                json!(partial)
            ),
        )
    }

    fn stop(index: u32) -> String {
        format!(r#"{{"type":"content_block_stop","index":{index}}}"#)
    }

    fn message_delta(stop_reason: &str, usage: &str) -> String {
        format!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":"{stop_reason}","stop_sequence":null}},"usage":{usage}}}"#
        )
    }

    const PING: &str = r#"{"type":"ping"}"#;
    const MESSAGE_STOP: &str = r#"{"type":"message_stop"}"#;
    const START_USAGE: &str = r#"{"input_tokens":2095,"output_tokens":1}"#;
    const END_USAGE: &str = r#"{"output_tokens":503}"#;

    /// The stream fixtures, each with the whole Message it streams (`None`
    /// for a stream that fails).
    fn streams() -> Vec<(&'static str, Vec<String>, Option<String>)> {
        let text_block = r#"{"type":"text","text":""}"#;
        vec![
            (
                "text",
                vec![
                    start(START_USAGE),
                    block_start(0, text_block),
                    PING.to_owned(),
                    text(0, "Hi! My name"),
                    text(0, " is Claude."),
                    stop(0),
                    message_delta("end_turn", END_USAGE),
                    MESSAGE_STOP.to_owned(),
                ],
                Some(answers()[0].1.clone()),
            ),
            (
                "text_then_tool",
                vec![
                    start(START_USAGE),
                    block_start(0, text_block),
                    text(0, "Okay, let's check the weather for San Francisco, CA:"),
                    stop(0),
                    block_start(
                        1,
                        r#"{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}"#,
                    ),
                    json_delta(1, ""),
                    json_delta(1, r#"{"location":"#),
                    json_delta(1, r#" "San Fra"#),
                    json_delta(1, r#"ncisco, CA""#),
                    json_delta(1, r#", "unit": "fah"#),
                    json_delta(1, r#"renheit"}"#),
                    stop(1),
                    message_delta("tool_use", r#"{"output_tokens":89}"#),
                    MESSAGE_STOP.to_owned(),
                ],
                Some(message(
                    r#"[{"type":"text","text":"Okay, let's check the weather for San Francisco, CA:"},
                        {"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{"location": "San Francisco, CA", "unit": "fahrenheit"}}]"#,
                    r#""tool_use""#,
                    r#"{"input_tokens":2095,"output_tokens":89}"#,
                )),
            ),
            (
                "parallel_tools",
                vec![
                    start(START_USAGE),
                    block_start(0, text_block),
                    text(0, "I'll check both."),
                    stop(0),
                    block_start(
                        1,
                        r#"{"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{}}"#,
                    ),
                    json_delta(1, r#"{"location": "Par"#),
                    json_delta(1, r#"is"}"#),
                    stop(1),
                    block_start(2, text_block),
                    text(2, " And the time:"),
                    stop(2),
                    block_start(
                        3,
                        r#"{"type":"tool_use","id":"toolu_01B","name":"get_time","input":{}}"#,
                    ),
                    json_delta(3, r#"{"timezone": "Europe/Paris"}"#),
                    stop(3),
                    block_start(
                        4,
                        r#"{"type":"tool_use","id":"toolu_01C","name":"get_location","input":{}}"#,
                    ),
                    stop(4),
                    message_delta("tool_use", END_USAGE),
                    MESSAGE_STOP.to_owned(),
                ],
                Some(message(
                    r#"[{"type":"text","text":"I'll check both."},
                        {"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{"location": "Paris"}},
                        {"type":"text","text":" And the time:"},
                        {"type":"tool_use","id":"toolu_01B","name":"get_time","input":{"timezone": "Europe/Paris"}},
                        {"type":"tool_use","id":"toolu_01C","name":"get_location","input":{}}]"#,
                    r#""tool_use""#,
                    USAGE,
                )),
            ),
            (
                "thinking_then_text",
                vec![
                    start(
                        r#"{"input_tokens":10,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":1}"#,
                    ),
                    block_start(0, r#"{"type":"thinking","thinking":"","signature":""}"#),
                    delta(
                        0,
                        r#"{"type":"thinking_delta","thinking":"I need to find the GCD of 1071 and 462."}"#,
                    ),
                    delta(
                        0,
                        r#"{"type":"thinking_delta","thinking":"\n\n1071 = 2 × 462 + 147"}"#,
                    ),
                    delta(
                        0,
                        r#"{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}"#,
                    ),
                    stop(0),
                    block_start(
                        1,
                        r#"{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix"}"#,
                    ),
                    stop(1),
                    block_start(2, text_block),
                    text(2, "The greatest common divisor of 1071 and 462 is **21**."),
                    stop(2),
                    message_delta(
                        "end_turn",
                        r#"{"input_tokens":10,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":300}"#,
                    ),
                    MESSAGE_STOP.to_owned(),
                ],
                Some(message(
                    r#"[{"type":"thinking","thinking":"I need to find the GCD of 1071 and 462.\n\n1071 = 2 × 462 + 147","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"},
                        {"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix"},
                        {"type":"text","text":"The greatest common divisor of 1071 and 462 is **21**."}]"#,
                    r#""end_turn""#,
                    r#"{"input_tokens":10,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":300}"#,
                )),
            ),
            (
                "mid_stream_error",
                vec![
                    start(START_USAGE),
                    block_start(0, text_block),
                    text(0, "Hel"),
                    r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
                        .to_owned(),
                    text(0, "lo"),
                    stop(0),
                    message_delta("end_turn", END_USAGE),
                    MESSAGE_STOP.to_owned(),
                ],
                None,
            ),
            (
                "cut_before_message_stop",
                vec![
                    start(START_USAGE),
                    block_start(0, text_block),
                    text(0, "Hel"),
                ],
                None,
            ),
        ]
    }

    /// Feeds `parts` and finishes: the output, and whether it failed.
    fn run(parts: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut stream = ChatStream::with_created(CREATED);
        let mut out = Vec::new();
        for part in parts {
            out.extend(stream.feed(part));
        }
        out.extend(stream.finish());
        assert!(stream.finish().is_empty());
        (out, stream.failed())
    }

    /// The output's events: each data as JSON, `[DONE]` as a string.
    fn events(out: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(out).unwrap();
        assert!(text.is_empty() || text.ends_with("\n\n"), "{text}");
        text.split_terminator("\n\n")
            .map(|event| {
                let data = event.strip_prefix("data: ").expect("one data line");
                assert!(!data.contains('\n'));
                if data == "[DONE]" {
                    Value::String(data.to_owned())
                } else {
                    serde_json::from_str(data).unwrap()
                }
            })
            .collect()
    }

    /// Folds chat chunks into the `chat.completion` a client would make of
    /// them.
    fn accumulate(events: &[Value]) -> Value {
        let first = &events[0];
        let mut content = String::new();
        let mut reasoning: Option<String> = None;
        let mut thinking_blocks: Vec<Value> = Vec::new();
        let mut tool_calls: Vec<Value> = Vec::new();
        let mut finish = Value::Null;
        let mut usage = Value::Null;
        for event in events {
            if event == "[DONE]" {
                continue;
            }
            for key in ["id", "created", "model"] {
                assert_eq!(event[key], first[key], "{key}");
            }
            assert_eq!(event["object"], "chat.completion.chunk");
            let choices = event["choices"].as_array().unwrap();
            if choices.is_empty() {
                usage = event["usage"].clone();
                continue;
            }
            let choice = &choices[0];
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str() {
                content.push_str(text);
            }
            if let Some(text) = delta["reasoning_content"].as_str() {
                reasoning.get_or_insert_default().push_str(text);
            }
            if let Some(blocks) = delta["thinking_blocks"].as_array() {
                thinking_blocks.extend(blocks.iter().cloned());
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = call["index"].as_u64().unwrap() as usize;
                if call.get("id").is_some() {
                    assert_eq!(index, tool_calls.len(), "tool calls indexed in order");
                    assert_eq!(call["function"]["arguments"], "", "first delta");
                    tool_calls.push(json!({"id": call["id"], "type": call["type"],
                        "function": {"name": call["function"]["name"], "arguments": ""}}));
                }
                let arguments = call["function"]["arguments"].as_str().unwrap_or("");
                let whole = &mut tool_calls[index]["function"]["arguments"];
                *whole = Value::String(format!("{}{arguments}", whole.as_str().unwrap()));
            }
            if !choice["finish_reason"].is_null() {
                finish = choice["finish_reason"].clone();
            }
        }
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        let content = if !content.is_empty() {
            json!(content)
        } else if !tool_calls.is_empty() {
            Value::Null
        } else {
            json!("")
        };
        message.insert("content".into(), content);
        if let Some(reasoning) = reasoning {
            message.insert("reasoning_content".into(), json!(reasoning));
        }
        if !thinking_blocks.is_empty() {
            message.insert("thinking_blocks".into(), json!(thinking_blocks));
        }
        if !tool_calls.is_empty() {
            message.insert("tool_calls".into(), json!(tool_calls));
        }
        json!({
            "id": first["id"], "object": "chat.completion", "created": first["created"],
            "model": first["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
        })
    }

    #[test]
    fn streams_translate_as_reviewed_cut_anywhere_and_equal_their_answers() {
        for (name, events_in, whole) in streams() {
            let events_in: Vec<&str> = events_in.iter().map(String::as_str).collect();
            let input = sse_stream(&events_in, "\n");
            let (out, failed) = run(&[input.as_bytes()]);
            let translated = events(&out);
            insta::assert_json_snapshot!(format!("stream_{name}"), translated);
            assert_eq!(failed, whole.is_none(), "{name}");
            // Byte by byte, with CRLF, with CR, split at every point: the same.
            let one_by_one: Vec<&[u8]> = input.as_bytes().chunks(1).collect();
            assert_eq!(
                run(&one_by_one),
                (out.clone(), failed),
                "{name} byte by byte"
            );
            for eol in ["\r\n", "\r"] {
                let other = sse_stream(&events_in, eol);
                assert_eq!(run(&[other.as_bytes()]).0, out, "{name} {eol:?}");
            }
            let bytes = input.as_bytes();
            for at in 0..=bytes.len() {
                assert_eq!(
                    run(&[&bytes[..at], &bytes[at..]]).0,
                    out,
                    "{name} split at {at}"
                );
            }
            if let Some(whole) = whole {
                assert_eq!(accumulate(&translated), translate(&whole), "{name}");
                assert_eq!(translated.last().unwrap(), "[DONE]");
                // Exactly one role chunk, first.
                let roles = translated
                    .iter()
                    .filter(|e| !e["choices"][0]["delta"]["role"].is_null())
                    .count();
                assert_eq!(roles, 1);
                assert_eq!(translated[0]["choices"][0]["delta"]["role"], "assistant");
            } else {
                let last = translated.last().unwrap();
                assert_eq!(last["error"]["code"], "stream_interrupted", "{name}");
                assert!(!translated.iter().any(|e| e == "[DONE]"));
            }
        }
    }

    #[test]
    fn message_delta_counts_win_and_unknown_events_are_skipped() {
        let events = [
            start(r#"{"input_tokens":5,"output_tokens":1}"#),
            r#"{"type":"brand_new_event","x":{"y":1}}"#.to_owned(),
            block_start(
                0,
                r#"{"type":"server_tool_use","id":"s","name":"web_search","input":{}}"#,
            ),
            json_delta(0, r#"{"query":"x"}"#),
            stop(0),
            block_start(1, r#"{"type":"text","text":""}"#),
            delta(
                1,
                r#"{"type":"citations_delta","citation":{"type":"char_location"}}"#,
            ),
            stop(1),
            message_delta(
                "end_turn",
                r#"{"input_tokens":7,"cache_read_input_tokens":3,"output_tokens":9}"#,
            ),
            MESSAGE_STOP.to_owned(),
        ];
        let events: Vec<&str> = events.iter().map(String::as_str).collect();
        let (out, failed) = run(&[sse_stream(&events, "\n").as_bytes()]);
        assert!(!failed);
        let out = super::tests::events(&out);
        // Role, finish, usage, [DONE].
        assert_eq!(out.len(), 4, "{out:?}");
        assert_eq!(
            out[2]["usage"],
            json!({"prompt_tokens": 10, "completion_tokens": 9, "total_tokens": 19,
                   "prompt_tokens_details": {"cached_tokens": 3}})
        );
        // Nothing after message_stop, an error, or a bad event.
        let mut stream = ChatStream::with_created(CREATED);
        stream.feed(
            b"data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\"}}\n\n",
        );
        let bad = stream.feed(b"data: {not json\n\n");
        assert!(
            events_of(&bad)[0]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("malformed")
        );
        assert!(stream.failed());
        assert!(
            stream
                .feed(b"data: {\"type\":\"message_stop\"}\n\n")
                .is_empty()
        );
        assert!(stream.finish().is_empty());
        // Content before message_start.
        let (out, failed) = run(&[b"data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"]);
        assert!(failed);
        assert_eq!(events_of(&out).len(), 1);
        // An empty body.
        let (out, failed) = run(&[]);
        assert!(failed);
        assert_eq!(events_of(&out)[0]["error"]["type"], "server_error");
    }

    fn events_of(out: &[u8]) -> Vec<Value> {
        events(out)
    }

    proptest! {
        /// No input makes the stream panic, and whatever it writes is
        /// whole events of valid JSON.
        #[test]
        fn streams_never_panic(
            pieces in proptest::collection::vec(prop_oneof![
                Just(b"data: ".to_vec()),
                Just(b"event: x\n".to_vec()),
                Just(b"\n".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(start(START_USAGE).into_bytes()),
                Just(block_start(0, r#"{"type":"tool_use","id":"t","name":"f","input":{}}"#).into_bytes()),
                Just(block_start(1, r#"{"type":"thinking","thinking":""}"#).into_bytes()),
                Just(json_delta(0, "{\"a\"").into_bytes()),
                Just(text(1, "é").into_bytes()),
                Just(stop(0).into_bytes()),
                Just(MESSAGE_STOP.as_bytes().to_vec()),
                proptest::collection::vec(any::<u8>(), 0..16),
            ], 0..40),
            cut in any::<usize>(),
        ) {
            let input = pieces.concat();
            let cut = cut % (input.len() + 1);
            let (out, _) = run(&[&input[..cut], &input[cut..]]);
            let _ = events(&out);
        }
    }
}
