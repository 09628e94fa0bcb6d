//! Stage 1 of the request path: who is calling. The virtual key comes from
//! `Authorization: Bearer <key>`, `x-api-key` or `api-key` (the headers
//! OpenAI's, Anthropic's and Azure's SDKs send), and is looked up by its
//! SHA-256 in the in-memory [`Config`]: one hash and one map lookup, no lock,
//! no I/O.
//!
//! The plaintext key never leaves this module: callers get the stored
//! [`Key`], whose alias or prefix is what logs and messages show.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::time::SystemTime;

use hyper::header::{self, HeaderMap, HeaderName};
use sluice_proto::admin::v1::Key;

use sha2::{Digest, Sha256};

use crate::config::keys::{DigestHasher, KeyDigest};
use crate::config::snapshot::Config;
use crate::request::access::{self, KeyRejection};

/// Why a request was not authenticated (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no API key in the request")]
    Missing,
    #[error("unknown API key")]
    Unknown,
    #[error(transparent)]
    Rejected(#[from] KeyRejection),
}

/// The key presented, from the first of `Authorization: Bearer`,
/// `x-api-key`, `api-key` that is set and not blank.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme is case-insensitive (RFC 9110 §11.1).
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest)
        });
    let plain = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    // Looked up only as far as needed: most requests carry a Bearer token.
    usable(bearer)
        .or_else(|| usable(plain(&X_API_KEY)))
        .or_else(|| usable(plain(&API_KEY)))
}

fn usable(key: Option<&str>) -> Option<&str> {
    key.map(str::trim).filter(|k| !k.is_empty())
}

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const API_KEY: HeaderName = HeaderName::from_static("api-key");

/// The stored key for the request's headers, if it may be used at `now`.
pub fn authenticate(
    config: &Config,
    headers: &HeaderMap,
    now: SystemTime,
) -> Result<Arc<Key>, AuthError> {
    let plaintext = presented_key(headers).ok_or(AuthError::Missing)?;
    let digest: KeyDigest = Sha256::digest(plaintext.as_bytes()).into();
    let key = decoded(config, &digest).ok_or(AuthError::Unknown)?;
    access::key_status(config, &key, now)?;
    Ok(key)
}

/// Decoded keys kept per thread (each request worker has its own, so no
/// lock): keys are stored encoded ([`crate::config::keys`]), and a key is decoded
/// on its first request under a config, then shared. Emptied when the
/// config changes (any load or delta) and when full. Unknown digests are
/// not kept, so keys sprayed at random cannot fill it.
struct DecodedKeys {
    generation: u64,
    keys: HashMap<KeyDigest, Arc<Key>, BuildHasherDefault<DigestHasher>>,
}

/// The most keys a thread keeps decoded: a few MiB at most.
const DECODED_KEYS_PER_THREAD: usize = 4096;

thread_local! {
    static DECODED: RefCell<DecodedKeys> = RefCell::new(DecodedKeys {
        generation: 0,
        keys: HashMap::default(),
    });
}

fn decoded(config: &Config, digest: &KeyDigest) -> Option<Arc<Key>> {
    DECODED.with_borrow_mut(|cache| {
        if cache.generation != config.generation() {
            cache.keys.clear();
            cache.generation = config.generation();
        }
        if let Some(key) = cache.keys.get(digest) {
            return Some(Arc::clone(key));
        }
        let key = Arc::new(config.key_by_digest(digest)?);
        if cache.keys.len() >= DECODED_KEYS_PER_THREAD {
            cache.keys.clear();
        }
        cache.keys.insert(*digest, Arc::clone(&key));
        Some(key)
    })
}

/// How a key is named to people: its alias, else its prefix, else its
/// digest's first characters. Never the key.
pub fn key_label(key: &Key) -> Cow<'_, str> {
    if !key.key_alias.is_empty() {
        Cow::Borrowed(&key.key_alias)
    } else if !key.key_prefix.is_empty() {
        Cow::Owned(format!("{}…", key.key_prefix))
    } else {
        Cow::Owned(format!(
            "key_id {}…",
            key.key_id.get(..12).unwrap_or(&key.key_id)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn config(revision: i64, blocked: bool) -> Config {
        let key = Key {
            key_id: hex::encode(Sha256::digest(b"sk-cached")),
            key_alias: "ci".into(),
            blocked,
            ..Default::default()
        };
        Config::from_snapshot(sluice_proto::config::v1::Snapshot {
            revision,
            keys: vec![key],
            ..Default::default()
        })
        .expect("valid")
    }

    #[test]
    fn keys_are_decoded_once_per_config_and_never_served_stale() {
        let bearer = headers(&[("authorization", "Bearer sk-cached")]);
        let now = SystemTime::now();
        let first = config(1, false);
        let a = authenticate(&first, &bearer, now).expect("valid key");
        let b = authenticate(&first, &bearer, now).expect("valid key");
        assert!(Arc::ptr_eq(&a, &b), "decoded once, then shared");
        // The next config blocks it: the kept decode is not used.
        let second = config(2, true);
        assert_ne!(first.generation(), second.generation());
        assert_eq!(
            authenticate(&second, &bearer, now).unwrap_err(),
            AuthError::Rejected(KeyRejection::Blocked)
        );
        // Unknown keys are refused and not kept.
        let unknown = headers(&[("authorization", "Bearer sk-nope")]);
        assert_eq!(
            authenticate(&second, &unknown, now).unwrap_err(),
            AuthError::Unknown
        );
        DECODED.with_borrow(|cache| assert_eq!(cache.keys.len(), 1));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn key_comes_from_any_of_the_three_headers() {
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer sk-a")])),
            Some("sk-a")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "bearer  sk-a ")])),
            Some("sk-a")
        );
        assert_eq!(
            presented_key(&headers(&[("x-api-key", "sk-b")])),
            Some("sk-b")
        );
        assert_eq!(
            presented_key(&headers(&[("api-key", "sk-c")])),
            Some("sk-c")
        );
        assert_eq!(
            presented_key(&headers(&[
                ("authorization", "Bearer sk-a"),
                ("api-key", "sk-c")
            ])),
            Some("sk-a")
        );
        // A non-Bearer scheme or a blank value is not a key; the next header
        // still counts.
        assert_eq!(
            presented_key(&headers(&[
                ("authorization", "Basic abc"),
                ("api-key", "sk-c")
            ])),
            Some("sk-c")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer ")])),
            None
        );
        assert_eq!(presented_key(&headers(&[])), None);
    }

    #[test]
    fn labels_never_show_the_key() {
        let mut key = Key {
            key_id: "ab".repeat(32),
            ..Default::default()
        };
        assert_eq!(key_label(&key), "key_id abababababab…");
        key.key_prefix = "sk-xyz".into();
        assert_eq!(key_label(&key), "sk-xyz…");
        key.key_alias = "ci".into();
        assert_eq!(key_label(&key), "ci");
    }
}
