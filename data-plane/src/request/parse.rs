//! Stage 2 of the request path: reading and checking a request body, and
//! rewriting its `model`.
//!
//! The body is forwarded **byte for byte** except for the value of `model`:
//! [`parse`] finds that value's span in the original bytes (serde_json's
//! borrowed [`RawValue`] points into the input), and [`Parsed::with_model`]
//! splices the upstream name in. Nothing is re-serialised, so key order,
//! whitespace, number spellings (`1.0e0`) and unknown fields reach the
//! provider as the client wrote them. [`Parsed::upstream_body`] does the
//! same, in the same copy, for `stream_options` when a stream is to be
//! metered.
//!
//! Every failure here is a 400 or a 413 ([`RequestError`]); no input panics.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Bytes};
use hyper::header::{self, HeaderMap};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::formats::Format;

/// Request bodies above this many bytes get 413 unless `--max-body-bytes`
/// says otherwise: enough for long chat histories with inline images.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;

/// The field a body in `format` must carry, and the JSON types it may have.
fn required_input(format: Format) -> (&'static str, &'static [JsonType]) {
    match format {
        Format::ChatCompletions => ("messages", &[JsonType::Array]),
        Format::Completions => ("prompt", &[JsonType::String, JsonType::Array]),
        Format::ImageGenerations => ("prompt", &[JsonType::String]),
        Format::Embeddings | Format::Moderations => ("input", &[JsonType::String, JsonType::Array]),
        Format::Messages | Format::CountTokens => ("messages", &[JsonType::Array]),
        Format::Responses | Format::ResponsesCompact => {
            ("input", &[JsonType::String, JsonType::Array])
        }
    }
}

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// 413.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// 400; `param` names the field at fault, when one is.
    #[error("{message}")]
    Invalid {
        param: Option<&'static str>,
        message: String,
    },
}

impl RequestError {
    fn invalid(param: Option<&'static str>, message: impl Into<String>) -> Self {
        RequestError::Invalid {
            param,
            message: message.into(),
        }
    }
}

/// A body [`parse`] refused, with the model it names when that much of it
/// was sound (a bad `stream` or `messages`): the request's log line and
/// metrics name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub error: RequestError,
    pub model: Option<String>,
}

impl From<RequestError> for Refused {
    fn from(error: RequestError) -> Self {
        Refused { error, model: None }
    }
}

/// A checked request: what routing and forwarding need, and the original
/// bytes.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub model: String,
    /// `stream: true`.
    pub stream: bool,
    /// What the body said about fallbacks (`fallbacks`,
    /// `disable_fallbacks`); both are removed from the body sent upstream.
    pub fallbacks: RequestFallbacks,
    /// The prompt's estimated tokens ([`estimate_tokens`]).
    pub prompt_tokens: u64,
    /// `stream_options: {"include_usage": true}`: the client wants the
    /// final usage chunk, so it is not kept from it. Always so for
    /// Anthropic's formats, whose streams carry usage unasked.
    pub include_usage: bool,
    /// `max_completion_tokens`, else `max_tokens`, else the Responses
    /// API's `max_output_tokens`; 0 for a format that writes no completion
    /// ([`Format::completes`]), whatever the body says.
    pub max_tokens: Option<u64>,
    /// `n`: the completions (chat, legacy completions) or images the body
    /// asks for, each up to `max_tokens`; 1 when unset, and for the formats
    /// without it.
    pub n: u64,
    /// The Responses API's `previous_response_id`: the request continues a
    /// response an upstream stored.
    pub previous_response_id: Option<String>,
    /// A Responses `input` holds items only a Responses upstream can read:
    /// a `compaction` (its encrypted summary) or an `item_reference` (an
    /// item it stored). Found by their `"type"` values' text, so an input
    /// whose text quotes one exactly counts too: it then only prefers
    /// deployments serving the Responses API.
    pub upstream_items: bool,
    body: Bytes,
    /// Where `model`'s JSON value (with its quotes) sits in `body`.
    model_span: Range<usize>,
    /// How to make a stream's body ask for usage (the span of `body` to
    /// replace, and with what); `None` when it needs no asking.
    usage_edit: Option<(Range<usize>, Cow<'static, str>)>,
}

impl Parsed {
    /// The body as received.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body with `model`'s value replaced by `model`, every other byte
    /// unchanged.
    pub fn with_model(&self, model: &str) -> Bytes {
        let raw = &self.body[self.model_span.clone()];
        let plain = !model.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
        if plain && raw.len() == model.len() + 2 && &raw[1..raw.len() - 1] == model.as_bytes() {
            // Already this model, written without escapes: the body as is.
            return self.body.clone();
        }
        let mut out = Vec::with_capacity(self.body.len() + model.len() + 2);
        out.extend_from_slice(&self.body[..self.model_span.start]);
        // A JSON string with its quotes and escapes; writing a &str to a
        // Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, model);
        out.extend_from_slice(&self.body[self.model_span.end..]);
        Bytes::from(out)
    }

    /// The body for the upstream: [`Parsed::with_model`], and with
    /// `ask_usage`, a stream whose client did not ask for the final usage
    /// chunk asks for it (`stream_options.include_usage`), every other byte
    /// kept.
    pub fn upstream_body(&self, model: &str, ask_usage: bool) -> Bytes {
        let edit = match &self.usage_edit {
            Some(edit) if ask_usage && self.stream && !self.include_usage => edit,
            _ => return self.with_model(model),
        };
        let mut quoted = Vec::with_capacity(model.len() + 2);
        // Writing a &str to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut quoted, model);
        let mut edits = [
            (self.model_span.clone(), &quoted[..]),
            (edit.0.clone(), edit.1.as_bytes()),
        ];
        // The spans are disjoint members (or an insertion before both).
        edits.sort_by_key(|(span, _)| span.start);
        let mut out = Vec::with_capacity(self.body.len() + quoted.len() + edit.1.len());
        let mut at = 0;
        for (span, with) in edits {
            out.extend_from_slice(&self.body[at..span.start]);
            out.extend_from_slice(with);
            at = span.end;
        }
        out.extend_from_slice(&self.body[at..]);
        Bytes::from(out)
    }
}

/// What a request said about fallbacks, LiteLLM's way (DESIGN §5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFallbacks {
    /// `fallbacks: ["group", …]`, or LiteLLM's `[{"group": ["next", …]}]`
    /// narrowed to the requested model's entry.
    pub fallbacks: Option<Vec<String>>,
    /// `disable_fallbacks: true`.
    pub disabled: bool,
}

/// The prompt's tokens, estimated cheaply: the body's length in bytes over
/// four. About a token per four bytes of English text, so this counts the
/// JSON around the prompt too and errs high for chat bodies; for scripts of
/// three-byte characters (CJK) it errs low, by about a quarter.
pub fn estimate_tokens(body: &[u8]) -> u64 {
    (body.len() as u64).div_ceil(4)
}

/// Refuses bodies that are not JSON by their `Content-Type`, and bodies whose
/// `Content-Length` announces more than `limit`: both before reading a byte.
pub fn check_headers(headers: &HeaderMap, limit: u64) -> Result<(), RequestError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("<not text>"));
    check_content_type(content_type)?;
    check_content_encoding(headers)?;
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if length.is_some_and(|l| l > limit) {
        return Err(RequestError::TooLarge { limit });
    }
    Ok(())
}

/// `application/json`, with parameters (`; charset=utf-8`) allowed.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), RequestError> {
    let Some(value) = content_type else {
        return Err(RequestError::invalid(
            None,
            "Missing Content-Type: send the body as JSON with `Content-Type: application/json`",
        ));
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(RequestError::invalid(
            None,
            format!(
                "Unsupported Content-Type {value:?}: send the body as JSON with \
                 `Content-Type: application/json`"
            ),
        ))
    }
}

/// Refuses a compressed body: it would otherwise be refused as "not JSON",
/// which sends its sender looking in the wrong place. `identity` is no
/// compression.
fn check_content_encoding(headers: &HeaderMap) -> Result<(), RequestError> {
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let value = value.to_str().unwrap_or("<not text>");
        if value
            .split(',')
            .any(|coding| !coding.trim().eq_ignore_ascii_case("identity"))
        {
            return Err(RequestError::invalid(
                None,
                format!(
                    "Unsupported Content-Encoding {value:?}: send the body uncompressed \
                     (without Content-Encoding)"
                ),
            ));
        }
    }
    Ok(())
}

/// Reads the whole body, refusing it with [`RequestError::TooLarge`] as soon
/// as it exceeds `limit` (a chunked body announces no length).
pub async fn read_body<B>(body: B, limit: u64) -> Result<Bytes, ReadError>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ReadError::Request(RequestError::TooLarge { limit }))
        }
        Err(e) => Err(ReadError::Io(e.to_string())),
    }
}

/// Reading a body failed: refused, or the client's connection broke (then
/// nobody is left to answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("reading the request body failed: {0}")]
    Io(String),
}

/// The model a moderation without `model` calls: OpenAI's own default.
pub const DEFAULT_MODERATION_MODEL: &str = "omni-moderation-latest";

/// `body`, a JSON object without `model`, with `"model": model` as its
/// first member; the client's bytes after it as they were.
fn with_model_first(body: &[u8], model: &str) -> Bytes {
    // The object parsed, so its `{` is the first byte after whitespace.
    let open = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    let rest = &body[open + 1..];
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let mut out = Vec::with_capacity(body.len() + model.len() + 12);
    out.extend_from_slice(b"{\"model\":");
    // Serialising a `&str` cannot fail.
    let _ = serde_json::to_writer(&mut out, model);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    out.into()
}

/// Checks `body` as a request in `format` and locates its `model`.
pub fn parse(format: Format, body: Bytes) -> Result<Parsed, Refused> {
    let fields = {
        let mut de = serde_json::Deserializer::from_slice(&body);
        let fields = TopLevel::deserialize(&mut de).map_err(|e| {
            RequestError::invalid(
                None,
                format!("The request body is not valid JSON ({e}); send a JSON object"),
            )
        })?;
        de.end().map_err(|e| {
            RequestError::invalid(
                None,
                format!("The request body has data after its JSON object ({e})"),
            )
        })?;
        fields
    };
    let Some(raw_model) = fields.model else {
        if format == Format::Moderations {
            // OpenAI's SDKs let `model` out of a moderation, and OpenAI
            // then uses its default: so does Sluice, as a model group of
            // that name under the access rule like any other.
            return parse(format, with_model_first(&body, DEFAULT_MODERATION_MODEL));
        }
        return Err(RequestError::invalid(
            Some("model"),
            "Missing `model`: name the model to call, e.g. \"model\": \"gpt-4o\"",
        )
        .into());
    };
    let model = match serde_json::from_str::<String>(raw_model.get()) {
        Ok(m) if !m.trim().is_empty() => m,
        Ok(_) => {
            return Err(RequestError::invalid(
                Some("model"),
                "`model` is empty: name the model to call",
            )
            .into());
        }
        Err(_) => {
            return Err(RequestError::invalid(
                Some("model"),
                format!(
                    "`model` must be a string, got {}",
                    JsonType::of(raw_model).describe()
                ),
            )
            .into());
        }
    };
    let refused = |error: RequestError| Refused {
        error,
        model: Some(model.clone()),
    };
    let stream = match fields.stream.map(JsonType::of) {
        None | Some(JsonType::Null) => false,
        Some(JsonType::Bool) => raw_is_true(fields.stream),
        Some(other) => {
            return Err(refused(RequestError::invalid(
                Some("stream"),
                format!("`stream` must be true or false, got {}", other.describe()),
            )));
        }
    };
    if stream && format == Format::ImageGenerations {
        // Its partial-image events carry no usage Sluice could meter.
        return Err(refused(RequestError::invalid(
            Some("stream"),
            "Streamed image generation is not served: leave out `stream` and \
             the images come in one answer",
        )));
    }
    // Only where the format has it: a Messages or Responses body's `n` is
    // not the upstream's to read.
    let n = match format {
        Format::ChatCompletions | Format::Completions | Format::ImageGenerations => {
            read_count(fields.n).map_err(refused)?
        }
        _ => 1,
    };
    // Both are checked, so a bad one is refused even where the other wins.
    let max_completion_tokens =
        read_max_tokens("max_completion_tokens", fields.max_completion_tokens).map_err(refused)?;
    let max_tokens = read_max_tokens("max_tokens", fields.max_tokens).map_err(refused)?;
    let max_output_tokens =
        read_max_tokens("max_output_tokens", fields.max_output_tokens).map_err(refused)?;
    let previous_response_id = match fields.previous_response_id.map(JsonType::of) {
        None | Some(JsonType::Null) => None,
        Some(JsonType::String) => fields
            .previous_response_id
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
            .filter(|id| !id.is_empty()),
        Some(other) => {
            return Err(refused(RequestError::invalid(
                Some("previous_response_id"),
                format!(
                    "`previous_response_id` must be a string, got {}",
                    other.describe()
                ),
            )));
        }
    };
    let (name, allowed) = required_input(format);
    let input = INPUTS
        .iter()
        .position(|n| *n == name)
        .and_then(|i| fields.inputs[i]);
    let upstream_items = matches!(format, Format::Responses | Format::ResponsesCompact)
        && input.is_some_and(|raw| holds_upstream_items(raw.get().as_bytes()));
    match input.map(JsonType::of) {
        None => {
            return Err(refused(RequestError::invalid(
                Some(name),
                format!("Missing `{name}`: this endpoint needs it"),
            )));
        }
        Some(found) if !allowed.contains(&found) => {
            let want: Vec<_> = allowed.iter().map(|t| t.describe()).collect();
            return Err(refused(RequestError::invalid(
                Some(name),
                format!(
                    "`{name}` must be {}, got {}",
                    want.join(" or "),
                    found.describe()
                ),
            )));
        }
        Some(_) => {}
    }
    let Some(span) = value_span(&body, raw_model) else {
        // Cannot happen with a borrowed RawValue; refusing beats corrupting.
        return Err(refused(RequestError::invalid(
            Some("model"),
            "`model` could not be located in the body",
        )));
    };
    if let Some((name, raw)) = [
        ("fallbacks", fields.fallbacks),
        ("disable_fallbacks", fields.disable_fallbacks),
    ]
    .into_iter()
    .find_map(|(n, r)| r.map(|r| (n, r)))
    {
        // Sluice's own controls: read, then cut from the body (the member
        // and one comma beside it, every other byte kept), and the rest
        // parsed again, which finds the other control if both are there.
        let mut controls = RequestFallbacks::default();
        read_control(name, raw, &model, &mut controls).map_err(refused)?;
        let member = member_span(&body, raw).ok_or_else(|| {
            refused(RequestError::invalid(
                Some("fallbacks"),
                format!("`{name}` could not be located in the body"),
            ))
        })?;
        let mut parsed = parse(format, without_member(&body, member))?;
        if controls.fallbacks.is_some() {
            parsed.fallbacks.fallbacks = controls.fallbacks;
        }
        parsed.fallbacks.disabled |= controls.disabled;
        return Ok(parsed);
    }
    // Anthropic's streams and the Responses API's always carry their
    // usage: nothing to ask for.
    let include_usage = format.is_anthropic()
        || matches!(format, Format::Responses | Format::ResponsesCompact)
        || fields.stream_options.is_some_and(asks_usage);
    let usage_edit = if stream && !include_usage {
        Some(usage_edit(&body, fields.stream_options).ok_or_else(|| {
            refused(RequestError::invalid(
                Some("stream_options"),
                "`stream_options` could not be located in the body",
            ))
        })?)
    } else {
        None
    };
    Ok(Parsed {
        model,
        stream,
        fallbacks: RequestFallbacks::default(),
        prompt_tokens: estimate_tokens(&body),
        include_usage,
        max_tokens: if format.completes() {
            max_completion_tokens.or(max_tokens).or(max_output_tokens)
        } else {
            Some(0)
        },
        n,
        previous_response_id,
        upstream_items,
        model_span: span,
        usage_edit,
        body: body.clone(),
    })
}

/// Where `raw`, borrowed from `body`, sits in it: its address gives its
/// offset.
fn value_span(body: &[u8], raw: &RawValue) -> Option<Range<usize>> {
    let start = (raw.get().as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    let span = start..start.checked_add(raw.get().len())?;
    (body.get(span.clone())? == raw.get().as_bytes()).then_some(span)
}

/// `max_tokens` or `max_completion_tokens`: a count, or `null` for none.
fn read_max_tokens(
    name: &'static str,
    raw: Option<&RawValue>,
) -> Result<Option<u64>, RequestError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match JsonType::of(raw) {
        JsonType::Null => Ok(None),
        JsonType::Number => serde_json::from_str::<u64>(raw.get())
            .map(Some)
            .map_err(|_| {
                let shown: String = raw.get().chars().take(40).collect();
                RequestError::invalid(
                    Some(name),
                    format!("`{name}` must be a non-negative integer, got {shown}"),
                )
            }),
        other => Err(RequestError::invalid(
            Some(name),
            format!(
                "`{name}` must be a non-negative integer, got {}",
                other.describe()
            ),
        )),
    }
}

/// `n`, a positive integer; 1 when absent or `null`.
fn read_count(raw: Option<&RawValue>) -> Result<u64, RequestError> {
    let Some(raw) = raw.filter(|raw| JsonType::of(raw) != JsonType::Null) else {
        return Ok(1);
    };
    serde_json::from_str::<u64>(raw.get())
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            let shown: String = raw.get().chars().take(40).collect();
            RequestError::invalid(
                Some("n"),
                format!("`n` must be a positive integer, got {shown}"),
            )
        })
}

/// Whether `stream_options` is an object with `include_usage: true`.
fn asks_usage(raw: &RawValue) -> bool {
    JsonType::of(raw) == JsonType::Object
        && serde_json::from_str::<StreamOptions>(raw.get())
            .is_ok_and(|o| o.include_usage.is_some_and(|u| u.get() == "true"))
}

/// `stream_options`' one member of interest; the others are skipped.
#[derive(serde::Deserialize)]
struct StreamOptions<'a> {
    #[serde(borrow)]
    include_usage: Option<&'a RawValue>,
}

/// The edit that makes `body` ask for the final usage chunk, given its
/// `stream_options` (which does not ask already): a span to replace and
/// what to put there. Inserting rather than re-serialising keeps the
/// client's bytes wherever a value can be left as it is.
fn usage_edit(body: &[u8], raw: Option<&RawValue>) -> Option<(Range<usize>, Cow<'static, str>)> {
    let Some(raw) = raw else {
        // The object's `{`: parsing it proved it is the first byte after
        // whitespace, and it has a `model`, so a comma follows the insert.
        let open = body.iter().position(|b| !b.is_ascii_whitespace())?;
        let at = open + 1;
        return Some((
            at..at,
            Cow::Borrowed(r#""stream_options":{"include_usage":true},"#),
        ));
    };
    let span = value_span(body, raw)?;
    if JsonType::of(raw) != JsonType::Object {
        return Some((span, Cow::Borrowed(r#"{"include_usage":true}"#)));
    }
    let mut options: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(raw.get()).ok()?;
    if !options.contains_key("include_usage") {
        let at = span.start + 1;
        let text = if options.is_empty() {
            r#""include_usage":true"#
        } else {
            r#""include_usage":true,"#
        };
        return Some((at..at, Cow::Borrowed(text)));
    }
    // `include_usage` is there but not true (false, null, a string): adding
    // another would leave the provider to pick one, so the small value is
    // written anew.
    options.insert("include_usage".to_owned(), serde_json::Value::Bool(true));
    Some((
        span,
        Cow::Owned(serde_json::Value::Object(options).to_string()),
    ))
}

/// Reads `fallbacks` or `disable_fallbacks` into `out`.
fn read_control(
    name: &str,
    raw: &RawValue,
    model: &str,
    out: &mut RequestFallbacks,
) -> Result<(), RequestError> {
    if name == "disable_fallbacks" {
        return match JsonType::of(raw) {
            JsonType::Bool => {
                out.disabled = raw.get() == "true";
                Ok(())
            }
            JsonType::Null => Ok(()),
            other => Err(RequestError::invalid(
                Some("disable_fallbacks"),
                format!(
                    "`disable_fallbacks` must be true or false, got {}",
                    other.describe()
                ),
            )),
        };
    }
    let wrong = || {
        RequestError::invalid(
            Some("fallbacks"),
            "`fallbacks` must be a list of model names, e.g. [\"gpt-4o-mini\"], \
             or LiteLLM's [{\"<model>\": [\"<fallback>\", ...]}]",
        )
    };
    let value: serde_json::Value = serde_json::from_str(raw.get()).map_err(|_| wrong())?;
    let list = match value {
        serde_json::Value::Null => return Ok(()),
        serde_json::Value::Array(items) => items,
        _ => return Err(wrong()),
    };
    let mut names = Vec::new();
    for item in list {
        match item {
            serde_json::Value::String(name) => names.push(name),
            serde_json::Value::Object(entry) => {
                for (group, targets) in entry {
                    let serde_json::Value::Array(targets) = targets else {
                        return Err(wrong());
                    };
                    for t in targets {
                        let serde_json::Value::String(t) = t else {
                            return Err(wrong());
                        };
                        if group == model {
                            names.push(t);
                        }
                    }
                }
            }
            _ => return Err(wrong()),
        }
    }
    out.fallbacks = Some(names);
    Ok(())
}

/// Where the top-level member whose value is `raw` starts and ends in
/// `body`: from its key's opening quote to its value's end.
fn member_span(body: &[u8], raw: &RawValue) -> Option<Range<usize>> {
    let start = (raw.get().as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start + raw.get().len();
    if body.get(start..end)? != raw.get().as_bytes() {
        return None;
    }
    // Back from the value: whitespace, ':', whitespace, the key's closing
    // quote; then the first quote not escaped is its opening one.
    let mut i = start;
    let back = |i: &mut usize| {
        while *i > 0 && body[*i - 1].is_ascii_whitespace() {
            *i -= 1;
        }
    };
    back(&mut i);
    if i == 0 || body[i - 1] != b':' {
        return None;
    }
    i -= 1;
    back(&mut i);
    if i == 0 || body[i - 1] != b'"' {
        return None;
    }
    i -= 1;
    loop {
        if i == 0 {
            return None;
        }
        i -= 1;
        if body[i] == b'"' {
            let slashes = body[..i].iter().rev().take_while(|b| **b == b'\\').count();
            if slashes % 2 == 0 {
                return Some(i..end);
            }
        }
    }
}

/// `body` without the object member at `member` and one comma beside it
/// (the one after it, else the one before it).
fn without_member(body: &Bytes, member: Range<usize>) -> Bytes {
    let after = body[member.end..]
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|p| member.end + p);
    let cut = if let Some(comma) = after.filter(|&p| body[p] == b',') {
        member.start..comma + 1
    } else {
        let before = body[..member.start]
            .iter()
            .rposition(|b| !b.is_ascii_whitespace());
        match before.filter(|&p| body[p] == b',') {
            Some(comma) => comma..member.end,
            None => member,
        }
    };
    let mut out = Vec::with_capacity(body.len() - cut.len());
    out.extend_from_slice(&body[..cut.start]);
    out.extend_from_slice(&body[cut.end..]);
    Bytes::from(out)
}

fn raw_is_true(raw: Option<&RawValue>) -> bool {
    raw.is_some_and(|r| r.get() == "true")
}

/// The JSON type of a value, judged by its first byte (serde_json's raw
/// values carry no surrounding whitespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl JsonType {
    fn of(raw: &RawValue) -> JsonType {
        match raw.get().as_bytes().first() {
            Some(b'n') => JsonType::Null,
            Some(b't' | b'f') => JsonType::Bool,
            Some(b'"') => JsonType::String,
            Some(b'[') => JsonType::Array,
            Some(b'{') => JsonType::Object,
            _ => JsonType::Number,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Bool => "a boolean",
            JsonType::Number => "a number",
            JsonType::String => "a string",
            JsonType::Array => "an array",
            JsonType::Object => "an object",
        }
    }
}

/// The fields that carry an endpoint's input.
const INPUTS: [&str; 3] = ["messages", "prompt", "input"];

/// Whether a Responses `input` names a `compaction` or `item_reference`
/// item (see [`Parsed::upstream_items`]).
fn holds_upstream_items(input: &[u8]) -> bool {
    use memchr::memmem;
    memmem::find(input, br#""compaction""#).is_some()
        || memmem::find(input, br#""item_reference""#).is_some()
}

/// The top-level fields the gateway reads, borrowed from the body; the rest
/// are skipped without being decoded.
struct TopLevel<'a> {
    model: Option<&'a RawValue>,
    stream: Option<&'a RawValue>,
    fallbacks: Option<&'a RawValue>,
    disable_fallbacks: Option<&'a RawValue>,
    stream_options: Option<&'a RawValue>,
    max_tokens: Option<&'a RawValue>,
    max_completion_tokens: Option<&'a RawValue>,
    /// The Responses API's.
    max_output_tokens: Option<&'a RawValue>,
    previous_response_id: Option<&'a RawValue>,
    /// How many completions (chat, legacy) or images to make.
    n: Option<&'a RawValue>,
    /// `messages`, `prompt`, `input` in that order ([`INPUTS`]): whichever
    /// the endpoint needs is checked.
    inputs: [Option<&'a RawValue>; 3],
}

impl<'a> TopLevel<'a> {
    fn deserialize(
        de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'a>>,
    ) -> Result<Self, serde_json::Error> {
        de.deserialize_map(TopLevelVisitor)
    }
}

struct TopLevelVisitor;

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = TopLevel {
            model: None,
            stream: None,
            fallbacks: None,
            disable_fallbacks: None,
            stream_options: None,
            max_tokens: None,
            max_completion_tokens: None,
            max_output_tokens: None,
            previous_response_id: None,
            n: None,
            inputs: [None; 3],
        };
        // Keys are decoded (so `"mo\u0064el"` counts as `model`); a
        // duplicate `model` is refused, since the provider might read the
        // other one than we rewrote. The other fields read here came after
        // duplicates were let through, so the last one wins, as it does in
        // the JSON parsers providers use.
        while let Some(FieldName(key)) = map.next_key()? {
            let value: &'de RawValue = map.next_value()?;
            let last_wins = match &*key {
                "stream_options" => Some(&mut out.stream_options),
                "max_tokens" => Some(&mut out.max_tokens),
                "max_completion_tokens" => Some(&mut out.max_completion_tokens),
                "max_output_tokens" => Some(&mut out.max_output_tokens),
                "previous_response_id" => Some(&mut out.previous_response_id),
                "n" => Some(&mut out.n),
                _ => None,
            };
            if let Some(slot) = last_wins {
                *slot = Some(value);
                continue;
            }
            let slot = match &*key {
                "model" => &mut out.model,
                "stream" => &mut out.stream,
                "fallbacks" => &mut out.fallbacks,
                "disable_fallbacks" => &mut out.disable_fallbacks,
                other => match INPUTS.iter().position(|n| *n == other) {
                    Some(i) => &mut out.inputs[i],
                    None => continue,
                },
            };
            if slot.replace(value).is_some() {
                return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
            }
        }
        Ok(out)
    }
}

/// A top-level field name, borrowed from the body unless it has escapes
/// (serde's own `Cow<str>` always copies).
struct FieldName<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for FieldName<'de> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct NameVisitor;

        impl<'de> Visitor<'de> for NameVisitor {
            type Value = FieldName<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(FieldName(std::borrow::Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FieldName(std::borrow::Cow::Owned(v.to_owned())))
            }
        }

        de.deserialize_str(NameVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_str(format: Format, body: &str) -> Result<Parsed, Refused> {
        parse(format, Bytes::copy_from_slice(body.as_bytes()))
    }

    #[test]
    fn responses_inputs_holding_upstream_items_are_marked() {
        let marked = |format, body: &str| parse_str(format, body).expect("valid").upstream_items;
        let compaction = r#"{"model":"m","input":[{"type":"compaction","encrypted_content":"e"},{"role":"user","content":"Go on."}]}"#;
        assert!(marked(Format::Responses, compaction));
        assert!(marked(Format::ResponsesCompact, compaction));
        let reference = r#"{"model":"m","input":[{"type":"item_reference","id":"msg_1"}]}"#;
        assert!(marked(Format::Responses, reference));
        // The words inside a text are not the values.
        let text = r#"{"model":"m","input":"run a compaction of the item_reference list"}"#;
        assert!(!marked(Format::Responses, text));
        // Elsewhere than the input, and in other formats, nothing is read.
        let elsewhere = r#"{"model":"m","input":"x","metadata":{"type":"compaction"}}"#;
        assert!(!marked(Format::Responses, elsewhere));
        let chat = r#"{"model":"m","messages":[{"role":"user","content":"compaction"}]}"#;
        assert!(!marked(Format::ChatCompletions, chat));
    }

    fn param_of(r: Result<Parsed, Refused>) -> Option<&'static str> {
        match r {
            Err(Refused {
                error: RequestError::Invalid { param, .. },
                ..
            }) => param,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    fn model_of_refused(format: Format, body: &str) -> Option<String> {
        parse_str(format, body).expect_err("refused").model
    }

    #[test]
    fn fallback_controls_are_read_and_cut_from_the_body() {
        let chat = Format::ChatCompletions;
        for (body, want) in [
            (
                r#"{"model":"m","fallbacks":["a","b"],"messages":[]}"#,
                r#"{"model":"x","messages":[]}"#,
            ),
            (
                r#"{"model":"m", "messages":[] , "fallbacks" : ["a","b"]}"#,
                r#"{"model":"x", "messages":[] }"#,
            ),
            (
                r#"{"fallbacks":[{"m":["a","b"]},{"other":["z"]}],"model":"m","messages":[],"disable_fallbacks":false}"#,
                r#"{"model":"x","messages":[]}"#,
            ),
            (
                r#"{"model":"m","messages":[],"fall\u0062acks":["a","b"],"disable_fallbacks":false}"#,
                r#"{"model":"x","messages":[]}"#,
            ),
        ] {
            let parsed = parse_str(chat, body).expect(body);
            assert_eq!(
                parsed.fallbacks.fallbacks.as_deref(),
                Some(&["a".to_string(), "b".to_string()][..]),
                "{body}"
            );
            assert!(!parsed.fallbacks.disabled);
            let sent = parsed.with_model("x");
            assert_eq!(std::str::from_utf8(&sent).unwrap(), want, "{body}");
            serde_json::from_slice::<serde_json::Value>(&sent).expect("still JSON");
        }
        let parsed = parse_str(
            chat,
            r#"{"model":"m","messages":[],"disable_fallbacks":true}"#,
        )
        .unwrap();
        assert!(parsed.fallbacks.disabled && parsed.fallbacks.fallbacks.is_none());
        assert_eq!(
            &parsed.with_model("m")[..],
            br#"{"model":"m","messages":[]}"#
        );
        assert_eq!(
            param_of(parse_str(
                chat,
                r#"{"model":"m","messages":[],"fallbacks":"a"}"#
            )),
            Some("fallbacks")
        );
        assert_eq!(
            param_of(parse_str(
                chat,
                r#"{"model":"m","messages":[],"disable_fallbacks":1}"#
            )),
            Some("disable_fallbacks")
        );
        assert_eq!(
            param_of(parse_str(
                chat,
                r#"{"model":"m","messages":[],"fallbacks":[],"fallbacks":[]}"#
            )),
            None,
            "a duplicate is refused as JSON"
        );
    }

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).expect("JSON")
    }

    #[test]
    fn max_tokens_are_read_and_checked() {
        let chat = Format::ChatCompletions;
        let max = |extra: &str| {
            parse_str(chat, &format!(r#"{{"model":"m","messages":[]{extra}}}"#))
                .map(|p| p.max_tokens)
        };
        assert_eq!(max("").unwrap(), None);
        assert_eq!(max(r#","max_tokens":10"#).unwrap(), Some(10));
        assert_eq!(max(r#","max_tokens":null"#).unwrap(), None);
        assert_eq!(max(r#","max_completion_tokens":7"#).unwrap(), Some(7));
        assert_eq!(
            max(r#","max_completion_tokens":7,"max_tokens":10"#).unwrap(),
            Some(7)
        );
        assert_eq!(
            max(r#","max_tokens":10,"max_completion_tokens":null"#).unwrap(),
            Some(10)
        );
        assert_eq!(
            max(r#","max_tokens":1,"max_tokens":2"#).unwrap(),
            Some(2),
            "a duplicate is let through, as before, and the last wins"
        );
        for (extra, param) in [
            (r#","max_tokens":-1"#, "max_tokens"),
            (r#","max_tokens":1.5"#, "max_tokens"),
            (r#","max_tokens":"10""#, "max_tokens"),
            (r#","max_completion_tokens":[1]"#, "max_completion_tokens"),
            (
                r#","max_completion_tokens":5,"max_tokens":true"#,
                "max_tokens",
            ),
            (r#","max_tokens":18446744073709551616"#, "max_tokens"),
        ] {
            let refused = max(extra).expect_err(extra);
            assert_eq!(refused.model.as_deref(), Some("m"));
            let RequestError::Invalid {
                param: got,
                message,
            } = refused.error
            else {
                panic!("{extra}: not a 400");
            };
            assert_eq!(got, Some(param), "{extra}");
            assert!(message.contains(param), "{message}");
        }
    }

    #[test]
    fn include_usage_is_read() {
        let chat = Format::ChatCompletions;
        let include = |extra: &str| {
            parse_str(
                chat,
                &format!(r#"{{"model":"m","messages":[],"stream":true{extra}}}"#),
            )
            .expect(extra)
            .include_usage
        };
        assert!(include(r#","stream_options":{"include_usage":true}"#));
        assert!(include(
            r#","stream_options" : { "x":1, "include_usage" : true }"#
        ));
        assert!(!include(""));
        assert!(!include(r#","stream_options":null"#));
        assert!(!include(r#","stream_options":{"include_usage":false}"#));
        assert!(!include(r#","stream_options":{"include_usage":"true"}"#));
        assert!(!include(r#","stream_options":[true]"#));
    }

    #[test]
    fn a_stream_is_made_to_ask_for_usage_byte_for_byte() {
        let chat = Format::ChatCompletions;
        let sent = |body: &str| {
            let parsed = parse_str(chat, body).expect(body);
            let out = parsed.upstream_body("u", true);
            String::from_utf8(out.to_vec()).expect("utf-8")
        };
        for (body, want) in [
            (
                r#" {"model":"m", "messages":[],"stream":true}"#,
                r#" {"stream_options":{"include_usage":true},"model":"u", "messages":[],"stream":true}"#,
            ),
            (
                r#"{"stream":true,"messages":[],"stream_options":null,"model":"m"}"#,
                r#"{"stream":true,"messages":[],"stream_options":{"include_usage":true},"model":"u"}"#,
            ),
            (
                r#"{"model":"m","stream_options":{ },"messages":[],"stream":true}"#,
                r#"{"model":"u","stream_options":{"include_usage":true },"messages":[],"stream":true}"#,
            ),
            (
                r#"{"stream_options":{"continuous_usage_stats":1.0e0},"model":"m","messages":[],"stream":true}"#,
                r#"{"stream_options":{"include_usage":true,"continuous_usage_stats":1.0e0},"model":"u","messages":[],"stream":true}"#,
            ),
            (
                r#"{"model":"m","stream_options":{"include_usage":false},"messages":[],"stream":true}"#,
                r#"{"model":"u","stream_options":{"include_usage":true},"messages":[],"stream":true}"#,
            ),
            (
                r#"{"model":"m","stream\u005foptions":{"include_usage":null},"messages":[],"stream":true}"#,
                r#"{"model":"u","stream\u005foptions":{"include_usage":true},"messages":[],"stream":true}"#,
            ),
        ] {
            assert_eq!(sent(body), want, "{body}");
        }
        // Nothing to ask: as `with_model`.
        for body in [
            r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"model":"m","messages":[]}"#,
            r#"{"model":"m","messages":[],"stream":false,"stream_options":null}"#,
        ] {
            let parsed = parse_str(chat, body).expect(body);
            assert_eq!(parsed.upstream_body("u", true), parsed.with_model("u"));
        }
        let parsed = parse_str(chat, r#"{"model":"m","messages":[],"stream":true}"#).unwrap();
        assert_eq!(parsed.upstream_body("m", false), parsed.with_model("m"));
        assert!(!parsed.include_usage);
        // Fallback controls cut, then the option added, in the body sent.
        let parsed = parse_str(
            chat,
            r#"{"fallbacks":["b"],"model":"m","stream":true,"messages":[]}"#,
        )
        .unwrap();
        assert_eq!(
            &parsed.upstream_body("u", true)[..],
            br#"{"stream_options":{"include_usage":true},"model":"u","stream":true,"messages":[]}"#
        );
    }

    #[test]
    fn prompt_tokens_are_estimated_from_the_body() {
        let parsed = parse_str(
            Format::ChatCompletions,
            r#"{"model":"m","messages":[{"role":"user","content":"hello there"}]}"#,
        )
        .unwrap();
        assert_eq!(parsed.prompt_tokens, 17);
        assert_eq!(estimate_tokens(b""), 0);
        assert_eq!(estimate_tokens(b"abcde"), 2);
    }

    #[test]
    fn a_refused_body_names_its_model_once_the_model_is_sound() {
        let chat = Format::ChatCompletions;
        // Refused for another field: the model is known, for the log line.
        for body in [
            r#"{"model":"gpt-4o","messages":"hi"}"#,
            r#"{"model":"gpt-4o","messages":[],"stream":"yes"}"#,
            r#"{"model":"gpt-4o"}"#,
        ] {
            assert_eq!(
                model_of_refused(chat, body).as_deref(),
                Some("gpt-4o"),
                "{body}"
            );
        }
        // Refused before a model could be read: none.
        for body in [
            r#"{"model":"gpt-4o","messages":[]"#,
            r#"{"model":42,"messages":[]}"#,
            r#"{"model":" ","messages":[]}"#,
            r#"{"messages":[]}"#,
            r#"{"model":"a","model":"b","messages":[]}"#,
        ] {
            assert_eq!(model_of_refused(chat, body), None, "{body}");
        }
    }

    #[test]
    fn model_rewrite_changes_only_the_model_bytes() {
        let body = r#"{"temperature":1.0e0, "model" :"gpt-4o","messages":[{"role":"user","content":"hi \u00e9"}],"z":-0.0,"a":1}"#;
        let parsed = parse_str(Format::ChatCompletions, body).expect("valid");
        assert_eq!(parsed.model, "gpt-4o");
        assert!(!parsed.stream);
        let rewritten = parsed.with_model("gpt-4o-2024-08-06\"x");
        assert_eq!(
            std::str::from_utf8(&rewritten).expect("utf-8"),
            r#"{"temperature":1.0e0, "model" :"gpt-4o-2024-08-06\"x","messages":[{"role":"user","content":"hi \u00e9"}],"z":-0.0,"a":1}"#
        );
    }

    #[test]
    fn embeddings_and_moderations_need_input_and_allow_no_completion() {
        for format in [Format::Embeddings, Format::Moderations] {
            let parsed = parse_str(
                format,
                r#"{"model":"m","input":["a","b"],"max_tokens":500}"#,
            )
            .expect("valid");
            assert_eq!(parsed.max_tokens, Some(0), "{format:?}");
            let refused = parse_str(format, r#"{"model":"m"}"#).unwrap_err();
            assert!(
                matches!(
                    refused.error,
                    RequestError::Invalid {
                        param: Some("input"),
                        ..
                    }
                ),
                "{refused:?}"
            );
            let refused = parse_str(format, r#"{"model":"m","input":3}"#).unwrap_err();
            assert!(
                refused.error.to_string().contains("got a number"),
                "{refused:?}"
            );
        }
        let chat = r#"{"model":"m","messages":[],"max_tokens":500}"#;
        assert_eq!(
            parse_str(Format::ChatCompletions, chat).unwrap().max_tokens,
            Some(500)
        );
    }

    #[test]
    fn image_generations_need_a_prompt_and_count_their_images() {
        let images = |body: &str| parse_str(Format::ImageGenerations, body);
        let parsed = images(r#"{"model":"gpt-image-1","prompt":"a fox","n":3}"#).expect("valid");
        assert_eq!((parsed.n, parsed.max_tokens), (3, Some(0)));
        assert_eq!(images(r#"{"model":"m","prompt":"a fox"}"#).unwrap().n, 1);
        let param = |body: &str| match images(body).unwrap_err().error {
            RequestError::Invalid { param, .. } => param,
            other => panic!("{other:?}"),
        };
        assert_eq!(param(r#"{"model":"m"}"#), Some("prompt"));
        assert_eq!(param(r#"{"model":"m","prompt":["a"]}"#), Some("prompt"));
        assert_eq!(param(r#"{"model":"m","prompt":"a","n":0}"#), Some("n"));
        assert_eq!(param(r#"{"model":"m","prompt":"a","n":1.5}"#), Some("n"));
        assert_eq!(param(r#"{"model":"m","prompt":"a","n":"2"}"#), Some("n"));
        assert_eq!(
            param(r#"{"model":"m","prompt":"a","stream":true}"#),
            Some("stream")
        );
        // Chat's `n` counts completions; a Messages body's is not read.
        let chat = r#"{"model":"m","messages":[],"n":2}"#;
        assert_eq!(parse_str(Format::ChatCompletions, chat).unwrap().n, 2);
        let messages = r#"{"model":"m","messages":[],"n":"x"}"#;
        assert_eq!(parse_str(Format::Messages, messages).unwrap().n, 1);
    }

    #[test]
    fn a_moderation_without_model_calls_openais_default() {
        let parsed = parse_str(Format::Moderations, r#" {"input": "hi"}"#).expect("valid");
        assert_eq!(parsed.model, DEFAULT_MODERATION_MODEL);
        assert_eq!(
            &parsed.with_model("up")[..],
            br#"{"model":"up","input": "hi"}"#
        );
        let empty = parse_str(Format::Moderations, "{ }").unwrap_err();
        assert!(
            matches!(
                empty.error,
                RequestError::Invalid {
                    param: Some("input"),
                    ..
                }
            ),
            "{empty:?}"
        );
        assert_eq!(empty.model.as_deref(), Some(DEFAULT_MODERATION_MODEL));
        for format in [Format::ChatCompletions, Format::Embeddings] {
            let refused = parse_str(format, r#"{"input":"hi"}"#).unwrap_err();
            assert!(refused.error.to_string().contains("Missing `model`"));
        }
    }

    #[test]
    fn a_model_already_right_keeps_the_body_and_an_escaped_one_is_rewritten() {
        let body = r#"{"model":"gpt-4o","input":"x"}"#;
        let parsed = parse_str(Format::Embeddings, body).expect("valid");
        let same = parsed.with_model("gpt-4o");
        assert_eq!(&same[..], body.as_bytes());
        assert_eq!(same.as_ptr(), parsed.body().as_ptr(), "not copied");
        // Same bytes inside the quotes, other meaning: rewritten.
        let parsed =
            parse_str(Format::Embeddings, r#"{"model":"a\nb","input":"x"}"#).expect("valid");
        assert_eq!(parsed.model, "a\nb");
        assert_eq!(
            &parsed.with_model("a\\nb")[..],
            br#"{"model":"a\\nb","input":"x"}"#
        );
        let parsed =
            parse_str(Format::Embeddings, r#"{"model":"g\u0070t","input":"x"}"#).expect("valid");
        assert_eq!(
            &parsed.with_model("gpt")[..],
            br#"{"model":"gpt","input":"x"}"#
        );
    }

    #[test]
    fn escaped_model_key_and_value_are_understood() {
        let parsed = parse_str(
            Format::Embeddings,
            r#"{"mo\u0064el":"g\u0070t","input":"x"}"#,
        )
        .expect("ok");
        assert_eq!(parsed.model, "gpt");
        assert_eq!(
            &parsed.with_model("e")[..],
            br#"{"mo\u0064el":"e","input":"x"}"#
        );
    }

    #[test]
    fn bad_bodies_name_the_field() {
        use Format::*;
        assert_eq!(param_of(parse_str(ChatCompletions, "not json")), None);
        assert_eq!(param_of(parse_str(ChatCompletions, "[1]")), None);
        assert_eq!(
            param_of(parse_str(
                ChatCompletions,
                r#"{"model":"a","messages":[]} x"#
            )),
            None
        );
        assert_eq!(
            param_of(parse_str(ChatCompletions, r#"{"messages":[]}"#)),
            Some("model")
        );
        assert_eq!(
            param_of(parse_str(ChatCompletions, r#"{"model":3,"messages":[]}"#)),
            Some("model")
        );
        assert_eq!(
            param_of(parse_str(ChatCompletions, r#"{"model":" ","messages":[]}"#)),
            Some("model")
        );
        assert_eq!(
            param_of(parse_str(ChatCompletions, r#"{"model":"a"}"#)),
            Some("messages")
        );
        assert_eq!(
            param_of(parse_str(
                ChatCompletions,
                r#"{"model":"a","messages":"hi"}"#
            )),
            Some("messages")
        );
        assert_eq!(
            param_of(parse_str(
                ChatCompletions,
                r#"{"model":"a","messages":[],"stream":"yes"}"#
            )),
            Some("stream")
        );
        assert_eq!(
            param_of(parse_str(Embeddings, r#"{"model":"a","input":{}}"#)),
            Some("input")
        );
        assert_eq!(
            param_of(parse_str(Completions, r#"{"model":"a"}"#)),
            Some("prompt")
        );
        assert!(
            param_of(parse_str(
                ChatCompletions,
                r#"{"model":"a","model":"b","messages":[]}"#
            ))
            .is_none()
        );
    }

    #[test]
    fn stream_flag() {
        let p = parse_str(
            Format::ChatCompletions,
            r#"{"model":"a","messages":[],"stream":true}"#,
        )
        .expect("ok");
        assert!(p.stream);
        let p = parse_str(
            Format::ChatCompletions,
            r#"{"model":"a","messages":[],"stream":null}"#,
        )
        .expect("ok");
        assert!(!p.stream);
    }

    #[test]
    fn compressed_bodies_are_refused_by_their_header() {
        let with = |encoding: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
            headers.insert(header::CONTENT_ENCODING, encoding.parse().unwrap());
            check_headers(&headers, 100)
        };
        assert!(with("identity").is_ok());
        assert!(with("Identity").is_ok());
        for encoding in ["gzip", "br", "deflate, identity", "zstd"] {
            let Err(RequestError::Invalid { param, message }) = with(encoding) else {
                panic!("{encoding} accepted");
            };
            assert_eq!(param, None);
            assert!(message.contains("Content-Encoding"), "{message}");
        }
    }

    #[test]
    fn content_types() {
        assert!(check_content_type(Some("application/json")).is_ok());
        assert!(check_content_type(Some("Application/JSON; charset=utf-8")).is_ok());
        assert!(check_content_type(Some("text/plain")).is_err());
        assert!(check_content_type(Some("application/jsonx")).is_err());
        assert!(check_content_type(None).is_err());
    }

    #[test]
    fn announced_length_over_the_limit_is_refused_before_reading() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/json".parse().expect("value"),
        );
        h.insert(header::CONTENT_LENGTH, "11".parse().expect("value"));
        assert_eq!(
            check_headers(&h, 10),
            Err(RequestError::TooLarge { limit: 10 })
        );
        assert_eq!(check_headers(&h, 11), Ok(()));
    }

    #[tokio::test]
    async fn reading_stops_at_the_limit() {
        let body = http_body_util::Full::new(Bytes::from_static(b"12345678901"));
        assert_eq!(
            read_body(body, 10).await,
            Err(ReadError::Request(RequestError::TooLarge { limit: 10 }))
        );
        let body = http_body_util::Full::new(Bytes::from_static(b"1234567890"));
        assert_eq!(read_body(body, 10).await.expect("fits").len(), 10);
    }

    proptest! {
        /// Whatever arrives, the request checks answer Ok, a 400 or a 413,
        /// and never panic; an accepted body rewrites to valid JSON.
        #[test]
        fn parsing_never_panics(
            body in proptest::collection::vec(any::<u8>(), 0..256),
            content_type in proptest::option::of(".{0,40}"),
            length in proptest::option::of(any::<u64>()),
            format in prop_oneof![
                Just(Format::ChatCompletions),
                Just(Format::Completions),
                Just(Format::Embeddings),
            ],
        ) {
            let mut headers = HeaderMap::new();
            if let Some(ct) = content_type.as_deref().and_then(|c| c.parse().ok()) {
                headers.insert(header::CONTENT_TYPE, ct);
            }
            if let Some(l) = length {
                headers.insert(header::CONTENT_LENGTH, l.into());
            }
            let _ = check_headers(&headers, 128);
            if let Ok(parsed) = parse(format, Bytes::from(body)) {
                let rewritten = parsed.with_model("upstream");
                let value: serde_json::Value =
                    serde_json::from_slice(&rewritten).expect("still JSON");
                prop_assert_eq!(&value["model"], "upstream");
                let asking = json(&parsed.upstream_body("upstream", true));
                prop_assert_eq!(&asking["model"], "upstream");
                if parsed.stream {
                    prop_assert_eq!(&asking["stream_options"]["include_usage"], true);
                }
            }
        }

        /// Wherever `stream_options` and `model` sit, however the body is
        /// spaced and escaped, the body asking for usage is the same object
        /// with the new model and `include_usage: true`.
        #[test]
        fn asking_for_usage_keeps_the_object(
            extra in proptest::collection::btree_map(
                "x_[a-z\u{e9}\\\\\"]{0,4}",
                prop_oneof![
                    any::<i64>().prop_map(|n| n.to_string()),
                    Just(r#""a\"b\u00e9""#.to_owned()),
                    Just(r#"{"usage":null,"include_usage":true}"#.to_owned()),
                    Just("[1, {}]".to_owned()),
                ],
                0..5,
            ),
            options in proptest::option::of(prop_oneof![
                Just("null"),
                Just("{}"),
                Just("{ }"),
                Just(r#"{"include_usage":true}"#),
                Just(r#"{"include_usage":false}"#),
                Just(r#"{"include_usage":null,"x":[1]}"#),
                Just(r#"{"x":{"include_usage":false}}"#),
                Just(r#"{"incl\u0075de_usage":true}"#),
                Just("7"),
                Just(r#""yes""#),
            ]),
            model_key in prop_oneof![Just(r#""model""#), Just(r#""mo\u0064el""#)],
            options_key in prop_oneof![
                Just(r#""stream_options""#),
                Just(r#""stream\u005foptions""#),
            ],
            stream in prop_oneof![Just("true"), Just("false"), Just("null")],
            order in Just((0..9usize).collect::<Vec<_>>()).prop_shuffle(),
            space in prop_oneof![Just(""), Just(" "), Just("\n\t "), Just("\r\n")],
            model in ".{1,8}",
        ) {
            prop_assume!(!model.trim().is_empty());
            let mut members = vec![
                format!("{model_key}{space}:{space}\"m\""),
                format!("\"stream\":{stream}"),
                format!("\"messages\":{space}[]"),
            ];
            if let Some(options) = options {
                members.push(format!("{options_key}{space}:{space}{options}"));
            }
            for (k, v) in &extra {
                let key = serde_json::to_string(k).unwrap();
                members.push(format!("{key}:{space}{v}"));
            }
            let ordered: Vec<&str> = order
                .iter()
                .filter_map(|i| members.get(*i).map(|m| m.as_str()))
                .collect();
            let comma = format!("{space},{space}");
            let body = format!("{space}{{{space}{}{space}}}{space}", ordered.join(&comma));
            let parsed = parse(Format::ChatCompletions, Bytes::from(body.clone()))
                .map_err(|e| TestCaseError::fail(format!("{body}: {e:?}")))?;
            let mut want = json(body.as_bytes());
            want["model"] = model.clone().into();
            if stream == "true" {
                match &mut want["stream_options"] {
                    serde_json::Value::Object(o) => {
                        o.insert("include_usage".into(), true.into());
                    }
                    other => *other = serde_json::json!({"include_usage": true}),
                }
            }
            let sent = parsed.upstream_body(&model, true);
            prop_assert_eq!(json(&sent), want, "{}", body);
            // Members other than the edited ones keep their bytes.
            let text = std::str::from_utf8(&sent).unwrap();
            for m in members.iter().skip(4).chain(&members[1..3]) {
                prop_assert!(text.contains(m.as_str()), "{} in {}", m, text);
            }
        }

        /// Valid requests of any shape keep every other field.
        #[test]
        fn rewrite_keeps_other_fields(
            extra in proptest::collection::btree_map("[a-z]{1,6}", any::<i64>(), 0..6),
            model in ".{1,20}",
        ) {
            prop_assume!(!model.trim().is_empty());
            let mut object = serde_json::Map::new();
            for (k, v) in &extra {
                object.insert(k.clone(), (*v).into());
            }
            object.insert("model".into(), model.clone().into());
            object.insert("input".into(), "x".into());
            let body = serde_json::to_vec(&object).expect("json");
            let parsed = parse(Format::Embeddings, Bytes::from(body)).expect("valid");
            prop_assert_eq!(&parsed.model, &model);
            let rewritten: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&parsed.with_model("u")).expect("json");
            object.insert("model".into(), "u".into());
            prop_assert_eq!(rewritten, object);
        }
    }
}
