//! An Anthropic Messages request, for an OpenAI-compatible upstream: the
//! chat completions request that asks the same ([`request`]).
//!
//! What maps, and how:
//!
//! - `system` (a string or text blocks) → one `system` message first.
//! - A turn's content (a string or blocks): `text` → text; `image` → an
//!   `image_url` part (base64 → a `data:` URL, `url` → the URL); an
//!   assistant's `tool_use` → its `tool_calls` (`input` → `arguments`, the
//!   JSON text as the client wrote it; a Gemini thought signature its `id`
//!   carries → the call's `extra_content`, the id and the results' ids
//!   without it: [`crate::formats::thought`]); a user's `tool_result`s → one `tool`
//!   message each, in order, before the rest of that turn (OpenAI wants a
//!   call's results right after the call). Content of text only (in any
//!   role, `system` and tool results too) is one string, several text
//!   blocks joined by a blank line: the one shape every OpenAI-compatible
//!   server reads (several refuse arrays for `system` or `tool` content,
//!   and Anthropic clients send `system` as blocks). Content with images is
//!   parts, each text block its own part.
//! - `tool_result.is_error` has no OpenAI counterpart and is not sent: the
//!   result's own text (where tools write their error) is what the model
//!   reads either way. A result's images (Claude Code's Read of an image
//!   file) cannot ride in its `tool` message, which carries text only: they
//!   go in the user message that follows the turn's tool messages, after a
//!   line naming the call they came from (and a result of images only says
//!   so in its `tool` message).
//! - `thinking` and `redacted_thinking` blocks of earlier turns are left
//!   out: their signatures can only be checked by Anthropic, and chat
//!   completions have no input for earlier reasoning.
//! - `cache_control` (anywhere) and a text block's `citations` are hints
//!   with no OpenAI counterpart (OpenAI caches prompts by itself): left out.
//! - `tools` (`name`, `description`, `input_schema` → `parameters`, `strict`)
//!   → function tools; `tool_choice` `auto` → `"auto"`, `any` →
//!   `"required"`, `tool` → the named function, `none` → `"none"`;
//!   `disable_parallel_tool_use: true` → `parallel_tool_calls: false`.
//! - `max_tokens` → `max_tokens`, which every OpenAI-compatible server
//!   reads (`max_completion_tokens` is OpenAI's newer name and several
//!   servers do not know it); when the client asks for reasoning (`thinking`
//!   enabled, or an `output_config.effort`), or the upstream model is one
//!   of OpenAI's reasoning models by name (`o3`, `gpt-5`, …:
//!   [`chat::caps_completion_tokens_only`]), it is sent as
//!   `max_completion_tokens` instead, which those models require and which
//!   counts the reasoning as Anthropic's `max_tokens` does.
//! - `thinking: {"type": "enabled", "budget_tokens": n}` → `reasoning_effort`
//!   by [`effort_for_budget`]; `disabled` and `adaptive` send nothing (the
//!   upstream's own default). `output_config.effort` (`low`, `medium`,
//!   `high`) → `reasoning_effort` as it is, winning over a budget's;
//!   `output_config.format` (`json_schema`) → `response_format` with that
//!   schema, `strict` (Anthropic's structured outputs are guaranteed).
//! - `stop_sequences` → `stop` (all of them: OpenAI takes at most 4 and
//!   refuses more itself, other servers take more); `temperature`, `top_p` as sent; `top_k` is
//!   sent as `top_k`, which vLLM, Together, Fireworks and OpenRouter read
//!   and OpenAI refuses (the client then hears the upstream's refusal rather
//!   than have it dropped); `metadata.user_id` → `user`; `service_tier` is a
//!   scheduling hint, left out.
//! - `context_management` (Anthropic clearing old tool results or thinking
//!   from the context it keeps, which Claude Code sends on every request) is
//!   left out: an OpenAI-compatible upstream edits no context, so the model
//!   reads the whole conversation the client sent, as it would without the
//!   edits; what changes is only how many prompt tokens it costs (a prompt
//!   grown past the window gets the upstream's own context-length error,
//!   and `context_window_fallbacks`).
//! - `stream: true` → `stream: true` with `stream_options.include_usage`, so
//!   the stream ends with its usage (for the client's `message_delta` and
//!   for metering).
//!
//! - A `document` block: a base64 PDF → a `file` part (`file_data`, the
//!   `title` as its file name), which OpenAI's chat completions read; a
//!   plain-text document → its text; its `context` → text before it;
//!   `citations` left out (chat answers carry none). In a tool result a PDF
//!   follows the tool messages, as an image does. A document by URL or
//!   file id needs a store the upstream does not share: refused.
//!
//! Anything else (a `search_result` or server-tool block, a server tool
//! such as `web_search`, a member or parameter not named here) is refused
//! with [`TranslateError::Invalid`] naming it: never dropped.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::TranslateError;
use super::types::{
    Content, ContentBlock, DocumentBlock, Extra, InputMessage, MessagesRequest, OutputConfig,
    RawJson, Role, Source, Thinking, Tool, ToolChoice, borrow_opt,
};
use crate::formats::{chat, moved, thought};

/// The chat completions request (JSON) for Anthropic's `messages_body`, for
/// the model `upstream_model`.
pub fn request(messages_body: &[u8], upstream_model: &str) -> Result<Vec<u8>, TranslateError> {
    let request: MessagesRequest = serde_json::from_slice(messages_body).map_err(|e| {
        invalid(
            None,
            &format!("the request body is not a valid Messages request: {e}"),
        )
    })?;
    // `service_tier` is a scheduling hint and `context_management` edits a
    // context only Anthropic keeps: both left out (see the module doc).
    no_other(&request.extra, &["context_management"], "")?;
    let Some(max_tokens) = request.max_tokens else {
        return Err(invalid(Some("max_tokens"), "max_tokens: Field required"));
    };
    if let Some(metadata) = &request.metadata {
        no_other(&metadata.extra, &[], "metadata")?;
    }
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = &request.system {
        messages.push(MessageOut::System {
            content: system_content(system)?,
        });
    }
    for (i, message) in request.messages.iter().enumerate() {
        translate_message(message, i, &mut messages)?;
    }
    let thinking = thinking_effort(request.thinking.as_ref())?;
    let (response_format, effort) = output_config(request.output_config.as_ref())?;
    let tools = match &request.tools {
        Some(tools) => Some(
            tools
                .iter()
                .enumerate()
                .map(|(i, tool)| tool_out(tool, i))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let has_tools = tools.as_ref().is_some_and(|t| !t.is_empty());
    let (tool_choice, parallel_tool_calls) = match &request.tool_choice {
        Some(choice) => tool_choice_out(choice, has_tools)?,
        None => (None, None),
    };
    let streaming = request.stream == Some(true);
    let reasoning = thinking.enabled || effort.is_some();
    let (max_tokens, max_completion_tokens) =
        chat::token_cap(upstream_model, Some(max_tokens), reasoning);
    let out = ChatOut {
        model: upstream_model,
        messages,
        max_tokens,
        max_completion_tokens,
        stop: request.stop_sequences.as_deref().filter(|s| !s.is_empty()),
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.top_k,
        stream: request.stream,
        stream_options: streaming.then_some(StreamOptionsOut {
            include_usage: true,
        }),
        tools,
        tool_choice,
        parallel_tool_calls,
        // An explicit effort wins over one derived from a budget.
        reasoning_effort: effort.or(thinking.effort),
        response_format,
        user: request.metadata.as_ref().and_then(|m| m.user_id.as_deref()),
    };
    let mut body = Vec::with_capacity(messages_body.len() + 128);
    serde_json::to_writer(&mut body, &out)
        .map_err(|e| invalid(None, &format!("the request could not be written: {e}")))?;
    Ok(body)
}

/// `reasoning_effort` for a thinking budget: the inverse of the other
/// direction's table ([`super::from_chat::thinking_budget`]: `low` 1024,
/// `medium` 2048, `high` 4096 tokens): below 2048 `low`, below 4096
/// `medium`, else `high` (not `xhigh`, which few OpenAI-compatible servers
/// know).
pub fn effort_for_budget(budget_tokens: u64) -> &'static str {
    match budget_tokens {
        0..2048 => "low",
        2048..4096 => "medium",
        _ => "high",
    }
}

// ---- What is written: the chat completions request. ----

#[derive(Serialize)]
struct ChatOut<'a> {
    model: &'a str,
    messages: Vec<MessageOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<&'a [Cow<'a, str>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptionsOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<ToolOut<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormatOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
}

#[derive(Serialize)]
struct ResponseFormatOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    json_schema: JsonSchemaOut<'a>,
}

#[derive(Serialize)]
struct JsonSchemaOut<'a> {
    name: &'static str,
    schema: &'a RawValue,
    strict: bool,
}

#[derive(Serialize)]
struct StreamOptionsOut {
    include_usage: bool,
}

#[derive(Serialize)]
#[serde(tag = "role", rename_all = "snake_case")]
enum MessageOut<'a> {
    System {
        content: ContentOut<'a>,
    },
    User {
        content: ContentOut<'a>,
    },
    Assistant {
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<ContentOut<'a>>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCallOut<'a>>,
    },
    Tool {
        tool_call_id: Cow<'a, str>,
        content: ContentOut<'a>,
    },
}

#[derive(Serialize)]
#[serde(untagged)]
enum ContentOut<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<PartOut<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum PartOut<'a> {
    Text { text: Cow<'a, str> },
    ImageUrl { image_url: ImageUrlOut<'a> },
    File { file: FileOut<'a> },
}

#[derive(Serialize)]
struct FileOut<'a> {
    filename: Cow<'a, str>,
    file_data: String,
}

#[derive(Serialize)]
struct ImageUrlOut<'a> {
    url: Cow<'a, str>,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    id: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionCallOut<'a>,
    /// Gemini's thought signature, from the id it travelled in.
    #[serde(skip_serializing_if = "Option::is_none")]
    extra_content: Option<thought::ExtraContentOut>,
}

#[derive(Serialize)]
struct FunctionCallOut<'a> {
    name: Cow<'a, str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct ToolOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Cow<'a, str>>,
    parameters: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ToolChoiceOut<'a> {
    Mode(&'static str),
    Named {
        #[serde(rename = "type")]
        kind: &'static str,
        function: NameOut<'a>,
    },
}

#[derive(Serialize)]
struct NameOut<'a> {
    name: Cow<'a, str>,
}

// ---- The translation. ----

fn invalid(param: Option<&str>, message: &str) -> TranslateError {
    TranslateError::Invalid {
        param: param.map(str::to_owned),
        message: message.to_owned(),
    }
}

fn cannot(at: &str, what: &str) -> TranslateError {
    invalid(
        Some(at),
        &format!("{at}: {what} cannot be sent to this model's OpenAI-compatible deployment"),
    )
}

/// Refuses the first member of `extra` not in `hints` (members known to be
/// hints with no OpenAI counterpart, left out).
fn no_other(extra: &Extra, hints: &[&str], at: &str) -> Result<(), TranslateError> {
    match extra.keys().find(|k| !hints.contains(&k.as_str())) {
        None => Ok(()),
        Some(name) => {
            let param = if at.is_empty() {
                name.clone()
            } else {
                format!("{at}.{name}")
            };
            Err(cannot(&param, &format!("`{name}`")))
        }
    }
}

/// The `type` of a block kept raw.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", default, borrow, deserialize_with = "borrow_opt")]
    kind: Option<Cow<'a, str>>,
}

fn other_kind(raw: &RawJson<'_>) -> String {
    raw.parse::<Head>()
        .ok()
        .and_then(|h| h.kind.map(Cow::into_owned))
        .unwrap_or_default()
}

const CACHE: &[&str] = &["cache_control"];
const TEXT_HINTS: &[&str] = &["cache_control", "citations"];

fn system_content<'a>(system: &'a Content<'a>) -> Result<ContentOut<'a>, TranslateError> {
    match system {
        Content::Text(text) => Ok(ContentOut::Text(Cow::Borrowed(text))),
        Content::Blocks(blocks) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (j, block) in blocks.iter().enumerate() {
                let at = format!("system[{j}]");
                parts.push(text_only(block, &at, "`system`")?);
            }
            Ok(texts(parts))
        }
    }
}

/// A block that may only be text (in `system`, in a tool result).
fn text_only<'a>(
    block: &'a ContentBlock<'a>,
    at: &str,
    place: &str,
) -> Result<PartOut<'a>, TranslateError> {
    match block {
        ContentBlock::Text(text) => {
            no_other(&text.extra, TEXT_HINTS, at)?;
            Ok(PartOut::Text {
                text: Cow::Borrowed(&text.text),
            })
        }
        other => Err(cannot(
            at,
            &format!("a `{}` block in {place}", block_kind(other)),
        )),
    }
}

fn block_kind(block: &ContentBlock<'_>) -> String {
    match block {
        ContentBlock::Text(_) => "text".into(),
        ContentBlock::Image(_) => "image".into(),
        ContentBlock::Document(_) => "document".into(),
        ContentBlock::ToolUse(_) => "tool_use".into(),
        ContentBlock::ToolResult(_) => "tool_result".into(),
        ContentBlock::Thinking(_) => "thinking".into(),
        ContentBlock::RedactedThinking(_) => "redacted_thinking".into(),
        ContentBlock::Other(raw) => other_kind(raw),
    }
}

/// Content of text parts only: one string, the blocks' texts joined by a
/// blank line (see the module's doc).
fn texts(mut parts: Vec<PartOut<'_>>) -> ContentOut<'_> {
    if parts.len() == 1
        && let Some(PartOut::Text { text }) = parts.pop()
    {
        return ContentOut::Text(text);
    }
    let mut joined = String::new();
    for part in &parts {
        if let PartOut::Text { text } = part {
            if !joined.is_empty() {
                joined.push_str("\n\n");
            }
            joined.push_str(text);
        }
    }
    ContentOut::Text(Cow::Owned(joined))
}

fn translate_message<'a>(
    message: &'a InputMessage<'a>,
    i: usize,
    out: &mut Vec<MessageOut<'a>>,
) -> Result<(), TranslateError> {
    no_other(&message.extra, &[], &format!("messages[{i}]"))?;
    let user = message.role == Role::User;
    let blocks = match &message.content {
        Content::Text(text) => {
            let content = ContentOut::Text(Cow::Borrowed(text));
            out.push(if user {
                MessageOut::User { content }
            } else {
                MessageOut::Assistant {
                    content: Some(content),
                    tool_calls: Vec::new(),
                }
            });
            return Ok(());
        }
        Content::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    let mut has_image = false;
    let mut tool_calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("messages[{i}].content[{j}]");
        match (block, user) {
            (ContentBlock::Text(text), _) => {
                no_other(&text.extra, TEXT_HINTS, &at)?;
                parts.push(PartOut::Text {
                    text: Cow::Borrowed(&text.text),
                });
            }
            (ContentBlock::Image(image), true) => {
                no_other(&image.extra, CACHE, &at)?;
                parts.push(PartOut::ImageUrl {
                    image_url: ImageUrlOut {
                        url: image_url(&image.source, &at)?,
                    },
                });
                has_image = true;
            }
            (ContentBlock::Document(document), true) => {
                has_image |= document_parts(document, &at, &mut parts)?;
            }
            (ContentBlock::ToolResult(result), true) => {
                // `is_error` has no counterpart: see the module's doc.
                no_other(&result.extra, CACHE, &at)?;
                let (content, images) = tool_result_content(result.content.as_ref(), &at)?;
                let call_id = thought::own_id(&result.tool_use_id);
                out.push(MessageOut::Tool {
                    tool_call_id: Cow::Borrowed(call_id),
                    content,
                });
                if !images.is_empty() {
                    parts.push(PartOut::Text {
                        text: Cow::Owned(moved::heading(
                            media_noun(&images),
                            images.len(),
                            call_id,
                        )),
                    });
                    parts.extend(images);
                    has_image = true;
                }
            }
            (ContentBlock::ToolUse(call), false) => {
                no_other(&call.extra, CACHE, &at)?;
                let (id, extra_content) = thought::split(&call.id);
                tool_calls.push(ToolCallOut {
                    id: Cow::Borrowed(id),
                    kind: "function",
                    function: FunctionCallOut {
                        name: Cow::Borrowed(&call.name),
                        arguments: call.input.get(),
                    },
                    extra_content,
                });
            }
            // Earlier turns' thinking: left out (see the module's doc).
            (ContentBlock::Thinking(_) | ContentBlock::RedactedThinking(_), false) => {}
            (other, _) => {
                let role = if user { "user" } else { "assistant" };
                return Err(cannot(
                    &at,
                    &format!("a `{}` block in a {role} turn", block_kind(other)),
                ));
            }
        }
    }
    let content = if parts.is_empty() {
        None
    } else if has_image {
        Some(ContentOut::Parts(parts))
    } else {
        Some(texts(parts))
    };
    if user {
        if let Some(content) = content {
            out.push(MessageOut::User { content });
        } else if blocks.is_empty() {
            out.push(MessageOut::User {
                content: ContentOut::Parts(Vec::new()),
            });
        }
    } else if content.is_some() || !tool_calls.is_empty() || blocks.is_empty() {
        out.push(MessageOut::Assistant {
            content,
            tool_calls,
        });
    }
    Ok(())
}

/// A `document` block's parts: a base64 PDF → a `file` part (OpenAI's
/// chat completions read PDFs given as `file_data`), a plain-text document
/// → its text; its `context`, when given, as text before it; its `title`
/// names the file. Whether it made a part other than text.
fn document_parts<'a>(
    document: &'a DocumentBlock<'a>,
    at: &str,
    out: &mut Vec<PartOut<'a>>,
) -> Result<bool, TranslateError> {
    no_other(&document.extra, DOCUMENT_HINTS, at)?;
    let text_of = |key: &str| document.extra.get(key).and_then(Value::as_str);
    if let Some(context) = text_of("context") {
        out.push(PartOut::Text {
            text: Cow::Borrowed(context),
        });
    }
    let source = &document.source;
    let source_at = format!("{at}.source");
    let readable = matches!(
        (&*source.kind, source.media_type.as_deref()),
        ("base64", Some("application/pdf")) | ("text", _)
    );
    if readable {
        no_other(&source.extra, &[], &source_at)?;
    }
    match (&*source.kind, source.media_type.as_deref(), &source.data) {
        ("base64", Some("application/pdf"), Some(data)) => {
            out.push(PartOut::File {
                file: FileOut {
                    filename: Cow::Borrowed(text_of("title").unwrap_or("document.pdf")),
                    file_data: format!("data:application/pdf;base64,{data}"),
                },
            });
            Ok(true)
        }
        ("text", _, Some(data)) => {
            out.push(PartOut::Text {
                text: Cow::Borrowed(data),
            });
            Ok(false)
        }
        (kind, media_type, _) => Err(cannot(
            &source_at,
            &format!(
                "a document of source `{kind}`{} (a base64 PDF or plain text can be)",
                media_type.map(|m| format!(" ({m})")).unwrap_or_default()
            ),
        )),
    }
}

/// A document's members with no chat counterpart beyond what
/// [`document_parts`] makes of them.
const DOCUMENT_HINTS: &[&str] = &["cache_control", "citations", "title", "context"];

fn image_url<'a>(source: &'a Source<'a>, at: &str) -> Result<Cow<'a, str>, TranslateError> {
    let at = format!("{at}.source");
    no_other(&source.extra, &[], &at)?;
    match &*source.kind {
        "base64" => match (&source.media_type, &source.data) {
            (Some(media_type), Some(data)) => {
                Ok(Cow::Owned(format!("data:{media_type};base64,{data}")))
            }
            _ => Err(invalid(
                Some(&at),
                &format!("{at}: a base64 image needs `media_type` and `data`"),
            )),
        },
        "url" => source.url.as_deref().map(Cow::Borrowed).ok_or_else(|| {
            invalid(
                Some(&format!("{at}.url")),
                &format!("{at}: a url image needs `url`"),
            )
        }),
        other => Err(cannot(&at, &format!("an image of source `{other}`"))),
    }
}

/// A tool result's text, for its `tool` message, and its images, for the
/// user message after.
fn tool_result_content<'a>(
    content: Option<&'a Content<'a>>,
    at: &str,
) -> Result<(ContentOut<'a>, Vec<PartOut<'a>>), TranslateError> {
    let blocks = match content {
        None => return Ok((ContentOut::Text(Cow::Borrowed("")), Vec::new())),
        Some(Content::Text(text)) => {
            return Ok((ContentOut::Text(Cow::Borrowed(text)), Vec::new()));
        }
        Some(Content::Blocks(blocks)) => blocks,
    };
    let mut parts = Vec::with_capacity(blocks.len());
    let mut images = Vec::new();
    for (k, block) in blocks.iter().enumerate() {
        let at = format!("{at}.content[{k}]");
        match block {
            ContentBlock::Image(image) => {
                no_other(&image.extra, CACHE, &at)?;
                images.push(PartOut::ImageUrl {
                    image_url: ImageUrlOut {
                        url: image_url(&image.source, &at)?,
                    },
                });
            }
            // A PDF goes with the images; a text document stays text.
            ContentBlock::Document(document) => {
                let mut out = Vec::new();
                if document_parts(document, &at, &mut out)? {
                    images.extend(out);
                } else {
                    parts.extend(out);
                }
            }
            other => parts.push(text_only(other, &at, "a tool result")?),
        }
    }
    let text = match (parts.is_empty(), images.is_empty()) {
        (false, _) => texts(parts),
        (true, true) => ContentOut::Text(Cow::Borrowed("")),
        (true, false) => ContentOut::Text(Cow::Borrowed(moved::placeholder(media_noun(&images)))),
    };
    Ok((text, images))
}

/// What a tool result's parts moved to the next message are called.
fn media_noun(parts: &[PartOut<'_>]) -> &'static str {
    if parts.iter().all(|p| matches!(p, PartOut::ImageUrl { .. })) {
        "image"
    } else {
        "file"
    }
}

fn tool_out<'a>(tool: &'a Tool<'a>, i: usize) -> Result<ToolOut<'a>, TranslateError> {
    let at = format!("tools[{i}]");
    if let Some(kind) = tool.kind.as_deref()
        && kind != "custom"
    {
        return Err(cannot(&at, &format!("the server tool `{kind}`")));
    }
    no_other(&tool.extra, &["cache_control", "strict"], &at)?;
    let Some(schema) = &tool.input_schema else {
        return Err(invalid(
            Some(&format!("{at}.input_schema")),
            &format!("{at}: a tool needs its `input_schema`"),
        ));
    };
    let strict = match tool.extra.get("strict") {
        None => None,
        Some(Value::Bool(strict)) => Some(*strict),
        Some(_) => {
            return Err(invalid(
                Some(&format!("{at}.strict")),
                &format!("{at}.strict: must be a boolean"),
            ));
        }
    };
    Ok(ToolOut {
        kind: "function",
        function: FunctionOut {
            name: Cow::Borrowed(&tool.name),
            description: tool.description.as_deref().map(Cow::Borrowed),
            parameters: &schema.0,
            strict,
        },
    })
}

type ChoiceOut<'a> = (Option<ToolChoiceOut<'a>>, Option<bool>);

fn tool_choice_out<'a>(
    choice: &'a ToolChoice<'a>,
    has_tools: bool,
) -> Result<ChoiceOut<'a>, TranslateError> {
    no_other(&choice.extra, &[], "tool_choice")?;
    let mode = match &*choice.kind {
        "auto" => ToolChoiceOut::Mode("auto"),
        "any" => ToolChoiceOut::Mode("required"),
        "none" => ToolChoiceOut::Mode("none"),
        "tool" => {
            let Some(name) = &choice.name else {
                return Err(invalid(
                    Some("tool_choice.name"),
                    "tool_choice: `tool` needs the `name` of the tool",
                ));
            };
            ToolChoiceOut::Named {
                kind: "function",
                function: NameOut {
                    name: Cow::Borrowed(name),
                },
            }
        }
        other => {
            return Err(cannot(
                "tool_choice.type",
                &format!("the tool choice `{other}`"),
            ));
        }
    };
    // OpenAI refuses `parallel_tool_calls` without tools.
    let parallel = (choice.disable_parallel_tool_use == Some(true) && has_tools).then_some(false);
    Ok((Some(mode), parallel))
}

struct ThinkingOut {
    enabled: bool,
    effort: Option<&'static str>,
}

fn thinking_effort(thinking: Option<&Thinking<'_>>) -> Result<ThinkingOut, TranslateError> {
    let off = ThinkingOut {
        enabled: false,
        effort: None,
    };
    let Some(thinking) = thinking else {
        return Ok(off);
    };
    no_other(&thinking.extra, &[], "thinking")?;
    match &*thinking.kind {
        "enabled" => {
            let budget = thinking.budget_tokens.ok_or_else(|| {
                invalid(
                    Some("thinking.budget_tokens"),
                    "thinking: `enabled` needs `budget_tokens`",
                )
            })?;
            Ok(ThinkingOut {
                enabled: true,
                effort: Some(effort_for_budget(budget)),
            })
        }
        "disabled" | "adaptive" => Ok(off),
        other => Err(cannot(
            "thinking.type",
            &format!("thinking of type `{other}`"),
        )),
    }
}

/// `output_config`: `format` (a JSON schema) → `response_format`, `effort`
/// → `reasoning_effort` (the same names: `low`, `medium`, `high`).
fn output_config<'a>(
    config: Option<&'a OutputConfig<'a>>,
) -> Result<(Option<ResponseFormatOut<'a>>, Option<&'a str>), TranslateError> {
    let Some(config) = config else {
        return Ok((None, None));
    };
    no_other(&config.extra, &["effort"], "output_config")?;
    let effort = match config.extra.get("effort") {
        None => None,
        Some(Value::String(effort)) if matches!(effort.as_str(), "low" | "medium" | "high") => {
            Some(effort.as_str())
        }
        Some(other) => {
            return Err(cannot(
                "output_config.effort",
                &format!("the effort {other}"),
            ));
        }
    };
    let format = match &config.format {
        None => None,
        Some(format) => {
            no_other(&format.extra, &[], "output_config.format")?;
            match (&*format.kind, &format.schema) {
                ("json_schema", Some(schema)) => Some(ResponseFormatOut {
                    kind: "json_schema",
                    json_schema: JsonSchemaOut {
                        name: "output",
                        schema: &schema.0,
                        strict: true,
                    },
                }),
                (kind, _) => {
                    return Err(cannot(
                        "output_config.format",
                        &format!("the output format `{kind}` (without a schema?)"),
                    ));
                }
            }
        }
    };
    Ok((format, effort))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn translate(body: Value) -> Value {
        let out = request(body.to_string().as_bytes(), "gpt-4o").unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    fn refused(body: Value) -> (Option<String>, String) {
        match request(body.to_string().as_bytes(), "gpt-4o") {
            Err(TranslateError::Invalid { param, message }) => (param, message),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_plain_message_gains_nothing() {
        let out = request(
            br#"{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"Hello, Claude"}]}"#,
            "gpt-4o",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hello, Claude"}],"max_tokens":1024}"#
        );
    }

    /// Requests written from Anthropic's Messages reference, translated;
    /// each reviewed in its snapshot.
    #[test]
    fn fixtures() {
        let weather = json!({"name": "get_weather", "description": "Get the current weather in a given location",
            "input_schema": {"type": "object", "properties": {"location": {"type": "string",
                "description": "The city and state, e.g. San Francisco, CA"}}, "required": ["location"]},
            "cache_control": {"type": "ephemeral"}});
        let time = json!({"type": "custom", "name": "get_time", "input_schema": {"type": "object", "properties": {}}, "strict": true});
        let ask =
            json!([{"role": "user", "content": "What is the weather like in San Francisco?"}]);
        let fixtures = [
            (
                "system_as_blocks",
                json!({
                    "model": "claude-sonnet-4-5", "max_tokens": 1024,
                    "system": [
                        {"type": "text", "text": "You are a helpful assistant.", "cache_control": {"type": "ephemeral"}},
                        {"type": "text", "text": "Answer in French."}
                    ],
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
                    "temperature": 0.2, "top_p": 0.9, "top_k": 40,
                    "metadata": {"user_id": "13803d75-b4b5-4c3e-b2a2-6f21399b021b"},
                    "service_tier": "auto"
                }),
            ),
            (
                "images_base64_and_url",
                json!({
                    "model": "claude-sonnet-4-5", "max_tokens": 1024,
                    "messages": [{"role": "user", "content": [
                        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
                        {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/a.jpg"}},
                        {"type": "text", "text": "Compare these images."}
                    ]}]
                }),
            ),
            (
                "tool_choice_auto_disable_parallel",
                json!({
                    "model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": ask,
                    "tools": [weather, time], "tool_choice": {"type": "auto", "disable_parallel_tool_use": true}
                }),
            ),
            (
                "tool_choice_any",
                json!({
                    "model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": ask,
                    "tools": [weather], "tool_choice": {"type": "any"}
                }),
            ),
            (
                "tool_choice_tool",
                json!({
                    "model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": ask,
                    "tools": [weather], "tool_choice": {"type": "tool", "name": "get_weather"}
                }),
            ),
            (
                "tool_choice_none",
                json!({
                    "model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": ask,
                    "tools": [weather], "tool_choice": {"type": "none"}
                }),
            ),
            (
                "multi_turn_tool_use_and_results",
                json!({
                    "model": "claude-sonnet-4-5", "max_tokens": 1024, "tools": [weather],
                    "messages": [
                        {"role": "user", "content": "What's the weather in SF and NYC?"},
                        {"role": "assistant", "content": [
                            {"type": "thinking", "thinking": "Two cities, two calls.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"},
                            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"},
                            {"type": "text", "text": "I'll check both."},
                            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"location": "San Francisco, CA"}},
                            {"type": "tool_use", "id": "toolu_01B09q90qw90lq917835lq9", "name": "get_weather", "input": {"location": "New York, NY"}}
                        ]},
                        {"role": "user", "content": [
                            {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"},
                            {"type": "tool_result", "tool_use_id": "toolu_01B09q90qw90lq917835lq9", "is_error": true,
                             "content": [{"type": "text", "text": "Error: "}, {"type": "text", "text": "service unavailable"}]},
                            {"type": "text", "text": "Also, is it sunny?"}
                        ]},
                        {"role": "assistant", "content": "SF is 15 degrees; NYC could not be read."}
                    ]
                }),
            ),
            (
                "stop_sequences_and_stream",
                json!({
                    "model": "claude-sonnet-4-5", "max_tokens": 256, "messages": ask,
                    "stop_sequences": ["\n\nHuman:", "END"], "stream": true
                }),
            ),
            (
                "thinking_and_structured_output",
                json!({
                    "model": "claude-sonnet-4-5", "max_tokens": 16000, "messages": ask,
                    "thinking": {"type": "enabled", "budget_tokens": 10000},
                    "output_config": {"format": {"type": "json_schema", "schema": {"type": "object",
                        "properties": {"temperature": {"type": "number"}}, "required": ["temperature"],
                        "additionalProperties": false}}}
                }),
            ),
        ];
        for (name, body) in fixtures {
            insta::assert_json_snapshot!(name, translate(body));
        }
    }

    #[test]
    fn tool_results_come_first_and_one_per_result() {
        let out = translate(json!({
            "model": "m", "max_tokens": 10,
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Two calls.", "signature": "sig"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "w", "input": {"city": "Rome"}}
                ]},
                {"role": "user", "content": [
                    {"type": "text", "text": "Here:"},
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
                     "content": [{"type": "text", "text": "timeout"}]}
                ]}
            ]
        }));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "toolu_2", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Rome\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "timeout"},
                {"role": "user", "content": "Here:"}
            ])
        );
    }

    /// A request the way Claude Code sends one (cached system blocks and
    /// tools, a user id, thinking, `context_management`, a stream) goes to
    /// an OpenAI-compatible model without what only Anthropic can do.
    #[test]
    fn an_agents_request_translates_without_context_management() {
        let body = json!({
            "model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": true,
            "system": [
                {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Work in /repo.", "cache_control": {"type": "ephemeral"}}
            ],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "List the files.", "cache_control": {"type": "ephemeral"}}
            ]}],
            "tools": [{"name": "Bash", "description": "Runs a command",
                "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
                "cache_control": {"type": "ephemeral"}}],
            "metadata": {"user_id": "user_abc_session_1"},
            "thinking": {"type": "enabled", "budget_tokens": 31999},
            "context_management": {"edits": [
                {"type": "clear_thinking_20251015", "keep": "all"},
                {"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": 100000}}
            ]}
        });
        let out = translate(body);
        assert!(out.get("context_management").is_none(), "{out}");
        assert_eq!(
            out["messages"][0]["content"],
            "You are Claude Code.\n\nWork in /repo."
        );
        assert_eq!(out["messages"][1]["content"], "List the files.");
        assert_eq!(out["tools"][0]["function"]["name"], "Bash");
        assert_eq!(out["user"], "user_abc_session_1");
        assert_eq!(out["reasoning_effort"], "high");
        assert_eq!(out["max_completion_tokens"], 32000);
        assert_eq!(out["stream_options"]["include_usage"], true);
        assert!(!out.to_string().contains("cache_control"), "{out}");
    }

    /// Documents: a base64 PDF → a `file` part named by its title, plain
    /// text → text (its `context` before it); in a tool result, a PDF
    /// follows like an image.
    #[test]
    fn documents_become_files_or_text() {
        let pdf = json!({"type": "document", "title": "report.pdf", "citations": {"enabled": true},
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}});
        let out = translate(json!({"model": "m", "max_tokens": 1, "messages": [
            {"role": "user", "content": [
                pdf,
                {"type": "document", "context": "Notes from Monday.", "source": {"type": "text", "media_type": "text/plain", "data": "Ship it."}},
                {"type": "text", "text": "Summarise both."}
            ]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [pdf]}]}
        ]}));
        let file = json!({"type": "file", "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}});
        assert_eq!(
            out["messages"][0]["content"],
            json!([file, {"type": "text", "text": "Notes from Monday."}, {"type": "text", "text": "Ship it."},
                   {"type": "text", "text": "Summarise both."}])
        );
        assert_eq!(
            out["messages"][2]["content"],
            "(a file: in the next message)"
        );
        assert_eq!(
            out["messages"][3]["content"],
            json!([{"type": "text", "text": "The file returned by tool call toolu_1:"}, file])
        );
    }

    /// A tool result's images (Claude Code reading an image file) go in the
    /// user message after the turn's tool messages, named by their call.
    #[test]
    fn tool_result_images_follow_the_tool_messages() {
        let png = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}});
        let out = translate(json!({"model": "m", "max_tokens": 1, "messages": [
            {"role": "user", "content": "Look at both."},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "a.png"}},
                {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {"file_path": "b.txt"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [png]},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "hello"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/c.png"}}]},
                {"type": "text", "text": "What do you see?"}
            ]}
        ]}));
        let messages = out["messages"].as_array().unwrap();
        let roles: Vec<&str> = messages
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(
            roles,
            ["user", "assistant", "tool", "tool", "user"],
            "{out}"
        );
        assert_eq!(messages[2]["content"], "(an image: in the next message)");
        assert_eq!(messages[3]["content"], "hello");
        assert_eq!(
            messages[4]["content"],
            json!([
                {"type": "text", "text": "The image returned by tool call toolu_1:"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "text", "text": "The image returned by tool call toolu_2:"},
                {"type": "image_url", "image_url": {"url": "https://example.com/c.png"}},
                {"type": "text", "text": "What do you see?"}
            ])
        );
    }

    #[test]
    fn what_cannot_be_expressed_is_refused_by_name() {
        let base = |content: Value| json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": content}]});
        let (param, message) = refused(base(json!([{"type": "document",
            "source": {"type": "url", "url": "https://example.com/a.pdf"}, "title": "t"}])));
        assert_eq!(param.as_deref(), Some("messages[0].content[0].source"));
        assert!(message.contains("source `url`"), "{message}");
        let (param, _) = refused(base(
            json!([{"type": "search_result", "source": "s", "title": "t", "content": []}]),
        ));
        assert_eq!(param.as_deref(), Some("messages[0].content[0]"));
        let (param, _) = refused(json!({"model": "m", "max_tokens": 1, "messages": [],
            "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]}));
        assert_eq!(param.as_deref(), Some("tools[0]"));
        let (param, _) = refused(json!({"model": "m", "max_tokens": 1, "messages": [],
            "container": "c"}));
        assert_eq!(param.as_deref(), Some("container"));
        let (param, _) = refused(base(json!([{"type": "text", "text": "x", "novel": 1}])));
        assert_eq!(param.as_deref(), Some("messages[0].content[0].novel"));
        let (param, _) = refused(json!({"model": "m", "messages": []}));
        assert_eq!(param.as_deref(), Some("max_tokens"));
        let (param, _) = refused(base(json!([{"type": "tool_result", "tool_use_id": "t",
            "content": [{"type": "document", "source": {"type": "file", "file_id": "file_1"}}]}])));
        assert_eq!(
            param.as_deref(),
            Some("messages[0].content[0].content[0].source")
        );
        let (param, _) = refused(json!({"model": "m", "max_tokens": 1, "messages": [],
            "thinking": {"type": "enabled"}}));
        assert_eq!(param.as_deref(), Some("thinking.budget_tokens"));
    }

    #[test]
    fn thinking_budgets_map_to_efforts_and_switch_the_token_cap() {
        assert_eq!(effort_for_budget(1024), "low");
        assert_eq!(effort_for_budget(2048), "medium");
        assert_eq!(effort_for_budget(4095), "medium");
        assert_eq!(effort_for_budget(32000), "high");
        // The inverse of the other direction's table (from_chat).
        for effort in ["low", "medium", "high"] {
            let budget = super::super::from_chat::thinking_budget(effort)
                .unwrap()
                .unwrap();
            assert_eq!(effort_for_budget(budget), effort);
        }
        let out = translate(json!({"model": "m", "max_tokens": 8000, "messages": [],
            "thinking": {"type": "enabled", "budget_tokens": 3000}}));
        assert_eq!(out["reasoning_effort"], "medium");
        assert_eq!(out["max_completion_tokens"], 8000);
        assert!(out.get("max_tokens").is_none());
        let out = translate(json!({"model": "m", "max_tokens": 8000, "messages": [],
            "thinking": {"type": "disabled"}}));
        assert!(out.get("reasoning_effort").is_none());
        assert_eq!(out["max_tokens"], 8000);
        // An OpenAI reasoning model takes the cap only one way, thinking
        // or not (Claude Code without thinking, in front of gpt-5).
        let body = json!({"model": "m", "max_tokens": 8000, "messages": []});
        let out: Value =
            serde_json::from_slice(&request(body.to_string().as_bytes(), "gpt-5").unwrap())
                .unwrap();
        assert_eq!(out["max_completion_tokens"], 8000, "{out}");
        assert!(out.get("max_tokens").is_none(), "{out}");
    }

    #[test]
    fn malformed_bodies_are_refused_not_panicked_on() {
        for body in [
            &b""[..],
            b"[]",
            b"{",
            br#"{"messages":{}}"#,
            br#"{"max_tokens":1,"messages":[{"role":"user","content":[3]}]}"#,
            br#"{"max_tokens":1,"messages":[{"role":"user","content":[{}]}]}"#,
            br#"{"max_tokens":1,"messages":[{"role":"system","content":"x"}]}"#,
            br#"{"max_tokens":1,"messages":[],"tools":[{"name":"x"}]}"#,
            br#"{"max_tokens":1,"messages":[],"tool_choice":{"type":"tool"}}"#,
        ] {
            assert!(
                matches!(request(body, "m"), Err(TranslateError::Invalid { .. })),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
