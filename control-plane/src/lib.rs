//! Sluice's control plane: the admin API over a store, and config
//! distribution to data planes.
//!
//! A request flows `server` (gRPC, master key via `auth`) → `admin` (one
//! module per service: validate with `validate`, read-modify-write through
//! `catalog`) → `store` (etcd or embedded). Reads and writes are typed by
//! `resources`, which fixes where each object lives in etcd. What is
//! committed reaches data planes through `distribution`, which watches the
//! store on its own and never calls into `admin`.
//!
//! - [`store`]: the store trait (etcd's model: revisions, compare-and-swap
//!   transactions, watches, keys that expire) with the etcd and embedded
//!   implementations.
//!   Nothing else talks to etcd.
//! - [`resources`]: each resource's etcd key and encoding.
//! - [`catalog`]: typed gets, lists, guarded writes, retry on conflict,
//!   batched sweeps.
//! - [`admin`]: the `sluice.admin.v1` services; `admin::sweeps`: the
//!   pending-sweep records (`/sluice/sweeps/`) that make fan-out deletes
//!   finish after any failure, and each replica's `Sweeper`.
//! - [`validate`]: field rules, and a deployment's whole check (shared by
//!   `admin` and `distribution`); [`error`]: the admin error, typed by what
//!   it is about, and its one mapping to gRPC codes.
//! - [`litellm`]: LiteLLM `config.yaml` to resources and back; pure functions.
//! - [`secrets`]: key and token generation, hashing, constant-time compare.
//! - [`auth`]: the master key interceptor and the `Bearer` parsing;
//!   [`server`]: the gRPC server; [`shutdown`]: what SIGTERM ends, waits
//!   for and cuts;
//!   [`metrics`]: Prometheus metrics on their own port.
//! - [`distribution`]: config distribution to data planes (hub, streams,
//!   status) and fleet-wide cooldowns (`distribution::cooldowns`, under
//!   `/sluice-status/cooldowns/`), and rate-limit shares leased to data
//!   planes (`distribution::limits`: shares never sum past a limit);
//!   [`huge_pages`]: the large buffer a full snapshot is encoded into.
//! - [`usage`]: data planes' usage reports counted exactly once into
//!   `/sluice/usage/` (one guarded transaction per report), budget windows,
//!   and the totals each replica watches and sends back on the config
//!   stream. Under `/sluice/`, but never configuration: the hub skips it.

pub mod admin;
pub mod auth;
pub mod catalog;
pub mod distribution;
pub mod error;
pub mod huge_pages;
pub mod litellm;
pub mod metrics;
pub mod resources;
pub mod secrets;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod usage;
pub mod validate;

/// Default gRPC listen address (DESIGN §9).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:50051";
/// Default directory of the embedded store.
pub const DEFAULT_DATA_DIR: &str = ".sluice/data";
