//! Where the data plane's log lines go: stderr, through one shared buffer.
//!
//! Every API request writes one log line ([`crate::meter`]). Writing each
//! with its own `write(2)`, or handing it to a writer thread that must be
//! woken, costs more CPU than most of the request path. So request lines
//! wait in the buffer until it fills or the next flush tick
//! ([`FLUSH_EVERY`], run by [`LogWriter::flush_periodically`]); any other
//! line (lifecycle, warnings, errors) flushes the buffer at once, so those
//! are visible immediately and lines stay in order. The binary flushes on
//! shutdown and before a panic message.

use std::io::{BufWriter, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// The longest a request's log line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

const BUFFER_BYTES: usize = 64 * 1024;

type Shared = Arc<Mutex<BufWriter<Box<dyn Write + Send>>>>;

/// A `tracing_subscriber` writer; clones share the buffer.
#[derive(Clone)]
pub struct LogWriter {
    out: Shared,
}

impl LogWriter {
    pub fn stderr() -> LogWriter {
        LogWriter::new(std::io::stderr())
    }

    pub fn new(out: impl Write + Send + 'static) -> LogWriter {
        let out: Box<dyn Write + Send> = Box::new(out);
        LogWriter {
            out: Arc::new(Mutex::new(BufWriter::with_capacity(BUFFER_BYTES, out))),
        }
    }

    /// Writes out whatever is buffered.
    pub fn flush(&self) {
        let _ = lock(&self.out).flush();
    }

    /// Flushes every [`FLUSH_EVERY`], forever.
    pub async fn flush_periodically(self) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.flush();
        }
    }
}

/// A poisoned lock only means another thread panicked mid-line: logging
/// goes on.
fn lock(out: &Shared) -> MutexGuard<'_, BufWriter<Box<dyn Write + Send>>> {
    out.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One event's writer: `tracing_subscriber` writes the formatted line, then
/// drops it.
pub struct Line<'a> {
    out: &'a Shared,
    flush: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock(self.out).write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        lock(self.out).write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        lock(self.out).flush()
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if self.flush {
            let _ = lock(self.out).flush();
        }
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            out: &self.out,
            flush: true,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line<'a> {
        Line {
            out: &self.out,
            flush: meta.target() != crate::meter::LOG_TARGET,
        }
    }
}

/// A sink tests can read what was written to.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Sink(Arc<Mutex<Vec<u8>>>);

#[cfg(test)]
impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl Sink {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriber(writer: LogWriter) -> impl tracing::Subscriber {
        tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(writer)
            .finish()
    }

    #[test]
    fn request_lines_wait_for_a_flush_and_others_flush_in_order() {
        let sink = Sink::default();
        let writer = LogWriter::new(sink.clone());
        tracing::subscriber::with_default(subscriber(writer.clone()), || {
            tracing::info!(target: "sluice_data_plane::meter", request_id = "r1", "request");
            assert_eq!(sink.text(), "", "a request line went out at once");
            tracing::warn!("upstream failed");
        });
        let text = sink.text();
        let (first, second) = (
            text.find("r1").unwrap(),
            text.find("upstream failed").unwrap(),
        );
        assert!(first < second, "lines out of order: {text}");

        tracing::subscriber::with_default(subscriber(writer.clone()), || {
            tracing::info!(target: "sluice_data_plane::meter", request_id = "r2", "request");
        });
        assert!(!sink.text().contains("r2"));
        writer.flush();
        assert!(sink.text().contains("r2"), "flush wrote nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn the_periodic_flush_writes_request_lines_out() {
        let sink = Sink::default();
        let writer = LogWriter::new(sink.clone());
        tracing::subscriber::with_default(subscriber(writer.clone()), || {
            tracing::info!(target: "sluice_data_plane::meter", request_id = "r3", "request");
        });
        tokio::spawn(writer.flush_periodically());
        tokio::time::sleep(FLUSH_EVERY * 2).await;
        assert!(sink.text().contains("r3"), "{}", sink.text());
    }
}
