//! Graceful shutdown (SIGTERM, Ctrl-C): what ends at once, what is waited
//! for, and for how long.
//!
//! tonic's graceful shutdown stops accepting connections, sends GOAWAY on
//! the open ones (so no new calls) and then waits for every open call to
//! end. A config stream never ends by itself, so [`crate::server::serve`]
//! also cancels one [`CancellationToken`] that every config stream selects
//! on: its session ends (its disconnect is recorded) and its response ends
//! with `UNAVAILABLE` [`SHUTTING_DOWN`], on which the data plane reconnects
//! at once, to another replica, serving from the config it holds meanwhile.
//! Unary admin calls in flight run to their end. All of it is bounded by
//! `--shutdown-grace-ms`: what is still open then is cut, and [`InFlight`]
//! says what that was.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use hyper::body::{Body, Frame, SizeHint};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::codegen::{Service, http};

/// The message of the status that ends every config stream at shutdown.
pub const SHUTTING_DOWN: &str = "control plane shutting down";

/// What a config stream ends with at shutdown: `UNAVAILABLE`, which data
/// planes retry at once (on another replica) rather than after a backoff
/// grown for a control plane that refuses them.
pub fn shutting_down() -> Status {
    Status::unavailable(SHUTTING_DOWN)
}

/// `call` (a stream's opening: token, Hello), unless shutdown comes first:
/// an opening can wait up to 10 s for a Hello, and must not hold the drain.
pub async fn unless_shutdown<R>(
    shutdown: &CancellationToken,
    call: impl Future<Output = Result<R, Status>>,
) -> Result<R, Status> {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => Err(shutting_down()),
        opened = call => opened,
    }
}

/// A response stream as the config service sends it.
pub type Responses<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// `stream` until shutdown, then one [`shutting_down`] status and the end.
/// What the stream still had queued is dropped: the data plane gets it from
/// the replica it reconnects to.
pub fn ends_at_shutdown<T: Send + 'static>(
    stream: Responses<T>,
    shutdown: CancellationToken,
) -> Responses<T> {
    Box::pin(futures::stream::unfold(
        Some((stream, shutdown)),
        |state| async move {
            let (mut stream, shutdown) = state?;
            tokio::select! {
                // Shutdown first: once the token is cancelled the session
                // behind `stream` ends and closes it, and that must read as
                // "shutting down", not as a clean end of the stream.
                biased;
                () = shutdown.cancelled() => Some((Err(shutting_down()), None)),
                item = stream.next() => Some((item?, Some((stream, shutdown)))),
            }
        },
    ))
}

/// The gRPC calls in flight, by method: a layer of the server, so that a
/// drain cut short can say what it cut.
#[derive(Clone, Default)]
pub struct InFlight {
    calls: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, usize>> {
        // Every update is one insert or remove: a poisoned map is still whole.
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enter(&self, method: &str) -> Call {
        *self.lock().entry(method.to_string()).or_default() += 1;
        Call {
            calls: self.clone(),
            method: method.to_string(),
        }
    }

    /// The calls open now, by method path (`/sluice.admin.v1.KeyService/CreateKey`).
    pub fn open(&self) -> BTreeMap<String, usize> {
        self.lock().clone()
    }
}

/// One call in flight, from its request to the end of its response body.
struct Call {
    calls: InFlight,
    method: String,
}

impl Drop for Call {
    fn drop(&mut self) {
        let mut calls = self.calls.lock();
        if let Some(n) = calls.get_mut(&self.method) {
            *n -= 1;
            if *n == 0 {
                calls.remove(&self.method);
            }
        }
    }
}

impl<S> tower_layer::Layer<S> for InFlight {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            calls: self.clone(),
        }
    }
}

/// A service whose calls [`InFlight`] counts.
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    calls: InFlight,
}

impl<S, B, R> Service<http::Request<B>> for Counted<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<CountedBody<R>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = self.calls.enter(request.uri().path());
        let response = self.inner.call(request);
        Box::pin(async move {
            // The call lasts as long as its response body: a stream's
            // headers come long before its end.
            Ok(response
                .await?
                .map(|body| CountedBody { body, _call: call }))
        })
    }
}

/// A response body that holds its call's place in [`InFlight`].
pub struct CountedBody<R> {
    body: R,
    _call: Call,
}

impl<R: Body + Unpin> Body for CountedBody<R> {
    type Data = R::Data;
    type Error = R::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<R::Data>, R::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_ends_with_unavailable_at_shutdown_even_if_its_source_closes_first() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<u32, Status>>(4);
        let shutdown = CancellationToken::new();
        let mut out = ends_at_shutdown(
            Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)),
            shutdown.clone(),
        );
        tx.send(Ok(1)).await.unwrap();
        assert_eq!(out.next().await.unwrap().unwrap(), 1);
        // Queued, then the session ends (its sender dropped) after shutdown.
        tx.send(Ok(2)).await.unwrap();
        shutdown.cancel();
        drop(tx);
        let status = out.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), SHUTTING_DOWN);
        assert!(out.next().await.is_none());
    }

    #[tokio::test]
    async fn an_opening_is_cut_at_shutdown() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let opened = unless_shutdown(&shutdown, std::future::pending::<Result<(), Status>>()).await;
        assert_eq!(opened.unwrap_err().message(), SHUTTING_DOWN);
    }

    #[test]
    fn calls_are_counted_until_they_end() {
        let calls = InFlight::default();
        let a = calls.enter("/a/B");
        let b = calls.enter("/a/B");
        let c = calls.enter("/c/D");
        assert_eq!(
            calls.open(),
            BTreeMap::from([("/a/B".into(), 2), ("/c/D".into(), 1)])
        );
        drop((a, c));
        assert_eq!(calls.open(), BTreeMap::from([("/a/B".into(), 1)]));
        drop(b);
        assert!(calls.open().is_empty());
    }
}
