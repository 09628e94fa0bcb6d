//! How the request's log line is written.
//!
//! `tracing-subscriber`'s formatters are general: styling hooks, span
//! context, a serde map per event. For the one line every API request
//! writes ([`crate::meter`]) they cost ~15,000 instructions (text) and
//! ~25,000 (JSON), more than the rest of the data plane's own work on the
//! request. [`Lines`] writes that event itself, in the same shape as the
//! standard formatter it wraps (the tests compare the two), and hands every
//! other event to that formatter.
//!
//! One difference, on purpose: the request line carries no span context
//! (its `request_id` identifies it). Its strings are quoted and escaped in
//! text as the standard format does, so a model name sent by a client cannot
//! start a forged line; other values have their control characters escaped
//! too.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::meter;

/// An event formatter: the request line written directly, everything else
/// by `standard`.
pub struct Lines<F> {
    standard: F,
    json: bool,
}

impl<F> Lines<F> {
    /// Around `tracing-subscriber`'s text format (`Full`).
    pub fn text(standard: F) -> Self {
        Lines {
            standard,
            json: false,
        }
    }

    /// Around `tracing-subscriber`'s JSON format.
    pub fn json(standard: F) -> Self {
        Lines {
            standard,
            json: true,
        }
    }
}

impl<S, N, F> FormatEvent<S, N> for Lines<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        // Colours are for people at a terminal, where speed does not matter.
        if meta.target() != meter::LOG_TARGET || writer.has_ansi_escapes() {
            return self.standard.format_event(ctx, writer, event);
        }
        if self.json {
            writer.write_str("{\"timestamp\":\"")?;
            timestamp(&mut writer)?;
            write!(writer, "\",\"level\":\"{}\",\"fields\":{{", meta.level())?;
            let mut fields = Fields::new(&mut writer, true);
            event.record(&mut fields);
            fields.result?;
            writer.write_str("},\"target\":")?;
            json_string(&mut writer, meta.target())?;
            writer.write_str("}\n")
        } else {
            timestamp(&mut writer)?;
            // The standard format's level is right-aligned in five columns.
            write!(writer, " {:>5} {}: ", meta.level().as_str(), meta.target())?;
            let mut fields = Fields::new(&mut writer, false);
            event.record(&mut fields);
            fields.result?;
            writer.write_char('\n')
        }
    }
}

/// The standard formatters' timestamp: RFC 3339, UTC, microseconds.
fn timestamp(writer: &mut Writer<'_>) -> fmt::Result {
    write!(
        writer,
        "{}",
        humantime::format_rfc3339_micros(std::time::SystemTime::now())
    )
}

/// An event's fields as the standard formats write them. JSON: the
/// members of the `fields` object. Text: the message, then `name=value`,
/// separated by spaces, strings quoted and escaped (`Debug`).
struct Fields<'w, 'a> {
    out: &'w mut Writer<'a>,
    json: bool,
    first: bool,
    /// A `Debug` value's text, before it is escaped.
    scratch: String,
    result: fmt::Result,
}

impl<'w, 'a> Fields<'w, 'a> {
    fn new(out: &'w mut Writer<'a>, json: bool) -> Self {
        Fields {
            out,
            json,
            first: true,
            scratch: String::new(),
            result: Ok(()),
        }
    }

    /// Writes one field: its separator and name, then the value by `value`.
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'a>, bool) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let first = std::mem::replace(&mut self.first, false);
        let (out, json) = (&mut *self.out, self.json);
        self.result = (|| {
            let name = field.name();
            if json {
                // Field names are Rust identifiers: nothing to escape.
                out.write_str(if first { "\"" } else { ",\"" })?;
                out.write_str(name)?;
                out.write_str("\":")?;
            } else {
                if !first {
                    out.write_char(' ')?;
                }
                if name != "message" {
                    out.write_str(name)?;
                    out.write_char('=')?;
                }
            }
            value(out, json)
        })();
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |out, json| {
            if json {
                json_string(out, value)
            } else {
                quoted(out, value)
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out, _| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out, _| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out, _| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: serde_json writes null.
        self.field(field, |out, json| {
            if json && !value.is_finite() {
                out.write_str("null")
            } else {
                write!(out, "{value:?}")
            }
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        if write!(scratch, "{value:?}").is_err() {
            self.result = Err(fmt::Error);
            return;
        }
        self.field(field, |out, json| {
            if json {
                json_string(out, &scratch)
            } else {
                text_value(out, &scratch)
            }
        });
        self.scratch = scratch;
    }
}

/// `s` as a JSON string, escaped as serde_json does.
fn json_string(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.write_str(s)?;
        return out.write_char('"');
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.write_str(&s[start..i])?;
        if escaped.is_empty() {
            write!(out, "\\u{b:04x}")?;
        } else {
            out.write_str(escaped)?;
        }
        start = i + 1;
    }
    out.write_str(&s[start..])?;
    out.write_char('"')
}

/// `s` quoted as `Debug` writes it. Printable ASCII without quotes or
/// backslashes, and the ellipsis that ends a key label without an alias
/// (`auth::key_label`), are written as they are: that is nearly every value,
/// and `Debug` would look each non-ASCII character up in Unicode's tables.
fn quoted(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    if s.chars()
        .all(|c| matches!(c, ' '..='~' | '…') && c != '"' && c != '\\')
    {
        out.write_char('"')?;
        out.write_str(s)?;
        out.write_char('"')
    } else {
        write!(out, "{s:?}")
    }
}

/// `s` with control characters (C0, DEL, C1) escaped.
fn text_value(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    if !s.chars().any(char::is_control) {
        return out.write_str(s);
    }
    for c in s.chars() {
        if c.is_control() {
            write!(out, "\\u{{{:x}}}", u32::from(c))?;
        } else {
            out.write_char(c)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::log_writer::{LogWriter, Sink};

    /// A request line and another line, as the meter and the rest log them.
    fn log_some(model: &str) {
        tracing::info!(
            target: "sluice_data_plane::meter",
            request_id = "req-1",
            key = "ci-bot",
            team = "ml",
            model = model,
            status = 200u16,
            code = "",
            stream = false,
            latency_ms = 12u64,
            "request"
        );
        tracing::warn!(revision = 7, "applied \"config\"");
    }

    /// What `log_some` writes with the standard formatter and with ours.
    fn both(json: bool, model: &str) -> (String, String) {
        let standard = Sink::default();
        let ours = Sink::default();
        let builder = |sink: &Sink| {
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(LogWriter::new(sink.clone()))
        };
        if json {
            tracing::subscriber::with_default(builder(&standard).json().finish(), || {
                log_some(model)
            });
            tracing::subscriber::with_default(
                builder(&ours).json().map_event_format(Lines::json).finish(),
                || log_some(model),
            );
        } else {
            tracing::subscriber::with_default(builder(&standard).finish(), || log_some(model));
            tracing::subscriber::with_default(
                builder(&ours).map_event_format(Lines::text).finish(),
                || log_some(model),
            );
        }
        (standard.text(), ours.text())
    }

    /// A line without its leading timestamp.
    fn untimed(line: &str) -> &str {
        line.split_once(' ').map_or(line, |(_, rest)| rest)
    }

    #[test]
    fn json_lines_are_the_standard_formatters() {
        let model = "gpt-4o \"mini\"\\ é\u{1}\n";
        let (standard, ours) = both(true, model);
        let parse = |text: &str| -> Vec<serde_json::Value> {
            text.lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).expect(l);
                    v.as_object_mut().unwrap().remove("timestamp").expect("ts");
                    v
                })
                .collect()
        };
        assert_eq!(parse(&ours), parse(&standard), "{ours}\n{standard}");
        let request = ours.lines().next().unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(request).unwrap()["fields"]["model"],
            model
        );
        // Same keys in the same order too, and a timestamp of the same shape.
        let keys = |l: &str| {
            let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(l).unwrap();
            v.keys().cloned().collect::<Vec<_>>()
        };
        let standard_request = standard.lines().next().unwrap();
        assert_eq!(keys(request), keys(standard_request));
        let ts = |l: &str| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["timestamp"]
                .as_str()
                .unwrap()
                .len()
        };
        assert_eq!(ts(request), ts(standard_request));
    }

    #[test]
    fn text_lines_are_the_standard_formatters() {
        let (standard, ours) = both(false, "gpt-4o mini");
        let (s, o): (Vec<_>, Vec<_>) = (
            standard.lines().map(untimed).collect(),
            ours.lines().map(untimed).collect(),
        );
        assert_eq!(o, s, "{ours}\n{standard}");
        assert_eq!(
            o[0],
            " INFO sluice_data_plane::meter: request request_id=\"req-1\" key=\"ci-bot\" \
             team=\"ml\" model=\"gpt-4o mini\" status=200 code=\"\" stream=false latency_ms=12"
        );
        let ts = |l: &str| l.split_once(' ').unwrap().0.len();
        assert_eq!(
            ts(ours.lines().next().unwrap()),
            ts(standard.lines().next().unwrap())
        );
    }

    #[test]
    fn a_client_chosen_value_cannot_forge_a_text_line() {
        let (_, ours) = both(false, "x\n2026-01-01T00:00:00Z  INFO forged\u{1b}[31m");
        assert_eq!(ours.lines().count(), 2, "{ours}");
        assert!(
            ours.contains(r#"model="x\n2026-01-01T00:00:00Z  INFO forged\u{1b}[31m""#),
            "{ours}"
        );
    }

    #[test]
    fn text_strings_quote_as_debug_does() {
        for s in [
            "",
            "plain words",
            "q\"b\\s",
            "\u{0}\u{7f}\n",
            "é✓",
            "~ !",
            "sk-AbCd…",
            "…\u{301}",
        ] {
            let mut ours = String::new();
            quoted(&mut ours, s).unwrap();
            assert_eq!(ours, format!("{s:?}"));
        }
    }

    #[test]
    fn json_strings_escape_as_serde_json_does() {
        for s in [
            "",
            "plain",
            "q\"b\\s",
            "\u{0}\u{1f}\u{7f}\u{80}\t\r\n\u{8}\u{c}",
            "é✓",
        ] {
            let mut ours = String::new();
            json_string(&mut ours, s).unwrap();
            assert_eq!(ours, serde_json::to_string(s).unwrap());
        }
    }
}
