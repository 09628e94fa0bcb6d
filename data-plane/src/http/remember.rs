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
    fn look(&mut self, data: &[u8]) {
        let found = if self.seen.is_empty() {
            Affinity::id_in(data).map(str::to_owned)
        } else {
            self.seen.extend_from_slice(data);
            Affinity::id_in(&self.seen).map(str::to_owned)
        };
        match found {
            Some(id) => {
                self.router.affinity().remember(&id, self.home);
                self.done = true;
            }
            None if self.seen.len() + data.len() > LOOK => self.done = true,
            None => {
                if self.seen.is_empty() {
                    self.seen.extend_from_slice(data);
                }
            }
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
