//! The master key check in front of every admin service (DESIGN §8).
//! The key is compared in constant time and never logged.

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::secrets::constant_time_eq;

/// Accepts requests carrying `authorization: Bearer <master key>`.
#[derive(Clone)]
pub struct MasterKey {
    key: Arc<str>,
}

impl MasterKey {
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        Self { key: key.into() }
    }

    /// Whether an `authorization` header value carries the master key.
    pub fn accepts(&self, header: &str) -> bool {
        bearer_token(header).is_some_and(|token| constant_time_eq(token, &self.key))
    }
}

/// The credential of an `authorization: Bearer <credential>` value, trimmed;
/// `None` for another scheme or a blank credential. The scheme is
/// case-insensitive (RFC 9110 §11.1), as in the data plane's key parsing:
/// `BEARER x` is `Bearer x`.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, credential) = header.trim().split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl Interceptor for MasterKey {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(value) = request.metadata().get("authorization") else {
            return Err(Status::unauthenticated(
                "missing master key: send the header 'authorization: Bearer <master key>'",
            ));
        };
        match value.to_str() {
            Ok(v) if self.accepts(v) => Ok(request),
            _ => Err(Status::unauthenticated("invalid master key")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_bearer_master_key() {
        let k = MasterKey::new("sk-master");
        assert!(k.accepts("Bearer sk-master"));
        assert!(!k.accepts("Bearer sk-master2"));
        assert!(!k.accepts("sk-master"));
        assert!(!k.accepts("Bearer "));
        assert_eq!(format!("{k:?}"), "MasterKey(<redacted>)");
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in ["Bearer sk-a", "bearer sk-a", "BEARER sk-a", "BeArEr  sk-a "] {
            assert_eq!(bearer_token(header), Some("sk-a"), "{header:?}");
        }
        assert!(MasterKey::new("sk-master").accepts("BEARER sk-master"));
        for header in ["Basic sk-a", "Bearer", "Bearer  ", "Bearersk-a", ""] {
            assert_eq!(bearer_token(header), None, "{header:?}");
        }
    }
}
