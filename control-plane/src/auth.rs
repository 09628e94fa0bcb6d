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
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or("");
        !token.is_empty() && constant_time_eq(token.trim(), &self.key)
    }
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
}
