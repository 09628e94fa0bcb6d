//! Header names more than one stage uses, and the random ids that fill
//! them. A leaf: it imports nothing of this crate.

use hyper::header::HeaderName;

/// The request id header, read from clients, sent upstream, returned on every
/// answer.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `n` random bytes as lowercase hex: request ids, mock completion ids.
pub fn random_hex(n: usize) -> String {
    use rand::RngCore;
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * n);
    // The thread's generator is looked up once, and drawn from once per 32
    // bytes into the stack: a request id is one draw and no allocation but
    // the string's.
    let mut rng = rand::rng();
    let mut bytes = [0u8; 32];
    for start in (0..n).step_by(bytes.len()) {
        let chunk = &mut bytes[..(n - start).min(32)];
        rng.fill_bytes(chunk);
        for &b in chunk.iter() {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 15)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_hex_of_the_asked_length() {
        let id = random_hex(16);
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(id, random_hex(16));
        for n in [0, 1, 31, 32, 33, 70] {
            assert_eq!(random_hex(n).len(), 2 * n);
        }
    }
}
