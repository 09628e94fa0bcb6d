//! A chat completions answer and stream, for an Anthropic-native client:
//! the Messages answer ([`answer`]) and event stream ([`MessagesStream`])
//! that say the same, and the estimate [`count_tokens`] answers when the
//! deployment is not Anthropic's.
//!
//! How an answer maps (only the first choice is read: [`super::from_messages`]
//! never asks for more):
//!
//! - `id`: the upstream's, prefixed `msg_` unless it already is (SDKs and
//!   logs expect Anthropic's prefix; the rest keeps it traceable upstream).
//!   `model`: the upstream's.
//! - `content`, in this order: the reasoning (`reasoning_content`, else
//!   `reasoning`) → a `thinking` block whose `signature` is `""`, since an
//!   OpenAI-compatible upstream signs nothing (the member is kept because
//!   Anthropic's SDKs declare it; it is never made up). An upstream that
//!   returns Anthropic `thinking_blocks` (LiteLLM) has them used as they
//!   are, signatures and all. Then `content` → a `text` block, `refusal` →
//!   a `text` block, each `tool_calls` entry → a `tool_use` block with its
//!   `arguments` as `input`: `""` is `{}`, and arguments that are not a JSON
//!   object are kept as the string under [`RAW_ARGUMENTS`], and Gemini's
//!   thought signature joined to its `id` ([`crate::formats::thought`]).
//!   Empty strings make no block.
//! - `stop_reason`: `stop` → `end_turn`, `length` → `max_tokens`,
//!   `tool_calls` and `function_call` → `tool_use`, `content_filter` →
//!   `refusal`, any other value passed through. A `stop` (or missing) reason
//!   with tool calls is `tool_use` (some servers say `stop`; Anthropic
//!   clients run tools on `tool_use`), with a refusal `refusal`. OpenAI
//!   does not say which stop sequence ended an answer, so it is `end_turn`
//!   and `stop_sequence` is always `null`.
//! - `usage`: `input_tokens` = `prompt_tokens` − `cached_tokens` −
//!   `cache_write_tokens`, `cache_read_input_tokens` = `cached_tokens`,
//!   `cache_creation_input_tokens` = `cache_write_tokens` (0 when not said:
//!   most OpenAI-compatible servers report no cache writes),
//!   `output_tokens` = `completion_tokens` (reasoning included): each token
//!   counted once, as Anthropic's prompt is the sum of the three input
//!   counts.
//!
//! The stream: see [`MessagesStream`].

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

use super::TranslateError;
use super::error::status_for_type;
use super::types::{
    Content, ContentBlock, Extra, Message, MessagesRequest, RawJson, Role, TextBlock,
    ThinkingBlock, ToolUseBlock, Usage, borrow_opt,
};
use crate::formats::sse::EventReader;
use crate::formats::thought;

/// The `input` member holding a tool call's `arguments` when they are not a
/// JSON object (the model wrote something else): `{"_raw_arguments": "…"}`.
pub const RAW_ARGUMENTS: &str = "_raw_arguments";

// ---- What is read: the chat completion, as far as the answer needs. ----

#[derive(Deserialize)]
struct WireAnswer<'a> {
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: Option<Vec<WireChoice<'a>>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(borrow)]
    message: WireMessage<'a>,
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WireMessage<'a> {
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    reasoning: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking_blocks: Option<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<WireToolCall<'a>>>,
    /// The deprecated single call.
    #[serde(default, borrow)]
    function_call: Option<WireFunction<'a>>,
}

#[derive(Deserialize)]
struct WireToolCall<'a> {
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<WireFunction<'a>>,
    /// Gemini's thought signature ([`thought`]).
    #[serde(default, borrow)]
    extra_content: Option<thought::ExtraContent<'a>>,
}

#[derive(Deserialize)]
struct WireFunction<'a> {
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    arguments: Option<Cow<'a, str>>,
}

/// `usage`; a count written `null` reads as 0.
#[derive(Deserialize, Clone, Copy, Default)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<WireDetails>,
}

#[derive(Deserialize, Clone, Copy, Default)]
struct WireDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    cache_write_tokens: Option<u64>,
}

/// The counts an Anthropic usage is made of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    input: u64,
    cache_read: u64,
    cache_write: u64,
    output: u64,
}

impl From<WireUsage> for Counts {
    fn from(u: WireUsage) -> Self {
        let prompt = u.prompt_tokens.unwrap_or(0);
        let details = u.prompt_tokens_details.unwrap_or_default();
        // Parts of the prompt: never more than it.
        let cache_read = details.cached_tokens.unwrap_or(0).min(prompt);
        let cache_write = details
            .cache_write_tokens
            .unwrap_or(0)
            .min(prompt - cache_read);
        Counts {
            input: prompt - cache_read - cache_write,
            cache_read,
            cache_write,
            output: u.completion_tokens.unwrap_or(0),
        }
    }
}

/// `msg_` + the upstream's id, unless it has the prefix already.
fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else {
        format!("msg_{id}")
    }
}

/// A tool call's id; a made-up one (`toolu_<index>`) when the upstream
/// gave none, so the client's `tool_result` can still name the call.
fn call_id(id: Option<&str>, index: usize) -> Cow<'_, str> {
    match id {
        Some(id) if !id.is_empty() => Cow::Borrowed(id),
        _ => Cow::Owned(format!("toolu_{index}")),
    }
}

/// Anthropic's `stop_reason` for an OpenAI `finish_reason` (see the
/// module's doc).
fn stop_reason(finish_reason: Option<&str>, tool_calls: bool, refusal: bool) -> Cow<'_, str> {
    match finish_reason {
        None | Some("stop") if tool_calls => Cow::Borrowed("tool_use"),
        None | Some("stop") if refusal => Cow::Borrowed("refusal"),
        None | Some("stop") => Cow::Borrowed("end_turn"),
        Some("length") => Cow::Borrowed("max_tokens"),
        Some("tool_calls" | "function_call") => Cow::Borrowed("tool_use"),
        Some("content_filter") => Cow::Borrowed("refusal"),
        Some(other) => Cow::Borrowed(other),
    }
}

/// A tool call's `arguments` as a `tool_use` `input` (see the module's doc).
fn tool_input(arguments: Option<&str>) -> RawJson<'static> {
    let arguments = arguments.unwrap_or("");
    let trimmed = arguments.trim();
    if trimmed.is_empty() {
        return RawJson::from_value(&serde_json::Map::new());
    }
    if trimmed.starts_with('{')
        && let Ok(raw) = RawJson::from_string(trimmed.to_owned())
    {
        return raw;
    }
    let mut kept = serde_json::Map::new();
    kept.insert(RAW_ARGUMENTS.to_owned(), arguments.into());
    RawJson::from_value(&kept)
}

/// The Anthropic Message (JSON) for the chat completion `chat_body`.
pub fn answer(chat_body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    let wire: WireAnswer = serde_json::from_slice(chat_body)
        .map_err(|e| TranslateError::Answer(format!("not a chat completion: {e}")))?;
    let choice = wire
        .choices
        .and_then(|choices| choices.into_iter().find(|c| c.index == 0))
        .ok_or_else(|| TranslateError::Answer("a chat completion without choices".into()))?;
    let message = choice.message;
    let mut content = Vec::new();
    match message.thinking_blocks {
        Some(blocks) if !blocks.is_empty() => {
            content.extend(
                blocks
                    .into_iter()
                    .map(|raw| ContentBlock::Other(RawJson(Cow::Borrowed(raw)))),
            );
        }
        _ => {
            if let Some(thinking) = message
                .reasoning_content
                .or(message.reasoning)
                .filter(|t| !t.is_empty())
            {
                content.push(ContentBlock::Thinking(ThinkingBlock {
                    thinking,
                    signature: Cow::Borrowed(""),
                    extra: Extra::new(),
                }));
            }
        }
    }
    for text in [&message.content, &message.refusal].into_iter().flatten() {
        if !text.is_empty() {
            content.push(ContentBlock::Text(TextBlock {
                text: Cow::Borrowed(text),
                extra: Extra::new(),
            }));
        }
    }
    let refusal = message.refusal.as_ref().is_some_and(|r| !r.is_empty());
    let mut calls: Vec<(
        Option<Cow<str>>,
        WireFunction,
        Option<thought::ExtraContent>,
    )> = Vec::new();
    for call in message.tool_calls.into_iter().flatten() {
        if let Some(function) = call.function {
            calls.push((call.id, function, call.extra_content));
        }
    }
    if let Some(function) = message.function_call {
        calls.push((None, function, None));
    }
    let tool_calls = !calls.is_empty();
    for (i, (id, function, extra)) in calls.iter().enumerate() {
        let id = call_id(id.as_deref(), i);
        let id = match extra.as_ref().and_then(|e| e.signature()) {
            Some(signature) => Cow::Owned(thought::sign(&id, signature)),
            None => id,
        };
        content.push(ContentBlock::ToolUse(ToolUseBlock {
            id,
            name: Cow::Borrowed(function.name.as_deref().unwrap_or("")),
            input: tool_input(function.arguments.as_deref()),
            extra: Extra::new(),
        }));
    }
    let counts = wire.usage.map(Counts::from).unwrap_or_default();
    let out = Message {
        id: Cow::Owned(message_id(wire.id.as_deref().unwrap_or(""))),
        kind: Cow::Borrowed("message"),
        role: Role::Assistant,
        content,
        model: wire.model.unwrap_or_default(),
        stop_reason: Some(stop_reason(
            choice.finish_reason.as_deref(),
            tool_calls,
            refusal,
        )),
        stop_sequence: None,
        usage: Usage {
            input_tokens: counts.input,
            output_tokens: counts.output,
            cache_creation_input_tokens: Some(counts.cache_write),
            cache_read_input_tokens: Some(counts.cache_read),
            extra: Extra::new(),
        },
        extra: Extra::new(),
    };
    let mut body = Vec::with_capacity(chat_body.len() + 128);
    serde_json::to_writer(&mut body, &out)
        .map_err(|e| TranslateError::Answer(format!("the message could not be written: {e}")))?;
    Ok(body)
}

// ---- count_tokens ----

/// Bytes per token in [`count_tokens`]'s estimate: English text and JSON
/// average about 4 bytes a token in the common tokenizers.
pub const BYTES_PER_TOKEN: u64 = 4;
/// Tokens added per message (its role and the framing around it).
pub const TOKENS_PER_MESSAGE: u64 = 4;
/// Tokens added per tool definition (its framing).
pub const TOKENS_PER_TOOL: u64 = 8;
/// Tokens added once when there are tools: Anthropic's tool-use system
/// prompt, about this long per its pricing notes.
pub const TOKENS_FOR_TOOL_USE: u64 = 346;
/// Tokens per image: an image's cost depends on its size (about
/// width × height / 750), unknown without decoding it; this is the cost of
/// an image near the largest size sent unscaled (about 1.15 megapixels).
pub const TOKENS_PER_IMAGE: u64 = 1_600;

/// An estimate of the input tokens of the Messages (or `count_tokens`)
/// request `messages_body`, for `/v1/messages/count_tokens` when the
/// deployment is not Anthropic's (which could count them exactly): the
/// bytes of its text (system, messages, tool calls and results, thinking,
/// tool names, descriptions and schemas, any block it does not know as its
/// JSON) at [`BYTES_PER_TOKEN`], rounded up, plus [`TOKENS_PER_MESSAGE`]
/// per message, [`TOKENS_PER_TOOL`] per tool, [`TOKENS_FOR_TOOL_USE`] when
/// there are tools, and [`TOKENS_PER_IMAGE`] per image. An estimate, not
/// the upstream's tokenizer: it can be off by a good fraction either way.
pub fn count_tokens(messages_body: &[u8]) -> Result<u64, TranslateError> {
    let request: MessagesRequest =
        serde_json::from_slice(messages_body).map_err(|e| TranslateError::Invalid {
            param: None,
            message: format!("the request body is not a valid Messages request: {e}"),
        })?;
    let mut tally = Tally::default();
    if let Some(system) = &request.system {
        tally.content(system);
    }
    for message in &request.messages {
        tally.tokens += TOKENS_PER_MESSAGE;
        tally.content(&message.content);
    }
    if let Some(tools) = request.tools.as_ref().filter(|t| !t.is_empty()) {
        tally.tokens += TOKENS_FOR_TOOL_USE;
        for tool in tools {
            tally.tokens += TOKENS_PER_TOOL;
            tally.bytes += tool.name.len() as u64;
            tally.bytes += tool.description.as_deref().map_or(0, str::len) as u64;
            tally.bytes += tool.input_schema.as_ref().map_or(0, |s| s.get().len()) as u64;
        }
    }
    Ok(tally.tokens + tally.bytes.div_ceil(BYTES_PER_TOKEN))
}

/// The `count_tokens` answer: `{"input_tokens": n}`.
pub fn count_tokens_answer(input_tokens: u64) -> Vec<u8> {
    format!(r#"{{"input_tokens":{input_tokens}}}"#).into_bytes()
}

#[derive(Default)]
struct Tally {
    bytes: u64,
    tokens: u64,
}

impl Tally {
    fn content(&mut self, content: &Content<'_>) {
        match content {
            Content::Text(text) => self.bytes += text.len() as u64,
            Content::Blocks(blocks) => blocks.iter().for_each(|b| self.block(b)),
        }
    }

    fn block(&mut self, block: &ContentBlock<'_>) {
        match block {
            ContentBlock::Text(text) => self.bytes += text.text.len() as u64,
            ContentBlock::Image(_) => self.tokens += TOKENS_PER_IMAGE,
            ContentBlock::ToolUse(call) => {
                self.bytes += (call.name.len() + call.input.get().len()) as u64;
            }
            ContentBlock::ToolResult(result) => {
                if let Some(content) = &result.content {
                    self.content(content);
                }
            }
            ContentBlock::Thinking(thinking) => self.bytes += thinking.thinking.len() as u64,
            ContentBlock::RedactedThinking(redacted) => self.bytes += redacted.data.len() as u64,
            ContentBlock::Document(document) => {
                let source = &document.source;
                self.bytes += source.data.as_deref().map_or(0, str::len) as u64;
                self.bytes += source.url.as_deref().map_or(0, str::len) as u64;
            }
            ContentBlock::Other(raw) => self.bytes += raw.get().len() as u64,
        }
    }
}

// ---- The stream ----

/// One streamed chunk, as far as the translation needs; `error` when the
/// event is an error instead.
#[derive(Deserialize)]
struct WireChunk<'a> {
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: Option<Vec<WireChunkChoice<'a>>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default, borrow)]
    error: Option<WireError<'a>>,
}

#[derive(Deserialize)]
struct WireChunkChoice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(default, borrow)]
    delta: Option<WireDelta<'a>>,
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WireDelta<'a> {
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    reasoning: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<WireToolDelta<'a>>>,
    #[serde(default, borrow)]
    thinking_blocks: Option<Vec<WireSignature<'a>>>,
}

#[derive(Deserialize)]
struct WireToolDelta<'a> {
    #[serde(default)]
    index: u32,
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<WireFunction<'a>>,
    /// Gemini's thought signature ([`thought`]): Gemini sends a call whole
    /// in one chunk, signature included; one arriving after the call's
    /// block has started cannot join its id any more.
    #[serde(default, borrow)]
    extra_content: Option<thought::ExtraContent<'a>>,
}

/// A LiteLLM thinking block in a delta: only its signature is read (its
/// text comes as `reasoning_content` too).
#[derive(Deserialize)]
struct WireSignature<'a> {
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    signature: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WireError<'a> {
    #[serde(default, borrow, deserialize_with = "borrow_opt")]
    message: Option<Cow<'a, str>>,
    #[serde(rename = "type", default, borrow, deserialize_with = "borrow_opt")]
    kind: Option<Cow<'a, str>>,
    #[serde(default, rename = "code")]
    _code: Option<IgnoredAny>,
}

/// The Anthropic error type for an OpenAI error `type` (OpenAI's own,
/// Sluice's, or an Anthropic type already): unknown ones are `api_error`.
fn anthropic_error_type(kind: &str) -> &str {
    match kind {
        k if status_for_type(k).is_some() => k,
        "requests" | "tokens" | "rate_limit_exceeded" => "rate_limit_error",
        "insufficient_quota" => "billing_error",
        "service_unavailable" => "overloaded_error",
        "permission_denied" => "permission_error",
        "timeout" => "timeout_error",
        _ => "api_error",
    }
}

/// The block open now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text(u32),
    Thinking(u32),
    /// The tool call at this position of `calls`, its block's index.
    Tool(usize, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// Seen, its block not open yet: its argument bytes are held.
    Waiting,
    Open,
    Closed,
}

/// One upstream tool call (one `index` of OpenAI's `tool_calls`).
#[derive(Debug)]
struct Call {
    index: u32,
    id: String,
    /// Gemini's thought signature, to join the id when the block starts.
    signature: Option<String>,
    name: String,
    state: CallState,
    held: String,
    json: JsonEnd,
}

/// Whether a JSON text fed piece by piece has ended: its outermost object
/// or array closed (strings and escapes followed).
#[derive(Debug, Default)]
struct JsonEnd {
    depth: u32,
    in_string: bool,
    escaped: bool,
    ended: bool,
}

impl JsonEnd {
    fn feed(&mut self, text: &str) {
        for b in text.bytes() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    self.depth += 1;
                    self.ended = false;
                }
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    self.ended = self.depth == 0;
                }
                b' ' | b'\t' | b'\n' | b'\r' => {}
                _ if self.depth == 0 => self.ended = false,
                _ => {}
            }
        }
    }
}

/// Where the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing read yet: `message_start` not sent.
    Before,
    Streaming,
    /// `message_stop` or `error` sent: the rest is ignored.
    Ended,
}

/// Turns an OpenAI chat completions event stream into Anthropic's Messages
/// event stream, incrementally: [`MessagesStream::feed`] the upstream's
/// bytes, cut anywhere, and send what it returns; [`MessagesStream::finish`]
/// when the upstream's body ended. It holds only the event under way, the
/// tool calls' names and ids, and argument bytes it cannot send yet.
///
/// What it sends: `message_start` (the message with no content, the
/// upstream's id prefixed `msg_` and model, and usage as far as known:
/// zeros unless the first chunk carries usage, since OpenAI sends it last),
/// then each content block as `content_block_start`,
/// `content_block_delta`s, `content_block_stop`, with indexes 0, 1, 2… in
/// the order the blocks open: reasoning → a `thinking` block
/// (`thinking_delta`; a LiteLLM upstream's signature as a
/// `signature_delta`), text and refusals → a `text` block (`text_delta`),
/// each OpenAI tool call index → its own `tool_use` block (`id`, `name`,
/// `input: {}`, then `input_json_delta`s carrying the argument fragments as
/// they came). A delta of another kind than the open block closes it and
/// opens a new one, so the content keeps the upstream's order (text, a tool
/// call, text again: three blocks; a whole [`answer`] has at most one
/// thinking and one text block, before the tool calls).
///
/// Parallel tool calls: OpenAI streams one call's fragments after the
/// other's, and so does this. Should an upstream interleave them (a
/// fragment for call 1 while call 0's arguments are not yet a whole JSON
/// value), the other call's fragments are held and its block opens when
/// the open call's arguments are whole, or at the end: every block stays
/// well formed and every argument byte reaches its own call. (Bytes for a
/// call whose block already closed, which can only follow a whole JSON
/// value or a text delta cutting into the arguments, have no block to go
/// to and are dropped; no known server sends them.) Arguments are passed
/// as they came, not checked: where [`answer`] keeps arguments that are not
/// a JSON object under [`RAW_ARGUMENTS`], a stream gives them as written.
///
/// The end: OpenAI's `finish_reason` closes the open block (and opens,
/// fills and closes any call still held); `message_delta` (`stop_reason`
/// as [`answer`] maps it, `stop_sequence: null`, and `usage` with
/// `output_tokens`, `input_tokens`, `cache_creation_input_tokens` and
/// `cache_read_input_tokens`, which the SDKs copy onto the message when
/// present; only `output_tokens: 0` when the upstream sent no usage) is
/// held for the usage chunk that follows the finish chunk, and sent with
/// `message_stop` when it comes, at `[DONE]`, or at the end. An upstream
/// that sends `[DONE]` without a `finish_reason` (or ends after a
/// `finish_reason` without `[DONE]`) ended its answer: it ends as `stop`
/// would.
///
/// Failures: an error event (`data: {"error": {…}}`, as OpenAI and Sluice
/// itself write one when a stream is cut) becomes an Anthropic `error`
/// event (`{"type": "error", "error": {"type", "message"}}`, the type
/// mapped to Anthropic's) and ends the stream, and so does an event that is
/// not a chunk, a stream with no chunk before `[DONE]`, or an upstream that
/// ended with neither `[DONE]` nor a `finish_reason` (an `api_error`: the
/// answer is incomplete). Then [`MessagesStream::failed`] is true and
/// anything more is ignored.
#[derive(Debug, Default)]
pub struct MessagesStream {
    reader: EventReader,
    state: State,
}

/// Everything but the reader, so an event borrowed from the reader can be
/// acted on.
#[derive(Debug)]
struct State {
    out: Vec<u8>,
    phase: Phase,
    next_index: u32,
    open: Open,
    calls: Vec<Call>,
    finish_reason: Option<String>,
    usage: Option<Counts>,
    refusal: bool,
    done: bool,
    failed: bool,
}

impl Default for State {
    fn default() -> Self {
        State {
            out: Vec::new(),
            phase: Phase::Before,
            next_index: 0,
            open: Open::None,
            calls: Vec::new(),
            finish_reason: None,
            usage: None,
            refusal: false,
            done: false,
            failed: false,
        }
    }
}

impl MessagesStream {
    pub fn new() -> Self {
        MessagesStream::default()
    }

    /// Reads the upstream's next bytes; what to send the client now
    /// (possibly nothing).
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.state.phase != Phase::Ended {
            self.reader.push(chunk);
            self.drain();
        }
        self.state.take()
    }

    /// The upstream's body ended: what is left to send.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.state.phase != Phase::Ended {
            self.reader.finish();
            self.drain();
        }
        let state = &mut self.state;
        if state.phase != Phase::Ended {
            if state.done || state.finish_reason.is_some() {
                state.complete();
            } else {
                state.fail(
                    "api_error",
                    "the upstream's stream ended before the answer was complete",
                );
            }
        }
        state.take()
    }

    /// Whether the stream ended with an `error` event.
    pub fn failed(&self) -> bool {
        self.state.failed
    }

    fn drain(&mut self) {
        while self.state.phase != Phase::Ended {
            match self.reader.next_event() {
                None => return,
                Some(Ok(event)) => self.state.on_data(event.data),
                Some(Err(_)) => self.state.fail(
                    "api_error",
                    "an event of the upstream's stream was too long to read",
                ),
            }
        }
    }
}

// What is written: lean event shapes, serialized straight into the output.

#[derive(Serialize)]
struct MessageStartOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: SkeletonOut<'a>,
}

#[derive(Serialize)]
struct SkeletonOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    content: [(); 0],
    model: &'a str,
    stop_reason: Option<&'a str>,
    stop_sequence: Option<&'a str>,
    usage: UsageOut,
}

#[derive(Serialize)]
struct UsageOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_creation_input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_read_input_tokens: Option<u64>,
    output_tokens: u64,
}

impl UsageOut {
    fn of(counts: Option<Counts>) -> Self {
        match counts {
            Some(c) => UsageOut {
                input_tokens: Some(c.input),
                cache_creation_input_tokens: Some(c.cache_write),
                cache_read_input_tokens: Some(c.cache_read),
                output_tokens: c.output,
            },
            None => UsageOut {
                input_tokens: None,
                cache_creation_input_tokens: None,
                cache_read_input_tokens: None,
                output_tokens: 0,
            },
        }
    }
}

#[derive(Serialize)]
struct BlockStartOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    content_block: BlockOut<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockOut<'a> {
    Text {
        text: &'static str,
    },
    Thinking {
        thinking: &'static str,
        signature: &'static str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: EmptyObject,
    },
}

/// `{}`, written without building a map.
struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_map(Some(0))?.end()
    }
}

#[derive(Serialize)]
struct BlockDeltaOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: DeltaOut<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum DeltaOut<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
}

#[derive(Serialize)]
struct BlockStopOut {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
}

#[derive(Serialize)]
struct MessageDeltaOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopOut<'a>,
    usage: UsageOut,
}

#[derive(Serialize)]
struct StopOut<'a> {
    stop_reason: &'a str,
    stop_sequence: Option<&'a str>,
}

#[derive(Serialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: ErrorBodyOut<'a>,
}

#[derive(Serialize)]
struct ErrorBodyOut<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

impl State {
    fn take(&mut self) -> Vec<u8> {
        if self.out.is_empty() {
            return Vec::new();
        }
        let capacity = self.out.capacity();
        std::mem::replace(&mut self.out, Vec::with_capacity(capacity))
    }

    /// Appends `event: <name>` with `data` as its JSON.
    fn write<T: Serialize>(&mut self, name: &str, data: &T) {
        self.out.extend_from_slice(b"event: ");
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\ndata: ");
        // Writing these shapes (strings, numbers) into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.out, data);
        self.out.extend_from_slice(b"\n\n");
    }

    fn fail(&mut self, kind: &str, message: &str) {
        self.write(
            "error",
            &ErrorOut {
                kind: "error",
                error: ErrorBodyOut { kind, message },
            },
        );
        self.phase = Phase::Ended;
        self.failed = true;
    }

    fn on_data(&mut self, data: &[u8]) {
        if data == b"[DONE]" {
            self.done = true;
            self.complete();
            return;
        }
        let chunk: WireChunk = match serde_json::from_slice(data) {
            Ok(chunk) => chunk,
            Err(_) => {
                return self.fail(
                    "api_error",
                    "the upstream sent an event that is not a chat completion chunk",
                );
            }
        };
        if let Some(error) = chunk.error {
            let kind = anthropic_error_type(error.kind.as_deref().unwrap_or(""));
            let message = error.message.as_deref().unwrap_or("the upstream failed");
            return self.fail(kind, message);
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        if self.phase == Phase::Before {
            self.phase = Phase::Streaming;
            let id = message_id(chunk.id.as_deref().unwrap_or(""));
            let usage = UsageOut::of(Some(self.usage.unwrap_or_default()));
            self.write(
                "message_start",
                &MessageStartOut {
                    kind: "message_start",
                    message: SkeletonOut {
                        id: &id,
                        kind: "message",
                        role: "assistant",
                        content: [],
                        model: chunk.model.as_deref().unwrap_or(""),
                        stop_reason: None,
                        stop_sequence: None,
                        usage,
                    },
                },
            );
        }
        for choice in chunk.choices.into_iter().flatten() {
            if choice.index != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                self.on_delta(delta);
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason.into_owned());
                self.close_all();
            }
        }
        if self.finish_reason.is_some() && chunk.usage.is_some() {
            self.complete();
        }
    }

    fn on_delta(&mut self, delta: WireDelta<'_>) {
        if let Some(thinking) = delta.reasoning_content.or(delta.reasoning)
            && !thinking.is_empty()
        {
            let index = self.open_thinking();
            self.write(
                "content_block_delta",
                &BlockDeltaOut {
                    kind: "content_block_delta",
                    index,
                    delta: DeltaOut::Thinking {
                        thinking: &thinking,
                    },
                },
            );
        }
        for block in delta.thinking_blocks.into_iter().flatten() {
            if let Some(signature) = block.signature.filter(|s| !s.is_empty()) {
                let index = self.open_thinking();
                self.write(
                    "content_block_delta",
                    &BlockDeltaOut {
                        kind: "content_block_delta",
                        index,
                        delta: DeltaOut::Signature {
                            signature: &signature,
                        },
                    },
                );
            }
        }
        for (text, refusal) in [(delta.content, false), (delta.refusal, true)] {
            let Some(text) = text.filter(|t| !t.is_empty()) else {
                continue;
            };
            self.refusal |= refusal;
            let index = match self.open {
                Open::Text(index) => index,
                _ => {
                    self.close_open();
                    let index = self.start_block(BlockOut::Text { text: "" });
                    self.open = Open::Text(index);
                    index
                }
            };
            self.write(
                "content_block_delta",
                &BlockDeltaOut {
                    kind: "content_block_delta",
                    index,
                    delta: DeltaOut::Text { text: &text },
                },
            );
        }
        for call in delta.tool_calls.into_iter().flatten() {
            self.on_tool_delta(call);
        }
    }

    /// The open thinking block's index, opening one if need be.
    fn open_thinking(&mut self) -> u32 {
        if let Open::Thinking(index) = self.open {
            return index;
        }
        self.close_open();
        let index = self.start_block(BlockOut::Thinking {
            thinking: "",
            signature: "",
        });
        self.open = Open::Thinking(index);
        index
    }

    fn start_block(&mut self, block: BlockOut<'_>) -> u32 {
        let index = self.next_index;
        self.next_index += 1;
        self.write(
            "content_block_start",
            &BlockStartOut {
                kind: "content_block_start",
                index,
                content_block: block,
            },
        );
        index
    }

    fn close_open(&mut self) {
        let index = match std::mem::replace(&mut self.open, Open::None) {
            Open::None => return,
            Open::Text(index) | Open::Thinking(index) => index,
            Open::Tool(call, index) => {
                self.calls[call].state = CallState::Closed;
                index
            }
        };
        self.write(
            "content_block_stop",
            &BlockStopOut {
                kind: "content_block_stop",
                index,
            },
        );
    }

    fn json_delta(&mut self, index: u32, partial_json: &str) {
        if partial_json.is_empty() {
            return;
        }
        self.write(
            "content_block_delta",
            &BlockDeltaOut {
                kind: "content_block_delta",
                index,
                delta: DeltaOut::InputJson { partial_json },
            },
        );
    }

    fn on_tool_delta(&mut self, delta: WireToolDelta<'_>) {
        let (name, arguments) = match delta.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        let arguments = arguments.as_deref().unwrap_or("");
        let at = match self.calls.iter().position(|c| c.index == delta.index) {
            Some(at) => at,
            None => {
                let position = self.calls.len();
                self.calls.push(Call {
                    index: delta.index,
                    id: call_id(delta.id.as_deref(), position).into_owned(),
                    signature: None,
                    name: String::new(),
                    state: CallState::Waiting,
                    held: String::new(),
                    json: JsonEnd::default(),
                });
                position
            }
        };
        let call = &mut self.calls[at];
        if call.state == CallState::Waiting {
            if let Some(id) = delta.id.filter(|id| !id.is_empty()) {
                call.id = id.into_owned();
            }
            if let Some(name) = name {
                call.name.push_str(&name);
            }
            if let Some(signature) = delta.extra_content.as_ref().and_then(|e| e.signature()) {
                call.signature = Some(signature.to_owned());
            }
        }
        match call.state {
            CallState::Open => {
                call.json.feed(arguments);
                if let Open::Tool(_, index) = self.open {
                    self.json_delta(index, arguments);
                }
            }
            CallState::Waiting => {
                let may_open = match self.open {
                    Open::Tool(open, _) => self.calls[open].json.ended,
                    _ => true,
                };
                if may_open {
                    self.close_open();
                    self.open_call(at, arguments);
                } else {
                    let call = &mut self.calls[at];
                    call.json.feed(arguments);
                    call.held.push_str(arguments);
                }
            }
            // No block to go to (see the type's doc).
            CallState::Closed => {}
        }
    }

    /// Opens the block of the call at `at`: its start, its held bytes and
    /// `arguments`.
    fn open_call(&mut self, at: usize, arguments: &str) {
        let call = &mut self.calls[at];
        call.state = CallState::Open;
        call.json.feed(arguments);
        let held = std::mem::take(&mut call.held);
        let (mut id, name) = (std::mem::take(&mut call.id), std::mem::take(&mut call.name));
        if let Some(signature) = call.signature.take() {
            id = thought::sign(&id, &signature);
        }
        let index = self.start_block(BlockOut::ToolUse {
            id: &id,
            name: &name,
            input: EmptyObject,
        });
        self.open = Open::Tool(at, index);
        self.json_delta(index, &held);
        self.json_delta(index, arguments);
    }

    /// Closes the open block, then gives each call still held its block.
    fn close_all(&mut self) {
        self.close_open();
        for at in 0..self.calls.len() {
            if self.calls[at].state == CallState::Waiting {
                self.open_call(at, "");
                self.close_open();
            }
        }
    }

    /// The answer is whole: the blocks closed, `message_delta`,
    /// `message_stop`.
    fn complete(&mut self) {
        match self.phase {
            Phase::Ended => return,
            Phase::Before => {
                return self.fail(
                    "api_error",
                    "the upstream's stream ended before it sent any answer",
                );
            }
            Phase::Streaming => {}
        }
        self.close_all();
        let tool_calls = !self.calls.is_empty();
        let finish = self.finish_reason.take();
        let reason = stop_reason(finish.as_deref(), tool_calls, self.refusal);
        let delta = MessageDeltaOut {
            kind: "message_delta",
            delta: StopOut {
                stop_reason: &reason,
                stop_sequence: None,
            },
            usage: UsageOut::of(self.usage),
        };
        self.write("message_delta", &delta);
        self.write(
            "message_stop",
            &TypeOnly {
                kind: "message_stop",
            },
        );
        self.phase = Phase::Ended;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

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

    fn usage(prompt: u64, completion: u64, cached: u64) -> Value {
        json!({
            "prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        })
    }

    fn translate(chat: &Value) -> Value {
        serde_json::from_slice(&answer(chat.to_string().as_bytes()).unwrap()).unwrap()
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

    fn usage_chunk(prompt: u64, completion: u64, cached: u64) -> Value {
        json!({
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion.chunk",
            "created": 1_741_570_283u64, "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_fc9f1d7035", "choices": [],
            "usage": usage(prompt, completion, cached)
        })
    }

    use crate::formats::chat::fixtures::{call, sse};

    fn stream_whole(input: &[u8]) -> (String, bool) {
        let mut stream = MessagesStream::new();
        let mut out = stream.feed(input);
        out.extend(stream.finish());
        (String::from_utf8(out).unwrap(), stream.failed())
    }

    /// The same input a byte at a time gives the same bytes.
    fn stream(input: &str) -> (String, bool) {
        let whole = stream_whole(input.as_bytes());
        let mut stream = MessagesStream::new();
        let mut out = Vec::new();
        for byte in input.as_bytes().chunks(1) {
            out.extend(stream.feed(byte));
        }
        out.extend(stream.finish());
        assert_eq!(String::from_utf8(out).unwrap(), whole.0, "byte by byte");
        assert_eq!(stream.failed(), whole.1);
        whole
    }

    /// The Anthropic events of `sse` folded into a Message, as the Python
    /// SDK's `accumulate_event` does, checking on the way that blocks open
    /// in index order, one at a time, and that the stream is well formed.
    fn accumulate(sse: &str) -> Value {
        let mut message = Value::Null;
        let mut json_bufs: Vec<String> = Vec::new();
        let mut open: Option<usize> = None;
        let mut stopped = false;
        for event in sse.split_terminator("\n\n") {
            let (name, data) = event
                .strip_prefix("event: ")
                .and_then(|e| e.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("not an Anthropic event: {event:?}"));
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name);
            assert!(!stopped, "an event after message_stop");
            match name {
                "message_start" => {
                    assert!(message.is_null());
                    message = data["message"].clone();
                }
                "content_block_start" => {
                    assert_eq!(open, None, "a block opened while another is open");
                    let content = message["content"].as_array_mut().unwrap();
                    assert_eq!(data["index"], content.len());
                    open = Some(content.len());
                    content.push(data["content_block"].clone());
                    json_bufs.push(String::new());
                }
                "content_block_delta" => {
                    let index = data["index"].as_u64().unwrap() as usize;
                    assert_eq!(open, Some(index), "a delta for a block not open");
                    let block = &mut message["content"][index];
                    let delta = &data["delta"];
                    match delta["type"].as_str().unwrap() {
                        "text_delta" => {
                            let text = block["text"].as_str().unwrap().to_owned();
                            block["text"] = json!(text + delta["text"].as_str().unwrap());
                        }
                        "thinking_delta" => {
                            let text = block["thinking"].as_str().unwrap().to_owned();
                            block["thinking"] = json!(text + delta["thinking"].as_str().unwrap());
                        }
                        "signature_delta" => block["signature"] = delta["signature"].clone(),
                        "input_json_delta" => {
                            json_bufs[index].push_str(delta["partial_json"].as_str().unwrap());
                            block["input"] = serde_json::from_str(&json_bufs[index])
                                .unwrap_or(block["input"].clone());
                        }
                        other => panic!("unknown delta {other}"),
                    }
                }
                "content_block_stop" => {
                    let index = data["index"].as_u64().unwrap() as usize;
                    assert_eq!(open, Some(index));
                    if !json_bufs[index].is_empty() {
                        // The SDK parses the input whole at the stop.
                        message["content"][index]["input"] =
                            serde_json::from_str(&json_bufs[index]).unwrap();
                    }
                    open = None;
                }
                "message_delta" => {
                    assert_eq!(open, None, "message_delta with a block open");
                    message["stop_reason"] = data["delta"]["stop_reason"].clone();
                    message["stop_sequence"] = data["delta"]["stop_sequence"].clone();
                    let usage = &data["usage"];
                    message["usage"]["output_tokens"] = usage["output_tokens"].clone();
                    for key in [
                        "input_tokens",
                        "cache_creation_input_tokens",
                        "cache_read_input_tokens",
                    ] {
                        if !usage[key].is_null() {
                            message["usage"][key] = usage[key].clone();
                        }
                    }
                }
                "message_stop" => stopped = true,
                other => panic!("unexpected event {other}"),
            }
        }
        assert!(stopped, "no message_stop");
        message
    }

    /// A stream and the whole answer that says the same: the snapshot of
    /// the events, and the accumulated message equal to `answer`'s.
    fn equivalent(name: &str, chunks: &[Value], whole: &Value) {
        let (out, failed) = stream(&sse(chunks));
        assert!(!failed);
        insta::assert_snapshot!(name, out);
        assert_eq!(accumulate(&out), translate(whole), "{name}");
    }

    // ---- Answers ----

    #[test]
    fn answer_text() {
        let chat = completion(
            json!({"role": "assistant", "content": "Hello! How can I help?", "refusal": null, "annotations": []}),
            "stop",
            usage(19, 10, 0),
        );
        insta::assert_json_snapshot!(translate(&chat));
    }

    #[test]
    fn answer_parallel_tool_calls() {
        let chat = completion(
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}},
                {"id": "call_def", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Rome\"}"}},
                {"id": "call_ghi", "type": "function", "function": {"name": "now", "arguments": ""}}
            ]}),
            "tool_calls",
            usage(82, 40, 0),
        );
        insta::assert_json_snapshot!(translate(&chat));
    }

    #[test]
    fn geminis_thought_signatures_ride_in_the_tool_use_id_and_go_back() {
        let signed = json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "function-call-1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"},
             "extra_content": {"google": {"thought_signature": "CiQB0e2Kb+/x9w=="}}},
            {"id": "function-call-2", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"location\":\"Rome\"}"}}
        ]});
        let whole = completion(signed.clone(), "tool_calls", usage(20, 10, 0));
        let answer = translate(&whole);
        let first = answer["content"][0]["id"].as_str().unwrap().to_owned();
        assert_eq!(first, "function-call-1__thought__CiQB0e2Kb-_x9w");
        assert_eq!(
            answer["content"][1]["id"], "function-call-2",
            "unsigned: as it came"
        );

        // Streamed, Gemini's way: each call whole in one chunk.
        let calls = signed["tool_calls"].as_array().unwrap();
        let chunks = [
            chunk(
                json!({"role": "assistant", "tool_calls": [
                    {"index": 0, "id": calls[0]["id"], "type": "function",
                     "function": calls[0]["function"], "extra_content": calls[0]["extra_content"]}
                ]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [
                    {"index": 1, "id": calls[1]["id"], "type": "function", "function": calls[1]["function"]}
                ]}),
                Some("tool_calls"),
            ),
        ];
        let (out, failed) = stream(&sse(&chunks));
        assert!(!failed);
        assert_eq!(accumulate(&out)["content"], answer["content"]);

        // The client's next turn sends the ids back: the chat request has
        // the signature where Gemini reads it, and the ids Gemini gave.
        let next = json!({
            "model": "gemini", "max_tokens": 256,
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": answer["content"]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": first, "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "function-call-2", "content": "21C"}
                ]}
            ]
        });
        let chat =
            super::super::from_messages::request(next.to_string().as_bytes(), "gemini-3-pro")
                .unwrap();
        let chat: Value = serde_json::from_slice(&chat).unwrap();
        let messages = chat["messages"].as_array().unwrap();
        assert_eq!(
            messages[1]["tool_calls"],
            json!([
                {"id": "function-call-1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"},
                 "extra_content": {"google": {"thought_signature": "CiQB0e2Kb+/x9w=="}}},
                {"id": "function-call-2", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"location\":\"Rome\"}"}}
            ])
        );
        assert_eq!(messages[2]["tool_call_id"], "function-call-1");
        assert_eq!(messages[3]["tool_call_id"], "function-call-2");
    }

    #[test]
    fn answer_reasoning_text_and_cached_usage() {
        let chat = completion(
            json!({"role": "assistant", "reasoning_content": "The user greets me.", "content": "Hi."}),
            "stop",
            usage(2_006, 300, 1_920),
        );
        insta::assert_json_snapshot!(translate(&chat));
    }

    #[test]
    fn answer_keeps_litellm_thinking_blocks_and_unparsable_arguments() {
        let chat = completion(
            json!({"role": "assistant", "content": "",
                "reasoning_content": "r",
                "thinking_blocks": [{"type": "thinking", "thinking": "r", "signature": "EqQBCg=="}],
                "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "f", "arguments": "{\"a\": 1"}},
                    {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}),
            "stop",
            json!(null),
        );
        insta::assert_json_snapshot!(translate(&chat));
    }

    #[test]
    fn every_finish_reason_has_its_stop_reason() {
        let text = json!({"role": "assistant", "content": "x"});
        let tools = json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]});
        let refusal = json!({"role": "assistant", "content": null, "refusal": "I can't."});
        for (message, finish, stop) in [
            (&text, json!("stop"), "end_turn"),
            (&text, json!(null), "end_turn"),
            (&text, json!("length"), "max_tokens"),
            (&tools, json!("tool_calls"), "tool_use"),
            (&tools, json!("function_call"), "tool_use"),
            (&tools, json!("stop"), "tool_use"),
            (&text, json!("content_filter"), "refusal"),
            (&refusal, json!("stop"), "refusal"),
            (
                &text,
                json!("insufficient_system_resource"),
                "insufficient_system_resource",
            ),
        ] {
            let mut chat = completion(message.clone(), "stop", usage(1, 1, 0));
            chat["choices"][0]["finish_reason"] = finish.clone();
            let out = translate(&chat);
            assert_eq!(out["stop_reason"], stop, "{finish}");
            assert_eq!(out["stop_sequence"], Value::Null);
        }
    }

    #[test]
    fn ids_usage_and_bad_answers() {
        let mut chat = completion(
            json!({"role": "assistant", "content": "x"}),
            "stop",
            json!(null),
        );
        chat["id"] = json!("msg_already");
        let out = translate(&chat);
        assert_eq!(out["id"], "msg_already");
        assert_eq!(
            out["usage"],
            json!({"input_tokens": 0, "output_tokens": 0,
                   "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
        );
        // Cache writes, where the upstream reports them, are Anthropic's
        // cache creation: each prompt token in one count.
        let written = json!({"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105,
                             "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 30}});
        let chat = completion(
            json!({"role": "assistant", "content": "x"}),
            "stop",
            written,
        );
        assert_eq!(
            translate(&chat)["usage"],
            json!({"input_tokens": 10, "output_tokens": 5,
                   "cache_creation_input_tokens": 30, "cache_read_input_tokens": 60})
        );
        for bad in [
            &b""[..],
            b"{}",
            br#"{"choices":[]}"#,
            br#"{"choices":[{"index":0}]}"#,
            br#"{"choices":"x"}"#,
            b"[1]",
        ] {
            assert!(
                matches!(answer(bad), Err(TranslateError::Answer(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    // ---- Streams ----

    #[test]
    fn stream_text_only() {
        let chunks = [
            chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                None,
            ),
            chunk(json!({"content": "Hello"}), None),
            chunk(json!({"content": " there \"friend\"\n"}), None),
            chunk(json!({}), Some("stop")),
            usage_chunk(19, 3, 8),
        ];
        let whole = completion(
            json!({"role": "assistant", "content": "Hello there \"friend\"\n"}),
            "stop",
            usage(19, 3, 8),
        );
        equivalent("stream_text_only", &chunks, &whole);
    }

    #[test]
    fn stream_parallel_tool_calls() {
        let chunks = [
            chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [
                call(0, Some("call_abc"), Some("get_weather"), "")]}),
                None,
            ),
            chunk(json!({"tool_calls": [call(0, None, None, "{\"loc")]}), None),
            chunk(
                json!({"tool_calls": [call(0, None, None, "ation\": \"Paris\"}")]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [call(1, Some("call_def"), Some("get_weather"), "{\"location\"")]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [call(1, None, None, ": \"Rome\"}")]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [call(2, Some("call_ghi"), Some("now"), "")]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            usage_chunk(82, 40, 0),
        ];
        let whole = completion(
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}},
                {"id": "call_def", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Rome\"}"}},
                {"id": "call_ghi", "type": "function", "function": {"name": "now", "arguments": ""}}
            ]}),
            "tool_calls",
            usage(82, 40, 0),
        );
        equivalent("stream_parallel_tool_calls", &chunks, &whole);
    }

    #[test]
    fn stream_parallel_tool_calls_interleaved_by_index() {
        // Fragments of calls 0 and 1 alternate, and call 1 finishes first.
        let chunks = [
            chunk(
                json!({"role": "assistant", "tool_calls": [
                call(0, Some("call_a"), Some("search"), "{\"q\":"),
                call(1, Some("call_b"), Some("lookup"), "{\"id\":")]}),
                None,
            ),
            chunk(json!({"tool_calls": [call(1, None, None, "7}")]}), None),
            chunk(
                json!({"tool_calls": [call(0, None, None, "\"a}b{\\\"c\"")]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [call(2, Some("call_c"), Some("search"), "{\"q\":\"x\"}")]}),
                None,
            ),
            chunk(json!({"tool_calls": [call(0, None, None, "}")]}), None),
            chunk(json!({}), Some("tool_calls")),
            usage_chunk(50, 30, 0),
        ];
        let whole = completion(
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"a}b{\\\"c\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "lookup", "arguments": "{\"id\":7}"}},
                {"id": "call_c", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"x\"}"}}
            ]}),
            "tool_calls",
            usage(50, 30, 0),
        );
        equivalent("stream_parallel_tool_calls_interleaved", &chunks, &whole);
    }

    #[test]
    fn stream_text_then_a_tool_call() {
        // The call's first argument bytes come in the chunk that opens it.
        let chunks = [
            chunk(
                json!({"role": "assistant", "content": "Let me check."}),
                None,
            ),
            chunk(
                json!({"tool_calls": [call(0, Some("call_1"), Some("get_weather"), "{\"city\":")]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [call(0, None, None, "\"Paris\"}")]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            usage_chunk(30, 20, 0),
        ];
        let whole = completion(
            json!({"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}),
            "tool_calls",
            usage(30, 20, 0),
        );
        equivalent("stream_text_then_tool_call", &chunks, &whole);
    }

    #[test]
    fn stream_reasoning_then_text() {
        let chunks = [
            chunk(
                json!({"role": "assistant", "reasoning_content": "The user"}),
                None,
            ),
            chunk(json!({"reasoning_content": " greets me."}), None),
            chunk(json!({"content": "Hi."}), None),
            chunk(json!({}), Some("stop")),
            usage_chunk(2_006, 300, 1_920),
        ];
        let whole = completion(
            json!({"role": "assistant", "reasoning_content": "The user greets me.", "content": "Hi."}),
            "stop",
            usage(2_006, 300, 1_920),
        );
        equivalent("stream_reasoning_then_text", &chunks, &whole);
    }

    #[test]
    fn stream_usage_on_the_finish_chunk_and_no_done() {
        // Some servers put usage on the last choice chunk and send no [DONE].
        let mut last = chunk(json!({"content": "!"}), Some("length"));
        last["usage"] = usage(5, 1, 0);
        let input = format!(
            "data: {}\n\ndata: {last}\n\n",
            chunk(json!({"content": "Hi"}), None)
        );
        let (out, failed) = stream(&input);
        assert!(!failed);
        let message = accumulate(&out);
        assert_eq!(message["stop_reason"], "max_tokens");
        assert_eq!(message["content"], json!([{"type": "text", "text": "Hi!"}]));
        assert_eq!(message["usage"]["input_tokens"], 5);
    }

    #[test]
    fn stream_mid_stream_error() {
        let sluice_cut = json!({"error": {
            "message": "The stream from deployment \"gpt\" was cut: the upstream went silent",
            "type": "api_error", "param": null, "code": "stream_interrupted"}});
        let input = format!(
            "data: {}\n\ndata: {}\n\ndata: {sluice_cut}\n\ndata: {}\n\n",
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": "Hel"}), None),
            chunk(json!({"content": "lo"}), None),
        );
        let (out, failed) = stream(&input);
        assert!(failed);
        insta::assert_snapshot!("stream_mid_stream_error", out);
        let rate = json!({"error": {"message": "slow down", "type": "requests", "code": "429"}});
        let (out, failed) = stream(&format!("data: {rate}\n\n"));
        assert!(failed);
        assert_eq!(
            out,
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}\n\n"
        );
    }

    #[test]
    fn stream_ending_early_is_an_error() {
        let input = format!(
            "data: {}\n\ndata: {}\n\n",
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(
                json!({"tool_calls": [call(0, Some("call_1"), Some("f"), "{\"a\":")]}),
                None
            ),
        );
        let (out, failed) = stream(&input);
        assert!(failed);
        insta::assert_snapshot!("stream_ending_early", out);
        // Nothing but [DONE], or bytes that are not events of chunks.
        for input in [
            "data: [DONE]\n\n",
            "data: {\"choices\": 3}\n\n",
            "data: <html>\n\n",
            "",
        ] {
            let (out, failed) = stream(input);
            assert!(failed, "{input:?}");
            assert!(out.starts_with("event: error\n"), "{input:?}: {out}");
        }
    }

    #[test]
    fn comments_crlf_and_input_after_the_end_are_harmless() {
        let input = format!(
            ": keep-alive\r\n\r\ndata: {}\r\n\r\ndata: {}\r\n\r\ndata: [DONE]\r\n\r\ndata: {}\r\n\r\n",
            chunk(json!({"content": "a"}), None),
            chunk(json!({}), Some("stop")),
            chunk(json!({"content": "late"}), None),
        );
        let (out, failed) = stream(&input);
        assert!(!failed);
        assert_eq!(
            accumulate(&out)["content"],
            json!([{"type": "text", "text": "a"}])
        );
    }

    // ---- count_tokens ----

    #[test]
    fn count_tokens_is_a_documented_estimate() {
        let body = json!({
            "model": "m",
            "system": "You are terse.",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]},
                {"role": "assistant", "content": "A cat."}
            ],
            "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}]
        });
        let bytes = ("You are terse.".len()
            + "What is in this image?".len()
            + "A cat.".len()
            + "f".len()
            + "d".len()
            + r#"{"type":"object"}"#.len()) as u64;
        let expected = bytes.div_ceil(BYTES_PER_TOKEN)
            + 2 * TOKENS_PER_MESSAGE
            + TOKENS_PER_IMAGE
            + TOKENS_FOR_TOOL_USE
            + TOKENS_PER_TOOL;
        assert_eq!(count_tokens(body.to_string().as_bytes()), Ok(expected));
        assert!(matches!(
            count_tokens(b"{"),
            Err(TranslateError::Invalid { .. })
        ));
    }

    proptest! {
        /// No input panics, however it is cut; the output is the same
        /// however it is cut.
        #[test]
        fn no_bytes_panic(
            pieces in proptest::collection::vec(prop_oneof![
                Just(b"data: ".to_vec()),
                Just(b"\n\n".to_vec()),
                Just(b"[DONE]".to_vec()),
                Just(br#"{"choices":[{"index":0,"delta":{"content":"x"}}]}"#.to_vec()),
                Just(br#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"c","function":{"name":"f","arguments":"{\"a"}}]}}]}"#.to_vec()),
                Just(br#"{"choices":[{"index":0,"delta":{"reasoning_content":"r"},"finish_reason":"stop"}]}"#.to_vec()),
                Just(br#"{"choices":[],"usage":{"prompt_tokens":3}}"#.to_vec()),
                Just(br#"{"error":{"message":"m"}}"#.to_vec()),
                proptest::collection::vec(any::<u8>(), 0..8),
            ], 0..30),
            cut in any::<usize>(),
        ) {
            let input = pieces.concat();
            let whole = stream_whole(&input);
            let cut = cut % (input.len() + 1);
            let mut stream = MessagesStream::new();
            let mut out = stream.feed(&input[..cut]);
            out.extend(stream.feed(&input[cut..]));
            out.extend(stream.finish());
            prop_assert_eq!(String::from_utf8(out).unwrap(), whole.0);
            let _ = answer(&input);
            let _ = count_tokens(&input);
            let _ = super::super::from_messages::request(&input, "m");
        }
    }
}

/// Rough costs, printed: `cargo test … -- --ignored --nocapture timings`
/// (an unoptimized build is several times slower than a release one).
#[cfg(test)]
mod timings {
    use super::*;
    use std::time::Instant;

    #[test]
    #[ignore]
    fn timings() {
        let request = br#"{"model":"claude-sonnet-4-5","max_tokens":1024,"system":[{"type":"text","text":"You are a helpful assistant.","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"What is the weather like in San Francisco?"}],"tools":[{"name":"get_weather","description":"Get the weather","input_schema":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}}],"stream":true}"#;
        let n = 2_000;
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(super::super::from_messages::request(request, "gpt-4o").unwrap());
        }
        println!("request: {:?} each", start.elapsed() / n);
        let event = br#"data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_fc9f1d7035","choices":[{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}],"usage":null}

"#;
        let mut stream = MessagesStream::new();
        let start = Instant::now();
        for _ in 0..n * 10 {
            std::hint::black_box(stream.feed(event));
        }
        println!("stream: {:?} per text event", start.elapsed() / (n * 10));
        let chat = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help?","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0}}}"#;
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(answer(chat).unwrap());
        }
        println!("answer: {:?} each", start.elapsed() / n);
    }
}
