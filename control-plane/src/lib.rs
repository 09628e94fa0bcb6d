//! Sluice's control plane: the admin API over a store, and (later) config
//! distribution to data planes.
//!
//! - [`store`]: the store trait (etcd's model: revisions, compare-and-swap
//!   transactions, watches) with the etcd and embedded implementations.
//!   Nothing else talks to etcd.
//! - [`litellm`]: LiteLLM `config.yaml` to resources and back; pure functions.

pub mod litellm;
pub mod store;
