//! Bedrock's streamed answer, AWS's binary event stream, turned as it
//! arrives into the server-sent events Anthropic's API sends
//! ([`formats::bedrock::sse`]): what reads a stream after (first-event wait,
//! pass-through, translation, usage) is the same as for Anthropic's own.
//! A message that fails its checksum, or a stream cut inside one, ends the
//! body with an error, as a broken upstream stream does.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame};

use crate::body::{Body, BoxError};
use crate::formats::{self, eventstream::Decoder};

/// The content type of AWS's event stream.
pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// `body`, an event stream, as Anthropic's server-sent events.
pub fn as_sse(body: Body) -> Body {
    AsSse {
        inner: body,
        decoder: Decoder::default(),
        ended: false,
    }
    .boxed_unsync()
}

struct AsSse {
    inner: Body,
    decoder: Decoder,
    ended: bool,
}

impl hyper::body::Body for AsSse {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            // Every whole message buffered, as one frame.
            let mut out = Vec::new();
            while let Some(message) = this.decoder.next_message() {
                match message {
                    Ok(message) => {
                        if let Some(event) = formats::bedrock::sse(&message) {
                            out.extend_from_slice(&event);
                        }
                    }
                    Err(e) => {
                        this.ended = true;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                }
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers carry nothing of the answer.
                    if let Ok(data) = frame.into_data() {
                        this.decoder.push(&data);
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    if this.decoder.is_mid_message() {
                        return Poll::Ready(Some(Err(
                            formats::eventstream::EventStreamError::Truncated.into(),
                        )));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && !self.decoder.is_mid_message()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use formats::eventstream::encode;

    fn chunk(event: &str) -> Vec<u8> {
        let payload = serde_json::json!({
            "bytes": base64::engine::general_purpose::STANDARD.encode(event)
        });
        encode(
            &[(":message-type", "event"), (":event-type", "chunk")],
            payload.to_string().as_bytes(),
        )
    }

    async fn read(parts: Vec<Vec<u8>>) -> Result<String, BoxError> {
        let stream = futures::stream::iter(
            parts
                .into_iter()
                .map(|p| Ok::<_, BoxError>(Frame::data(Bytes::from(p)))),
        );
        let body = http_body_util::StreamBody::new(stream).boxed_unsync();
        let bytes = as_sse(body).collect().await?.to_bytes();
        Ok(String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn chunks_split_anywhere_become_anthropics_events() {
        let start = r#"{"type":"message_start","message":{"id":"msg_1"}}"#;
        let stop = r#"{"type":"message_stop"}"#;
        let all = [chunk(start), chunk(stop)].concat();
        let want =
            format!("event: message_start\ndata: {start}\n\nevent: message_stop\ndata: {stop}\n\n");
        for split in [1, 5, 40, all.len()] {
            let parts = all.chunks(split).map(<[u8]>::to_vec).collect();
            assert_eq!(read(parts).await.unwrap(), want, "split by {split}");
        }
    }

    #[tokio::test]
    async fn a_cut_or_corrupt_stream_is_an_error() {
        let whole = chunk(r#"{"type":"message_stop"}"#);
        assert!(read(vec![whole[..whole.len() - 3].to_vec()]).await.is_err());
        let mut corrupt = whole.clone();
        corrupt[20] ^= 0xff;
        assert!(read(vec![corrupt]).await.is_err());
    }
}
