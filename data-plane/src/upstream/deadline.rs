//! An upstream answer's body under its exchange's deadline: a stream that
//! stalls past it ends with an error ([`UpstreamError::Timeout`]), which
//! closes the client's connection (a truncated answer, never a clean end).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Bytes, Frame, SizeHint};
use tokio::time::Sleep;

use super::UpstreamError;
use crate::body::BoxError;

/// An upstream body that fails once its exchange's deadline passes.
pub struct Deadline<B> {
    body: B,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
    expired: bool,
}

impl<B> Deadline<B> {
    pub fn new(body: B, deadline: Pin<Box<Sleep>>, timeout: Duration) -> Self {
        Deadline {
            body,
            deadline,
            timeout,
            expired: false,
        }
    }
}

impl<B> hyper::body::Body for Deadline<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired = true;
            return Poll::Ready(Some(Err(UpstreamError::Timeout(this.timeout).into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use http_body_util::{BodyExt, Full, StreamBody};

    #[tokio::test(start_paused = true)]
    async fn a_body_stalling_past_the_deadline_ends_with_a_timeout() {
        let timeout = Duration::from_secs(5);
        let chunks =
            futures::stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from("data: 1")))])
                .chain(futures::stream::pending());
        let mut body = Deadline::new(
            StreamBody::new(chunks.boxed()),
            Box::pin(tokio::time::sleep(timeout)),
            timeout,
        );
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().unwrap(), "data: 1");
        let started = tokio::time::Instant::now();
        let e = body.frame().await.expect("an error").unwrap_err();
        assert_eq!(started.elapsed(), timeout);
        assert!(e.to_string().contains("no answer within 5s"), "{e}");
        assert!(body.frame().await.is_none(), "nothing after the error");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_in_time_is_passed_whole_with_its_length() {
        let timeout = Duration::from_secs(5);
        let body = Deadline::new(
            Full::new(Bytes::from("{}")),
            Box::pin(tokio::time::sleep(timeout)),
            timeout,
        );
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), Some(2));
        let all = body.collect().await.expect("body").to_bytes();
        assert_eq!(all, "{}");
    }
}
