//! Token usage in OpenAI's answers: the `usage` object of a whole answer
//! ([`from_answer`]), and of a streamed one ([`StreamUsage`]), which reads
//! the final usage chunk as the events go by and can keep it from a client
//! that did not ask for it.
//!
//! `prompt_tokens` and `completion_tokens` are the totals: OpenAI counts
//! the prompt's cached tokens (`prompt_tokens_details.cached_tokens`, read
//! from the cache, and `cache_write_tokens`, written to it) inside the first
//! and reasoning tokens inside the second, so the details are never added to
//! them; the cache's two are read as parts of the prompt
//! ([`Usage::cache_read_tokens`], [`Usage::cache_write_tokens`]), which
//! deployments may price apart.
//!
//! Anthropic's answers ([`Dialect::Anthropic`]) count the other way:
//! `input_tokens` leaves out the tokens written to and read from the prompt
//! cache (`cache_creation_input_tokens`, `cache_read_input_tokens`), so the
//! prompt is the sum of the three; `output_tokens` is the completion. A
//! stream reports them in `message_start` and `message_delta` (whose counts
//! are cumulative and win when present). The Responses API writes the
//! cache's counts in `input_tokens_details`, as chat completions do.

use std::borrow::Cow;
use std::ops::Range;

use hyper::body::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;

/// An answer's tokens, as its upstream counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Every prompt token, the cache's included.
    pub prompt_tokens: u64,
    /// 0 for embeddings, whose usage has only prompt and total tokens.
    pub completion_tokens: u64,
    /// Of `prompt_tokens`, those read from the upstream's prompt cache.
    pub cache_read_tokens: u64,
    /// Of `prompt_tokens`, those written to it.
    pub cache_write_tokens: u64,
}

impl Usage {
    /// The cache's counts as parts of the prompt: an upstream that reports
    /// more than the prompt (none should) is believed only up to it.
    fn with_cache(mut self, read: u64, write: u64) -> Self {
        self.cache_read_tokens = read.min(self.prompt_tokens);
        self.cache_write_tokens = write.min(self.prompt_tokens - self.cache_read_tokens);
        self
    }
}

/// `prompt_tokens_details` (chat completions) and `input_tokens_details`
/// (Responses): the cache's share of the prompt.
#[derive(Deserialize, Default)]
struct CacheDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    cache_write_tokens: Option<u64>,
}

impl CacheDetails {
    fn apply(details: Option<CacheDetails>, usage: Usage) -> Usage {
        let d = details.unwrap_or_default();
        usage.with_cache(
            d.cached_tokens.unwrap_or(0),
            d.cache_write_tokens.unwrap_or(0),
        )
    }
}

/// Whose way of writing `usage` an answer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI's: `prompt_tokens`, `completion_tokens`.
    OpenAi,
    /// Anthropic's Messages API: `input_tokens` + cache tokens,
    /// `output_tokens`.
    Anthropic,
    /// OpenAI's Responses API: a `response` object's `input_tokens`,
    /// `output_tokens` (cached and reasoning tokens inside them, as in
    /// chat completions).
    Responses,
}

/// The top-level `usage` of a JSON answer (chat completions, completions,
/// embeddings; an Anthropic message); `None` when it is absent, `null`, or
/// the body is not such an answer.
pub fn from_answer(dialect: Dialect, body: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct Answer<U> {
        usage: Option<U>,
    }
    // serde_json skips every other member without building it.
    match dialect {
        Dialect::OpenAi => serde_json::from_slice::<Answer<WireUsage>>(body)
            .ok()?
            .usage
            .map(Usage::from),
        Dialect::Anthropic => {
            let usage = serde_json::from_slice::<Answer<AnthropicUsage>>(body)
                .ok()?
                .usage?;
            // A `usage` with neither count is not Anthropic's.
            if usage.input_tokens.is_none() && usage.output_tokens.is_none() {
                return None;
            }
            Some(AnthropicCounts::default().with(&usage).usage())
        }
        Dialect::Responses => serde_json::from_slice::<Answer<ResponsesUsage>>(body)
            .ok()?
            .usage
            .map(Usage::from),
    }
}

/// How many images an image generation's answer holds (its `data`);
/// `None` when the body is not such an answer.
pub fn images_in(body: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Answer {
        data: Vec<IgnoredAny>,
    }
    serde_json::from_slice::<Answer>(body)
        .ok()
        .map(|a| a.data.len() as u64)
}

/// `usage` as a `response` object writes it; a count written `null` reads
/// as 0.
#[derive(Deserialize)]
struct ResponsesUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    input_tokens_details: Option<CacheDetails>,
}

impl From<ResponsesUsage> for Usage {
    fn from(u: ResponsesUsage) -> Self {
        let usage = Usage {
            prompt_tokens: u.input_tokens.unwrap_or(0),
            completion_tokens: u.output_tokens.unwrap_or(0),
            ..Usage::default()
        };
        CacheDetails::apply(u.input_tokens_details, usage)
    }
}

/// A Responses stream's event, as far as metering cares: the terminal
/// ones (`response.completed`, `response.incomplete`, `response.failed`)
/// carry the whole response, usage and all.
#[derive(Deserialize)]
struct ResponsesEvent<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    response: Option<ResponsesAnswer>,
}

#[derive(Deserialize)]
struct ResponsesAnswer {
    usage: Option<ResponsesUsage>,
}

/// `usage` as Anthropic writes it; every count optional (a `message_delta`
/// carries only those that changed).
#[derive(Deserialize, Default)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

/// An Anthropic stream's counts so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct AnthropicCounts {
    input: u64,
    cache_creation: u64,
    cache_read: u64,
    output: u64,
}

impl AnthropicCounts {
    /// These counts with `u`'s present ones instead.
    fn with(mut self, u: &AnthropicUsage) -> Self {
        self.input = u.input_tokens.unwrap_or(self.input);
        self.cache_creation = u.cache_creation_input_tokens.unwrap_or(self.cache_creation);
        self.cache_read = u.cache_read_input_tokens.unwrap_or(self.cache_read);
        self.output = u.output_tokens.unwrap_or(self.output);
        self
    }

    /// Each token once: the cache's tokens are not in `input_tokens`.
    fn usage(self) -> Usage {
        Usage {
            prompt_tokens: self
                .input
                .saturating_add(self.cache_creation)
                .saturating_add(self.cache_read),
            completion_tokens: self.output,
            ..Usage::default()
        }
        .with_cache(self.cache_read, self.cache_creation)
    }
}

/// One event of an Anthropic stream, as far as metering cares.
#[derive(Deserialize)]
struct AnthropicEvent {
    /// `message_start`'s message.
    message: Option<Answer>,
    /// `message_delta`'s usage.
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct Answer {
    usage: Option<AnthropicUsage>,
}

/// `usage` as OpenAI writes it; a count some compatible servers send as
/// `null` reads as 0.
#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<CacheDetails>,
}

impl From<WireUsage> for Usage {
    fn from(w: WireUsage) -> Self {
        let usage = Usage {
            prompt_tokens: w.prompt_tokens.unwrap_or(0),
            completion_tokens: w.completion_tokens.unwrap_or(0),
            ..Usage::default()
        };
        CacheDetails::apply(w.prompt_tokens_details, usage)
    }
}

/// One streamed chunk, as far as metering cares.
#[derive(Deserialize)]
struct StreamChunk {
    usage: Option<WireUsage>,
    /// `IgnoredAny` is zero-sized, so counting the choices allocates nothing.
    choices: Option<Vec<IgnoredAny>>,
}

/// An event held back longer than this is not the usage chunk (a few hundred
/// bytes): it is let through unread rather than buffered without bound.
const MAX_EVENT: usize = 1 << 20;

/// A Responses stream's terminal event repeats the whole output before its
/// usage, so it may be far longer than [`MAX_EVENT`]: it is read up to
/// this. (The translation that wrote it held that output too.)
const MAX_RESPONSES_EVENT: usize = 64 << 20;

/// Reads usage from a streamed chat or completions answer, chunk by chunk,
/// wherever the chunks split its events.
///
/// With `strip`, the event carrying the final usage (OpenAI's own chunk,
/// with `"choices": []` or no `choices`) is removed, blank line and all, and
/// everything else passes byte for byte, in order; an event cut by a chunk's
/// end is held back until its end arrives. Usage on a chunk that also has
/// choices is read but never removed: it carries content. Without `strip`,
/// every chunk is passed as it came.
#[derive(Debug)]
pub struct StreamUsage {
    strip: bool,
    usage: Option<Usage>,
    /// Set for an Anthropic stream: its counts so far.
    anthropic: Option<AnthropicCounts>,
    /// Set for a Responses stream: usage is read from its terminal event.
    responses: bool,
    /// The longest event held to be read.
    limit: usize,
    /// The event under way, as far as earlier chunks brought it: held back
    /// from the client with `strip`, a copy to read it from without.
    held: Vec<u8>,
    /// The line under way has no bytes yet: a line end now ends an event.
    at_line_start: bool,
    /// The last byte was CR, so an LF now is the same line end.
    after_cr: bool,
    /// The last event ended on CR, so an LF next is its own: `Some(kept)`.
    cr_ended: Option<bool>,
    /// The event under way outgrew the limit ([`MAX_EVENT`] unless a
    /// Responses stream's): it passes unread.
    oversized: bool,
}

impl StreamUsage {
    pub fn new(strip: bool) -> Self {
        StreamUsage {
            strip,
            usage: None,
            anthropic: None,
            responses: false,
            limit: MAX_EVENT,
            held: Vec::new(),
            at_line_start: true,
            after_cr: false,
            cr_ended: None,
            oversized: false,
        }
    }

    /// Reads an Anthropic stream's usage (`message_start`, `message_delta`);
    /// nothing is ever removed from it.
    pub fn anthropic() -> Self {
        StreamUsage {
            anthropic: Some(AnthropicCounts::default()),
            ..StreamUsage::new(false)
        }
    }

    /// Reads a Responses stream's usage (the `response.completed`,
    /// `response.incomplete` or `response.failed` event's
    /// `response.usage`); nothing is ever removed from it.
    pub fn responses() -> Self {
        StreamUsage {
            responses: true,
            limit: MAX_RESPONSES_EVENT,
            ..StreamUsage::new(false)
        }
    }

    /// The last usage the stream carried.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Reads `chunk`, and returns what to send on: `chunk` itself (not
    /// copied) unless something is held back or removed.
    pub fn feed(&mut self, chunk: Bytes) -> Bytes {
        if chunk.is_empty() {
            return chunk;
        }
        let mut out = Output::new(self.strip);
        // Where the bytes not yet sent on (or dropped) start.
        let mut start = 0;
        if let Some(keep) = self.cr_ended.take()
            && chunk[0] == b'\n'
        {
            if keep {
                out.push_range(&chunk, 0..1);
            }
            start = 1;
        }
        let mut from = 0;
        while let Some(end) = self.next_event_end(&chunk, from) {
            let event = start..end;
            let strip = if std::mem::take(&mut self.oversized) {
                out.push_range(&chunk, event);
                false
            } else if self.held.is_empty() {
                let strip = self.read_event(&chunk[event.clone()]);
                if !strip {
                    out.push_range(&chunk, event);
                }
                strip
            } else {
                let mut whole = std::mem::take(&mut self.held);
                whole.extend_from_slice(&chunk[event]);
                let strip = self.read_event(&whole);
                if self.strip && !strip {
                    out.push_owned(&chunk, whole);
                } else {
                    whole.clear();
                    self.held = whole;
                }
                strip
            };
            start = end;
            from = end;
            if chunk[end - 1] == b'\r' {
                // Its blank line may be CRLF: the LF goes with it.
                match chunk.get(end) {
                    Some(b'\n') => {
                        if !strip {
                            out.push_range(&chunk, end..end + 1);
                        }
                        start = end + 1;
                    }
                    Some(_) => {}
                    None => self.cr_ended = Some(!strip),
                }
            }
        }
        if start < chunk.len() {
            self.hold(&chunk, start..chunk.len(), &mut out);
        }
        if self.strip {
            out.into_bytes(&chunk)
        } else {
            chunk
        }
    }

    /// Anything held back, once the stream has ended; an unfinished event is
    /// still read for usage.
    pub fn finish(&mut self) -> Bytes {
        let held = std::mem::take(&mut self.held);
        if !self.oversized && !held.is_empty() {
            self.read_usage(&held);
        }
        self.oversized = false;
        self.at_line_start = true;
        self.after_cr = false;
        self.cr_ended = None;
        if self.strip {
            Bytes::from(held)
        } else {
            Bytes::new()
        }
    }

    /// Holds back `tail`, an event the chunk leaves unfinished.
    fn hold(&mut self, chunk: &Bytes, tail: Range<usize>, out: &mut Output) {
        if self.oversized {
            out.push_range(chunk, tail);
            return;
        }
        if self.held.len() + tail.len() > self.limit {
            self.oversized = true;
            let held = std::mem::take(&mut self.held);
            out.push_owned(chunk, held);
            out.push_range(chunk, tail);
            return;
        }
        self.held.extend_from_slice(&chunk[tail]);
    }

    /// Where the next event ends (just past its blank line's line end),
    /// scanning `bytes` from `from`, with the line-end state carried over
    /// from the chunks before.
    fn next_event_end(&mut self, bytes: &[u8], from: usize) -> Option<usize> {
        let mut i = from;
        while i < bytes.len() {
            let Some(p) = bytes[i..].iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.at_line_start = false;
                self.after_cr = false;
                return None;
            };
            if p > 0 {
                self.at_line_start = false;
                self.after_cr = false;
            }
            let at = i + p;
            i = at + 1;
            let cr = bytes[at] == b'\r';
            if !cr && self.after_cr {
                self.after_cr = false;
                continue;
            }
            self.after_cr = cr;
            if self.at_line_start {
                return Some(i);
            }
            self.at_line_start = true;
        }
        None
    }

    /// Reads a whole event; whether to remove it.
    fn read_event(&mut self, event: &[u8]) -> bool {
        match self.read_usage(event) {
            Some(bare) => self.strip && bare,
            None => false,
        }
    }

    /// Reads an event's usage, if it has one that is not `null`; `Some(true)`
    /// when the event carries no choices besides.
    fn read_usage(&mut self, event: &[u8]) -> Option<bool> {
        if !names_usage(event) {
            return None;
        }
        let data = event_data(event);
        if let Some(counts) = self.anthropic {
            let event: AnthropicEvent = serde_json::from_slice(&data).ok()?;
            let usage = event.usage.or(event.message.and_then(|m| m.usage))?;
            let counts = counts.with(&usage);
            self.anthropic = Some(counts);
            self.usage = Some(counts.usage());
            return Some(false);
        }
        if self.responses {
            let event: ResponsesEvent<'_> = serde_json::from_slice(&data).ok()?;
            let terminal = matches!(
                event.kind.as_deref(),
                Some("response.completed" | "response.incomplete" | "response.failed")
            );
            if terminal {
                self.usage = Some(event.response?.usage?.into());
            }
            return Some(false);
        }
        let chunk: StreamChunk = serde_json::from_slice(&data).ok()?;
        self.usage = Some(chunk.usage?.into());
        Some(chunk.choices.is_none_or(|c| c.is_empty()))
    }
}

/// Whether `event` may carry a usage that is not `null`: a `"usage"` key
/// followed by anything but `null`. Every chunk of a stream that asked for
/// usage has `"usage":null`, so this spares parsing all but the last.
fn names_usage(event: &[u8]) -> bool {
    const KEY: &[u8] = b"\"usage\"";
    let mut rest = event;
    while let Some(at) = find(rest, KEY) {
        rest = &rest[at + KEY.len()..];
        let after = skip_space(rest);
        let Some(after) = after.strip_prefix(b":") else {
            // A string value "usage", not the key.
            continue;
        };
        if !skip_space(after).starts_with(b"null") {
            return true;
        }
    }
    false
}

fn skip_space(bytes: &[u8]) -> &[u8] {
    let n = bytes
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count();
    &bytes[n..]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(p) = haystack[from..].iter().position(|&b| b == first) {
        let at = from + p;
        if haystack[at + 1..].starts_with(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// An event's data: its `data` lines' values joined by LF, as the SSE spec
/// has a client do. Borrowed when there is one such line, as OpenAI sends.
fn event_data(event: &[u8]) -> Cow<'_, [u8]> {
    let mut data: Option<Cow<'_, [u8]>> = None;
    // Empty pieces are CRLF's halves or the LF left after a CR that ended
    // the event before: a blank line never falls inside an event.
    for line in event
        .split(|&b| b == b'\n' || b == b'\r')
        .filter(|l| !l.is_empty())
    {
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(p) => (&line[..p], &line[p + 1..]),
            None => (line, &[][..]),
        };
        if name != b"data" {
            continue;
        }
        let value = value.strip_prefix(b" ").unwrap_or(value);
        data = Some(match data {
            None => Cow::Borrowed(value),
            Some(before) => {
                let mut joined = before.into_owned();
                joined.push(b'\n');
                joined.extend_from_slice(value);
                Cow::Owned(joined)
            }
        });
    }
    data.unwrap_or_default()
}

/// What one [`StreamUsage::feed`] sends on: a slice of the chunk while it is
/// one contiguous run, else a new buffer. Inert without `strip`, where the
/// chunk itself is sent on.
struct Output {
    active: bool,
    run: Range<usize>,
    buffer: Option<Vec<u8>>,
}

impl Output {
    fn new(active: bool) -> Self {
        Output {
            active,
            run: 0..0,
            buffer: None,
        }
    }

    fn push_range(&mut self, chunk: &Bytes, range: Range<usize>) {
        if !self.active || range.is_empty() {
            return;
        }
        match &mut self.buffer {
            None if self.run.is_empty() => self.run = range,
            None if self.run.end == range.start => self.run.end = range.end,
            None => {
                let mut buffer = chunk[self.run.clone()].to_vec();
                buffer.extend_from_slice(&chunk[range]);
                self.buffer = Some(buffer);
            }
            Some(buffer) => buffer.extend_from_slice(&chunk[range]),
        }
    }

    fn push_owned(&mut self, chunk: &Bytes, bytes: Vec<u8>) {
        if !self.active || bytes.is_empty() {
            return;
        }
        match &mut self.buffer {
            Some(buffer) => buffer.extend_from_slice(&bytes),
            None if self.run.is_empty() => self.buffer = Some(bytes),
            None => {
                let mut buffer = chunk[self.run.clone()].to_vec();
                buffer.extend_from_slice(&bytes);
                self.buffer = Some(buffer);
            }
        }
    }

    fn into_bytes(self, chunk: &Bytes) -> Bytes {
        match self.buffer {
            Some(buffer) => Bytes::from(buffer),
            None if self.run.is_empty() => Bytes::new(),
            None => chunk.slice(self.run),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `USAGE_OBJECT`'s: 3 of its 9 prompt tokens read from the cache.
    const USAGE: Usage = Usage {
        prompt_tokens: 9,
        completion_tokens: 12,
        cache_read_tokens: 3,
        cache_write_tokens: 0,
    };

    /// A usage with no cache counts.
    fn plain(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            ..Usage::default()
        }
    }

    fn chunk(choices: &str, usage: &str) -> String {
        format!(
            r#"data: {{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","system_fingerprint":"fp_1","choices":{choices},"usage":{usage}}}"#
        )
    }

    const USAGE_OBJECT: &str = r#"{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":3},"completion_tokens_details":{"reasoning_tokens":5}}"#;

    /// A chat stream that asked for usage, with `eol` ending its lines, and
    /// the same stream without its usage event.
    fn stream(eol: &str) -> (String, String) {
        let events = [
            chunk(
                r#"[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]"#,
                "null",
            ),
            chunk(
                r#"[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]"#,
                "null",
            ),
            // Content that names usage, escaped as JSON has it.
            chunk(
                r#"[{"index":0,"delta":{"content":" \"usage\": {} world"},"finish_reason":null}]"#,
                " null",
            ),
            chunk(r#"[{"index":0,"delta":{},"finish_reason":"stop"}]"#, "null"),
            chunk("[]", USAGE_OBJECT),
            "data: [DONE]".to_owned(),
        ];
        let all: String = events.iter().map(|e| format!("{e}{eol}{eol}")).collect();
        let kept: String = events
            .iter()
            .filter(|e| !e.contains("\"choices\":[]"))
            .map(|e| format!("{e}{eol}{eol}"))
            .collect();
        (all, kept)
    }

    fn scan(strip: bool, parts: &[&[u8]]) -> (Vec<u8>, Option<Usage>) {
        let mut scanner = StreamUsage::new(strip);
        let mut out = Vec::new();
        for part in parts {
            out.extend_from_slice(&scanner.feed(Bytes::copy_from_slice(part)));
        }
        out.extend_from_slice(&scanner.finish());
        (out, scanner.usage())
    }

    #[test]
    fn answers_usage() {
        let chat = format!(
            r#"{{"id":"x","choices":[{{"message":{{"content":"hi"}}}}],"usage":{USAGE_OBJECT}}}"#
        );
        assert_eq!(from_answer(Dialect::OpenAi, chat.as_bytes()), Some(USAGE));
        let embeddings =
            br#"{"object":"list","data":[{"embedding":[0.1]}],"usage":{"prompt_tokens":5,"total_tokens":5}}"#;
        assert_eq!(from_answer(Dialect::OpenAi, embeddings), Some(plain(5, 0)));
        for none in [
            &br#"{"choices":[]}"#[..],
            br#"{"usage":null}"#,
            br#"{"usage":{"prompt_tokens":-1}}"#,
            br#"{"usage":"#,
            b"[1]",
            b"",
            &[0xff, 0xfe],
        ] {
            for dialect in [Dialect::OpenAi, Dialect::Anthropic] {
                let got = from_answer(dialect, none);
                assert_eq!(got, None, "{}", String::from_utf8_lossy(none));
            }
        }
    }

    /// The cache's parts of a prompt, in chat completions' and the
    /// Responses API's details; never more than the prompt.
    #[test]
    fn cache_reads_and_writes_are_read_as_parts_of_the_prompt() {
        let chat = br#"{"usage":{"prompt_tokens":100,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":60,"cache_write_tokens":30}}}"#;
        let want = Usage {
            prompt_tokens: 100,
            completion_tokens: 2,
            cache_read_tokens: 60,
            cache_write_tokens: 30,
        };
        assert_eq!(from_answer(Dialect::OpenAi, chat), Some(want));
        let response = br#"{"usage":{"input_tokens":100,"output_tokens":2,"input_tokens_details":{"cached_tokens":60,"cache_write_tokens":30}}}"#;
        assert_eq!(from_answer(Dialect::Responses, response), Some(want));
        // Details some servers write as null, or not at all.
        let nulls = br#"{"usage":{"prompt_tokens":100,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":null}}}"#;
        assert_eq!(from_answer(Dialect::OpenAi, nulls), Some(plain(100, 2)));
        let null = br#"{"usage":{"prompt_tokens":100,"completion_tokens":2,"prompt_tokens_details":null}}"#;
        assert_eq!(from_answer(Dialect::OpenAi, null), Some(plain(100, 2)));
        // More than the prompt is believed up to the prompt.
        let over = br#"{"usage":{"prompt_tokens":10,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":8,"cache_write_tokens":8}}}"#;
        let got = from_answer(Dialect::OpenAi, over).unwrap();
        assert_eq!((got.cache_read_tokens, got.cache_write_tokens), (8, 2));
    }

    /// Anthropic's cache tokens are outside `input_tokens`: the prompt is
    /// all three, each once.
    #[test]
    fn anthropic_answers_count_cache_tokens_once() {
        let message = br#"{"id":"msg_1","type":"message","content":[],"usage":{"input_tokens":10,"cache_creation_input_tokens":100,"cache_read_input_tokens":1000,"output_tokens":7}}"#;
        let want = Usage {
            prompt_tokens: 1110,
            completion_tokens: 7,
            cache_read_tokens: 1000,
            cache_write_tokens: 100,
        };
        assert_eq!(from_answer(Dialect::Anthropic, message), Some(want));
        let uncached = br#"{"usage":{"input_tokens":3,"output_tokens":2}}"#;
        assert_eq!(from_answer(Dialect::Anthropic, uncached), Some(plain(3, 2)));
    }

    /// A `response` object's counts hold their cached and reasoning
    /// tokens: they are read as they are, never added.
    #[test]
    fn responses_answers_usage() {
        let response = br#"{"id":"resp_1","object":"response","output":[],"usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":3},"output_tokens":12,"output_tokens_details":{"reasoning_tokens":5},"total_tokens":21}}"#;
        assert_eq!(from_answer(Dialect::Responses, response), Some(USAGE));
        for none in [
            &br#"{"output":[]}"#[..],
            br#"{"usage":null}"#,
            br#"{"usage":{"input_tokens":-1}}"#,
            b"",
        ] {
            assert_eq!(from_answer(Dialect::Responses, none), None);
        }
    }

    #[test]
    fn a_responses_stream_split_anywhere_gives_its_usage_and_passes_whole() {
        let events = concat!(
            "event: response.created\n",
            r#"data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1","status":"in_progress","output":[],"usage":null}}"#,
            "\n\nevent: response.output_text.delta\n",
            r#"data: {"type":"response.output_text.delta","sequence_number":1,"delta":"the \"usage\": {\"input_tokens\":5}"}"#,
            "\n\nevent: response.output_item.done\n",
            r#"data: {"type":"response.output_item.done","sequence_number":2,"item":{"type":"message"},"response":{"usage":{"input_tokens":1,"output_tokens":1}}}"#,
            "\n\nevent: response.completed\n",
            r#"data: {"type":"response.completed","sequence_number":3,"response":{"id":"resp_1","status":"completed","output":[],"usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":3},"output_tokens":12,"output_tokens_details":{"reasoning_tokens":5},"total_tokens":21}}}"#,
            "\n\n",
        );
        let bytes = events.as_bytes();
        for at in 0..=bytes.len() {
            let mut scanner = StreamUsage::responses();
            let mut out = Vec::new();
            for part in [&bytes[..at], &bytes[at..]] {
                out.extend_from_slice(&scanner.feed(Bytes::copy_from_slice(part)));
            }
            out.extend_from_slice(&scanner.finish());
            assert_eq!(out, bytes, "split at {at}");
            assert_eq!(scanner.usage(), Some(USAGE), "split at {at}");
        }
        // A terminal event longer than a chat stream's limit, in 16 KiB
        // chunks, is still read.
        let text = "x".repeat(2 * MAX_EVENT);
        let big = format!(
            "event: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"output\":[{{\"text\":\"{text}\"}}],\"usage\":{{\"input_tokens\":9,\"output_tokens\":12}}}}}}\n\n"
        );
        let mut scanner = StreamUsage::responses();
        let mut out = 0;
        for part in big.as_bytes().chunks(16 << 10) {
            out += scanner.feed(Bytes::copy_from_slice(part)).len();
        }
        out += scanner.finish().len();
        assert_eq!(out, big.len());
        assert_eq!(scanner.usage(), Some(plain(9, 12)));
        // Incomplete and failed responses carry their usage too.
        for kind in ["response.incomplete", "response.failed"] {
            let event = format!(
                "event: {kind}\ndata: {{\"type\":\"{kind}\",\"response\":{{\"usage\":{{\"input_tokens\":9,\"output_tokens\":12}}}}}}\n\n"
            );
            let mut scanner = StreamUsage::responses();
            assert_eq!(scanner.feed(Bytes::from(event.clone())), event.as_bytes());
            assert_eq!(scanner.usage(), Some(plain(9, 12)), "{kind}");
        }
    }

    #[test]
    fn an_anthropic_stream_split_anywhere_gives_its_usage_and_passes_whole() {
        let events = concat!(
            "event: message_start\n",
            r#"data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":1000,"output_tokens":1}}}"#,
            "\n\nevent: content_block_delta\n",
            r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"the \"usage\": 5"}}"#,
            "\n\nevent: message_delta\n",
            r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#,
            "\n\nevent: message_stop\n",
            r#"data: {"type":"message_stop"}"#,
            "\n\n",
        );
        let bytes = events.as_bytes();
        for at in 0..=bytes.len() {
            let mut scanner = StreamUsage::anthropic();
            let mut out = Vec::new();
            for part in [&bytes[..at], &bytes[at..]] {
                out.extend_from_slice(&scanner.feed(Bytes::copy_from_slice(part)));
            }
            out.extend_from_slice(&scanner.finish());
            assert_eq!(out, bytes, "split at {at}");
            assert_eq!(
                scanner.usage(),
                Some(Usage {
                    prompt_tokens: 1010,
                    completion_tokens: 15,
                    cache_read_tokens: 1000,
                    cache_write_tokens: 0,
                }),
                "split at {at}"
            );
        }
    }

    #[test]
    fn a_stream_split_anywhere_gives_its_usage_and_loses_only_the_usage_event() {
        for eol in ["\n", "\r\n", "\r"] {
            let (all, kept) = stream(eol);
            let bytes = all.as_bytes();
            for at in 0..=bytes.len() {
                let parts = [&bytes[..at], &bytes[at..]];
                let (out, usage) = scan(false, &parts);
                assert_eq!(out, bytes, "{eol:?} split at {at}");
                assert_eq!(usage, Some(USAGE), "{eol:?} split at {at}");
                let (out, usage) = scan(true, &parts);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    kept,
                    "{eol:?} split at {at}"
                );
                assert_eq!(usage, Some(USAGE), "{eol:?} split at {at}");
            }
            // A byte at a time.
            let bytes_one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(scan(false, &bytes_one_by_one).0, bytes);
            let (out, usage) = scan(true, &bytes_one_by_one);
            assert_eq!(String::from_utf8(out).unwrap(), kept, "{eol:?}");
            assert_eq!(usage, Some(USAGE));
        }
    }

    #[test]
    fn whole_events_pass_without_a_copy() {
        let (all, _) = stream("\n");
        let first = all.split_inclusive("\n\n").next().unwrap();
        let mut scanner = StreamUsage::new(true);
        let chunk = Bytes::copy_from_slice(first.as_bytes());
        let out = scanner.feed(chunk.clone());
        assert_eq!(out.as_ptr(), chunk.as_ptr());
        assert_eq!(out.len(), chunk.len());
        // The usage event in the middle of a chunk: the rest is copied once.
        let mut scanner = StreamUsage::new(true);
        let (all, kept) = stream("\n");
        let out = scanner.feed(Bytes::from(all));
        assert_eq!(out, kept.as_bytes());
        assert!(scanner.finish().is_empty());
    }

    #[test]
    fn mixed_line_ends_and_multiline_data_are_read() {
        // CR then LF across chunks, LF then CRLF, and data over two lines.
        let usage_event =
            format!("data: {{\"choices\":[],\r\ndata: \"usage\":{USAGE_OBJECT}}}\r\n\r\n");
        let input = "data: {\"a\":1}\r\n\ndata: [DONE]\r\r";
        let all = format!("{usage_event}{input}");
        let bytes = all.as_bytes();
        for at in 0..=bytes.len() {
            let (out, usage) = scan(true, &[&bytes[..at], &bytes[at..]]);
            assert_eq!(String::from_utf8(out).unwrap(), input, "split at {at}");
            assert_eq!(usage, Some(USAGE));
        }
        // A usage event ended by a lone CR: the LF after it is its own.
        let all = format!("data: {{\"choices\":[],\"usage\":{USAGE_OBJECT}}}\r\r\ndata: x\n\n");
        let bytes = all.as_bytes();
        for at in 0..=bytes.len() {
            let (out, _) = scan(true, &[&bytes[..at], &bytes[at..]]);
            assert_eq!(out, b"data: x\n\n", "split at {at}");
        }
    }

    #[test]
    fn usage_beside_choices_is_read_and_kept() {
        let event = format!(
            "{}\n\n",
            chunk(
                r#"[{"index":0,"delta":{"content":"!"},"finish_reason":"stop"}]"#,
                USAGE_OBJECT
            )
        );
        let (out, usage) = scan(true, &[event.as_bytes()]);
        assert_eq!(out, event.as_bytes());
        assert_eq!(usage, Some(USAGE));
        // No choices at all is a usage-only event too.
        let bare = format!("data: {{\"usage\":{USAGE_OBJECT}}}\n\n");
        let (out, usage) = scan(true, &[bare.as_bytes()]);
        assert!(out.is_empty());
        assert_eq!(usage, Some(USAGE));
    }

    #[test]
    fn streams_without_usage_or_with_bad_events_pass_unchanged() {
        let input = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
            ": a comment\n\n",
            "event: x\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":\"many\"}}\n\n",
            "data: [DONE]\n\n",
            "data: unfinished",
        );
        for strip in [false, true] {
            let (out, usage) = scan(strip, &[input.as_bytes()]);
            assert_eq!(out, input.as_bytes());
            assert_eq!(usage, None);
        }
        // The last usage wins.
        let twice = format!(
            "data: {{\"choices\":[{{}}],\"usage\":{{\"prompt_tokens\":1}}}}\n\n\
             data: {{\"choices\":[{{}}],\"usage\":{USAGE_OBJECT}}}\n\n"
        );
        assert_eq!(scan(true, &[twice.as_bytes()]).1, Some(USAGE));
    }

    #[test]
    fn an_unfinished_usage_event_is_read_and_given_back_at_the_end() {
        let event = format!("data: {{\"choices\":[],\"usage\":{USAGE_OBJECT}}}");
        let mut scanner = StreamUsage::new(true);
        assert!(scanner.feed(Bytes::from(event.clone())).is_empty());
        assert_eq!(scanner.finish(), event.as_bytes());
        assert_eq!(scanner.usage(), Some(USAGE));
    }

    #[test]
    fn an_endless_event_is_let_through_unread() {
        let mut scanner = StreamUsage::new(true);
        let big = Bytes::from(vec![b'x'; MAX_EVENT]);
        let mut out = scanner.feed(Bytes::from_static(b"data: ")).len();
        out += scanner.feed(big.clone()).len();
        out += scanner.feed(big).len();
        out += scanner
            .feed(Bytes::from_static(b"\n\ndata: [DONE]\n\n"))
            .len();
        out += scanner.finish().len();
        assert_eq!(out, 6 + 2 * MAX_EVENT + 16);
    }

    fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut parts = Vec::new();
        let mut last = 0;
        for c in cuts.into_iter().chain([bytes.len()]) {
            parts.push(bytes[last..c].to_vec());
            last = c;
        }
        parts
    }

    proptest! {
        /// Without strip, what goes out is what came in, however it is cut;
        /// no input panics either way.
        #[test]
        fn scanning_never_panics_and_passes_everything_without_strip(
            pieces in proptest::collection::vec(prop_oneof![
                Just(b"data: ".to_vec()),
                Just(b"\n".to_vec()),
                Just(b"\r".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"\"usage\":".to_vec()),
                Just(b"null".to_vec()),
                Just(b"{\"choices\":[],\"usage\":{\"prompt_tokens\":1}}".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..8),
            ], 0..40),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let input = pieces.concat();
            let parts = split(&input, &cuts);
            let parts: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
            let (out, usage) = scan(false, &parts);
            prop_assert_eq!(&out, &input);
            let (stripped, stripped_usage) = scan(true, &parts);
            prop_assert_eq!(usage, stripped_usage);
            prop_assert!(stripped.len() <= input.len());
            // Cut where it is cut, the output is the same.
            let (whole, _) = scan(true, &[&input]);
            prop_assert_eq!(stripped, whole);
        }

        /// A realistic stream, cut anywhere, loses only its usage event.
        #[test]
        fn realistic_streams_cut_anywhere(
            eol in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let (all, kept) = stream(eol);
            let parts = split(all.as_bytes(), &cuts);
            let parts: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
            let (out, usage) = scan(true, &parts);
            prop_assert_eq!(String::from_utf8(out).unwrap(), kept);
            prop_assert_eq!(usage, Some(USAGE));
        }
    }
}
