//! Stage 1 of the request path: who is calling. The virtual key comes from
//! `Authorization: Bearer <key>`, `x-api-key` or `api-key` (the headers
//! OpenAI's, Anthropic's and Azure's SDKs send), and is looked up by its
//! SHA-256 in the in-memory [`Config`]: one hash and one map lookup, no lock,
//! no I/O.
//!
//! The plaintext key never leaves this module: callers get the stored
//! [`Key`], whose alias or prefix is what logs and messages show.

use std::time::SystemTime;

use hyper::header::{self, HeaderMap, HeaderName};
use sluice_proto::admin::v1::Key;

use crate::access::{self, KeyRejection};
use crate::snapshot::Config;

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
/// Keys are stored encoded (see [`crate::keys`]), so the key comes back
/// owned: one small decode per request.
pub fn authenticate(
    config: &Config,
    headers: &HeaderMap,
    now: SystemTime,
) -> Result<Key, AuthError> {
    let plaintext = presented_key(headers).ok_or(AuthError::Missing)?;
    let key = config
        .key_by_plaintext(plaintext)
        .ok_or(AuthError::Unknown)?;
    access::key_status(config, &key, now)?;
    Ok(key)
}

/// How a key is named to people: its alias, else its prefix, else its
/// digest's first characters. Never the key.
pub fn key_label(key: &Key) -> String {
    if !key.key_alias.is_empty() {
        key.key_alias.clone()
    } else if !key.key_prefix.is_empty() {
        format!("{}…", key.key_prefix)
    } else {
        format!("key_id {}…", key.key_id.get(..12).unwrap_or(&key.key_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

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
