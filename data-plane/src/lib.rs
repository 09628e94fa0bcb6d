//! Sluice's data plane: the OpenAI-compatible gateway that sits next to an
//! application and answers every request from an in-memory config, with no
//! database or control-plane call on the request path.
//!
//! The crate in four parts, each a folder (ARCHITECTURE.md states what each
//! may import; the `layout_rules` unit test holds it):
//!
//! **How a config arrives and is held** ([`config`]):
//!
//! - [`config::discovery`]: the `ConfigDiscovery` stream client. Says hello
//!   with the revision held, applies each snapshot or delta, ACKs or NACKs
//!   it; reconnects across control planes with [`backoff`].
//! - [`config::snapshot`]: a snapshot turned into an immutable, indexed
//!   [`Config`] (keys by digest, model groups, wildcard order, aliases,
//!   access groups), and a delta turned into the next one, sharing what it
//!   does not change. Validation happens here, before anything is published.
//! - [`config::keys`]: the key index inside a [`Config`]: keys kept encoded,
//!   in copy-on-write shards, so a million fit in a sidecar and a one-key
//!   delta copies a few hundred.
//! - [`config::wire`]: the protocol's messages decoded with keys left as
//!   bytes.
//! - [`config::secrets`]: provider `api_key`/`api_base`/`api_version`
//!   references (`os.environ/NAME`) resolved from this process's environment.
//! - [`config::applied`]: the current [`Config`] behind an `arc-swap`:
//!   requests read it without a lock; updates publish a whole new value or
//!   nothing.
//! - [`config::cache`]: the last applied config on disk (checksummed,
//!   written atomically in the background), to start without a control
//!   plane.
//!
//! **The request path**, one stage per module, in the order a request meets
//! them (driven by [`http::openai`]):
//!
//! 1. [`request::auth`]: the key from `Authorization: Bearer` / `x-api-key`
//!    / `api-key`, looked up by SHA-256; expired, blocked, team blocked.
//! 2. [`request::parse`]: content type, body limit, JSON checks for the
//!    [`request::Route`] called; finds `model` and rewrites it without
//!    re-serialising the body.
//! 3. [`request::access`]: may this key call this model (403 / 404).
//! 4. [`router`]: which deployment takes each attempt (LiteLLM's
//!    strategies, `order`, caps), and on failure retries, cooldowns shared
//!    with the fleet, and fallbacks checked against the key's access.
//! 5. [`forward`]: one attempt to one deployment, with [`providers`]
//!    (`openai` and compatibles, `azure`, `anthropic`, `mock`; each
//!    deployment's [`providers::Target`] made once; the body passed through
//!    or translated between OpenAI's and Anthropic's APIs,
//!    [`providers::exchange`]) through [`upstream`]'s pooled client
//!    (direct, or via the environment's proxy; one deadline per exchange;
//!    [`upstream::UpstreamError`] by kind), streamed back with back-pressure.
//! 6. [`meter`]: metrics and one log line when the answer is over.
//!
//! **Usage** ([`usage`], DESIGN §7): before routing, admission against the
//! key's, team's and organization's budgets and the team's credits (atomics,
//! no network); on the answer, its `usage` read as it passes; when it ends,
//! the cost settled and the usage journaled to disk, then reported in
//! batches on the config stream, whose answers bring back the fleet's
//! totals.
//!
//! **Wire formats** ([`formats`]): what a body is shaped for
//! ([`formats::Format`], the upstream's as much as the client's), OpenAI's
//! chat types and error shape, Anthropic's Messages API and the
//! translations both ways ([`formats::anthropic`]), server-sent events;
//! pure.
//!
//! **Serving**: [`http`], the top: the server, the OpenAI API
//! ([`http::openai`]), the operator's endpoints ([`http::ops`]: health,
//! readiness, metrics, `/debug/config`), errors in OpenAI's shape, one
//! constructor per row of DESIGN §4's table ([`http::error`]), each client
//! connection's idle limit and shutdown ([`http::connection`]). Around it,
//! [`serve`]: one thread and runtime per core ([`serve::workers`]), stderr
//! through one buffer ([`serve::log_writer`]) with the request line written
//! directly ([`serve::log_format`]), malloc settings ([`serve::allocator`]).
//!
//! **Leaves** every part may use, importing nothing of ours: [`body`] (the
//! body type, what a body carries and how it ended), [`headers`] (the
//! request id), [`backoff`] (the one backoff), [`metrics`] (the Prometheus
//! metrics, names in one table, histograms on atomics), [`tls`] (the HTTPS server's certificate and
//! the config stream's TLS, from PEM files).
//!
//! Still to come: OpenAI's Responses API.

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
pub mod usage;

#[cfg(test)]
mod layout_rules;

pub use config::applied::{AppliedConfig, Outcome, Readiness};
pub use config::snapshot::{Config, SnapshotError};
pub use request::access::{Decision, KeyRejection, available_models, check, key_status};

/// Where the HTTP server listens unless told otherwise: LiteLLM's port, where
/// its users already point their SDKs.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:4000";
