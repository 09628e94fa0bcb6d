//! Where the data plane's log lines go: stderr, through one shared buffer.
//!
//! Every API request writes one log line ([`crate::meter`]). Writing each
//! with its own `write(2)`, or handing it to a writer thread that must be
//! woken, costs more CPU than most of the request path. So request lines
//! wait in the buffer until it fills or [`FLUSH_EVERY`] after the first of
//! them ([`LogWriter::flush_periodically`]); any other line (lifecycle,
//! warnings, errors) flushes the buffer at once, so those are visible
//! immediately and lines stay in order. The binary flushes on shutdown and
//! before a panic message.
//!
//! The flusher sleeps until a request line lands in an empty buffer: an idle
//! data plane (a sidecar next to a quiet application) does not wake up ten
//! times a second to flush nothing.

use std::io::{BufWriter, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tracing_subscriber::fmt::MakeWriter;

/// The longest a request's log line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

const BUFFER_BYTES: usize = 64 * 1024;

type Shared = Arc<Mutex<BufWriter<Box<dyn Write + Send>>>>;

/// A `tracing_subscriber` writer; clones share the buffer.
#[derive(Clone)]
pub struct LogWriter {
    out: Shared,
    /// Told when a line waits in a buffer that was empty.
    waiting: Arc<Notify>,
}

impl LogWriter {
    pub fn stderr() -> LogWriter {
        LogWriter::new(std::io::stderr())
    }

    pub fn new(out: impl Write + Send + 'static) -> LogWriter {
        let out: Box<dyn Write + Send> = Box::new(out);
        LogWriter {
            out: Arc::new(Mutex::new(BufWriter::with_capacity(BUFFER_BYTES, out))),
            waiting: Arc::new(Notify::new()),
        }
    }

    /// Writes out whatever is buffered.
    pub fn flush(&self) {
        let _ = lock(&self.out).flush();
    }

    /// Flushes [`FLUSH_EVERY`] after a request line lands in an empty
    /// buffer, forever.
    pub async fn flush_periodically(self) {
        loop {
            // A notification while this sleeps or flushes is kept (one
            // permit): at worst one flush finds the buffer already empty.
            self.waiting.notified().await;
            tokio::time::sleep(FLUSH_EVERY).await;
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
    waiting: &'a Notify,
    flush: bool,
    /// Some of this line went into an empty buffer: nothing else will flush
    /// it unless the flusher is told.
    into_empty: bool,
}

impl Line<'_> {
    fn buffered(&mut self) -> MutexGuard<'_, BufWriter<Box<dyn Write + Send>>> {
        let out = lock(self.out);
        self.into_empty |= out.buffer().is_empty();
        out
    }
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffered().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.buffered().write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        lock(self.out).flush()
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if self.flush {
            let _ = lock(self.out).flush();
        } else if self.into_empty {
            self.waiting.notify_one();
        }
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            out: &self.out,
            waiting: &self.waiting,
            flush: true,
            into_empty: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line<'a> {
        Line {
            out: &self.out,
            waiting: &self.waiting,
            flush: meta.target() != crate::meter::LOG_TARGET,
            into_empty: false,
        }
    }
}

/// A sink tests can read what was written to.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Sink(Arc<Mutex<Vec<u8>>>, Arc<std::sync::atomic::AtomicUsize>);

#[cfg(test)]
impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
impl Sink {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// How many times the writer was flushed.
    pub(crate) fn flushes(&self) -> usize {
        self.1.load(std::sync::atomic::Ordering::Relaxed)
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
        tokio::spawn(writer.clone().flush_periodically());
        tokio::time::sleep(FLUSH_EVERY * 2).await;
        assert!(sink.text().contains("r3"), "{}", sink.text());

        // Lines that come later, into an empty buffer, are flushed too.
        tracing::subscriber::with_default(subscriber(writer.clone()), || {
            tracing::info!(target: "sluice_data_plane::meter", request_id = "r4", "request");
        });
        tokio::time::sleep(FLUSH_EVERY / 2).await;
        tracing::subscriber::with_default(subscriber(writer.clone()), || {
            tracing::info!(target: "sluice_data_plane::meter", request_id = "r5", "request");
        });
        assert!(!sink.text().contains("r4"), "flushed before its time");
        tokio::time::sleep(FLUSH_EVERY).await;
        let text = sink.text();
        assert!(text.contains("r4") && text.contains("r5"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_writer_does_not_wake_to_flush_nothing() {
        let sink = Sink::default();
        let writer = LogWriter::new(sink.clone());
        tokio::spawn(writer.clone().flush_periodically());
        tokio::time::sleep(FLUSH_EVERY * 100).await;
        assert_eq!(sink.flushes(), 0);

        tracing::subscriber::with_default(subscriber(writer.clone()), || {
            tracing::info!(target: "sluice_data_plane::meter", request_id = "r6", "request");
        });
        tokio::time::sleep(FLUSH_EVERY * 100).await;
        assert!(sink.text().contains("r6"));
        assert_eq!(sink.flushes(), 1, "one line, one flush");
    }
}
