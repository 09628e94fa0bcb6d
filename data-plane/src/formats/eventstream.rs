//! AWS's event stream encoding (`application/vnd.amazon.eventstream`), in
//! which Bedrock streams: binary messages, each a prelude (total length,
//! headers' length, the prelude's CRC32), headers (name, type, value), a
//! payload and the message's CRC32. [`Decoder`] takes the bytes as they
//! come, however they are split, and gives the messages whole; a bad CRC or
//! length is an error, never a guess.

use bytes::{Buf, Bytes, BytesMut};

/// The prelude's 12 bytes and the message CRC's 4.
const FRAMING: usize = 16;
/// A message larger than this is refused: Bedrock's chunks are a few
/// kilobytes, and the length is read before the CRC can vouch for it.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// One message: its string headers (the others skipped) and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

impl Message {
    /// The value of the string header `name` (`:message-type`,
    /// `:event-type`, `:exception-type`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why the stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventStreamError {
    #[error("an event stream message failed its checksum")]
    Checksum,
    #[error("an event stream message is malformed: {0}")]
    Malformed(&'static str),
    #[error("the event stream ended inside a message")]
    Truncated,
}

/// Messages out of bytes pushed in as they arrive.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: BytesMut,
}

impl Decoder {
    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// The next whole message, `None` until one has arrived.
    pub fn next_message(&mut self) -> Option<Result<Message, EventStreamError>> {
        if self.buffer.len() < 12 {
            return None;
        }
        let total = u32::from_be_bytes(self.buffer[0..4].try_into().ok()?) as usize;
        let headers_len = u32::from_be_bytes(self.buffer[4..8].try_into().ok()?) as usize;
        let prelude_crc = u32::from_be_bytes(self.buffer[8..12].try_into().ok()?);
        if crc32fast::hash(&self.buffer[..8]) != prelude_crc {
            return Some(Err(EventStreamError::Checksum));
        }
        if !(FRAMING..=MAX_MESSAGE).contains(&total) || headers_len > total - FRAMING {
            return Some(Err(EventStreamError::Malformed(
                "its lengths do not add up",
            )));
        }
        if self.buffer.len() < total {
            return None;
        }
        let message = self.buffer.split_to(total).freeze();
        let crc = u32::from_be_bytes(message[total - 4..].try_into().ok()?);
        if crc32fast::hash(&message[..total - 4]) != crc {
            return Some(Err(EventStreamError::Checksum));
        }
        let headers = match read_headers(&message[12..12 + headers_len]) {
            Ok(headers) => headers,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(Message {
            headers,
            payload: message.slice(12 + headers_len..total - 4),
        }))
    }

    /// Whether bytes of an unfinished message are left: at the stream's
    /// end, it was cut.
    pub fn is_mid_message(&self) -> bool {
        !self.buffer.is_empty()
    }
}

/// The headers' string values; the other types are skipped by their size.
fn read_headers(mut data: &[u8]) -> Result<Vec<(String, String)>, EventStreamError> {
    let short = EventStreamError::Malformed("a header runs past its end");
    let mut headers = Vec::new();
    while data.has_remaining() {
        let name_len = usize::from(data.try_get_u8().map_err(|_| short.clone())?);
        if data.len() < name_len + 1 {
            return Err(short);
        }
        let name = String::from_utf8_lossy(&data[..name_len]).into_owned();
        data.advance(name_len);
        let kind = data.get_u8();
        let fixed = match kind {
            0 | 1 => 0,
            2 => 1,
            3 => 2,
            4 => 4,
            5 | 8 => 8,
            9 => 16,
            6 | 7 => {
                let len = usize::from(data.try_get_u16().map_err(|_| short.clone())?);
                if data.len() < len {
                    return Err(short);
                }
                if kind == 7 {
                    headers.push((name, String::from_utf8_lossy(&data[..len]).into_owned()));
                }
                data.advance(len);
                continue;
            }
            _ => return Err(EventStreamError::Malformed("a header of an unknown type")),
        };
        if data.len() < fixed {
            return Err(short);
        }
        data.advance(fixed);
    }
    Ok(headers)
}

/// One message encoded: string headers and a payload. The mock upstreams
/// speak it to test the decoder end to end.
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut encoded_headers = Vec::new();
    for (name, value) in headers {
        encoded_headers.push(name.len() as u8);
        encoded_headers.extend_from_slice(name.as_bytes());
        encoded_headers.push(7);
        encoded_headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
        encoded_headers.extend_from_slice(value.as_bytes());
    }
    let total = FRAMING + encoded_headers.len() + payload.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(encoded_headers.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&encoded_headers);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_whole_however_the_bytes_are_split() {
        let one = encode(
            &[(":message-type", "event"), (":event-type", "chunk")],
            b"{\"a\":1}",
        );
        let two = encode(&[(":message-type", "exception")], b"{}");
        let all = [one.clone(), two].concat();
        for split in [1, 3, 7, 12, 13, one.len(), all.len()] {
            let mut decoder = Decoder::default();
            let mut got = Vec::new();
            for piece in all.chunks(split) {
                decoder.push(piece);
                while let Some(message) = decoder.next_message() {
                    got.push(message.unwrap());
                }
            }
            assert!(!decoder.is_mid_message());
            assert_eq!(got.len(), 2, "split by {split}");
            assert_eq!(got[0].header(":event-type"), Some("chunk"));
            assert_eq!(&got[0].payload[..], b"{\"a\":1}");
            assert_eq!(got[1].header(":message-type"), Some("exception"));
        }
    }

    #[test]
    fn other_header_types_are_skipped() {
        // A bool, an int and a timestamp header before a string one, as AWS
        // encodes them, the CRCs made over them.
        let mut headers = Vec::new();
        headers.extend_from_slice(b"\x01b\x00");
        headers.extend_from_slice(b"\x01i\x04\x00\x00\x00\x2a");
        headers.extend_from_slice(b"\x01t\x08\x00\x00\x01\x8f\x00\x00\x00\x00");
        headers.extend_from_slice(b"\x0b:event-type\x07\x00\x05chunk");
        let total = FRAMING + headers.len() + 2;
        let mut m = Vec::new();
        m.extend_from_slice(&(total as u32).to_be_bytes());
        m.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        let crc = crc32fast::hash(&m);
        m.extend_from_slice(&crc.to_be_bytes());
        m.extend_from_slice(&headers);
        m.extend_from_slice(b"{}");
        let crc = crc32fast::hash(&m);
        m.extend_from_slice(&crc.to_be_bytes());
        let mut decoder = Decoder::default();
        decoder.push(&m);
        let message = decoder.next_message().unwrap().unwrap();
        assert_eq!(
            message.headers,
            vec![(":event-type".into(), "chunk".into())]
        );
    }

    #[test]
    fn corruption_and_cuts_are_errors() {
        let mut bad = encode(&[(":event-type", "chunk")], b"payload");
        let last = bad.len() - 6;
        bad[last] ^= 1;
        let mut decoder = Decoder::default();
        decoder.push(&bad);
        assert_eq!(
            decoder.next_message(),
            Some(Err(EventStreamError::Checksum))
        );

        let mut prelude = encode(&[], b"x");
        prelude[2] ^= 1;
        let mut decoder = Decoder::default();
        decoder.push(&prelude);
        assert_eq!(
            decoder.next_message(),
            Some(Err(EventStreamError::Checksum))
        );

        let whole = encode(&[], b"payload");
        let mut decoder = Decoder::default();
        decoder.push(&whole[..whole.len() - 1]);
        assert_eq!(decoder.next_message(), None);
        assert!(decoder.is_mid_message());

        // Lengths that do not add up, with a valid prelude CRC.
        let mut lying = Vec::new();
        lying.extend_from_slice(&20u32.to_be_bytes());
        lying.extend_from_slice(&100u32.to_be_bytes());
        let crc = crc32fast::hash(&lying);
        lying.extend_from_slice(&crc.to_be_bytes());
        let mut decoder = Decoder::default();
        decoder.push(&lying);
        assert!(matches!(
            decoder.next_message(),
            Some(Err(EventStreamError::Malformed(_)))
        ));
    }
}
