//! An exchange between APIs ([`Exchange`]): the request put in the
//! upstream's API, and its answer back in the client's, around the pure
//! translations of [`crate::formats::anthropic`]. A stream is translated
//! event by event as it arrives (nothing buffered but an event cut by a
//! chunk's end); a whole answer is read (at most [`MAX_ANSWER`]) and
//! translated once.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::{Bytes, Frame};
use hyper::header::HeaderValue;

use super::{Answer, Call};
use crate::body::{Body, BoxError, Interruption};
use crate::formats::Format;
use crate::formats::TranslateError;
use crate::formats::anthropic::{from_chat, from_messages, to_chat, to_messages};
use crate::formats::converse;
use crate::formats::responses::echo::Echo;
use crate::formats::responses::{from_responses, to_responses};
use crate::providers::Exchange;
use crate::request::parse::Parsed;
use crate::upstream::UpstreamError;

/// The most of a whole answer read to translate it.
pub const MAX_ANSWER: usize = 32 << 20;

/// The body the upstream is sent.
pub(super) fn request_body(call: &Call<'_>, exchange: Exchange) -> Result<Bytes, UpstreamError> {
    let model = call.upstream_model;
    let translated = match exchange {
        Exchange::Same(format) => {
            let ask_usage =
                call.ask_usage && matches!(format, Format::ChatCompletions | Format::Completions);
            return Ok(call.request.upstream_body(model, ask_usage));
        }
        Exchange::ChatToMessages => from_chat::request(call.request.body(), model),
        Exchange::MessagesToChat => from_messages::request(call.request.body(), model),
        Exchange::ResponsesToChat => {
            from_responses::request(call.request.body(), model, from_responses::Target::Chat)
        }
        Exchange::ResponsesToMessages => {
            from_responses::request(call.request.body(), model, from_responses::Target::Messages)
                .and_then(|chat| from_chat::request(&chat, model))
        }
        Exchange::EstimateTokens => Ok(Vec::new()),
    };
    translated.map(Bytes::from).map_err(untranslatable)
}

pub(super) fn untranslatable(e: TranslateError) -> UpstreamError {
    match e {
        TranslateError::Invalid { param, message } => {
            UpstreamError::Untranslatable { param, message }
        }
        other => UpstreamError::UnreadableAnswer(other.to_string()),
    }
}

/// `count_tokens` answered here, for a deployment that cannot count
/// Anthropic's way: the documented estimate.
pub(super) fn estimate_tokens(request: &Parsed) -> Result<Answer, UpstreamError> {
    let tokens = to_messages::count_tokens(request.body()).map_err(untranslatable)?;
    let body = to_messages::count_tokens_answer(tokens);
    Ok(Answer {
        status: StatusCode::OK,
        content_type: HeaderValue::from_static("application/json"),
        event_stream: false,
        body: crate::body::full(Bytes::from(body)),
    })
}

/// The base of the ids of a `response` object Sluice writes (`resp_…`).
fn response_id() -> String {
    crate::headers::random_hex(16)
}

/// A whole answer, read and translated.
pub(super) async fn whole(
    body: Body,
    exchange: Exchange,
    call: &Call<'_>,
) -> Result<Body, UpstreamError> {
    let read = read(body).await?;
    let translated = match exchange {
        Exchange::ChatToMessages => to_chat::answer(&read),
        Exchange::MessagesToChat => to_messages::answer(&read),
        Exchange::ResponsesToChat => {
            let echo = Echo::from_request(call.request.body());
            to_responses::answer(&read, &echo, &response_id())
        }
        Exchange::ResponsesToMessages => to_chat::answer(&read).and_then(|chat| {
            let echo = Echo::from_request(call.request.body());
            to_responses::answer(&chat, &echo, &response_id())
        }),
        Exchange::Same(_) | Exchange::EstimateTokens => return Ok(crate::body::full(read)),
    };
    translated
        .map(|b| crate::body::full(Bytes::from(b)))
        .map_err(|e| UpstreamError::UnreadableAnswer(e.to_string()))
}

async fn read(mut body: Body) -> Result<Bytes, UpstreamError> {
    let mut read = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| UpstreamError::Connection(format!("the answer broke off: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if read.len() + data.len() > MAX_ANSWER {
                return Err(UpstreamError::UnreadableAnswer(format!(
                    "the answer is over {} MiB",
                    MAX_ANSWER >> 20
                )));
            }
            read.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(read))
}

/// A stream, translated event by event.
pub(super) fn stream(body: Body, exchange: Exchange, call: &Call<'_>) -> Body {
    let interruption = call.interruption.clone();
    let responses = || {
        to_responses::ResponsesStream::new(Echo::from_request(call.request.body()), response_id())
    };
    match exchange {
        Exchange::ResponsesToChat => Translating::boxed(body, responses(), interruption),
        Exchange::ResponsesToMessages => Translating::boxed(
            body,
            Chained(to_chat::ChatStream::new(), responses()),
            interruption,
        ),
        Exchange::ChatToMessages => {
            Translating::boxed(body, to_chat::ChatStream::new(), interruption)
        }
        Exchange::MessagesToChat => {
            Translating::boxed(body, to_messages::MessagesStream::new(), interruption)
        }
        Exchange::Same(_) | Exchange::EstimateTokens => body,
    }
}

/// A Converse answer (Bedrock's) made chat's, whole or streamed, before
/// the exchange reads it as an OpenAI-compatible upstream's.
pub(super) async fn from_converse(
    mut answer: Answer,
    call: &Call<'_>,
) -> Result<Answer, UpstreamError> {
    let id = format!("chatcmpl-{}", crate::headers::random_hex(12));
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let model = call.upstream_model.to_owned();
    if answer.event_stream {
        answer.body = Translating::boxed(
            answer.body,
            converse::ConverseStream::new(id, created, model),
            call.interruption.clone(),
        );
    } else {
        let read = read(answer.body).await?;
        let chat = converse::answer(&read, &id, created, &model)
            .map_err(|e| UpstreamError::UnreadableAnswer(e.to_string()))?;
        answer.body = crate::body::full(Bytes::from(chat));
        answer.content_type = HeaderValue::from_static("application/json");
    }
    Ok(answer)
}

impl StreamTranslation for converse::ConverseStream {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        converse::ConverseStream::feed(self, chunk)
    }
    fn finish(&mut self) -> Vec<u8> {
        converse::ConverseStream::finish(self)
    }
    fn failed(&self) -> bool {
        converse::ConverseStream::failed(self)
    }
}

/// A stream translator: upstream bytes in, client bytes out.
trait StreamTranslation: Send + Unpin + 'static {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8>;
    fn finish(&mut self) -> Vec<u8>;
    fn failed(&self) -> bool;
}

impl StreamTranslation for to_chat::ChatStream {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        to_chat::ChatStream::feed(self, chunk)
    }
    fn finish(&mut self) -> Vec<u8> {
        to_chat::ChatStream::finish(self)
    }
    fn failed(&self) -> bool {
        to_chat::ChatStream::failed(self)
    }
}

impl StreamTranslation for to_messages::MessagesStream {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        to_messages::MessagesStream::feed(self, chunk)
    }
    fn finish(&mut self) -> Vec<u8> {
        to_messages::MessagesStream::finish(self)
    }
    fn failed(&self) -> bool {
        to_messages::MessagesStream::failed(self)
    }
}

impl StreamTranslation for to_responses::ResponsesStream {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        to_responses::ResponsesStream::feed(self, chunk)
    }
    fn finish(&mut self) -> Vec<u8> {
        to_responses::ResponsesStream::finish(self)
    }
    fn failed(&self) -> bool {
        to_responses::ResponsesStream::failed(self)
    }
}

/// Two translations one after the other: an Anthropic stream made a chat
/// stream, and that the Responses API's.
struct Chained<A, B>(A, B);

impl<A: StreamTranslation, B: StreamTranslation> StreamTranslation for Chained<A, B> {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let middle = self.0.feed(chunk);
        if middle.is_empty() {
            return middle;
        }
        self.1.feed(&middle)
    }
    fn finish(&mut self) -> Vec<u8> {
        let middle = self.0.finish();
        let mut out = self.1.feed(&middle);
        out.extend(self.1.finish());
        out
    }
    fn failed(&self) -> bool {
        self.0.failed() || self.1.failed()
    }
}

/// The upstream's stream through a translator. A chunk that completes no
/// event yields nothing (the next is read); when the upstream's body ends,
/// what the translator still owes is sent. A translator that met an error
/// event in the stream marks the call interrupted, as a cut stream is.
struct Translating<T> {
    inner: Body,
    translation: T,
    interruption: Interruption,
    done: bool,
}

impl<T: StreamTranslation> Translating<T> {
    fn boxed(inner: Body, translation: T, interruption: Interruption) -> Body {
        Translating {
            inner,
            translation,
            interruption,
            done: false,
        }
        .boxed_unsync()
    }

    fn out(&mut self, bytes: Vec<u8>) -> Option<Frame<Bytes>> {
        if self.translation.failed() {
            self.interruption.set();
        }
        (!bytes.is_empty()).then(|| Frame::data(Bytes::from(bytes)))
    }
}

impl<T: StreamTranslation> hyper::body::Body for Translating<T> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let out = this.translation.feed(&data);
                    if let Some(frame) = this.out(out) {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let out = this.translation.finish();
                    return Poll::Ready(this.out(out).map(Ok));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
