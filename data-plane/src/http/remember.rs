//! A pass-through Responses answer, watched for its response id so that a
//! request continuing it later is routed to the same upstream account
//! ([`crate::router::affinity`]). Its bytes pass untouched.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame};

use crate::body::{Body, BoxError};
use crate::router::Router;
use crate::router::affinity::{Affinity, Home};

/// How far into an answer its id is looked for: it is in the object's or
/// the first event's first members.
const LOOK: usize = 16 << 10;

pub(super) fn remembering(inner: Body, router: Arc<Router>, home: Home) -> Body {
    Remembering {
        inner,
        router,
        home,
        seen: Vec::new(),
        done: false,
    }
    .boxed_unsync()
}

struct Remembering {
    inner: Body,
    router: Arc<Router>,
    home: Home,
    seen: Vec<u8>,
    /// Found, or looked far enough.
    done: bool,
}

impl Remembering {
    /// Reads `data` as far as [`LOOK`] into the answer: a copy of its first
    /// bytes, once per answer.
    fn look(&mut self, data: &[u8]) {
        self.seen.extend_from_slice(data);
        if let Some(id) = Affinity::id_in(&self.seen) {
            self.router.affinity().remember(id, self.home);
            self.done = true;
        } else if self.seen.len() > LOOK {
            self.done = true;
        }
        if self.done {
            self.seen = Vec::new();
        }
    }
}

impl hyper::body::Body for Remembering {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if !this.done
            && let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let data = data.clone();
            this.look(&data);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
