//! A Responses request (`POST /v1/responses`) → a chat completions request,
//! for a deployment that serves only chat completions ([`request`]).
//!
//! The translation is stateless: the gateway keeps no conversation, so the
//! client sends the whole conversation in `input` (with `store: false`, as
//! Codex does), and what needs stored state is refused.
//!
//! What maps, and how:
//!
//! - `instructions` → one `system` message first (none when empty).
//! - `input` as a string → one `user` message. As items:
//!   - `message` items (or items with a `role` and no `type`): `user`
//!     content (a string, or `input_text` → `text` parts and `input_image`
//!     with an `image_url` → `image_url` parts, `detail` kept); `system` and
//!     `developer` content → a `system` message of text (`developer` is
//!     sent as `system`, which every OpenAI-compatible server reads), text
//!     parts joined by a blank line; `assistant` content: `output_text`
//!     parts → the message's text (joined by a blank line), `refusal` parts
//!     → its `refusal`. `input_text` and `output_text` are read alike in
//!     any role, as Codex writes them. An image given by `file_id`, and
//!     `input_file` parts, need OpenAI's file store: refused. An item's
//!     `id`, `status`, `phase` and `end_turn`, and a text part's
//!     `annotations` and `logprobs` (of an output given back whole), are
//!     left out.
//!   - `function_call` items → an assistant message's `tool_calls`
//!     (`call_id` → `id`; for a chat upstream a Gemini thought signature
//!     the id carries goes back as the call's `extra_content`, and the
//!     outputs name the id without it: [`crate::formats::thought`]);
//!     consecutive calls, and an assistant message
//!     directly before them, make one assistant message (unless reasoning
//!     given back comes between: the calls then start a new assistant
//!     message, which carries it).
//!   - `function_call_output` items → `tool` messages (`call_id` →
//!     `tool_call_id`); an output of parts (`input_text`, `input_image`) is
//!     one string when it is text only. Its images, for a chat upstream
//!     ([`Target::Chat`], which reads images only from users), follow the
//!     turn's tool messages in a user message, each after a line naming its
//!     call; for Claude ([`Target::Messages`]) they stay parts, which the
//!     Anthropic translation sends inside the tool result.
//!   - `reasoning` items of earlier turns are left out (chat completions
//!     have no input for earlier reasoning), except one with
//!     `encrypted_content` and text (its `content`'s `reasoning_text`s, else
//!     its `summary`'s `summary_text`s): that goes with the next assistant
//!     message as `reasoning_content` and a `thinking_blocks` entry
//!     `{"type": "thinking", "thinking": text, "signature":
//!     encrypted_content}`, which Sluice's own Anthropic translation reads
//!     (the signature is what Anthropic checks). Reasoning no assistant
//!     message follows before the next user, system or tool message is
//!     left out.
//!   - `custom_tool_call` items → tool calls like `function_call`s, their
//!     `input` as the arguments `{"input": input}`;
//!     `custom_tool_call_output` items → `tool` messages like
//!     `function_call_output`s. A call's `namespace` is left out (tools are
//!     functions of their own names upstream).
//!   - `additional_tools` items (tools Codex adds mid-conversation): their
//!     tools are offered with `tools`'s, after them.
//!   - `compaction` items (encrypted by the upstream that compacted) are
//!     refused, saying where they can go.
//!   - `item_reference` (an item stored upstream) and any other item type
//!     (built-in tools' calls: `web_search_call`, `file_search_call`,
//!     `computer_call`, `local_shell_call`, `mcp_*`, …) are refused.
//! - `tools`: `function` tools → chat function tools (`name`,
//!   `description`, `parameters`, `strict`). `custom` tools (free-form
//!   input, as Codex's `apply_patch`) → function tools of one string
//!   parameter, `input`; a `grammar` format's syntax and definition are
//!   appended to the description (chat completions cannot constrain the
//!   output to them: the model is asked to follow them). The answer's calls
//!   of them come back as `custom_tool_call`s ([`super::to_responses`]).
//!   `namespace` tools → their function and custom tools, by their own
//!   names; the answer's calls of them name the namespace again. A function
//!   tool's `defer_loading`, `allowed_callers` and `output_schema` are left
//!   out (chat completions have no tool search: every tool is offered at
//!   once). Two tools of one name are refused. Built-in tools
//!   ([`BUILT_IN_TOOLS`]: `web_search`, `file_search`, `code_interpreter`,
//!   `image_generation`, `mcp`, `local_shell`, `shell`, `apply_patch`, …)
//!   are left out: the upstream cannot run them, and Codex declares some on
//!   every request; the model is offered the others. A tool type not known
//!   at all is refused.
//! - `tool_choice`: `auto`, `none`, `required` as they are; `{"type":
//!   "function" | "custom", "name"}` (a `namespace` with it) → the named
//!   function; other forms (a built-in tool forced) refused.
//!   Without tools (none, or an empty `tools`, which OpenAI refuses and
//!   is left out), `parallel_tool_calls` and a `tool_choice` of `auto` or
//!   `none` are left out (OpenAI refuses them there, and they ask nothing).
//! - `parallel_tool_calls` (with tools), `temperature`, `top_p`, `user`,
//!   `safety_identifier`, `prompt_cache_key`, `service_tier`: as sent.
//! - `max_output_tokens` → `max_tokens`, which every OpenAI-compatible
//!   server reads; with a `reasoning.effort`, or for one of OpenAI's
//!   reasoning models by name ([`chat::caps_completion_tokens_only`]) →
//!   `max_completion_tokens` instead, which those models require (as the
//!   Messages translation does).
//! - `reasoning.effort` → `reasoning_effort` (`null` → nothing);
//!   `reasoning.summary` has no chat counterpart: left out.
//! - `text.format`: `text` → nothing; `json_schema` → `response_format`
//!   `json_schema` (`name`, `schema`, `strict`, `description`);
//!   `json_object` → `response_format` `json_object`. `text.verbosity` →
//!   `verbosity`.
//! - `stream: true` → `stream: true` with `stream_options.include_usage`
//!   (always: the gateway meters the stream's usage chunk).
//!
//! Left out on purpose: `metadata` (the gateway stores nothing), Codex's
//! `client_metadata`, `stream_options` (usage is always asked for),
//! `max_tool_calls` (chat completions have no such cap: not enforced),
//! `include: ["reasoning.encrypted_content"]` (about the answer, not the
//! request), `store: false`, `truncation: "disabled"`, `background:
//! false`, and `model` (replaced by the deployment's).
//!
//! Refused with [`TranslateError::Invalid`] naming the member, as a
//! stateless translation cannot honour them: `previous_response_id`,
//! `conversation`, `store: true`, `background: true`, `prompt` (stored
//! prompt templates), `truncation: "auto"`, `top_logprobs` (above 0),
//! `include` entries other than `reasoning.encrypted_content`, and any
//! member not named here.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value, json};

use crate::formats::chat::{
    AssistantMessage, ChatRequest, Content, ContentPart, Extra, FunctionCall, FunctionDef,
    FunctionName, ImageUrl, InstructionMessage, Message, NamedToolChoice, StreamOptions, Tool,
    ToolCall, ToolChoice, ToolMessage, UserMessage,
};
use crate::formats::{TranslateError, chat, moved, thought};

/// Where the chat request goes, which decides where a tool output's images
/// go: an OpenAI-compatible upstream reads images only in user messages,
/// Sluice's own Anthropic translation reads them in a tool result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A chat completions upstream: a function output's images follow its
    /// tool messages in a user message naming the call.
    Chat,
    /// [`crate::formats::anthropic::from_chat`]: kept in the tool message.
    Messages,
}

/// The chat completions request for a Responses request `body`, asking the
/// upstream for `model`.
pub fn request(body: &[u8], model: &str, target: Target) -> Result<Vec<u8>, TranslateError> {
    let req: ResponsesRequest =
        serde_json::from_slice(body).map_err(|e| TranslateError::Invalid {
            param: None,
            message: format!("the request body is not a valid Responses request: {e}"),
        })?;
    if let Some(name) = req.extra.keys().next() {
        return Err(TranslateError::invalid(
            name.clone(),
            format!("{name}: unknown parameter, or one this deployment cannot honour"),
        ));
    }
    refuse_stateful(&req)?;

    let mut messages = Vec::new();
    if let Some(instructions) = req.instructions.as_deref().filter(|i| !i.is_empty()) {
        messages.push(Message::System(InstructionMessage {
            content: Content::Text(Cow::Borrowed(instructions)),
            name: None,
            extra: Extra::new(),
        }));
    }
    match &req.input {
        None | Some(Value::Null) => {
            return Err(TranslateError::invalid("input", "input: Field required"));
        }
        Some(Value::String(text)) => messages.push(Message::User(UserMessage {
            content: Content::Text(Cow::Borrowed(text)),
            name: None,
            extra: Extra::new(),
        })),
        Some(Value::Array(items)) => Conversation {
            images_follow: target == Target::Chat,
            signatures: target == Target::Chat,
            ..Conversation::default()
        }
        .items(items, &mut messages)?,
        Some(_) => {
            return Err(TranslateError::invalid(
                "input",
                "input: must be a string or an array of input items",
            ));
        }
    }

    // The request's tools, and those `additional_tools` input items add
    // (Codex sends its own that way): one list upstream.
    let mut declared = Vec::new();
    for (i, tool) in req.tools.iter().flatten().enumerate() {
        tool_out(tool, &format!("tools[{i}]"), &mut declared)?;
    }
    if let Some(Value::Array(items)) = &req.input {
        for (i, item) in items.iter().enumerate() {
            if item.get("type").and_then(Value::as_str) == Some("additional_tools") {
                let at = format!("input[{i}].tools");
                let Some(Value::Array(tools)) = item.get("tools") else {
                    return Err(TranslateError::invalid(
                        at.clone(),
                        format!("{at}: must be an array of tools"),
                    ));
                };
                for (j, tool) in tools.iter().enumerate() {
                    tool_out(tool, &format!("{at}[{j}]"), &mut declared)?;
                }
            }
        }
    }
    // OpenAI refuses an empty `tools`.
    let tools = Some(distinct_names(declared)?).filter(|tools| !tools.is_empty());
    let mut tool_choice = req.tool_choice.as_ref().map(tool_choice_out).transpose()?;
    let mut parallel_tool_calls = req.parallel_tool_calls;
    // Without tools, OpenAI refuses `parallel_tool_calls` and a
    // `tool_choice`; those that ask nothing then are left out.
    if tools.is_none() {
        parallel_tool_calls = None;
        if matches!(&tool_choice, Some(ToolChoice::Mode(m)) if m == "auto" || m == "none") {
            tool_choice = None;
        }
    }
    let (response_format, verbosity) = text_out(req.text.as_ref())?;
    let reasoning_effort = match &req.reasoning {
        None => None,
        Some(reasoning) => {
            if let Some(name) = reasoning.extra.keys().next() {
                return Err(TranslateError::invalid(
                    format!("reasoning.{name}"),
                    format!("reasoning.{name}: unknown parameter"),
                ));
            }
            reasoning.effort.as_deref().map(Cow::Borrowed)
        }
    };

    let mut extra = Extra::new();
    for (name, value) in [
        ("safety_identifier", &req.safety_identifier),
        ("prompt_cache_key", &req.prompt_cache_key),
        ("service_tier", &req.service_tier),
        ("verbosity", &verbosity),
    ] {
        if let Some(value) = value {
            extra.insert(name.into(), Value::String(value.clone()));
        }
    }
    // As the Messages translation does: `max_tokens`, which every
    // OpenAI-compatible server reads, unless reasoning is asked for or the
    // model is one of OpenAI's reasoning models, which take a cap only as
    // `max_completion_tokens`.
    let (max_tokens, max_completion_tokens) =
        chat::token_cap(model, req.max_output_tokens, reasoning_effort.is_some());
    let streaming = req.stream == Some(true);
    let out = ChatRequest {
        model: Cow::Borrowed(model),
        messages,
        max_tokens,
        max_completion_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        stream: streaming.then_some(true),
        stream_options: streaming.then(|| StreamOptions {
            include_usage: Some(true),
            extra: Extra::new(),
        }),
        tools,
        tool_choice,
        parallel_tool_calls,
        reasoning_effort,
        response_format,
        user: req.user.as_deref().map(Cow::Borrowed),
        extra,
        ..ChatRequest::default()
    };
    serde_json::to_vec(&out).map_err(|e| TranslateError::Invalid {
        param: None,
        message: format!("the request could not be written: {e}"),
    })
}

// ---- What is read: the Responses request. ----

#[derive(Deserialize)]
struct ResponsesRequest {
    input: Option<Value>,
    instructions: Option<String>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    user: Option<String>,
    safety_identifier: Option<String>,
    prompt_cache_key: Option<String>,
    service_tier: Option<String>,
    max_output_tokens: Option<u64>,
    reasoning: Option<ReasoningParam>,
    text: Option<TextParam>,
    stream: Option<bool>,
    // Refused (see `refuse_stateful`).
    previous_response_id: Option<String>,
    conversation: Option<Value>,
    store: Option<bool>,
    background: Option<bool>,
    prompt: Option<Value>,
    truncation: Option<String>,
    top_logprobs: Option<Value>,
    include: Option<Vec<Option<String>>>,
    // Left out on purpose (see the module's doc).
    #[serde(rename = "model")]
    _model: Option<IgnoredAny>,
    #[serde(rename = "metadata")]
    _metadata: Option<IgnoredAny>,
    #[serde(rename = "stream_options")]
    _stream_options: Option<IgnoredAny>,
    #[serde(rename = "max_tool_calls")]
    _max_tool_calls: Option<IgnoredAny>,
    /// Codex's own metadata about itself.
    #[serde(rename = "client_metadata")]
    _client_metadata: Option<IgnoredAny>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct ReasoningParam {
    effort: Option<String>,
    #[serde(rename = "summary")]
    _summary: Option<IgnoredAny>,
    /// The deprecated name of `summary`.
    #[serde(rename = "generate_summary")]
    _generate_summary: Option<IgnoredAny>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct TextParam {
    format: Option<Value>,
    verbosity: Option<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

// ---- The translation. ----

const STATELESS: &str = "this deployment is stateless: Sluice translates /v1/responses to chat \
     completions for it and keeps no conversation state; send the whole conversation in `input` \
     with `store: false`, as Codex does";

fn refuse_stateful(req: &ResponsesRequest) -> Result<(), TranslateError> {
    let refuse = |param: &str, what: &str| {
        Err(TranslateError::invalid(
            param,
            format!("{param}: {what} cannot be honoured, as {STATELESS}"),
        ))
    };
    if req.previous_response_id.is_some() {
        return refuse("previous_response_id", "continuing a previous response");
    }
    if req.conversation.as_ref().is_some_and(|c| !c.is_null()) {
        return refuse("conversation", "a stored conversation");
    }
    if req.store == Some(true) {
        return refuse("store", "storing the response (`store: true`)");
    }
    if req.background == Some(true) {
        return refuse("background", "background mode");
    }
    if req.prompt.as_ref().is_some_and(|p| !p.is_null()) {
        return refuse("prompt", "a stored prompt template");
    }
    if req.truncation.as_deref() == Some("auto") {
        return refuse(
            "truncation",
            "`truncation: \"auto\"` (which needs stored context)",
        );
    }
    // 0 (asking for none) is what some clients send by default.
    if req
        .top_logprobs
        .as_ref()
        .is_some_and(|t| !t.is_null() && t.as_u64() != Some(0))
    {
        return Err(TranslateError::invalid(
            "top_logprobs",
            "top_logprobs: log probabilities are not available on this deployment",
        ));
    }
    for (k, entry) in req.include.iter().flatten().enumerate() {
        match entry.as_deref() {
            Some("reasoning.encrypted_content") => {}
            other => {
                return Err(TranslateError::invalid(
                    format!("include[{k}]"),
                    format!(
                        "include[{k}]: `{}` is not available on this deployment (only \
                         `reasoning.encrypted_content` is)",
                        other.unwrap_or("null")
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, TranslateError> {
    value
        .as_object()
        .ok_or_else(|| TranslateError::invalid(at, format!("{at}: must be an object")))
}

/// Refuses the first member of `obj` not in `known`.
fn no_other(obj: &Map<String, Value>, known: &[&str], at: &str) -> Result<(), TranslateError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(name) => Err(TranslateError::invalid(
            format!("{at}.{name}"),
            format!("{at}.{name}: unknown member, cannot be translated to chat completions"),
        )),
    }
}

/// A string member, `None` when absent or `null`.
fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Option<&'a str>, TranslateError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(TranslateError::invalid(
            format!("{at}.{key}"),
            format!("{at}.{key}: must be a string"),
        )),
    }
}

fn req_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<&'a str, TranslateError> {
    opt_str(obj, key, at)?.ok_or_else(|| {
        TranslateError::invalid(format!("{at}.{key}"), format!("{at}.{key}: Field required"))
    })
}

/// An item's or part's `type`.
fn kind<'a>(obj: &'a Map<String, Value>, at: &str) -> Result<Option<&'a str>, TranslateError> {
    opt_str(obj, "type", at)
}

/// The text part kinds a message's content may hold, in any role: Codex
/// writes either in either (OpenAI's own `input_text` for what was read,
/// `output_text` for what was written).
const TEXTS: &[&str] = &["input_text", "output_text"];

/// The members of a text part (`annotations` and `logprobs`, of an output
/// given back as it came, are left out; so is `parsed`, which the openai
/// SDK's parse helpers add to the parts they hand back).
const TEXT_MEMBERS: &[&str] = &["type", "text", "annotations", "logprobs", "parsed"];

fn text_part(text: &str) -> ContentPart<'_> {
    ContentPart::Text {
        text: Cow::Borrowed(text),
        extra: Extra::new(),
    }
}

fn text_part_owned(text: String) -> ContentPart<'static> {
    ContentPart::Text {
        text: Cow::Owned(text),
        extra: Extra::new(),
    }
}

/// The texts joined by a blank line, borrowed when there is one.
fn joined<'a>(mut texts: Vec<&'a str>) -> Cow<'a, str> {
    if texts.len() == 1 {
        return Cow::Borrowed(texts.pop().unwrap_or_default());
    }
    Cow::Owned(texts.join("\n\n"))
}

/// An `input_image` part → an `image_url` part.
fn image_part<'a>(
    part: &'a Map<String, Value>,
    at: &str,
) -> Result<ContentPart<'a>, TranslateError> {
    no_other(part, &["type", "image_url", "file_id", "detail"], at)?;
    if opt_str(part, "file_id", at)?.is_some() {
        return Err(TranslateError::invalid(
            format!("{at}.file_id"),
            format!(
                "{at}.file_id: images by file id need OpenAI's file store, not available on this \
                 deployment; send the image as `image_url` (a URL or a data: URL)"
            ),
        ));
    }
    let url = req_str(part, "image_url", at)?;
    Ok(ContentPart::ImageUrl {
        image_url: ImageUrl {
            url: Cow::Borrowed(url),
            detail: opt_str(part, "detail", at)?.map(Cow::Borrowed),
            extra: Extra::new(),
        },
        extra: Extra::new(),
    })
}

fn unsupported_part(at: &str, kind: &str, place: &str) -> TranslateError {
    TranslateError::invalid(
        format!("{at}.type"),
        format!("{at}.type: a `{kind}` part in {place} cannot be sent to this deployment"),
    )
}

/// Parts of user-like content (a user message, a function call's output).
fn input_parts<'a>(
    parts: &'a [Value],
    at: &str,
    place: &str,
    text_kinds: &[&str],
) -> Result<Vec<ContentPart<'a>>, TranslateError> {
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let at = format!("{at}[{j}]");
        let part = object(part, &at)?;
        match kind(part, &at)? {
            Some(k) if text_kinds.contains(&k) => {
                no_other(part, TEXT_MEMBERS, &at)?;
                out.push(text_part(req_str(part, "text", &at)?));
            }
            Some("input_image") => out.push(image_part(part, &at)?),
            Some(other) => return Err(unsupported_part(&at, other, place)),
            None => {
                return Err(TranslateError::invalid(
                    format!("{at}.type"),
                    format!("{at}.type: Field required"),
                ));
            }
        }
    }
    Ok(out)
}

/// A thinking block waiting for the next assistant message; function
/// outputs' images waiting for the end of the tool messages.
#[derive(Default)]
struct Conversation<'a> {
    reasoning: Vec<String>,
    thinking_blocks: Vec<Value>,
    /// Outputs' images go in a user message after the tool messages
    /// ([`Target::Chat`]) rather than in them.
    images_follow: bool,
    /// Calls' ids are split from the thought signatures they carry
    /// ([`thought`]; [`Target::Chat`]: Gemini is a chat upstream), rather
    /// than kept whole (Claude has no use for them).
    signatures: bool,
    images: Vec<ContentPart<'a>>,
}

impl<'a> Conversation<'a> {
    /// A call id as the client sent it, as the upstream knows it
    /// ([`Conversation::signatures`]).
    fn own_id(&self, call_id: &'a str) -> &'a str {
        if self.signatures {
            thought::own_id(call_id)
        } else {
            call_id
        }
    }

    fn items(
        mut self,
        items: &'a [Value],
        out: &mut Vec<Message<'a>>,
    ) -> Result<(), TranslateError> {
        // Whether the last message written is an assistant message of the
        // items directly before, which function calls may join.
        let mut open = false;
        for (i, item) in items.iter().enumerate() {
            let at = format!("input[{i}]");
            let item = object(item, &at)?;
            let kind = match kind(item, &at)? {
                Some(kind) => kind,
                None if item.contains_key("role") => "message",
                None => {
                    return Err(TranslateError::invalid(
                        format!("{at}.type"),
                        format!("{at}.type: Field required"),
                    ));
                }
            };
            if !matches!(
                kind,
                "function_call_output" | "custom_tool_call_output" | "additional_tools"
            ) {
                self.flush_images(out);
            }
            match kind {
                "message" => open = self.message(item, &at, out)?,
                "function_call" => {
                    no_other(
                        item,
                        // `parsed_arguments`: the openai SDK's parse
                        // helpers add it to the items they hand back.
                        &[
                            "type",
                            "id",
                            "call_id",
                            "name",
                            "namespace",
                            "arguments",
                            "status",
                            "parsed_arguments",
                        ],
                        &at,
                    )?;
                    let arguments = Cow::Borrowed(req_str(item, "arguments", &at)?);
                    self.call(item, arguments, &at, open, out)?;
                    open = true;
                }
                "custom_tool_call" => {
                    no_other(
                        item,
                        &[
                            "type",
                            "id",
                            "call_id",
                            "name",
                            "namespace",
                            "input",
                            "status",
                        ],
                        &at,
                    )?;
                    let input = req_str(item, "input", &at)?;
                    self.call(item, Cow::Owned(custom_arguments(input)), &at, open, out)?;
                    open = true;
                }
                "function_call_output" | "custom_tool_call_output" => {
                    no_other(item, &["type", "id", "call_id", "output", "status"], &at)?;
                    let content = match item.get("output") {
                        Some(Value::String(text)) => Content::Text(Cow::Borrowed(text)),
                        Some(Value::Array(parts)) => {
                            let parts = input_parts(
                                parts,
                                &format!("{at}.output"),
                                "a function's output",
                                &["input_text"],
                            )?;
                            let text_only =
                                parts.iter().all(|p| matches!(p, ContentPart::Text { .. }));
                            if text_only || self.images_follow {
                                let call_id = self.own_id(req_str(item, "call_id", &at)?);
                                self.text_and_images(call_id, parts)
                            } else {
                                Content::Parts(parts)
                            }
                        }
                        _ => {
                            return Err(TranslateError::invalid(
                                format!("{at}.output"),
                                format!("{at}.output: must be a string or an array of parts"),
                            ));
                        }
                    };
                    self.drop_reasoning();
                    out.push(Message::Tool(ToolMessage {
                        content,
                        tool_call_id: Cow::Borrowed(self.own_id(req_str(item, "call_id", &at)?)),
                        extra: Extra::new(),
                    }));
                    open = false;
                }
                "reasoning" => {
                    no_other(
                        item,
                        &[
                            "type",
                            "id",
                            "summary",
                            "content",
                            "encrypted_content",
                            "status",
                        ],
                        &at,
                    )?;
                    self.reasoning(item, &at)?;
                }
                // Its tools are offered with the request's (see `request`).
                "additional_tools" => no_other(item, &["type", "id", "role", "tools"], &at)?,
                "item_reference" => {
                    return Err(TranslateError::invalid(
                        at.clone(),
                        format!(
                            "{at}: an `item_reference` names a stored item, and {STATELESS}; \
                             send the full items instead of references"
                        ),
                    ));
                }
                "compaction" => {
                    return Err(TranslateError::invalid(
                        format!("{at}.type"),
                        format!(
                            "{at}: a `compaction` item is encrypted by the Responses API upstream \
                             that made it (`/v1/responses/compact`), and only a deployment \
                             serving that API can read it; this one serves chat completions: \
                             call a model group of OpenAI or Azure deployments, or compact the \
                             conversation client-side"
                        ),
                    ));
                }
                other => {
                    return Err(TranslateError::invalid(
                        format!("{at}.type"),
                        format!(
                            "{at}.type: `{other}` items (built-in tools' calls and outputs) \
                             cannot be sent to this deployment, which serves chat completions \
                             and only function tools"
                        ),
                    ));
                }
            }
        }
        self.flush_images(out);
        Ok(())
    }

    /// A function output's parts as its tool message's text; its images
    /// kept for the user message after the tool messages, after a line
    /// naming the call (a tool message cannot carry them upstream).
    fn text_and_images(&mut self, call_id: &str, parts: Vec<ContentPart<'a>>) -> Content<'a> {
        let mut texts = Vec::new();
        let mut images = Vec::new();
        for part in parts {
            match part {
                ContentPart::Text { text, .. } => texts.push(text),
                other => images.push(other),
            }
        }
        if !images.is_empty() {
            let heading = moved::heading("image", images.len(), call_id);
            self.images.push(text_part_owned(heading));
            self.images.extend(images);
            if texts.is_empty() {
                return Content::Text(Cow::Borrowed(moved::placeholder("image")));
            }
        }
        let texts: Vec<&str> = texts.iter().map(|t| &**t).collect();
        Content::Text(Cow::Owned(joined(texts).into_owned()))
    }

    /// The outputs' images, as a user message, once the tool messages end.
    fn flush_images(&mut self, out: &mut Vec<Message<'a>>) {
        if !self.images.is_empty() {
            out.push(Message::User(UserMessage {
                content: Content::Parts(std::mem::take(&mut self.images)),
                name: None,
                extra: Extra::new(),
            }));
        }
    }

    /// A call (`function_call` or `custom_tool_call` with its arguments)
    /// → a tool call of the assistant message before it, when `open`, or
    /// of a new one.
    fn call(
        &mut self,
        item: &'a Map<String, Value>,
        arguments: Cow<'a, str>,
        at: &str,
        open: bool,
        out: &mut Vec<Message<'a>>,
    ) -> Result<(), TranslateError> {
        let call_id = req_str(item, "call_id", at)?;
        let (id, signed) = if self.signatures {
            thought::split(call_id)
        } else {
            (call_id, None)
        };
        let mut extra = Extra::new();
        if let Some(signed) = signed {
            extra.insert("extra_content".to_owned(), signed.to_value());
        }
        let call = ToolCall {
            id: Cow::Borrowed(id),
            kind: Cow::Borrowed("function"),
            function: FunctionCall {
                name: Cow::Borrowed(req_str(item, "name", at)?),
                arguments,
                extra: Extra::new(),
            },
            extra,
        };
        match out.last_mut() {
            Some(Message::Assistant(m)) if open && self.reasoning.is_empty() => {
                m.tool_calls.get_or_insert_with(Vec::new).push(call);
            }
            _ => {
                let mut m = self.assistant();
                m.tool_calls = Some(vec![call]);
                out.push(Message::Assistant(m));
            }
        }
        Ok(())
    }

    /// A new assistant message, with the reasoning waiting for it.
    fn assistant(&mut self) -> AssistantMessage<'a> {
        let mut m = AssistantMessage::default();
        if !self.reasoning.is_empty() {
            m.reasoning_content = Some(Cow::Owned(self.reasoning.join("\n\n")));
            m.thinking_blocks = Some(std::mem::take(&mut self.thinking_blocks));
            self.reasoning.clear();
        }
        m
    }

    fn drop_reasoning(&mut self) {
        self.reasoning.clear();
        self.thinking_blocks.clear();
    }

    /// A reasoning item: kept for the next assistant message when it can be
    /// given back (see the module's doc), left out otherwise.
    fn reasoning(&mut self, item: &Map<String, Value>, at: &str) -> Result<(), TranslateError> {
        let Some(signature) = opt_str(item, "encrypted_content", at)? else {
            return Ok(());
        };
        let texts = |member: &str, part_kind: &str| -> Result<Vec<&str>, TranslateError> {
            let mut texts = Vec::new();
            let parts = match item.get(member) {
                None | Some(Value::Null) => return Ok(texts),
                Some(Value::Array(parts)) => parts,
                Some(_) => {
                    return Err(TranslateError::invalid(
                        format!("{at}.{member}"),
                        format!("{at}.{member}: must be an array"),
                    ));
                }
            };
            for (j, part) in parts.iter().enumerate() {
                let at = format!("{at}.{member}[{j}]");
                let part = object(part, &at)?;
                no_other(part, &["type", "text"], &at)?;
                match kind(part, &at)? {
                    Some(k) if k == part_kind => texts.push(req_str(part, "text", &at)?),
                    other => {
                        return Err(TranslateError::invalid(
                            format!("{at}.type"),
                            format!(
                                "{at}.type: expected `{part_kind}`, not `{}`",
                                other.unwrap_or("null")
                            ),
                        ));
                    }
                }
            }
            Ok(texts)
        };
        let mut found = texts("content", "reasoning_text")?;
        if found.is_empty() {
            found = texts("summary", "summary_text")?;
        }
        if found.is_empty() {
            return Ok(());
        }
        let text = found.join("\n\n");
        self.thinking_blocks
            .push(json!({"type": "thinking", "thinking": text, "signature": signature}));
        self.reasoning.push(text);
        Ok(())
    }

    /// A message item; whether it is an assistant message function calls
    /// may join.
    fn message(
        &mut self,
        item: &'a Map<String, Value>,
        at: &str,
        out: &mut Vec<Message<'a>>,
    ) -> Result<bool, TranslateError> {
        no_other(
            item,
            &[
                "type", "id", "role", "content", "status", "phase", "end_turn",
            ],
            at,
        )?;
        let role = req_str(item, "role", at)?;
        let content_at = format!("{at}.content");
        let parts = match item.get("content") {
            Some(Value::String(_)) => None,
            Some(Value::Array(parts)) => Some(parts),
            _ => {
                return Err(TranslateError::invalid(
                    content_at.clone(),
                    format!("{content_at}: must be a string or an array of parts"),
                ));
            }
        };
        let text = item.get("content").and_then(Value::as_str);
        match role {
            "user" => {
                self.drop_reasoning();
                let content = match (text, parts) {
                    (Some(text), _) => Content::Text(Cow::Borrowed(text)),
                    (None, Some(parts)) => {
                        Content::Parts(input_parts(parts, &content_at, "a user message", TEXTS)?)
                    }
                    (None, None) => Content::Parts(Vec::new()),
                };
                out.push(Message::User(UserMessage {
                    content,
                    name: None,
                    extra: Extra::new(),
                }));
                Ok(false)
            }
            "system" | "developer" => {
                self.drop_reasoning();
                let content = match (text, parts) {
                    (Some(text), _) => Cow::Borrowed(text),
                    (None, parts) => {
                        let mut texts = Vec::new();
                        for (j, part) in parts.into_iter().flatten().enumerate() {
                            let at = format!("{content_at}[{j}]");
                            let part = object(part, &at)?;
                            match kind(part, &at)? {
                                Some(k) if TEXTS.contains(&k) => {
                                    no_other(part, TEXT_MEMBERS, &at)?;
                                    texts.push(req_str(part, "text", &at)?);
                                }
                                other => {
                                    return Err(unsupported_part(
                                        &at,
                                        other.unwrap_or("null"),
                                        &format!("a {role} message (text only)"),
                                    ));
                                }
                            }
                        }
                        joined(texts)
                    }
                };
                out.push(Message::System(InstructionMessage {
                    content: Content::Text(content),
                    name: None,
                    extra: Extra::new(),
                }));
                Ok(false)
            }
            "assistant" => {
                let mut m = self.assistant();
                match (text, parts) {
                    (Some(text), _) => m.content = Some(Content::Text(Cow::Borrowed(text))),
                    (None, parts) => {
                        let mut texts = Vec::new();
                        let mut refusals = Vec::new();
                        for (j, part) in parts.into_iter().flatten().enumerate() {
                            let at = format!("{content_at}[{j}]");
                            let part = object(part, &at)?;
                            match kind(part, &at)? {
                                Some(k) if TEXTS.contains(&k) => {
                                    no_other(part, TEXT_MEMBERS, &at)?;
                                    texts.push(req_str(part, "text", &at)?);
                                }
                                Some("refusal") => {
                                    no_other(part, &["type", "refusal"], &at)?;
                                    refusals.push(req_str(part, "refusal", &at)?);
                                }
                                other => {
                                    return Err(unsupported_part(
                                        &at,
                                        other.unwrap_or("null"),
                                        "an assistant message",
                                    ));
                                }
                            }
                        }
                        if !texts.is_empty() {
                            m.content = Some(Content::Text(joined(texts)));
                        }
                        if !refusals.is_empty() {
                            m.refusal = Some(joined(refusals));
                        }
                    }
                }
                out.push(Message::Assistant(m));
                Ok(true)
            }
            other => Err(TranslateError::invalid(
                format!("{at}.role"),
                format!(
                    "{at}.role: `{other}` is not a message role (user, assistant, system, \
                     developer)"
                ),
            )),
        }
    }
}

/// Built-in tools the upstream would have to run, or that only OpenAI's
/// own models call (`shell`, `apply_patch`, `local_shell`, `computer`):
/// a chat completions upstream has none of them, so they are left out and
/// the model is offered the others. Codex declares some of them beside its
/// function tools on every request, which a refusal would make unusable.
const BUILT_IN_TOOLS: &[&str] = &[
    "web_search",
    "web_search_preview",
    "file_search",
    "code_interpreter",
    "image_generation",
    "computer",
    "computer_use_preview",
    "mcp",
    "local_shell",
    "shell",
    "apply_patch",
    "tool_search",
    "programmatic_tool_calling",
];

/// Whether `kind` is one of [`BUILT_IN_TOOLS`], or a dated version of one
/// (`web_search_preview_2025_03_11`).
fn is_built_in(kind: &str) -> bool {
    BUILT_IN_TOOLS.iter().any(|b| {
        kind.strip_prefix(b).is_some_and(|rest| {
            rest.is_empty()
                || rest.strip_prefix('_').is_some_and(|date| {
                    date.starts_with(|c: char| c.is_ascii_digit())
                        && date.bytes().all(|c| c.is_ascii_digit() || c == b'_')
                })
        })
    })
}

/// Members of a function tool that describe how OpenAI offers it, with no
/// chat counterpart: left out (`defer_loading`: chat completions have no
/// tool search, so every tool is offered at once).
const FUNCTION_HINTS: &[&str] = &["defer_loading", "allowed_callers", "output_schema"];

/// The chat tools for the Responses tool `tool` (at `at`), pushed onto
/// `out`: a function or custom tool is one, a `namespace` its tools, a
/// built-in tool none.
fn tool_out<'a>(tool: &'a Value, at: &str, out: &mut Vec<Tool<'a>>) -> Result<(), TranslateError> {
    let tool = object(tool, at)?;
    match kind(tool, at)? {
        Some("function") => {
            let known = [
                &["type", "name", "description", "parameters", "strict"],
                FUNCTION_HINTS,
            ]
            .concat();
            no_other(tool, &known, at)?;
            let strict = match tool.get("strict") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(_) => {
                    return Err(TranslateError::invalid(
                        format!("{at}.strict"),
                        format!("{at}.strict: must be a boolean"),
                    ));
                }
            };
            out.push(Tool::Function {
                function: FunctionDef {
                    name: Cow::Borrowed(req_str(tool, "name", at)?),
                    description: opt_str(tool, "description", at)?.map(Cow::Borrowed),
                    parameters: tool.get("parameters").filter(|p| !p.is_null()).cloned(),
                    strict,
                    extra: Extra::new(),
                },
                extra: Extra::new(),
            });
        }
        Some("custom") => {
            no_other(
                tool,
                &["type", "name", "description", "format", "defer_loading"],
                at,
            )?;
            let name = req_str(tool, "name", at)?;
            let description = opt_str(tool, "description", at)?;
            let grammar = custom_format(tool.get("format"), at)?;
            let description = match (description, grammar) {
                (d, None) => d.map(Cow::Borrowed),
                (d, Some((syntax, definition))) => Some(Cow::Owned(format!(
                    "{}The `input` must follow this {syntax} grammar:\n{definition}",
                    d.map(|d| format!("{d}\n\n")).unwrap_or_default()
                ))),
            };
            out.push(Tool::Function {
                function: FunctionDef {
                    name: Cow::Borrowed(name),
                    description,
                    parameters: Some(custom_parameters()),
                    strict: None,
                    extra: Extra::new(),
                },
                extra: Extra::new(),
            });
        }
        // Its tools, by their own names (which must differ from every other
        // tool's): the answer's calls of them name their namespace again
        // (see [`super::echo::Echo`]).
        Some("namespace") => {
            no_other(tool, &["type", "name", "description", "tools"], at)?;
            req_str(tool, "name", at)?;
            let Some(Value::Array(tools)) = tool.get("tools") else {
                return Err(TranslateError::invalid(
                    format!("{at}.tools"),
                    format!("{at}.tools: must be an array of function and custom tools"),
                ));
            };
            for (j, inner) in tools.iter().enumerate() {
                let inner_at = format!("{at}.tools[{j}]");
                match inner.get("type").and_then(Value::as_str) {
                    Some("function" | "custom") => tool_out(inner, &inner_at, out)?,
                    _ => {
                        return Err(TranslateError::invalid(
                            format!("{inner_at}.type"),
                            format!("{inner_at}.type: a namespace holds function and custom tools"),
                        ));
                    }
                }
            }
        }
        Some(built_in) if is_built_in(built_in) => {}
        other => {
            return Err(TranslateError::invalid(
                format!("{at}.type"),
                format!(
                    "{at}.type: `{}` is not a tool type this deployment, which serves chat \
                     completions, knows: `function`, `custom` and `namespace` tools are \
                     offered to the model, built-in tools left out",
                    other.unwrap_or("null")
                ),
            ));
        }
    }
    Ok(())
}

/// Refuses two tools of one name: a custom tool and a function tool are
/// both functions upstream, and the answer's calls are told apart by name.
fn distinct_names(tools: Vec<Tool<'_>>) -> Result<Vec<Tool<'_>>, TranslateError> {
    fn name<'t>(tool: &'t Tool<'_>) -> Option<&'t str> {
        match tool {
            Tool::Function { function, .. } => Some(&function.name),
            Tool::Other(_) => None,
        }
    }
    for (i, tool) in tools.iter().enumerate() {
        let Some(this) = name(tool) else { continue };
        if tools[..i].iter().any(|t| name(t) == Some(this)) {
            return Err(TranslateError::invalid(
                "tools",
                format!(
                    "tools: `{this}` names two tools (custom tools and the tools of namespaces \
                     are functions upstream, told apart by name)"
                ),
            ));
        }
    }
    Ok(tools)
}

/// The one parameter a custom tool's function takes: the free-form text
/// the model writes for it.
pub const CUSTOM_INPUT: &str = "input";

fn custom_parameters() -> Value {
    json!({
        "type": "object",
        "properties": {CUSTOM_INPUT: {"type": "string", "description": "The tool's input, as free-form text."}},
        "required": [CUSTOM_INPUT],
        "additionalProperties": false,
    })
}

/// A custom tool call's `input` as the arguments of its function.
fn custom_arguments(input: &str) -> String {
    json!({ CUSTOM_INPUT: input }).to_string()
}

/// A custom tool's `format`: `None` for free text (absent, `null` or
/// `{"type": "text"}`), else a grammar's syntax and definition.
fn custom_format<'a>(
    format: Option<&'a Value>,
    at: &str,
) -> Result<Option<(&'a str, &'a str)>, TranslateError> {
    let at = format!("{at}.format");
    let format = match format {
        None | Some(Value::Null) => return Ok(None),
        Some(format) => object(format, &at)?,
    };
    match kind(format, &at)? {
        Some("text") => {
            no_other(format, &["type"], &at)?;
            Ok(None)
        }
        Some("grammar") => {
            no_other(format, &["type", "syntax", "definition"], &at)?;
            Ok(Some((
                req_str(format, "syntax", &at)?,
                req_str(format, "definition", &at)?,
            )))
        }
        other => Err(TranslateError::invalid(
            format!("{at}.type"),
            format!(
                "{at}.type: `{}` is not a custom tool format (`text`, `grammar`)",
                other.unwrap_or("null")
            ),
        )),
    }
}

fn tool_choice_out(choice: &Value) -> Result<ToolChoice<'_>, TranslateError> {
    let refuse = |what: &str| {
        Err(TranslateError::invalid(
            "tool_choice",
            format!(
                "tool_choice: {what} is not available on this deployment (`auto`, `none`, \
                 `required`, a function or a custom tool are)"
            ),
        ))
    };
    match choice {
        Value::String(mode) if matches!(mode.as_str(), "auto" | "none" | "required") => {
            Ok(ToolChoice::Mode(Cow::Borrowed(mode)))
        }
        Value::String(mode) => refuse(&format!("`{mode}`")),
        Value::Object(obj) => match obj.get("type").and_then(Value::as_str) {
            // A custom tool is a function upstream.
            Some("function" | "custom") => {
                no_other(obj, &["type", "name", "namespace"], "tool_choice")?;
                Ok(ToolChoice::Function(NamedToolChoice {
                    kind: Cow::Borrowed("function"),
                    function: FunctionName {
                        name: Cow::Borrowed(req_str(obj, "name", "tool_choice")?),
                        extra: Extra::new(),
                    },
                    extra: Extra::new(),
                }))
            }
            Some(kind) => refuse(&format!("a tool choice of type `{kind}`")),
            None => refuse("a tool choice without a type"),
        },
        _ => refuse("this value"),
    }
}

/// `text`: the `response_format` and the `verbosity`.
fn text_out(text: Option<&TextParam>) -> Result<(Option<Value>, Option<String>), TranslateError> {
    let Some(text) = text else {
        return Ok((None, None));
    };
    if let Some(name) = text.extra.keys().next() {
        return Err(TranslateError::invalid(
            format!("text.{name}"),
            format!("text.{name}: unknown parameter"),
        ));
    }
    let at = "text.format";
    let format = match &text.format {
        None | Some(Value::Null) => None,
        Some(format) => {
            let format = object(format, at)?;
            match kind(format, at)? {
                Some("text") => {
                    no_other(format, &["type"], at)?;
                    None
                }
                Some("json_object") => {
                    no_other(format, &["type"], at)?;
                    Some(json!({"type": "json_object"}))
                }
                Some("json_schema") => {
                    no_other(
                        format,
                        &["type", "name", "schema", "strict", "description"],
                        at,
                    )?;
                    let name = req_str(format, "name", at)?;
                    let Some(schema) = format.get("schema").filter(|s| !s.is_null()) else {
                        return Err(TranslateError::invalid(
                            "text.format.schema",
                            "text.format.schema: Field required",
                        ));
                    };
                    let mut json_schema = Map::new();
                    json_schema.insert("name".into(), Value::String(name.into()));
                    json_schema.insert("schema".into(), schema.clone());
                    if let Some(strict) = format.get("strict").filter(|s| !s.is_null()) {
                        json_schema.insert("strict".into(), strict.clone());
                    }
                    if let Some(description) = opt_str(format, "description", at)? {
                        json_schema.insert("description".into(), description.into());
                    }
                    Some(json!({"type": "json_schema", "json_schema": json_schema}))
                }
                other => {
                    return Err(TranslateError::invalid(
                        "text.format.type",
                        format!(
                            "text.format.type: `{}` is not an output format (text, json_schema, \
                             json_object)",
                            other.unwrap_or("null")
                        ),
                    ));
                }
            }
        }
    };
    Ok((format, text.verbosity.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_the_sdk_hands_back_are_taken_as_they_come() {
        // `client.responses.stream(...).get_final_response()` items dumped
        // into the next turn's input carry the SDK's own `parsed_*`.
        let body = serde_json::json!({
            "model": "m",
            "input": [
                {"role": "user", "content": "Weather?"},
                {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "w",
                 "arguments": "{}", "parsed_arguments": {}, "status": "completed"},
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
                {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
                 "content": [{"type": "output_text", "text": "Sunny.", "annotations": [],
                              "parsed": null}]},
            ],
        });
        let chat = translate(body);
        assert_eq!(chat["messages"][1]["tool_calls"][0]["id"], "call_1");
        assert_eq!(chat["messages"][3]["content"], "Sunny.");
    }

    #[test]
    fn custom_tools_are_functions_of_one_string_and_their_calls_tool_calls() {
        let grammar = "start: \"*** Begin Patch\" /(.|\\n)*/ \"*** End Patch\"";
        let body = serde_json::json!({
            "model": "m",
            "tools": [
                {"type": "custom", "name": "apply_patch", "description": "Edit files.",
                 "format": {"type": "grammar", "syntax": "lark", "definition": grammar}},
                {"type": "custom", "name": "note"},
            ],
            "tool_choice": {"type": "custom", "name": "apply_patch"},
            "input": [
                {"role": "user", "content": "Fix the typo."},
                {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_1",
                 "name": "apply_patch", "input": "*** Begin Patch\n\"x\"\n*** End Patch",
                 "status": "completed"},
                {"type": "custom_tool_call_output", "call_id": "call_1", "output": "Done."},
            ],
        });
        let chat = translate(body);
        let patch = &chat["tools"][0]["function"];
        assert_eq!(patch["name"], "apply_patch");
        assert_eq!(
            patch["description"],
            format!("Edit files.\n\nThe `input` must follow this lark grammar:\n{grammar}")
        );
        assert_eq!(patch["parameters"]["required"], json!(["input"]));
        assert_eq!(patch["parameters"]["properties"]["input"]["type"], "string");
        assert!(chat["tools"][1]["function"].get("description").is_none());
        assert_eq!(
            chat["tool_choice"],
            json!({"type": "function", "function": {"name": "apply_patch"}})
        );
        let call = &chat["messages"][1]["tool_calls"][0];
        assert_eq!(call["id"], "call_1");
        assert_eq!(call["function"]["name"], "apply_patch");
        let arguments: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(
            arguments,
            json!({"input": "*** Begin Patch\n\"x\"\n*** End Patch"})
        );
        assert_eq!(
            chat["messages"][2],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "Done."})
        );
    }

    fn translate(body: Value) -> Value {
        let out = request(body.to_string().as_bytes(), "gpt-4o", Target::Chat).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    fn refused(body: Value) -> (Option<String>, String) {
        match request(body.to_string().as_bytes(), "gpt-4o", Target::Chat) {
            Err(TranslateError::Invalid { param, message }) => (param, message),
            other => panic!("not refused: {other:?}"),
        }
    }

    fn snapshot(name: &str, body: Value) {
        let out = serde_json::to_string_pretty(&translate(body)).unwrap();
        insta::assert_snapshot!(name, out);
    }

    #[test]
    fn plain_string_input() {
        snapshot(
            "plain_string_input",
            json!({"model": "gpt-4.1", "input": "Tell me a three sentence bedtime story about a unicorn."}),
        );
    }

    #[test]
    fn instructions_and_multi_turn_messages_with_images() {
        snapshot(
            "instructions_and_multi_turn_messages_with_images",
            json!({
                "model": "gpt-4.1",
                "instructions": "You are a helpful assistant.",
                "input": [
                    {"role": "developer", "content": "Answer in French."},
                    {"role": "user", "content": [
                        {"type": "input_text", "text": "What is in this image?"},
                        {"type": "input_image", "image_url": "https://upload.wikimedia.org/a.jpg", "detail": "high"},
                        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}
                    ]},
                    {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed", "content": [
                        {"type": "output_text", "text": "Un chat.", "annotations": []}
                    ]},
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Et la couleur ?"}]},
                    {"role": "assistant", "content": [{"type": "refusal", "refusal": "Je ne peux pas."}]},
                    {"role": "system", "content": [{"type": "input_text", "text": "Be brief."}, {"type": "input_text", "text": "Be kind."}]},
                    {"role": "user", "content": "Pourquoi ?"}
                ],
                "temperature": 0.2, "top_p": 0.9, "max_output_tokens": 1024,
                "user": "u-1", "safety_identifier": "s-1", "service_tier": "auto",
                "metadata": {"k": "v"}, "store": false
            }),
        );
    }

    #[test]
    fn codex_style_history_with_function_tools() {
        snapshot(
            "codex_style_history_with_function_tools",
            json!({
                "model": "gpt-5-codex",
                "instructions": "You are Codex, a coding agent.",
                "input": [
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List the files and show the README."}]},
                    {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "I should list files and read the README."}],
                     "encrypted_content": "gAAAAABoEncrypted"},
                    {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell", "arguments": "{\"command\":[\"ls\"]}"},
                    {"type": "function_call", "id": "fc_2", "call_id": "call_2", "name": "shell", "arguments": "{\"command\":[\"cat\",\"README.md\"]}"},
                    {"type": "function_call_output", "call_id": "call_1", "output": "README.md\nsrc\n"},
                    {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "# Sluice"}]},
                    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "There are two entries; the README is a title."}]},
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks."}]}
                ],
                "tools": [
                    {"type": "function", "name": "shell", "description": "Runs a shell command",
                     "strict": false, "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}},
                     "required": ["command"], "additionalProperties": false}}
                ],
                "tool_choice": "auto",
                "parallel_tool_calls": true,
                "reasoning": {"effort": "high", "summary": "auto"},
                "store": false,
                "stream": false,
                "include": ["reasoning.encrypted_content"],
                "prompt_cache_key": "0199a-session",
                "text": {"verbosity": "low"}
            }),
        );
    }

    #[test]
    fn json_schema_text_format() {
        snapshot(
            "json_schema_text_format",
            json!({
                "model": "gpt-4o",
                "input": "Jane, 54 years old",
                "text": {"format": {"type": "json_schema", "name": "person", "strict": true,
                    "description": "A person",
                    "schema": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                        "required": ["name", "age"], "additionalProperties": false}}},
                "tool_choice": {"type": "function", "name": "lookup"},
                "tools": [{"type": "function", "name": "lookup", "parameters": null}]
            }),
        );
    }

    #[test]
    fn streaming_adds_include_usage() {
        snapshot(
            "streaming_adds_include_usage",
            json!({"model": "gpt-4o", "input": "Hi", "stream": true,
                "stream_options": {"include_obfuscation": false}}),
        );
    }

    #[test]
    fn small_mappings() {
        let out = translate(json!({"input": "x", "text": {"format": {"type": "json_object"}}}));
        assert_eq!(out["response_format"], json!({"type": "json_object"}));
        let out = translate(json!({"input": "x", "text": {"format": {"type": "text"}}}));
        assert!(out.get("response_format").is_none());
        let out =
            translate(json!({"input": "x", "reasoning": {"effort": null, "summary": "auto"}}));
        assert!(out.get("reasoning_effort").is_none());
        let f = json!([{"type": "function", "name": "f"}]);
        for mode in ["auto", "none", "required"] {
            let out = translate(json!({"input": "x", "tool_choice": mode, "tools": f}));
            assert_eq!(out["tool_choice"], mode);
        }
        // Without tools, what asks nothing is left out.
        let out = translate(
            json!({"input": "x", "tool_choice": "auto", "parallel_tool_calls": true, "top_logprobs": 0}),
        );
        assert!(out.get("tool_choice").is_none());
        assert!(out.get("parallel_tool_calls").is_none());
        let out = translate(json!({"input": "x", "tool_choice": "required", "tools": []}));
        assert_eq!(out["tool_choice"], "required");
        assert!(out.get("tools").is_none());
        // Integers where numbers go, through the flattened struct.
        let out =
            translate(json!({"input": "x", "temperature": 1, "top_p": 1, "max_output_tokens": 64}));
        assert_eq!(out["temperature"], 1.0);
        assert_eq!(out["max_tokens"], 64);
        assert!(out.get("max_completion_tokens").is_none());
        let out = translate(
            json!({"input": "x", "max_output_tokens": 64, "reasoning": {"effort": "low"}}),
        );
        assert_eq!(out["max_completion_tokens"], 64);
        assert!(out.get("max_tokens").is_none());
        // Reasoning without encrypted content is left out.
        let out = translate(json!({"input": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hmm"}]},
            {"role": "assistant", "content": "ok"}
        ]}));
        assert_eq!(
            out["messages"],
            json!([{"role": "assistant", "content": "ok"}])
        );
        // An assistant message directly before function calls takes them.
        let out = translate(json!({"input": [
            {"role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"}
        ]}));
        assert_eq!(out["messages"].as_array().unwrap().len(), 1);
        assert_eq!(out["messages"][0]["content"], "Checking.");
        assert_eq!(out["messages"][0]["tool_calls"][1]["id"], "c2");
        // Output parts with an image: for Claude (Sluice's own translation
        // reads images in a tool result) they stay parts; for a chat
        // upstream, which reads images only from users, the images follow
        // the turn's tool messages in a user message naming the call.
        let body = json!({"input": [
            {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "view_image", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": [
                {"type": "input_text", "text": "see"},
                {"type": "input_image", "image_url": "https://x/a.png"}
            ]},
            {"type": "function_call_output", "call_id": "c2", "output": [
                {"type": "input_image", "image_url": "https://x/b.png"}
            ]},
            {"role": "user", "content": "Compare them."}
        ]});
        let image = |url: &str| json!({"type": "image_url", "image_url": {"url": url}});
        let claude = request(body.to_string().as_bytes(), "claude", Target::Messages).unwrap();
        let claude: Value = serde_json::from_slice(&claude).unwrap();
        assert_eq!(
            claude["messages"][1]["content"][1],
            image("https://x/a.png")
        );
        let out = translate(body);
        let roles: Vec<&str> = out["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(
            roles,
            ["assistant", "tool", "tool", "user", "user"],
            "{out}"
        );
        assert_eq!(out["messages"][1]["content"], "see");
        assert_eq!(
            out["messages"][2]["content"],
            "(an image: in the next message)"
        );
        assert_eq!(
            out["messages"][3]["content"],
            json!([
                {"type": "text", "text": "The image returned by tool call c1:"},
                image("https://x/a.png"),
                {"type": "text", "text": "The image returned by tool call c2:"},
                image("https://x/b.png")
            ])
        );
        // Images of the last outputs come after them too.
        let out = translate(json!({"input": [
            {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": [
                {"type": "input_image", "image_url": "https://x/a.png"}
            ]}
        ]}));
        assert_eq!(out["messages"][2]["role"], "user", "{out}");
    }

    #[test]
    fn refusals_name_the_member() {
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"input": "x", "previous_response_id": "resp_1"}),
                "previous_response_id",
            ),
            (
                json!({"input": "x", "conversation": "conv_1"}),
                "conversation",
            ),
            (json!({"input": "x", "store": true}), "store"),
            (json!({"input": "x", "background": true}), "background"),
            (json!({"input": "x", "prompt": {"id": "pmpt_1"}}), "prompt"),
            (json!({"input": "x", "truncation": "auto"}), "truncation"),
            (json!({"input": "x", "top_logprobs": 2}), "top_logprobs"),
            (
                json!({"input": "x", "include": ["reasoning.encrypted_content", "file_search_call.results"]}),
                "include[1]",
            ),
            (json!({"input": "x", "novel": 1}), "novel"),
            (
                json!({"input": "x", "reasoning": {"effort": "low", "novel": 1}}),
                "reasoning.novel",
            ),
            (
                json!({"input": "x", "text": {"format": {"type": "xml"}}}),
                "text.format.type",
            ),
            (
                json!({"input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}),
                "text.format.schema",
            ),
            (
                json!({"input": "x", "tools": [{"type": "function", "name": "f"}, {"type": "web_searcher"}]}),
                "tools[1].type",
            ),
            (
                json!({"input": "x", "tools": [{"type": "custom", "name": "x", "format": {"type": "regex"}}]}),
                "tools[0].format.type",
            ),
            (
                json!({"input": "x", "tools": [{"type": "custom", "name": "x", "cache": true}]}),
                "tools[0].cache",
            ),
            (
                json!({"input": "x", "tools": [{"type": "function", "name": "x"}, {"type": "custom", "name": "x"}]}),
                "tools",
            ),
            (
                json!({"input": "x", "tools": [{"type": "function", "name": "x"},
                    {"type": "namespace", "name": "ns", "description": "d", "tools": [{"type": "function", "name": "x"}]}]}),
                "tools",
            ),
            (
                json!({"input": "x", "tools": [{"type": "namespace", "name": "ns", "description": "d",
                    "tools": [{"type": "web_search"}]}]}),
                "tools[0].tools[0].type",
            ),
            (
                json!({"input": "x", "tools": [{"type": "namespace", "description": "d", "tools": []}]}),
                "tools[0].name",
            ),
            (
                json!({"input": [{"type": "additional_tools", "role": "developer", "tools": {}}]}),
                "input[0].tools",
            ),
            (
                json!({"input": "x", "tool_choice": {"type": "file_search"}}),
                "tool_choice",
            ),
            (
                json!({"input": "x", "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}}),
                "tool_choice",
            ),
            (
                json!({"input": "x", "tool_choice": "sometimes"}),
                "tool_choice",
            ),
            (json!({"model": "m"}), "input"),
            (json!({"input": 3}), "input"),
            (json!({"input": {"role": "user"}}), "input"),
            (
                json!({"input": [{"type": "item_reference", "id": "msg_1"}]}),
                "input[0]",
            ),
            (
                json!({"input": ["x", {"type": "web_search_call", "id": "ws_1"}]}),
                "input[0]",
            ),
            (
                json!({"input": [{"role": "user", "content": "x"}, {"type": "web_search_call", "id": "ws_1"}]}),
                "input[1].type",
            ),
            (
                json!({"input": [{"type": "computer_call", "call_id": "c"}]}),
                "input[0].type",
            ),
            (
                json!({"input": [{"type": "custom_tool_call", "call_id": "c", "name": "x"}]}),
                "input[0].input",
            ),
            (
                json!({"input": [{"type": "local_shell_call", "call_id": "c"}]}),
                "input[0].type",
            ),
            (
                json!({"input": [{"type": "mcp_call", "id": "c"}]}),
                "input[0].type",
            ),
            (
                json!({"input": [{"type": "compaction", "encrypted_content": "gAAA"}]}),
                "input[0].type",
            ),
            (
                json!({"input": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"},
                {"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]}),
                "input[2].content[0].type",
            ),
            (
                json!({"input": [{"role": "user", "content": [{"type": "input_text", "text": "x"},
                {"type": "input_image", "file_id": "file_1"}]}]}),
                "input[0].content[1].file_id",
            ),
            (
                json!({"input": [{"role": "system", "content": [{"type": "input_image", "image_url": "https://x"}]}]}),
                "input[0].content[0].type",
            ),
            (
                json!({"input": [{"role": "tool", "content": "x"}]}),
                "input[0].role",
            ),
            (
                json!({"input": [{"type": "function_call", "call_id": "c", "name": "f"}]}),
                "input[0].arguments",
            ),
            (
                json!({"input": [{"type": "function_call_output", "call_id": "c", "output": [
                {"type": "input_file", "file_data": "x"}]}]}),
                "input[0].output[0].type",
            ),
        ];
        for (body, param) in cases {
            let (got, message) = refused(body.clone());
            assert_eq!(got.as_deref(), Some(param), "{body}: {message}");
        }
        let (_, message) = refused(json!({"input": "x", "previous_response_id": "resp_1"}));
        assert!(message.contains("stateless"), "{message}");
        assert!(message.contains("store: false"), "{message}");
        let (_, message) = refused(json!({"input": [{"type": "item_reference", "id": "msg_1"}]}));
        assert!(message.contains("stateless"), "{message}");
        let (_, message) =
            refused(json!({"input": [{"type": "compaction", "encrypted_content": "e"}]}));
        assert!(message.contains("/v1/responses/compact"), "{message}");
        let (_, message) = refused(json!({"input": "x", "tools": [{"type": "websearch"}]}));
        assert!(message.contains("built-in tools left out"), "{message}");
    }

    /// What Codex declares: function and custom tools (some in a
    /// namespace, some in an `additional_tools` item) beside built-in tools
    /// a chat upstream cannot run, which are left out.
    #[test]
    fn codex_tool_declarations_offer_what_chat_can_call() {
        let out = translate(json!({
            "input": [
                {"type": "additional_tools", "role": "developer", "tools": [
                    {"type": "namespace", "name": "functions", "description": "Code mode.", "tools": [
                        {"type": "custom", "name": "exec", "description": "Runs JavaScript."}
                    ]}
                ]},
                {"role": "user", "content": "List the files."},
                {"type": "function_call", "call_id": "c1", "name": "lookup", "namespace": "crm", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "none"},
                {"type": "custom_tool_call", "call_id": "c2", "name": "exec", "namespace": "functions", "input": "1"},
                {"type": "custom_tool_call_output", "call_id": "c2", "output": "1"}
            ],
            "tools": [
                {"type": "function", "name": "shell", "parameters": {"type": "object"}, "defer_loading": false},
                {"type": "custom", "name": "apply_patch"},
                {"type": "web_search", "external_web_access": false},
                {"type": "web_search_preview_2025_03_11"},
                {"type": "image_generation", "output_format": "png"},
                {"type": "local_shell"},
                {"type": "namespace", "name": "crm", "description": "The CRM.", "tools": [
                    {"type": "function", "name": "lookup", "description": "Finds a customer.",
                     "parameters": {"type": "object"}, "defer_loading": true, "allowed_callers": ["direct"]}
                ]}
            ],
            "tool_choice": {"type": "function", "name": "lookup", "namespace": "crm"}
        }));
        let names: Vec<&str> = out["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["shell", "apply_patch", "lookup", "exec"], "{out}");
        assert!(out["tools"][2]["function"].get("defer_loading").is_none());
        assert_eq!(out["tool_choice"]["function"]["name"], "lookup");
        let calls: Vec<&str> = out["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["tool_calls"][0]["function"]["name"].as_str())
            .collect();
        assert_eq!(calls, ["lookup", "exec"], "{out}");
        // Only built-in tools: none are offered.
        let out = translate(
            json!({"input": "x", "tools": [{"type": "web_search"}], "parallel_tool_calls": true}),
        );
        assert!(out.get("tools").is_none(), "{out}");
        assert!(out.get("parallel_tool_calls").is_none(), "{out}");
        for built_in in [
            "web_search",
            "web_search_2025_08_26",
            "file_search",
            "mcp",
            "shell",
            "apply_patch",
        ] {
            assert!(is_built_in(built_in), "{built_in}");
        }
        for other in ["web_searcher", "web_search_x", "shell_", "function"] {
            assert!(!is_built_in(other), "{other}");
        }
    }

    #[test]
    fn what_is_ignored_is_accepted() {
        let out = translate(
            json!({"model": "gpt-5", "input": "x", "store": false, "background": false,
            "truncation": "disabled", "metadata": {"a": "b"}, "max_tool_calls": 3,
            "include": ["reasoning.encrypted_content"], "stream_options": {"include_obfuscation": true},
            "client_metadata": {"x": "y"}, "instructions": ""}),
        );
        assert_eq!(
            out,
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})
        );
    }

    #[test]
    fn codex_items_as_codex_writes_them() {
        let out = translate(json!({"input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<permissions>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "reasoning", "summary": [], "content": null, "encrypted_content": "enc0"},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "short"}],
             "content": [{"type": "reasoning_text", "text": "long"}, {"type": "reasoning_text", "text": "er"}],
             "encrypted_content": "enc1"},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "more"}], "encrypted_content": "enc2"},
            {"type": "message", "role": "assistant", "phase": "commentary", "end_turn": false,
             "content": [{"type": "input_text", "text": "Looking."}]},
            {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "dropped"}], "encrypted_content": "enc3"},
            {"type": "message", "role": "user", "content": [{"type": "output_text", "text": "next"}]}
        ]}));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "system", "content": "<permissions>"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": "Looking.",
                 "reasoning_content": "long\n\ner\n\nmore",
                 "thinking_blocks": [
                     {"type": "thinking", "thinking": "long\n\ner", "signature": "enc1"},
                     {"type": "thinking", "thinking": "more", "signature": "enc2"}
                 ],
                 "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "shell", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": "next"}]}
            ])
        );
    }

    #[test]
    fn malformed_bodies_are_refused_not_panicked_on() {
        for body in [
            &b""[..],
            b"[]",
            b"{",
            br#"{"input":[3]}"#,
            br#"{"input":[{}]}"#,
            br#"{"input":[{"role":"user","content":[3]}]}"#,
            br#"{"input":[{"role":"user","content":[{}]}]}"#,
            br#"{"input":[{"role":"user"}]}"#,
            br#"{"input":"x","tools":[{"name":"f"}]}"#,
            br#"{"input":"x","tools":[{"type":"function"}]}"#,
            br#"{"input":"x","tool_choice":{"type":"function"}}"#,
            br#"{"input":"x","temperature":"hot"}"#,
            br#"{"input":[{"type":"reasoning","encrypted_content":"e","summary":[{"type":"x"}]}]}"#,
        ] {
            assert!(
                matches!(
                    request(body, "m", Target::Chat),
                    Err(TranslateError::Invalid { .. })
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
