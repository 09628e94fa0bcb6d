//! Response bodies, the one body type every stage passes along, and what a
//! body carries until it is let go.
//!
//! A leaf: it imports nothing of this crate, so every stage may use it.
//!
//! - [`Body`] and [`BoxError`]: an answer's body, relayed or made whole
//!   ([`full`]).
//! - [`Carried`]: something riding in a body (the request's meter, the
//!   upstream leg's timer, the connection's in-flight mark), told how the
//!   body ended and dropped with it ([`carrying`],
//!   [`carrying_released_after_write`]).

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

/// An error ending a response body early (an upstream stream that broke):
/// the connection is then closed, so the client sees a truncated answer, not
/// a clean end.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response. Not `Sync`: upstream bodies are not.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// How a body ended, as the value it carries is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// Sent whole.
    Complete,
    /// Broke off with an error from inside (the upstream's stream failed or
    /// passed its deadline): the client's connection is closed, so it sees
    /// a truncated answer.
    UpstreamFailed,
    /// Dropped before its end: the client went away (or its connection
    /// did).
    ClientLeft,
}

/// Set when a stream was cut after its first byte reached the client (its
/// upstream broke off, or went silent past its `stream_timeout`) and was
/// ended for the client with an error event: the body itself then ends
/// cleanly, so whoever meters it learns of the cut here.
#[derive(Debug, Clone, Default)]
pub struct Interruption(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Interruption {
    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Something a response body carries until it is dropped (a meter, a
/// connection's in-flight mark), told how the body ended.
pub trait Carried: Send + Unpin + 'static {
    /// The body ended; told once, before the value is dropped.
    fn ended(&mut self, _end: BodyEnd) {}
}

/// `body` carrying `carried`, its size hint kept (so a known length is still
/// sent as `content-length`, not chunked).
pub fn carrying(body: Body, carried: impl Carried) -> Body {
    Carrying::boxed(body, carried, false)
}

/// [`carrying`], for the outermost layer of an answer's body: once hyper is
/// done with the body, everything in it (this layer and the ones inside: the
/// request's meter, the upstream's timer and deadline) is let go in a task
/// of its own rather than at once. hyper drops a body as soon as it has
/// buffered the last bytes, before it writes them out, so letting go there
/// (metrics, the log line, timers) would stand between the answer and the
/// client; the task runs once the connection's task has written them and
/// yielded. A task dropped unrun (its runtime shutting down) lets go as it
/// is dropped, so nothing goes unrecorded either way.
pub fn carrying_released_after_write(body: Body, carried: impl Carried) -> Body {
    Carrying::boxed(body, carried, true)
}

struct Carrying<T: Carried> {
    body: Body,
    /// Taken only when let go after the write.
    carried: Option<T>,
    ended: bool,
    release_after_write: bool,
}

impl<T: Carried> Carrying<T> {
    fn boxed(body: Body, carried: T, release_after_write: bool) -> Body {
        Carrying {
            body,
            carried: Some(carried),
            ended: false,
            release_after_write,
        }
        .boxed_unsync()
    }

    fn end(&mut self, end: BodyEnd) {
        if !self.ended {
            self.ended = true;
            if let Some(carried) = &mut self.carried {
                carried.ended(end);
            }
        }
    }
}

impl<T: Carried> hyper::body::Body for Carrying<T> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(None) => this.end(BodyEnd::Complete),
            std::task::Poll::Ready(Some(Err(_))) => this.end(BodyEnd::UpstreamFailed),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl<T: Carried> Drop for Carrying<T> {
    fn drop(&mut self) {
        // hyper stops polling a body of known length once it says it is at
        // its end, without asking for the `None` after the last frame.
        if hyper::body::Body::is_end_stream(&self.body) {
            self.end(BodyEnd::Complete);
        }
        // Anything else not ended by now was abandoned.
        self.end(BodyEnd::ClientLeft);
        if self.release_after_write
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let body = std::mem::replace(&mut self.body, empty_body());
            let carried = self.carried.take();
            // The body first, the carried value last, as fields drop.
            drop(runtime.spawn(async move {
                drop(body);
                drop(carried);
            }));
        }
    }
}

fn empty_body() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body of known bytes.
pub fn full(body: Bytes) -> Body {
    Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Counts its own release, and whether it was told the body ended.
    struct Probe {
        released: Arc<AtomicUsize>,
        ended: Arc<AtomicBool>,
    }

    impl Carried for Probe {
        fn ended(&mut self, end: BodyEnd) {
            self.ended.store(end == BodyEnd::Complete, Ordering::SeqCst);
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.released.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A two-layer answer body, as a relayed answer is: a probe inside (where
    /// the meter rides) and one in the outer layer (the in-flight mark), and
    /// the counts of their releases and ends.
    fn answer_body() -> (Body, [Arc<AtomicUsize>; 2], Arc<AtomicBool>) {
        let released = [Arc::default(), Arc::default()];
        let ended = Arc::new(AtomicBool::new(false));
        let probe = |i: usize| Probe {
            released: Arc::clone(&released[i]),
            ended: Arc::clone(&ended),
        };
        let inner = carrying(
            Full::new(Bytes::from("{}"))
                .map_err(|e| match e {})
                .boxed_unsync(),
            probe(0),
        );
        (
            carrying_released_after_write(inner, probe(1)),
            released,
            ended,
        )
    }

    fn count(released: &[Arc<AtomicUsize>; 2]) -> [usize; 2] {
        released.each_ref().map(|r| r.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn an_answer_body_is_let_go_once_the_task_that_sent_it_yields() {
        // As hyper sends a body of known length: it takes the last frame,
        // sees the end, drops the body, then writes and yields.
        let (mut body, released, ended) = answer_body();
        body.frame().await.expect("a frame").expect("data");
        assert!(hyper::body::Body::is_end_stream(&body));
        drop(body);
        assert_eq!(count(&released), [0, 0], "let go before the write");
        tokio::task::yield_now().await;
        assert_eq!(count(&released), [1, 1]);
        assert!(ended.load(Ordering::SeqCst), "told it was sent whole");
    }

    #[test]
    fn an_answer_body_is_let_go_even_if_its_runtime_stops_first() {
        let (body, released, _) = answer_body();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async { drop(body) });
        assert_eq!(count(&released), [0, 0], "the task has not run");
        drop(runtime);
        assert_eq!(count(&released), [1, 1]);
    }

    #[test]
    fn without_a_runtime_an_answer_body_is_let_go_at_once() {
        let (body, released, _) = answer_body();
        drop(body);
        assert_eq!(count(&released), [1, 1]);
    }

    /// Records every end it is told.
    struct Ends(Arc<std::sync::Mutex<Vec<BodyEnd>>>);

    impl Carried for Ends {
        fn ended(&mut self, end: BodyEnd) {
            self.0.lock().unwrap().push(end);
        }
    }

    fn streamed(
        frames: Vec<Result<Bytes, BoxError>>,
    ) -> (Body, Arc<std::sync::Mutex<Vec<BodyEnd>>>) {
        let ends = Arc::default();
        let stream =
            futures::stream::iter(frames.into_iter().map(|f| f.map(hyper::body::Frame::data)));
        let body = http_body_util::StreamBody::new(stream).boxed_unsync();
        (carrying(body, Ends(Arc::clone(&ends))), ends)
    }

    #[tokio::test]
    async fn a_body_tells_how_it_ended_once() {
        let (body, ends) = streamed(vec![Ok(Bytes::from("a")), Ok(Bytes::from("b"))]);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "ab");
        assert_eq!(*ends.lock().unwrap(), [BodyEnd::Complete]);

        let (mut body, ends) = streamed(vec![Ok(Bytes::from("a")), Err("upstream broke".into())]);
        body.frame().await.expect("a frame").expect("data");
        assert!(body.frame().await.expect("an error").is_err());
        drop(body);
        assert_eq!(*ends.lock().unwrap(), [BodyEnd::UpstreamFailed]);

        let (mut body, ends) = streamed(vec![Ok(Bytes::from("a")), Ok(Bytes::from("b"))]);
        body.frame().await.expect("a frame").expect("data");
        drop(body);
        assert_eq!(*ends.lock().unwrap(), [BodyEnd::ClientLeft]);
    }
}
