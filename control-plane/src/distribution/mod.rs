//! Config distribution (DESIGN §6): the control plane's side of
//! `sluice.config.v1.ConfigDiscovery`.
//!
//! - [`hub`]: one list + watch of the store per replica; publishes the
//!   configuration per revision with a bounded history for deltas.
//! - [`objects`]: stored values decoded and checked for distribution;
//!   invalid ones are refused and reported.
//! - [`stream`]: the per-data-plane session (token, hello, snapshot/deltas,
//!   ACK/NACK).
//! - [`service`]: the gRPC service around it, sending snapshots and deltas
//!   the hub encoded once.
//! - [`status`]: which data planes are connected and what they applied,
//!   kept in the store so every replica can answer for all.
//! - [`cooldowns`]: fleet-wide cooldowns: data planes' reports coalesced and
//!   rate-limited into `/sluice-status/cooldowns/` (with a TTL), watched by
//!   every replica and relayed to its data planes.
//! - [`limits`]: rate limits across data planes: each replica leases its
//!   data planes shares of every limit they demand (a pure allocator,
//!   `limits::allocate`), so that shares never sum past a limit.
//!
//! Usage rides the same stream (`crate::usage`): reports counted by
//! [`crate::usage::Usage`], totals relayed from [`crate::usage::Totals`].

pub mod cooldowns;
pub mod hub;
pub mod limits;
pub mod objects;
pub mod service;
pub mod status;
pub mod stream;

use std::sync::Arc;

pub use cooldowns::Cooldowns;
use tokio_util::sync::CancellationToken;

pub use hub::Hub;
pub use limits::{LimitSettings, Limits};
pub use service::ConfigDiscoveryService;
pub use status::Registry;
pub use stream::{Discovery, Tokens};

use crate::metrics::Metrics;
use crate::store::Store;
use crate::usage::{Totals, Usage};

/// Everything a replica runs for distribution.
#[derive(Clone)]
pub struct Distribution {
    store: Arc<dyn Store>,
    pub hub: Hub,
    pub registry: Registry,
    pub tokens: Tokens,
    pub cooldowns: Cooldowns,
    pub usage: Usage,
    pub totals: Totals,
    pub limits: Limits,
    /// Cancelled at shutdown: every config stream then ends.
    pub shutdown: CancellationToken,
}

impl Distribution {
    /// Starts the hub on the runtime.
    pub fn start(
        store: Arc<dyn Store>,
        replica_id: String,
        static_token: Option<String>,
        require_client_certificate: bool,
        metrics: Arc<Metrics>,
        limit_settings: LimitSettings,
        shutdown: CancellationToken,
    ) -> Self {
        let hub = Hub::start(store.clone(), metrics.clone());
        let registry = Registry::new(store.clone(), replica_id, metrics.clone());
        Self {
            limits: Limits::start(
                hub.clone(),
                registry.clone(),
                metrics.clone(),
                limit_settings,
            ),
            usage: Usage::new(store.clone(), hub.clone(), metrics.clone()),
            totals: Totals::start(store.clone(), metrics.clone()),
            hub,
            cooldowns: Cooldowns::start(store.clone(), metrics.clone()),
            registry,
            store,
            tokens: Tokens {
                static_token: static_token.map(Arc::from),
                require_client_certificate,
            },
            shutdown,
        }
    }

    pub fn discovery(&self) -> Discovery {
        Discovery {
            store: self.store.clone(),
            hub: self.hub.clone(),
            registry: self.registry.clone(),
            tokens: self.tokens.clone(),
            cooldowns: self.cooldowns.clone(),
            usage: self.usage.clone(),
            totals: self.totals.clone(),
            limits: self.limits.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}
