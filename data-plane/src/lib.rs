//! Sluice's data plane: the OpenAI-compatible gateway that sits next to an
//! application and answers every request from an in-memory config, with no
//! database or control-plane call on the request path.
//!
//! How a config arrives and is served, in order:
//!
//! - [`discovery`]: the `ConfigDiscovery` stream client. Says hello with the
//!   revision held, applies each snapshot or delta, ACKs or NACKs it;
//!   reconnects across control planes with backoff and jitter.
//! - [`snapshot`]: a snapshot turned into an immutable, indexed [`Config`]
//!   (keys by digest, model groups, wildcard order, aliases, access groups),
//!   and a delta turned into the next one, sharing what it does not change.
//!   Validation happens here, before anything is published.
//! - [`keys`]: the key index inside a [`Config`]: keys kept encoded, in
//!   copy-on-write shards, so a million fit in a sidecar and a one-key delta
//!   copies a few hundred.
//! - [`wire`]: the protocol's messages decoded with keys left as bytes.
//! - [`secrets`]: provider `api_key`/`api_base`/`api_version` references
//!   (`os.environ/NAME`) resolved from this process's environment.
//! - [`applied`]: the current [`Config`] behind an `arc-swap`: requests read
//!   it without a lock; updates publish a whole new value or nothing.
//! - [`cache`]: the last applied config on disk (checksummed, written
//!   atomically in the background), to start without a control plane.
//! - [`access`]: the access rule (DESIGN §3) and key status, as pure
//!   functions of (config, key, model).
//! - [`workers`]: one thread and single-threaded runtime per core, each
//!   accepting and serving its own connections with its own upstream pool.
//! - [`http`]: the HTTP server: the OpenAI API ([`http::openai`]), health,
//!   readiness, metrics, `/debug/config`; errors in OpenAI's shape, one
//!   constructor per row of DESIGN §4's table ([`http::error`]); each
//!   client connection's idle limit and shutdown ([`http::connection`]).
//! - [`metrics`]: the Prometheus metrics, names listed in one table.
//! - [`tls`]: the HTTPS server's certificate and the config stream's TLS,
//!   read from PEM files at start.
//! - [`log_writer`]: stderr through one buffer; request lines flushed in
//!   batches, everything else at once. [`log_format`]: the request line
//!   written directly, in the shape of the standard text or JSON format.
//! - [`allocator`]: malloc settings for millions of small allocations.
//!
//! The request path, one stage per module, in the order a request meets them
//! (driven by [`http::openai`]):
//!
//! 1. [`auth`]: the key from `Authorization: Bearer` / `x-api-key` /
//!    `api-key`, looked up by SHA-256; expired, blocked, team blocked.
//! 2. [`request`]: content type, body limit, JSON checks; finds `model` and
//!    rewrites it without re-serialising the body.
//! 3. [`access`]: may this key call this model (403 / 404).
//! 4. [`router`]: a weighted random deployment of the resolved group (the
//!    seam for retries, cooldowns and fallbacks).
//! 5. [`forward`] with [`providers`] (`openai` and compatibles, `azure`,
//!    `mock`): the upstream call, streamed back with back-pressure, through
//!    [`upstream`]'s pooled client (direct, or via the environment's proxy).
//! 6. [`meter`]: metrics and one log line when the answer is over.
//!
//! Still to come: usage reporting, budgets and rate limits, retries and
//! fallbacks, non-OpenAI wire formats.

pub mod backoff;
pub mod body;
pub mod config;
pub mod formats;
pub mod forward;
pub mod headers;
pub mod http;
pub mod meter;
pub mod metrics;
pub mod providers;
pub mod request;
pub mod router;
pub mod serve;
pub mod tls;
pub mod upstream;

pub use config::applied::{AppliedConfig, Outcome, Readiness};
pub use config::snapshot::{Config, SnapshotError};
pub use request::access::{Decision, KeyRejection, available_models, check, key_status};

/// Where the HTTP server listens unless told otherwise: LiteLLM's port, where
/// its users already point their SDKs.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:4000";
