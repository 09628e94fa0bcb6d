//! Sluice's wire contract, generated from `proto/sluice/**.proto`.
//!
//! - [`admin::v1`]: the operator's admin API (keys, teams, organizations,
//!   access groups, deployments, router settings, credits, config import,
//!   data-plane tokens) and the stored resources themselves: what the control
//!   plane writes to etcd is exactly these messages, protobuf-encoded.
//! - [`config::v1`]: what the control plane distributes to data planes.
//! - [`wire`]: `config::v1`'s messages with keys left encoded, as the control
//!   plane encodes and the data plane decodes them.
//! - [`providers`]: the provider prefixes Sluice knows and how each is spoken to.
//! - [`budget`]: budget windows, the rule both planes count by.
//! - [`FILE_DESCRIPTOR_SET`]: every file above, for gRPC server reflection.

pub mod budget;
pub mod providers;
pub mod wire;

pub mod admin {
    pub mod v1 {
        tonic::include_proto!("sluice.admin.v1");
    }
}

pub mod config {
    pub mod v1 {
        tonic::include_proto!("sluice.config.v1");
    }
}

/// The encoded `FileDescriptorSet` of every Sluice proto, imports included.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("sluice_descriptor");

pub use prost;
pub use prost_types;
