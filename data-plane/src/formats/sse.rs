//! Server-sent events as OpenAI-compatible APIs stream them: `data: <json>`
//! events, each ended by a blank line, closed by `data: [DONE]`.

/// The `content-type` of an event stream.
pub const CONTENT_TYPE: &str = "text/event-stream";

/// The event that ends an OpenAI stream.
pub const DONE: &str = "data: [DONE]\n\n";

/// One event carrying `data` (a JSON value, written on one line).
pub fn event(data: impl std::fmt::Display) -> String {
    format!("data: {data}\n\n")
}

/// Whether a `content-type` value is an event stream's.
pub fn is_event_stream(content_type: &str) -> bool {
    content_type.trim_start().starts_with(CONTENT_TYPE)
}

/// The most an event (its `data` and `event` lines together) may hold by
/// default in an [`EventReader`]: far above any event Anthropic or OpenAI
/// sends (a whole tool call's input comes in fragments).
pub const MAX_EVENT: usize = 1 << 20;

/// One event read from a stream: its `event:` name (empty when it had
/// none) and its `data:` lines' values joined by LF, as the SSE spec has a
/// client do. Both borrow the reader until its next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    pub name: &'a [u8],
    pub data: &'a [u8],
}

impl<'a> Event<'a> {
    /// The name as text; `None` when it is not UTF-8.
    pub fn name_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.name).ok()
    }

    /// The data as text; `None` when it is not UTF-8.
    pub fn data_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.data).ok()
    }
}

/// An event that outgrew the reader's limit: it is skipped whole (its
/// lines are dropped as they come, never held), and reported once, where it
/// would have been.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an event of the stream is longer than {limit} bytes")]
pub struct EventTooLong {
    pub limit: usize,
}

/// Reads server-sent events incrementally from chunks split anywhere (mid
/// line, mid UTF-8 sequence, between CR and LF), as the SSE spec parses
/// them: lines end with LF, CRLF or CR; a blank line ends an event; lines
/// starting with `:` are comments; `data` lines are joined by LF; `event`
/// names the event; `id` and `retry` are read and ignored; a leading
/// byte-order mark is skipped. An event with no `data` line is not given.
///
/// [`EventReader::push`] a chunk, then call [`EventReader::next_event`]
/// until it gives `None`; what it holds is only the line under way and the
/// event under way, each bounded by the limit ([`MAX_EVENT`] unless
/// [`EventReader::with_limit`]), however long the stream. At the end of the
/// stream, [`EventReader::finish`] completes an event the upstream did not
/// close with a blank line (many servers omit the last one), then drain it
/// the same way.
#[derive(Debug)]
pub struct EventReader {
    /// Bytes pushed and not yet read, from `pos`.
    buf: Vec<u8>,
    pos: usize,
    /// Where in `buf` the search for the line under way's end resumes:
    /// bytes before it are known to hold none, so a long line arriving in
    /// small chunks is scanned once, not once per chunk.
    searched: usize,
    /// The event under way: its data (each line followed by LF) and name.
    data: Vec<u8>,
    name: Vec<u8>,
    has_data: bool,
    /// The last event was given out: clear it on the next call.
    given: bool,
    /// The last line ended with CR, so an LF next is the same line end.
    after_cr: bool,
    /// Part of the line under way was dropped (its event is too long).
    mid_line: bool,
    /// The event under way outgrew the limit: dropped until its blank line.
    too_long: bool,
    /// Whether the stream's first bytes (a byte-order mark?) were seen.
    started: bool,
    limit: usize,
}

impl Default for EventReader {
    fn default() -> Self {
        EventReader::new()
    }
}

impl EventReader {
    pub fn new() -> Self {
        EventReader::with_limit(MAX_EVENT)
    }

    /// A reader whose events may hold at most `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        EventReader {
            buf: Vec::new(),
            pos: 0,
            searched: 0,
            data: Vec::new(),
            name: Vec::new(),
            has_data: false,
            given: false,
            after_cr: false,
            mid_line: false,
            too_long: false,
            started: false,
            limit,
        }
    }

    /// Adds the stream's next bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.searched = self.searched.saturating_sub(self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Marks the end of the stream: an event still under way is ended as
    /// if by a blank line (its last line, too, if unfinished). Then call
    /// [`EventReader::next_event`] until `None`.
    pub fn finish(&mut self) {
        let pending = self.pos < self.buf.len() || self.has_data || self.too_long;
        if pending {
            // A line end for the unfinished line, and the blank line; after
            // a CR, the first LF joins it, and the second ends the event.
            self.push(b"\n\n");
        }
    }

    /// The next whole event, if the bytes pushed so far complete one;
    /// `Some(Err(_))` where an event too long to hold was skipped.
    pub fn next_event(&mut self) -> Option<Result<Event<'_>, EventTooLong>> {
        if std::mem::take(&mut self.given) {
            self.data.clear();
            self.name.clear();
            self.has_data = false;
        }
        loop {
            if !self.started {
                const BOM: &[u8] = b"\xEF\xBB\xBF";
                let rest = &self.buf[self.pos..];
                if rest.len() < BOM.len() && BOM.starts_with(rest) {
                    // Too few bytes yet to tell a byte-order mark.
                    return None;
                }
                self.started = true;
                if rest.starts_with(BOM) {
                    self.pos += BOM.len();
                }
            }
            if self.after_cr && self.pos < self.buf.len() {
                self.after_cr = false;
                if self.buf[self.pos] == b'\n' {
                    self.pos += 1;
                }
            }
            let from = self.searched.max(self.pos);
            let rest = &self.buf[self.pos..];
            let found = self.buf[from..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
                .map(|p| from - self.pos + p);
            let Some(at) = found else {
                self.searched = self.buf.len();
                // The line is unfinished: hold it while the event fits.
                if !self.too_long && self.data.len() + self.name.len() + rest.len() > self.limit {
                    self.too_long = true;
                }
                if self.too_long && !rest.is_empty() {
                    self.pos = self.buf.len();
                    self.mid_line = true;
                }
                return None;
            };
            let start = self.pos;
            let end = start + at;
            self.after_cr = self.buf[end] == b'\r';
            self.pos = end + 1;
            let blank = start == end && !std::mem::take(&mut self.mid_line);
            if blank {
                if std::mem::take(&mut self.too_long) {
                    self.data.clear();
                    self.name.clear();
                    self.has_data = false;
                    return Some(Err(EventTooLong { limit: self.limit }));
                }
                if !self.has_data {
                    self.name.clear();
                    continue;
                }
                self.data.pop();
                self.given = true;
                return Some(Ok(Event {
                    name: &self.name,
                    data: &self.data,
                }));
            }
            if self.too_long {
                continue;
            }
            let line = &self.buf[start..end];
            if line[0] == b':' {
                continue;
            }
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(p) => {
                    let value = &line[p + 1..];
                    (&line[..p], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (line, &[][..]),
            };
            match field {
                b"data" => {
                    self.data.extend_from_slice(value);
                    self.data.push(b'\n');
                    self.has_data = true;
                }
                b"event" => {
                    self.name.clear();
                    self.name.extend_from_slice(value);
                }
                _ => {}
            }
            if self.data.len() + self.name.len() > self.limit {
                self.too_long = true;
                self.data.clear();
                self.name.clear();
                self.has_data = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `parts` pushed one by one, then finished: each event as
    /// `(name, data)`, or `None` for a skipped one.
    fn read(parts: &[&[u8]], limit: usize) -> Vec<Option<(String, String)>> {
        let mut reader = EventReader::with_limit(limit);
        let mut events = Vec::new();
        let mut drain = |reader: &mut EventReader| {
            while let Some(event) = reader.next_event() {
                events.push(event.ok().map(|e| {
                    (
                        String::from_utf8_lossy(e.name).into_owned(),
                        String::from_utf8_lossy(e.data).into_owned(),
                    )
                }));
            }
        };
        for part in parts {
            reader.push(part);
            drain(&mut reader);
        }
        reader.finish();
        drain(&mut reader);
        events
    }

    fn ev(name: &str, data: &str) -> Option<(String, String)> {
        Some((name.to_owned(), data.to_owned()))
    }

    #[test]
    fn reader_reads_events_split_anywhere_with_any_line_end() {
        for eol in ["\n", "\r\n", "\r"] {
            let stream = [
                "\u{feff}: a comment",
                "event: message_start",
                "data: {\"a\":1}",
                "",
                "event: ping",
                "id: 7",
                "retry: 10",
                "data: {}",
                "",
                "",
                "data:no space",
                "data:  two spaces",
                "data",
                "",
                "event: nothing",
                "",
                "data: é中",
                "",
            ]
            .join(eol);
            let expected = vec![
                ev("message_start", "{\"a\":1}"),
                ev("ping", "{}"),
                ev("", "no space\n two spaces\n"),
                ev("", "é中"),
            ];
            let bytes = stream.as_bytes();
            assert_eq!(read(&[bytes], MAX_EVENT), expected, "{eol:?}");
            for at in 0..=bytes.len() {
                assert_eq!(
                    read(&[&bytes[..at], &bytes[at..]], MAX_EVENT),
                    expected,
                    "{eol:?} split at {at}"
                );
            }
            let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(read(&one_by_one, MAX_EVENT), expected, "{eol:?}");
        }
    }

    #[test]
    fn a_long_line_in_small_chunks_is_scanned_once() {
        // Scanned again per chunk, this would take some 10^10 steps.
        let line = format!("data: {}\n\n", "x".repeat(200_000));
        let mut reader = EventReader::new();
        let mut sizes = Vec::new();
        for b in line.as_bytes() {
            reader.push(std::slice::from_ref(b));
            while let Some(event) = reader.next_event() {
                sizes.push(event.unwrap().data.len());
            }
        }
        assert_eq!(sizes, vec![200_000]);
    }

    #[test]
    fn reader_completes_an_unclosed_last_event() {
        assert_eq!(
            read(&[b"data: a\n\ndata: b"], MAX_EVENT),
            vec![ev("", "a"), ev("", "b")]
        );
        assert_eq!(read(&[b"data: b\n"], MAX_EVENT), vec![ev("", "b")]);
        assert_eq!(read(&[b"data: b\r"], MAX_EVENT), vec![ev("", "b")]);
        assert_eq!(read(&[b"event: x\n"], MAX_EVENT), vec![]);
        assert_eq!(read(&[b""], MAX_EVENT), vec![]);
    }

    #[test]
    fn reader_skips_an_event_over_its_limit_and_holds_no_more() {
        let long = format!("data: {}\n\ndata: ok\n\n", "x".repeat(100));
        // Whole, and a byte at a time (never holding the long line).
        assert_eq!(read(&[long.as_bytes()], 50), vec![None, ev("", "ok")]);
        let mut reader = EventReader::with_limit(50);
        let mut out = Vec::new();
        for b in long.as_bytes() {
            reader.push(std::slice::from_ref(b));
            assert!(reader.buf.len() <= 51 && reader.data.len() <= 51);
            while let Some(e) = reader.next_event() {
                out.push(e.is_ok());
            }
        }
        assert_eq!(out, vec![false, true]);
        // Many short lines adding up.
        let lines = format!("{}\ndata: ok\n\n", "data: 0123456789\n".repeat(10));
        assert_eq!(read(&[lines.as_bytes()], 50), vec![None, ev("", "ok")]);
        // An endless last event.
        assert_eq!(read(&[b"data: 0123456789", b"0123456789"], 12), vec![None]);
    }

    #[test]
    fn events_and_their_content_type() {
        assert_eq!(event(r#"{"a":1}"#), "data: {\"a\":1}\n\n");
        assert!(is_event_stream("text/event-stream; charset=utf-8"));
        assert!(is_event_stream(" text/event-stream"));
        assert!(!is_event_stream("application/json"));
    }
}
