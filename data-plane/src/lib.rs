//! Sluice's data plane: the OpenAI-compatible gateway that sits next to an
//! application and answers every request from an in-memory config, with no
//! database or control-plane call on the request path.
//!
//! - [`snapshot`]: a config snapshot from the control plane turned into an
//!   immutable, indexed [`Config`] (keys by digest, model groups, wildcard
//!   order, aliases, access groups).
//! - [`secrets`]: provider `api_key`/`api_base`/`api_version` references
//!   (`os.environ/NAME`) resolved from this process's environment.
//! - [`access`]: the access rule (DESIGN §3) and key status, as pure
//!   functions of (config, key, model).
//!
//! Still to come: the config stream, routing, providers, usage and the HTTP
//! server.

pub mod access;
pub mod applied;
pub mod cache;
pub mod metrics;
pub mod secrets;
pub mod snapshot;

pub use access::{Decision, KeyRejection, available_models, check, key_status};
pub use snapshot::{Config, SnapshotError};

/// Where the HTTP server listens unless told otherwise: LiteLLM's port, where
/// its users already point their SDKs.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:4000";
