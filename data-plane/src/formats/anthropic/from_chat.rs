//! An OpenAI chat completions request → an Anthropic Messages request
//! ([`request`]): Claude behind the OpenAI API. Nothing the client did not
//! send is added, except what the Messages API requires (`max_tokens`, a
//! tool's `input_schema`).
//!
//! Messages:
//! - `system` and `developer` messages, wherever they are, → `system`, in
//!   order: a string for one plain text, else text blocks (a part's
//!   `cache_control` kept).
//! - `user` and `assistant` turns → turns of the same role; consecutive
//!   turns of one role are merged into one, as the Messages API requires
//!   alternation; `tool` messages → `tool_result` blocks (`tool_use_id` =
//!   `tool_call_id`) in a user turn, so they merge with the user turns
//!   around them, in order.
//! - Parts: text → text blocks (empty text, which Anthropic refuses, is
//!   left out, and a turn left with nothing is left out); `image_url` with
//!   an `http(s)` URL → an image with a `url` source, with a `data:` URL →
//!   a `base64` source and its media type (`detail` has no equivalent and is
//!   ignored); a `file` part with PDF `file_data` → a `document` block.
//!   Audio, file ids and other kinds are refused, naming the part.
//! - Assistant turns: `thinking_blocks` (LiteLLM's member, which
//!   [`super::to_chat`] writes: `{"type": "thinking", "thinking",
//!   "signature"}` and `{"type": "redacted_thinking", "data"}`) → thinking
//!   blocks first, signature intact; `reasoning_content` without them is
//!   dropped (Anthropic refuses thinking without its signature, and ignores
//!   earlier turns' thinking anyway); then text (and `refusal`), then
//!   `tool_calls` → `tool_use` blocks, `arguments` parsed into `input`
//!   (`""` reads as `{}`; anything but a JSON object is refused, naming the
//!   call).
//!
//! Parameters:
//! - `max_completion_tokens`, else `max_tokens`, else
//!   [`DEFAULT_MAX_TOKENS`](super::DEFAULT_MAX_TOKENS) → `max_tokens`.
//! - `stop` (one or several) → `stop_sequences`; `temperature`, `top_p`,
//!   `stream` as sent (Anthropic's `temperature` goes to 1, not 2: a larger
//!   one gets Anthropic's own 400); `user` (else `safety_identifier`) →
//!   `metadata.user_id`.
//! - `tools`: functions → `name`, `description`, `input_schema` (the
//!   `parameters`, or an empty object schema when there are none), `strict`;
//!   a tool's `cache_control` kept; other kinds (`custom`) refused.
//! - `tool_choice`: `auto` → `auto`, `required` → `any`, a named function →
//!   `tool`, `none` → `none` (`auto` and `none` without tools are no-ops and
//!   left out); `parallel_tool_calls: false` → `disable_parallel_tool_use:
//!   true` in it (`auto` when the client named no choice).
//! - `reasoning_effort` → `thinking: {"type": "enabled", "budget_tokens"}`
//!   by [`thinking_budget`]: `minimal` and `low` 1024 (Anthropic's
//!   minimum), `medium` 2048, `high` 4096, `xhigh` 8192; `none` → no
//!   thinking. A budget has to be below `max_tokens`: when Sluice chose one
//!   of the two (the budget from `reasoning_effort`, or the default
//!   `max_tokens`) and `max_tokens` would not exceed the budget, `max_tokens`
//!   becomes budget + `max_tokens`, so the answer keeps its room. A
//!   client's own `thinking` member passes through as it is, and wins over
//!   `reasoning_effort`.
//! - `response_format`: `json_schema` → `output_config.format: {"type":
//!   "json_schema", "schema"}` (Anthropic's structured outputs); `text` → no
//!   change; `json_object` is refused (Anthropic constrains output only to a
//!   schema).
//! - Refused, naming the parameter, as Anthropic cannot honour them and they
//!   change the answer: `n` > 1, `logprobs: true`, `top_logprobs`,
//!   `logit_bias`, `presence_penalty` / `frequency_penalty` other than 0,
//!   `audio`, `modalities` other than text, `web_search_options`, the
//!   deprecated `functions` / `function_call`.
//! - Ignored on purpose, as they do not change the answer or have no
//!   meaning upstream: `stream_options` (the translated stream always ends
//!   with its usage, which the gateway strips when it was not asked for),
//!   `store` and `metadata` (OpenAI's stored completions), `seed` (best
//!   effort at OpenAI too; Anthropic has none), `service_tier` (other
//!   tiers), `prediction` (latency only), `prompt_cache_key` and
//!   `prompt_cache_retention` (Anthropic caches by `cache_control`),
//!   `verbosity` (advice on an answer's length, for which Claude has no
//!   setting; Codex sends it, as `text.verbosity`, to models it takes for
//!   GPT-5s),
//!   `parallel_tool_calls: true` (the default), a message's `name`.
//! - Any other member passes through unchanged, so a client can reach
//!   Anthropic's own parameters (`top_k`, `thinking`, `output_config`,
//!   `context_management`, …) through an OpenAI SDK's extra body; one
//!   Anthropic does not know gets its own 400 naming it, never a silent
//!   drop.

use std::borrow::Cow;

use serde_json::{Value, json};

use super::types::{
    Content, ContentBlock, DocumentBlock, Extra, ImageBlock, InputMessage, MessagesRequest,
    Metadata, RawJson, RedactedThinkingBlock, Role, Source, TextBlock, Thinking, ThinkingBlock,
    Tool, ToolChoice, ToolResultBlock, ToolUseBlock,
};
use super::{DEFAULT_MAX_TOKENS, TranslateError};
use crate::formats::chat::{self, ChatRequest, ContentPart};

/// The thinking budget for a `reasoning_effort` (see the module doc):
/// `Ok(None)` for `none`, an error for a value not listed.
pub fn thinking_budget(effort: &str) -> Result<Option<u64>, TranslateError> {
    Ok(Some(match effort {
        "none" => return Ok(None),
        "minimal" | "low" => 1024,
        "medium" => 2048,
        "high" => 4096,
        "xhigh" => 8192,
        other => {
            return Err(TranslateError::invalid(
                "reasoning_effort",
                format!(
                    "reasoning_effort {other:?} is not one of none, minimal, low, medium, high, xhigh"
                ),
            ));
        }
    }))
}

/// Members of the request's `extra` refused: they change the answer and
/// Anthropic cannot honour them. Each is refused unless it is `null` or
/// the value that means "not used".
const REFUSED: [&str; 5] = [
    "logit_bias",
    "audio",
    "web_search_options",
    "functions",
    "function_call",
];

/// Members of the request's `extra` ignored on purpose (see the module doc).
const IGNORED: [&str; 8] = [
    "verbosity",
    "store",
    "metadata",
    "service_tier",
    "prediction",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
];

/// An OpenAI chat completions request body → the Anthropic Messages request
/// body, for `upstream_model`.
pub fn request(chat_body: &[u8], upstream_model: &str) -> Result<Vec<u8>, TranslateError> {
    let chat: ChatRequest =
        serde_json::from_slice(chat_body).map_err(|e| TranslateError::Invalid {
            param: None,
            message: format!("the request body is not a valid chat completions request: {e}"),
        })?;
    let messages = translate(&chat, upstream_model)?;
    let mut out = Vec::with_capacity(chat_body.len() + 128);
    serde_json::to_writer(&mut out, &messages).map_err(|e| TranslateError::Invalid {
        param: None,
        message: e.to_string(),
    })?;
    Ok(out)
}

fn translate<'a>(
    chat: &'a ChatRequest<'a>,
    upstream_model: &'a str,
) -> Result<MessagesRequest<'a>, TranslateError> {
    refuse_unhonoured(chat)?;
    let mut extra = chat.extra.clone();
    for name in REFUSED.iter().chain(IGNORED.iter()) {
        extra.remove(*name);
    }
    // Checked by `refuse_unhonoured`: text only.
    extra.remove("modalities");

    let (system, messages) = conversation(&chat.messages)?;

    let client_thinking = extra.contains_key("thinking");
    let client_max = chat.max_completion_tokens.or(chat.max_tokens);
    let mut max_tokens = client_max.unwrap_or(DEFAULT_MAX_TOKENS);
    let mut thinking = None;
    if let Some(effort) = chat.reasoning_effort.as_deref()
        && !client_thinking
        && let Some(budget) = thinking_budget(effort)?
    {
        thinking = Some(Thinking {
            kind: Cow::Borrowed("enabled"),
            budget_tokens: Some(budget),
            extra: Extra::new(),
        });
        if max_tokens <= budget {
            max_tokens = budget.saturating_add(max_tokens);
        }
    } else if client_thinking && client_max.is_none() {
        // The default `max_tokens` is Sluice's: make room for the client's
        // own budget.
        let budget = extra
            .get("thinking")
            .and_then(|t| t.get("budget_tokens"))
            .and_then(Value::as_u64);
        if let Some(budget) = budget
            && max_tokens <= budget
        {
            max_tokens = budget.saturating_add(max_tokens);
        }
    }

    let tools = match &chat.tools {
        Some(tools) => Some(
            tools
                .iter()
                .enumerate()
                .map(|(i, tool)| self::tool(i, tool))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let has_tools = tools.as_ref().is_some_and(|t| !t.is_empty());
    let tool_choice = tool_choice(chat, has_tools)?;

    if let Some(format) = &chat.response_format {
        output_format(format, &mut extra)?;
    }

    let user = chat
        .user
        .as_deref()
        .or_else(|| chat.extra.get("safety_identifier").and_then(Value::as_str));

    Ok(MessagesRequest {
        model: Cow::Borrowed(upstream_model),
        messages,
        system,
        max_tokens: Some(max_tokens),
        stop_sequences: chat.stop.as_ref().map(|stop| {
            stop.sequences()
                .iter()
                .map(|s| Cow::Borrowed(&**s))
                .collect()
        }),
        temperature: chat.temperature,
        top_p: chat.top_p,
        top_k: None,
        stream: chat.stream,
        tools,
        tool_choice,
        thinking,
        metadata: user.map(|user| Metadata {
            user_id: Some(Cow::Borrowed(user)),
            extra: Extra::new(),
        }),
        service_tier: None,
        output_config: None,
        extra,
    })
}

/// Refuses the parameters that change the answer and that Anthropic cannot
/// honour (see the module doc).
fn refuse_unhonoured(chat: &ChatRequest<'_>) -> Result<(), TranslateError> {
    let refuse = |param: &str, why: &str| {
        Err(TranslateError::invalid(
            param,
            format!("{param} is not supported by this model's API (Anthropic's Messages): {why}"),
        ))
    };
    if chat.n.is_some_and(|n| n > 1) {
        return refuse("n", "it gives one choice per request; send n requests");
    }
    if chat.logprobs == Some(true) {
        return refuse("logprobs", "it returns no log probabilities");
    }
    if chat.top_logprobs.is_some_and(|n| n > 0) {
        return refuse("top_logprobs", "it returns no log probabilities");
    }
    for (param, value) in [
        ("presence_penalty", chat.presence_penalty),
        ("frequency_penalty", chat.frequency_penalty),
    ] {
        if value.is_some_and(|v| v != 0.0) {
            return refuse(param, "it has no repetition penalties");
        }
    }
    if let Some(modalities) = chat.extra.get("modalities")
        && !modalities.is_null()
        && !modalities
            .as_array()
            .is_some_and(|m| m.iter().all(|m| m == "text"))
    {
        return refuse("modalities", "it answers in text only");
    }
    for param in REFUSED {
        let Some(value) = chat.extra.get(param) else {
            continue;
        };
        let unused = match value {
            Value::Null => true,
            Value::Object(map) => map.is_empty(),
            Value::Array(list) => list.is_empty(),
            _ => false,
        };
        if !unused {
            let why = match param {
                "logit_bias" => "it has no token biases",
                "audio" => "it answers in text only",
                "web_search_options" => "use Anthropic's web search tool instead",
                _ => "use tools and tool_choice instead",
            };
            return refuse(param, why);
        }
    }
    Ok(())
}

/// The system blocks and the turns, merged by role.
fn conversation<'a>(
    messages: &'a [chat::Message<'a>],
) -> Result<(Option<Content<'a>>, Vec<InputMessage<'a>>), TranslateError> {
    let mut system: Vec<ContentBlock<'a>> = Vec::new();
    let mut turns: Vec<InputMessage<'a>> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let (role, blocks) = match message {
            chat::Message::System(m) | chat::Message::Developer(m) => {
                system.extend(text_blocks(&m.content, i)?);
                continue;
            }
            chat::Message::User(m) => (Role::User, parts(&m.content, i)?),
            chat::Message::Assistant(m) => (Role::Assistant, assistant(m, i)?),
            chat::Message::Tool(m) => {
                let content = match &m.content {
                    chat::Content::Text(text) if text.is_empty() => None,
                    chat::Content::Text(text) => Some(Content::Text(Cow::Borrowed(text))),
                    content @ chat::Content::Parts(_) => Some(Content::Blocks(parts(content, i)?)),
                };
                let result = ToolResultBlock {
                    tool_use_id: Cow::Borrowed(&m.tool_call_id),
                    content,
                    is_error: None,
                    extra: Extra::new(),
                };
                (Role::User, vec![ContentBlock::ToolResult(result)])
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role == role => {
                if let Content::Blocks(existing) = &mut last.content {
                    existing.extend(blocks);
                }
            }
            _ => turns.push(InputMessage {
                role,
                content: Content::Blocks(blocks),
                extra: Extra::new(),
            }),
        }
    }
    // A turn of one plain text is written as a string.
    for turn in &mut turns {
        if let Some(text) = plain_text(&turn.content) {
            turn.content = Content::Text(text);
        }
    }
    let system = match system.len() {
        0 => None,
        _ => {
            let blocks = Content::Blocks(system);
            Some(plain_text(&blocks).map_or(blocks, Content::Text))
        }
    };
    Ok((system, turns))
}

/// The text of `content` when it is one text block with nothing else.
fn plain_text<'a>(content: &Content<'a>) -> Option<Cow<'a, str>> {
    match content {
        Content::Blocks(blocks) => match blocks.as_slice() {
            [ContentBlock::Text(t)] if t.extra.is_empty() => Some(t.text.clone()),
            _ => None,
        },
        Content::Text(_) => None,
    }
}

fn text_block<'a>(text: &'a str, part_extra: Option<&Extra>) -> ContentBlock<'a> {
    let mut extra = Extra::new();
    if let Some(cache) = part_extra.and_then(|e| e.get("cache_control")) {
        extra.insert("cache_control".to_owned(), cache.clone());
    }
    ContentBlock::Text(TextBlock {
        text: Cow::Borrowed(text),
        extra,
    })
}

/// A system message's content: text only.
fn text_blocks<'a>(
    content: &'a chat::Content<'a>,
    i: usize,
) -> Result<Vec<ContentBlock<'a>>, TranslateError> {
    let blocks = parts(content, i)?;
    if let Some(j) = blocks
        .iter()
        .position(|b| !matches!(b, ContentBlock::Text(_)))
    {
        return Err(TranslateError::invalid(
            format!("messages[{i}].content[{j}]"),
            "a system message may only hold text",
        ));
    }
    Ok(blocks)
}

/// A user or tool message's content → blocks.
fn parts<'a>(
    content: &'a chat::Content<'a>,
    i: usize,
) -> Result<Vec<ContentBlock<'a>>, TranslateError> {
    let parts = match content {
        chat::Content::Text(text) if text.is_empty() => return Ok(Vec::new()),
        chat::Content::Text(text) => return Ok(vec![text_block(text, None)]),
        chat::Content::Parts(parts) => parts,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let param = || format!("messages[{i}].content[{j}]");
        match part {
            ContentPart::Text { text, .. } if text.is_empty() => {}
            ContentPart::Text { text, extra } => blocks.push(text_block(text, Some(extra))),
            ContentPart::ImageUrl { image_url, extra } => {
                let source = source(&image_url.url, &param)?;
                let mut block_extra = Extra::new();
                if let Some(cache) = extra.get("cache_control") {
                    block_extra.insert("cache_control".to_owned(), cache.clone());
                }
                blocks.push(ContentBlock::Image(ImageBlock {
                    source,
                    extra: block_extra,
                }));
            }
            ContentPart::Other(other) => blocks.push(other_part(other, &param)?),
        }
    }
    Ok(blocks)
}

/// An image's URL → its source: `http(s)` as a URL, `data:` as base64.
fn source<'a>(url: &'a str, param: &dyn Fn() -> String) -> Result<Source<'a>, TranslateError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (media_type, data) = data_url(rest).ok_or_else(|| {
            TranslateError::invalid(
                param(),
                "a data URL must be data:<media type>;base64,<data>",
            )
        })?;
        return Ok(Source {
            kind: Cow::Borrowed("base64"),
            media_type: Some(Cow::Borrowed(media_type)),
            data: Some(Cow::Borrowed(data)),
            url: None,
            extra: Extra::new(),
        });
    }
    let lower = url
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Ok(Source {
            kind: Cow::Borrowed("url"),
            media_type: None,
            data: None,
            url: Some(Cow::Borrowed(url)),
            extra: Extra::new(),
        });
    }
    Err(TranslateError::invalid(
        param(),
        "an image URL must be http(s) or a base64 data URL",
    ))
}

/// `<media type>;base64,<data>` (what follows `data:`).
fn data_url(rest: &str) -> Option<(&str, &str)> {
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    // Parameters such as `;charset=…` before `;base64` are not a media type.
    let media_type = media_type.split(';').next()?;
    (!media_type.is_empty()).then_some((media_type, data))
}

/// A part of a kind `chat` keeps whole: a PDF `file` part → a document;
/// anything else is refused.
fn other_part<'a>(
    part: &'a Extra,
    param: &dyn Fn() -> String,
) -> Result<ContentBlock<'a>, TranslateError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    if kind == "file"
        && let Some(file) = part.get("file")
    {
        if let Some(data) = file.get("file_data").and_then(Value::as_str)
            && let Some((media_type, data)) = data.strip_prefix("data:").and_then(data_url)
            && media_type == "application/pdf"
        {
            let mut extra = Extra::new();
            if let Some(name) = file.get("filename").and_then(Value::as_str) {
                extra.insert("title".to_owned(), json!(name));
            }
            return Ok(ContentBlock::Document(DocumentBlock {
                source: Source {
                    kind: Cow::Borrowed("base64"),
                    media_type: Some(Cow::Borrowed(media_type)),
                    data: Some(Cow::Borrowed(data)),
                    url: None,
                    extra: Extra::new(),
                },
                extra,
            }));
        }
        return Err(TranslateError::invalid(
            param(),
            "only a PDF given as file_data (a base64 data URL) can be sent to this model; file ids cannot",
        ));
    }
    Err(TranslateError::invalid(
        param(),
        format!(
            "content parts of type {kind:?} are not supported by this model's API (Anthropic's Messages)"
        ),
    ))
}

/// An assistant turn → thinking blocks, text, tool uses.
fn assistant<'a>(
    m: &'a chat::AssistantMessage<'a>,
    i: usize,
) -> Result<Vec<ContentBlock<'a>>, TranslateError> {
    for param in ["audio", "function_call"] {
        if m.extra.get(param).is_some_and(|v| !v.is_null()) {
            return Err(TranslateError::invalid(
                format!("messages[{i}].{param}"),
                format!("an assistant message's {param} cannot be sent to this model"),
            ));
        }
    }
    let mut blocks = Vec::new();
    for (k, block) in m.thinking_blocks.iter().flatten().enumerate() {
        blocks.push(thinking(block).ok_or_else(|| {
            TranslateError::invalid(
                format!("messages[{i}].thinking_blocks[{k}]"),
                "a thinking block must be {\"type\": \"thinking\", \"thinking\", \"signature\"} or {\"type\": \"redacted_thinking\", \"data\"}",
            )
        })?);
    }
    match &m.content {
        None => {}
        Some(chat::Content::Text(text)) if text.is_empty() => {}
        Some(chat::Content::Text(text)) => blocks.push(text_block(text, None)),
        Some(chat::Content::Parts(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                match part {
                    ContentPart::Text { text, .. } if text.is_empty() => {}
                    ContentPart::Text { text, extra } => blocks.push(text_block(text, Some(extra))),
                    ContentPart::Other(other)
                        if other.get("type").and_then(Value::as_str) == Some("refusal") =>
                    {
                        if let Some(text) = other.get("refusal").and_then(Value::as_str)
                            && !text.is_empty()
                        {
                            blocks.push(text_block(text, None));
                        }
                    }
                    _ => {
                        return Err(TranslateError::invalid(
                            format!("messages[{i}].content[{j}]"),
                            "an assistant message may only hold text and refusal parts",
                        ));
                    }
                }
            }
        }
    }
    if m.content.is_none()
        && let Some(refusal) = m.refusal.as_deref()
        && !refusal.is_empty()
    {
        blocks.push(text_block(refusal, None));
    }
    for (j, call) in m.tool_calls.iter().flatten().enumerate() {
        let param = || format!("messages[{i}].tool_calls[{j}]");
        if call.kind != "function" {
            return Err(TranslateError::invalid(
                param(),
                format!("tool calls of type {:?} are not supported", call.kind),
            ));
        }
        let arguments = call.function.arguments.trim();
        let input = if arguments.is_empty() {
            RawJson::from_value(&json!({}))
        } else {
            let invalid = || {
                TranslateError::invalid(
                    format!("{}.function.arguments", param()),
                    format!(
                        "the arguments of tool call {:?} ({}) are not a JSON object",
                        call.id, call.function.name
                    ),
                )
            };
            if !arguments.starts_with('{') {
                return Err(invalid());
            }
            RawJson::from_string(arguments.to_owned()).map_err(|_| invalid())?
        };
        blocks.push(ContentBlock::ToolUse(ToolUseBlock {
            id: Cow::Borrowed(&call.id),
            name: Cow::Borrowed(&call.function.name),
            input,
            extra: Extra::new(),
        }));
    }
    Ok(blocks)
}

/// A LiteLLM thinking block → Anthropic's.
fn thinking(block: &Value) -> Option<ContentBlock<'_>> {
    let text = |key: &str| block.get(key).and_then(Value::as_str).map(Cow::Borrowed);
    match block.get("type").and_then(Value::as_str)? {
        "thinking" => Some(ContentBlock::Thinking(ThinkingBlock {
            thinking: text("thinking")?,
            signature: text("signature")?,
            extra: Extra::new(),
        })),
        "redacted_thinking" => Some(ContentBlock::RedactedThinking(RedactedThinkingBlock {
            data: text("data")?,
            extra: Extra::new(),
        })),
        _ => None,
    }
}

fn tool<'a>(i: usize, tool: &'a chat::Tool<'a>) -> Result<Tool<'a>, TranslateError> {
    let chat::Tool::Function { function, extra } = tool else {
        return Err(TranslateError::invalid(
            format!("tools[{i}]"),
            "only function tools are supported by this model's API (Anthropic's Messages)",
        ));
    };
    let schema = match &function.parameters {
        Some(parameters) => RawJson::from_value(parameters),
        None => RawJson::from_value(&json!({"type": "object", "properties": {}})),
    };
    let mut tool_extra = Extra::new();
    if let Some(strict) = function.strict {
        tool_extra.insert("strict".to_owned(), json!(strict));
    }
    if let Some(cache) = extra.get("cache_control") {
        tool_extra.insert("cache_control".to_owned(), cache.clone());
    }
    Ok(Tool {
        kind: None,
        name: Cow::Borrowed(&function.name),
        description: function.description.as_deref().map(Cow::Borrowed),
        input_schema: Some(schema),
        extra: tool_extra,
    })
}

fn tool_choice<'a>(
    chat: &'a ChatRequest<'a>,
    has_tools: bool,
) -> Result<Option<ToolChoice<'a>>, TranslateError> {
    let choice = |kind: &'static str, name: Option<&'a str>| ToolChoice {
        kind: Cow::Borrowed(kind),
        name: name.map(Cow::Borrowed),
        disable_parallel_tool_use: None,
        extra: Extra::new(),
    };
    let mut translated = match &chat.tool_choice {
        None => None,
        Some(chat::ToolChoice::Mode(mode)) => match &**mode {
            "auto" | "none" if !has_tools => None,
            "auto" => Some(choice("auto", None)),
            "none" => Some(choice("none", None)),
            "required" => Some(choice("any", None)),
            other => {
                return Err(TranslateError::invalid(
                    "tool_choice",
                    format!("tool_choice {other:?} is not one of none, auto, required"),
                ));
            }
        },
        Some(chat::ToolChoice::Function(named)) => Some(choice("tool", Some(&named.function.name))),
        Some(chat::ToolChoice::Other(_)) => {
            return Err(TranslateError::invalid(
                "tool_choice",
                "only none, auto, required and a named function are supported by this model's API (Anthropic's Messages)",
            ));
        }
    };
    if chat.parallel_tool_calls == Some(false) && has_tools {
        let choice = translated.get_or_insert_with(|| choice("auto", None));
        if choice.kind != "none" {
            choice.disable_parallel_tool_use = Some(true);
        }
    }
    Ok(translated)
}

/// `response_format` → `output_config.format` in `extra` (beside a
/// client's own `output_config` members).
fn output_format(format: &Value, extra: &mut Extra) -> Result<(), TranslateError> {
    let invalid = |message: &str| TranslateError::invalid("response_format", message);
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(()),
        Some("json_schema") => {
            let schema = format
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .ok_or_else(|| invalid("response_format json_schema needs json_schema.schema"))?;
            let config = extra
                .entry("output_config")
                .or_insert_with(|| Value::Object(Extra::new()));
            let Some(config) = config.as_object_mut() else {
                return Err(invalid("output_config must be an object"));
            };
            if config.contains_key("format") {
                return Err(invalid(
                    "response_format and output_config.format both set the answer's format",
                ));
            }
            config.insert(
                "format".to_owned(),
                json!({"type": "json_schema", "schema": schema}),
            );
            Ok(())
        }
        Some("json_object") => Err(invalid(
            "response_format json_object is not supported by this model's API (Anthropic's Messages), which constrains output only to a schema: use json_schema",
        )),
        _ => Err(invalid(
            "response_format must be text or json_schema for this model",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MODEL: &str = "claude-sonnet-4-5-20250929";

    fn translate(body: Value) -> Value {
        let out = request(body.to_string().as_bytes(), MODEL).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    fn refused(body: Value) -> (Option<String>, String) {
        match request(body.to_string().as_bytes(), MODEL) {
            Err(TranslateError::Invalid { param, message }) => (param, message),
            other => panic!("not refused: {body} → {other:?}"),
        }
    }

    /// Chat requests written from OpenAI's reference.
    fn requests() -> Vec<(&'static str, Value)> {
        vec![
            (
                "system_parameters_and_ignored_ones",
                json!({
                    "model": "claude-3-opus", "stream": true,
                    "stream_options": {"include_usage": true}, "seed": 42, "store": false, "verbosity": "low",
                    "metadata": {"tag": "x"}, "service_tier": "auto", "n": 1, "logprobs": false,
                    "presence_penalty": 0, "temperature": 0.2, "top_p": 0.9, "stop": "\n\nUser:",
                    "max_tokens": 300, "user": "user-123", "modalities": ["text"], "logit_bias": {},
                    "messages": [
                        {"role": "system", "content": "You are a helpful assistant."},
                        {"role": "user", "name": "ann", "content": "Hello!"}
                    ]
                }),
            ),
            (
                "several_system_messages_and_max_completion_tokens",
                json!({
                    "model": "m", "max_tokens": 100, "max_completion_tokens": 2000,
                    "stop": ["END", "STOP"],
                    "messages": [
                        {"role": "system", "content": [{"type": "text", "text": "Long shared context.", "cache_control": {"type": "ephemeral"}}]},
                        {"role": "developer", "content": "Answer in French."},
                        {"role": "user", "content": "Bonjour"}
                    ]
                }),
            ),
            (
                "tools_named_choice_no_parallel",
                json!({
                    "model": "m", "parallel_tool_calls": false,
                    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                    "tools": [
                        {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather",
                         "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
                         "strict": true}},
                        {"type": "function", "function": {"name": "get_time"}, "cache_control": {"type": "ephemeral"}}
                    ],
                    "messages": [{"role": "user", "content": "Weather in Paris?"}]
                }),
            ),
            (
                "tools_required",
                json!({
                    "model": "m", "tool_choice": "required",
                    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
                    "messages": [{"role": "user", "content": "go"}]
                }),
            ),
            (
                "images_and_a_pdf",
                json!({
                    "model": "m",
                    "messages": [{"role": "user", "content": [
                        {"type": "text", "text": "What is in these?"},
                        {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/a.jpg", "detail": "high"}},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="}},
                        {"type": "file", "file": {"filename": "paper.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQK"}},
                        {"type": "text", "text": ""}
                    ]}]
                }),
            ),
            (
                "multi_turn_tool_results_and_merges",
                json!({
                    "model": "m",
                    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
                    "messages": [
                        {"role": "user", "content": "Weather in Paris"},
                        {"role": "user", "content": "and Tokyo?"},
                        {"role": "assistant", "content": null, "tool_calls": [
                            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}},
                            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Tokyo\"}"}}
                        ]},
                        {"role": "tool", "tool_call_id": "call_1", "content": "15°C, sunny"},
                        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "22°C"}]},
                        {"role": "user", "content": "Thanks. Which is warmer?"},
                        {"role": "assistant", "content": "Tokyo."},
                        {"role": "assistant", "content": [{"type": "text", "text": "By 7°C."}]},
                        {"role": "user", "content": "ok"}
                    ]
                }),
            ),
            (
                "thinking_comes_back_with_its_signature",
                json!({
                    "model": "m", "reasoning_effort": "high", "max_completion_tokens": 1000,
                    "messages": [
                        {"role": "user", "content": "GCD of 1071 and 462?"},
                        {"role": "assistant", "content": "Let me compute.",
                         "reasoning_content": "I need the GCD.",
                         "thinking_blocks": [
                            {"type": "thinking", "thinking": "I need the GCD.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"},
                            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}
                         ],
                         "tool_calls": [{"id": "toolu_01", "type": "function", "function": {"name": "gcd", "arguments": ""}}]},
                        {"role": "tool", "tool_call_id": "toolu_01", "content": "21"}
                    ]
                }),
            ),
            (
                "reasoning_effort_with_the_default_max_tokens",
                json!({"model": "m", "reasoning_effort": "medium", "messages": [{"role": "user", "content": "hi"}]}),
            ),
            (
                "structured_output_and_anthropic_parameters",
                json!({
                    "model": "m", "top_k": 40, "context_management": {"edits": []},
                    "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "strict": true,
                        "schema": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"], "additionalProperties": false}}},
                    "messages": [{"role": "user", "content": "x?"}]
                }),
            ),
            (
                "client_thinking_passes_through",
                json!({
                    "model": "m", "reasoning_effort": "low",
                    "thinking": {"type": "enabled", "budget_tokens": 10000},
                    "messages": [{"role": "user", "content": "hi"}]
                }),
            ),
        ]
    }

    #[test]
    fn requests_translate_as_reviewed() {
        for (name, body) in requests() {
            insta::assert_json_snapshot!(format!("request_{name}"), translate(body));
        }
    }

    #[test]
    fn nothing_is_injected() {
        let out = request(
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
            MODEL,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"model":"claude-sonnet-4-5-20250929","messages":[{"role":"user","content":"hi"}],"max_tokens":4096}"#
        );
        // `auto` / `none` without tools, `parallel_tool_calls` without tools.
        let out = translate(
            json!({"model": "m", "tool_choice": "none", "parallel_tool_calls": false,
            "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert!(out.get("tool_choice").is_none());
        // `none` with tools, and parallel off: `none` has no parallel flag.
        let out = translate(
            json!({"model": "m", "tool_choice": "none", "parallel_tool_calls": false,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert_eq!(out["tool_choice"], json!({"type": "none"}));
        assert_eq!(
            out["tools"][0]["input_schema"],
            json!({"type": "object", "properties": {}})
        );
    }

    #[test]
    fn what_anthropic_cannot_honour_is_refused_by_name() {
        let user = json!([{"role": "user", "content": "hi"}]);
        let with = |extra: Value| {
            let mut body = json!({"model": "m", "messages": user});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            body
        };
        for (extra, param) in [
            (json!({"n": 2}), "n"),
            (json!({"logprobs": true}), "logprobs"),
            (json!({"top_logprobs": 3}), "top_logprobs"),
            (json!({"logit_bias": {"50256": -100}}), "logit_bias"),
            (json!({"presence_penalty": 0.5}), "presence_penalty"),
            (json!({"frequency_penalty": -1}), "frequency_penalty"),
            (
                json!({"audio": {"voice": "alloy", "format": "wav"}}),
                "audio",
            ),
            (json!({"modalities": ["text", "audio"]}), "modalities"),
            (
                json!({"verbosity": "low", "web_search_options": {"search_context_size": "low"}}),
                "web_search_options",
            ),
            (json!({"functions": [{"name": "f"}]}), "functions"),
            (
                json!({"response_format": {"type": "json_object"}}),
                "response_format",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
                "response_format",
            ),
            (json!({"reasoning_effort": "extreme"}), "reasoning_effort"),
            (
                json!({"tools": [{"type": "custom", "custom": {"name": "g"}}]}),
                "tools[0]",
            ),
            (json!({"tool_choice": "sometimes"}), "tool_choice"),
            (
                json!({"tool_choice": {"type": "allowed_tools", "allowed_tools": {}}}),
                "tool_choice",
            ),
        ] {
            let (got, message) = refused(with(extra.clone()));
            assert_eq!(got.as_deref(), Some(param), "{extra}: {message}");
        }
        for (messages, param) in [
            (
                json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]}]),
                "messages[0].content[0]",
            ),
            (
                json!([{"role": "user", "content": "a"}, {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}]),
                "messages[1].content[0]",
            ),
            (
                json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]),
                "messages[0].content[0]",
            ),
            (
                json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}]),
                "messages[0].content[0]",
            ),
            (
                json!([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]),
                "messages[0].content[0]",
            ),
            (
                json!([{"role": "assistant", "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{\"a\": "}}]}]),
                "messages[0].tool_calls[0].function.arguments",
            ),
            (
                json!([{"role": "assistant", "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]),
                "messages[0].tool_calls[0].function.arguments",
            ),
            (
                json!([{"role": "assistant", "content": "x", "thinking_blocks": [{"type": "thinking", "thinking": "no signature"}]}]),
                "messages[0].thinking_blocks[0]",
            ),
            (
                json!([{"role": "assistant", "content": "x", "audio": {"id": "audio_1"}}]),
                "messages[0].audio",
            ),
        ] {
            let (got, message) = refused(json!({"model": "m", "messages": messages}));
            assert_eq!(got.as_deref(), Some(param), "{messages}: {message}");
        }
        let (param, message) = refused(json!({"model": "m", "messages": [{"role": "assistant",
            "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "lookup", "arguments": "nope"}}]}]}));
        assert!(
            message.contains("call_9") && message.contains("lookup"),
            "{param:?} {message}"
        );
        for bad in [
            &b"{"[..],
            b"[]",
            br#"{"model":"m"}"#,
            br#"{"model":"m","messages":[{"role":"function","name":"f","content":"x"}]}"#,
        ] {
            assert!(matches!(
                request(bad, MODEL),
                Err(TranslateError::Invalid { param: None, .. })
            ));
        }
    }

    #[test]
    fn thinking_blocks_from_an_answer_come_back_intact() {
        let answer = br#"{"id":"msg_1","type":"message","role":"assistant","model":"c","stop_reason":"tool_use","stop_sequence":null,
            "usage":{"input_tokens":1,"output_tokens":1},
            "content":[{"type":"thinking","thinking":"Let me think.","signature":"Sig/+=="},
                       {"type":"tool_use","id":"toolu_1","name":"f","input":{"a": [1, {"b": null}]}}]}"#;
        let chat: Value =
            serde_json::from_slice(&super::super::to_chat::answer(answer).unwrap()).unwrap();
        let message = chat["choices"][0]["message"].clone();
        let next = translate(json!({"model": "m", "messages": [
            {"role": "user", "content": "go"}, message,
            {"role": "tool", "tool_call_id": "toolu_1", "content": "done"}]}));
        let original: Value = serde_json::from_slice(answer).unwrap();
        assert_eq!(next["messages"][1]["content"], original["content"]);
    }

    proptest! {
        /// No body makes the translation panic.
        #[test]
        fn requests_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = request(&bytes, MODEL);
        }

        /// Nor any message shape built from the pieces clients send.
        #[test]
        fn messages_never_panic(
            roles in proptest::collection::vec(prop_oneof![
                Just("system"), Just("developer"), Just("user"), Just("assistant"), Just("tool")
            ], 0..8),
            contents in proptest::collection::vec(prop_oneof![
                Just(json!("")), Just(json!("x")), Just(json!(null)), Just(json!([])),
                Just(json!([{"type": "text", "text": ""}])),
                Just(json!([{"type": "image_url", "image_url": {"url": "data:;base64,"}}])),
                Just(json!([{"type": "image_url", "image_url": {"url": "http"}}])),
                Just(json!([{"type": "file", "file": {}}])),
            ], 8),
        ) {
            let messages: Vec<Value> = roles.iter().zip(&contents).map(|(role, content)| {
                json!({"role": role, "content": content, "tool_call_id": "t",
                       "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]})
            }).collect();
            let body = json!({"model": "m", "messages": messages, "reasoning_effort": "high", "max_tokens": u64::MAX});
            let _ = request(body.to_string().as_bytes(), MODEL);
        }
    }
}
