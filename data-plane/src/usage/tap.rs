//! The answer's body, watched for what the request used.
//!
//! A whole answer's chunks are kept (reference-counted, not copied) and its
//! `usage` read when it ends. A stream goes through
//! [`formats::usage::StreamUsage`], which finds the final usage chunk and,
//! when Sluice asked for it and the client did not, leaves it out of what
//! the client sees. When the body is over — sent whole, cut, or dropped
//! because the client left — the request is settled with the usage the
//! upstream reported or, when there is none (the upstream sent none, or the
//! client left before it came), with an estimate, documented in the README:
//! the prompt estimated from the request body (4 bytes a token) and one
//! completion token per streamed event that carried content (a whole
//! answer's body: 4 bytes a token; none for an embedding's or a
//! moderation's, which write no completion).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::body::{Bytes, Frame, SizeHint};

use super::ledger::Reservation;
use super::limits::Held;
use super::price::Prices;
use super::{Metering, Settled, Tokens, Who};
use crate::body::{Body, BoxError};
use crate::formats::usage::{self, Dialect, StreamUsage};

/// A whole answer longer than this is not kept for its usage (it is relayed
/// all the same, and metered by estimate).
const MAX_KEPT: usize = 16 << 20;

/// What the request's settlement needs besides the body.
pub struct Bill {
    pub reservation: Reservation,
    /// Rate limits' hold: parallel slots until the answer ends, tokens
    /// corrected to the real ones.
    pub limits: Held,
    pub who: Who,
    pub deployment_id: String,
    pub prices: Prices,
    pub credits_per_call: i64,
    /// The prompt's estimated tokens, for when the upstream reports none.
    pub prompt_estimate: u64,
    /// The answer writes a completion ([`crate::formats::Format::completes`]):
    /// without it, one reporting no usage is billed no completion tokens.
    pub completes: bool,
    /// An image generation's `n`: the answer's images are counted and
    /// priced, this many when the answer cannot be read.
    pub images: Option<u64>,
}

enum Watch {
    Whole {
        dialect: Dialect,
        kept: Vec<Bytes>,
        len: usize,
    },
    Stream {
        scanner: StreamUsage,
        events: u64,
    },
}

struct Tap {
    inner: Body,
    watch: Watch,
    metering: Arc<Metering>,
    bill: Option<Bill>,
    /// A stream's held-back bytes are out: nothing more to send.
    finished: bool,
}

/// `body` watched for usage written in `dialect`; `stream` for an event
/// stream, `strip` to take the usage chunk out of it (OpenAI's only:
/// Anthropic's usage rides on events that carry more).
pub fn tap(
    metering: Arc<Metering>,
    body: Body,
    dialect: Dialect,
    stream: bool,
    strip: bool,
    bill: Bill,
) -> Body {
    use http_body_util::BodyExt;
    let watch = match (stream, dialect) {
        (true, Dialect::OpenAi) => Watch::Stream {
            scanner: StreamUsage::new(strip),
            events: 0,
        },
        (true, Dialect::Anthropic) => Watch::Stream {
            scanner: StreamUsage::anthropic(),
            events: 0,
        },
        (true, Dialect::Responses) => Watch::Stream {
            scanner: StreamUsage::responses(),
            events: 0,
        },
        (false, _) => Watch::Whole {
            dialect,
            kept: Vec::new(),
            len: 0,
        },
    };
    Tap {
        inner: body,
        watch,
        metering,
        bill: Some(bill),
        finished: false,
    }
    .boxed_unsync()
}

impl Tap {
    fn settle(&mut self) {
        let Some(bill) = self.bill.take() else {
            return;
        };
        let (reported, completion_estimate, images) = match &mut self.watch {
            Watch::Whole { dialect, kept, len } => {
                let whole = match kept.len() {
                    0 => None,
                    1 => Some(std::borrow::Cow::Borrowed(&kept[0][..])),
                    _ => Some(std::borrow::Cow::Owned(kept.concat())),
                };
                let reported = whole
                    .as_deref()
                    .and_then(|body| usage::from_answer(*dialect, body));
                let estimate = if bill.completes { *len as u64 / 4 } else { 0 };
                let images = bill
                    .images
                    .map(|asked| whole.as_deref().and_then(usage::images_in).unwrap_or(asked));
                (reported, estimate, images)
            }
            Watch::Stream { scanner, events } => {
                (scanner.usage(), events.saturating_sub(2), bill.images)
            }
        };
        let (mut tokens, estimated) = match reported {
            Some(u) => (Tokens::from(u), false),
            None => (
                Tokens {
                    prompt: bill.prompt_estimate,
                    completion: completion_estimate,
                    ..Tokens::default()
                },
                true,
            ),
        };
        tokens.images = images.unwrap_or(0);
        let mut limits = bill.limits;
        limits.settle(tokens.prompt + tokens.completion);
        drop(limits);
        self.metering.settle(Settled {
            reservation: bill.reservation,
            who: bill.who,
            deployment_id: bill.deployment_id,
            prices: bill.prices,
            credits_per_call: bill.credits_per_call,
            tokens,
            estimated,
        });
    }
}

/// Server-sent events in a chunk: lines starting `data:`.
fn data_lines(chunk: &[u8]) -> u64 {
    let mut n = 0;
    let mut at_line_start = true;
    for (i, b) in chunk.iter().enumerate() {
        if at_line_start && chunk[i..].starts_with(b"data:") {
            n += 1;
        }
        at_line_start = *b == b'\n' || *b == b'\r';
    }
    n
}

impl hyper::body::Body for Tap {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        loop {
            return match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let data = match frame.into_data() {
                        Ok(data) => data,
                        Err(frame) => return Poll::Ready(Some(Ok(frame))),
                    };
                    match &mut this.watch {
                        Watch::Whole { kept, len, .. } => {
                            *len += data.len();
                            if *len <= MAX_KEPT {
                                kept.push(data.clone());
                            } else {
                                kept.clear();
                            }
                            Poll::Ready(Some(Ok(Frame::data(data))))
                        }
                        Watch::Stream { scanner, events } => {
                            *events += data_lines(&data);
                            let out = scanner.feed(data);
                            if out.is_empty() {
                                // All held back (or stripped): read on.
                                continue;
                            }
                            Poll::Ready(Some(Ok(Frame::data(out))))
                        }
                    }
                }
                Poll::Ready(None) => {
                    this.finished = true;
                    let rest = match &mut this.watch {
                        Watch::Stream { scanner, .. } => scanner.finish(),
                        Watch::Whole { .. } => Bytes::new(),
                    };
                    this.settle();
                    if rest.is_empty() {
                        Poll::Ready(None)
                    } else {
                        Poll::Ready(Some(Ok(Frame::data(rest))))
                    }
                }
                other => other,
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        match self.watch {
            // hyper stops polling a body of known length once it says it is
            // at its end: it must say so as soon as the upstream's does (the
            // request is then settled when it is dropped).
            Watch::Whole { .. } => self.finished || self.inner.is_end_stream(),
            // A stream is polled to its end, which lets out what is held back.
            Watch::Stream { .. } => self.finished,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.watch {
            // Relayed byte for byte: its length is the upstream's.
            Watch::Whole { .. } => self.inner.size_hint(),
            Watch::Stream { .. } => SizeHint::default(),
        }
    }
}

impl Drop for Tap {
    /// Dropped unfinished: the client left, or the connection broke. The
    /// request is billed with what is known.
    fn drop(&mut self) {
        self.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_lines_are_counted_at_line_starts() {
        assert_eq!(data_lines(b"data: {}\n\ndata: {}\n\n"), 2);
        assert_eq!(data_lines(b"data: {\"x\":\"data:\"}\n\n"), 1);
        assert_eq!(data_lines(b": ping\n\n"), 0);
        assert_eq!(data_lines(b"event: e\r\ndata: 1\r\n\r\n"), 1);
    }
}

#[cfg(test)]
mod body_tests {
    use super::*;
    use crate::body::{BodyEnd, Carried, carrying};
    use crate::metrics::Metrics;
    use http_body_util::{BodyExt, StreamBody};
    use std::sync::Mutex;

    struct Seen(Arc<Mutex<Option<BodyEnd>>>);
    impl Carried for Seen {
        fn ended(&mut self, end: BodyEnd) {
            *self.0.lock().unwrap() = Some(end);
        }
    }

    fn bill() -> Bill {
        Bill {
            reservation: Reservation::default(),
            limits: Held::default(),
            who: Who::default(),
            deployment_id: "d".into(),
            prices: Prices::default(),
            credits_per_call: 0,
            prompt_estimate: 1,
            completes: true,
            images: None,
        }
    }

    /// The figure `metric` (a `{team="",model_group=""}` series) shows.
    fn series(text: &str, metric: &str) -> String {
        text.lines()
            .find(|l| l.starts_with(&format!("{metric}{{")))
            .unwrap_or_default()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// Taps an image generation's `answer` asking for `asked` images at
    /// $0.04 an image and $1 a million tokens each way; the metrics after.
    async fn images_billed(answer: &'static [u8], asked: u64) -> String {
        let metrics = Arc::new(Metrics::new());
        let metering = Metering::in_memory(Arc::clone(&metrics));
        let mut bill = bill();
        bill.prompt_estimate = 9;
        bill.completes = false;
        bill.images = Some(asked);
        bill.prices = Prices {
            input: 1e-6,
            output: 1e-6,
            image: 0.04,
            ..Prices::default()
        };
        let body = tap(
            metering,
            crate::body::full(Bytes::from_static(answer)),
            Dialect::Responses,
            false,
            false,
            bill,
        );
        body.collect().await.unwrap();
        metrics.encode()
    }

    #[tokio::test]
    async fn images_are_counted_in_the_answer_and_priced_each() {
        // GPT image: its usage, and its two images.
        let gpt = b"{\"data\":[{\"b64_json\":\"x\"},{\"b64_json\":\"y\"}],\"usage\":{\"input_tokens\":10,\"output_tokens\":544}}";
        let text = images_billed(gpt, 4).await;
        assert_eq!(series(&text, "sluice_usage_prompt_tokens_total"), "10");
        assert_eq!(series(&text, "sluice_usage_completion_tokens_total"), "544");
        assert_eq!(series(&text, "sluice_usage_spend_micro_usd_total"), "80554");
        // DALL·E: no usage; the prompt by estimate, no completion.
        let dalle = b"{\"created\":1,\"data\":[{\"url\":\"https://x\"}]}";
        let text = images_billed(dalle, 1).await;
        assert_eq!(series(&text, "sluice_usage_completion_tokens_total"), "0");
        assert_eq!(series(&text, "sluice_usage_spend_micro_usd_total"), "40009");
        // An answer that cannot be read: the images asked for.
        let text = images_billed(b"not json", 3).await;
        assert_eq!(
            series(&text, "sluice_usage_spend_micro_usd_total"),
            "120009"
        );
    }

    /// Taps `answer` (whole, without `usage`) and returns the completion
    /// tokens it was billed.
    async fn completion_billed(answer: &'static [u8], completes: bool) -> String {
        let metrics = Arc::new(Metrics::new());
        let metering = Metering::in_memory(Arc::clone(&metrics));
        let mut bill = bill();
        bill.prompt_estimate = 9;
        bill.completes = completes;
        let body = tap(
            metering,
            crate::body::full(Bytes::from_static(answer)),
            Dialect::OpenAi,
            false,
            false,
            bill,
        );
        body.collect().await.unwrap();
        let text = metrics.encode();
        assert!(text.contains("sluice_usage_prompt_tokens_total{team=\"\",model_group=\"\"} 9"));
        text.lines()
            .find(|l| l.starts_with("sluice_usage_completion_tokens_total{"))
            .unwrap_or_default()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    #[tokio::test]
    async fn an_answer_without_usage_is_billed_a_completion_only_if_it_writes_one() {
        // 40 bytes of a completion: 10 tokens by estimate.
        let completion = b"{\"choices\":[{\"text\":\"abcdefghijklmno\"}]}";
        assert_eq!(completion.len(), 40);
        assert_eq!(completion_billed(completion, true).await, "10");
        // A moderation's verdict is no completion.
        let verdict = b"{\"results\":[{\"flagged\":false}]}";
        assert_eq!(completion_billed(verdict, false).await, "0");
    }

    #[tokio::test]
    async fn a_whole_answer_says_it_is_at_its_end_when_the_upstream_does() {
        let answer = Bytes::from_static(
            b"{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}",
        );
        let inner = crate::body::full(answer.clone());
        let metering = Metering::in_memory(Arc::new(Metrics::new()));
        let mut body = tap(metering, inner, Dialect::OpenAi, false, false, bill());
        assert_eq!(
            hyper::body::Body::size_hint(&body).exact(),
            Some(answer.len() as u64)
        );
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), answer);
        // What hyper asks before it would poll for the end.
        assert!(hyper::body::Body::is_end_stream(&body));
    }

    #[tokio::test]
    async fn a_stripped_stream_ends_complete_for_what_carries_it() {
        let events = [
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n",
        ];
        let frames = futures::stream::iter(
            events
                .into_iter()
                .map(|e| Ok::<_, BoxError>(Frame::data(Bytes::from(e)))),
        );
        let inner = StreamBody::new(frames).boxed_unsync();
        let metering = Metering::in_memory(Arc::new(Metrics::new()));
        let seen = Arc::new(Mutex::new(None));
        let body = carrying(
            tap(metering, inner, Dialect::OpenAi, true, true, bill()),
            Seen(Arc::clone(&seen)),
        );
        let got = body.collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&got);
        assert!(!text.contains("prompt_tokens"), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        assert!(matches!(*seen.lock().unwrap(), Some(BodyEnd::Complete)));
    }
}
