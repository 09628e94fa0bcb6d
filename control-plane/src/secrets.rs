//! Secrets: virtual keys and data-plane tokens are generated here, shown
//! once, and stored only as their SHA-256. Comparisons are constant-time.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of virtual keys, as LiteLLM's and OpenAI's.
pub const KEY_PREFIX: &str = "sk-";
/// Prefix of data-plane tokens, so they are never mistaken for virtual keys.
pub const DATA_PLANE_TOKEN_PREFIX: &str = "sdp-";
/// How many characters of a plaintext are kept for display.
pub const DISPLAY_PREFIX_LEN: usize = 10;

/// `prefix` + 32 bytes from a CSPRNG, base64url without padding.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    // ThreadRng is ChaCha12 seeded and periodically reseeded from the OS: a CSPRNG.
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Lowercase hex SHA-256: the id under which a secret is stored.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The first characters of a secret, for display next to its hash.
pub fn display_prefix(secret: &str) -> String {
    secret.chars().take(DISPLAY_PREFIX_LEN).collect()
}

/// Compares two secrets in time independent of where they differ (and of
/// their lengths: both sides are hashed first).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes())
        .ct_eq(&Sha256::digest(b.as_bytes()))
        .into()
}

/// A short random id (hex) for generated object ids and access-group uids.
pub fn random_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_long_random_and_prefixed() {
        let a = generate(KEY_PREFIX);
        let b = generate(KEY_PREFIX);
        assert!(a.starts_with("sk-"));
        assert_eq!(a.len(), 3 + 43);
        assert_ne!(a, b);
        assert_eq!(sha256_hex(&a).len(), 64);
        assert_ne!(sha256_hex(&a), sha256_hex(&b));
    }

    #[test]
    fn constant_time_eq_compares_values() {
        assert!(constant_time_eq("master", "master"));
        assert!(!constant_time_eq("master", "master2"));
        assert!(!constant_time_eq("", "x"));
    }
}
