//! The config protocol's messages with keys left encoded: the same wire
//! format as `sluice.config.v1`'s `ControlPlaneMessage`, `Snapshot` and
//! `Delta`, except that `keys` is declared `repeated bytes`. In protobuf an
//! embedded message and a `bytes` field are both length-delimited, so these
//! read and write exactly what the generated types do, without building a
//! million `Key` structs only to take them apart again: the control plane
//! keeps keys encoded and encodes snapshots from them, the data plane
//! indexes them encoded. Decoding from a [`Bytes`] buffer, as tonic does,
//! slices it rather than copying.
//!
//! The generated types convert into these ([`From`]), so tests and callers
//! holding a `Snapshot` or `Delta` use the same code path.

use crate::admin::v1::{AccessGroup, Deployment, ModelAlias, Organization, RouterSettings, Team};
use crate::config::v1::{ControlPlaneMessage, Delta, ObjectRef, Snapshot, control_plane_message};
use prost::Message;
use prost::bytes::Bytes;

/// `sluice.config.v1.Snapshot`, keys left encoded.
#[derive(Clone, PartialEq, Message)]
pub struct SnapshotWire {
    #[prost(int64, tag = "1")]
    pub revision: i64,
    #[prost(message, repeated, tag = "2")]
    pub deployments: Vec<Deployment>,
    #[prost(message, repeated, tag = "3")]
    pub aliases: Vec<ModelAlias>,
    #[prost(message, repeated, tag = "4")]
    pub access_groups: Vec<AccessGroup>,
    #[prost(message, repeated, tag = "5")]
    pub teams: Vec<Team>,
    #[prost(message, repeated, tag = "6")]
    pub organizations: Vec<Organization>,
    /// Each an encoded `sluice.admin.v1.Key`.
    #[prost(bytes = "bytes", repeated, tag = "7")]
    pub keys: Vec<Bytes>,
    #[prost(message, optional, tag = "8")]
    pub router_settings: Option<RouterSettings>,
}

/// `sluice.config.v1.Delta`, keys left encoded.
#[derive(Clone, PartialEq, Message)]
pub struct DeltaWire {
    #[prost(int64, tag = "1")]
    pub from_revision: i64,
    #[prost(int64, tag = "2")]
    pub to_revision: i64,
    #[prost(message, optional, tag = "3")]
    pub upserts: Option<SnapshotWire>,
    #[prost(message, repeated, tag = "4")]
    pub removals: Vec<ObjectRef>,
}

/// `sluice.config.v1.ControlPlaneMessage`, keys left encoded.
#[derive(Clone, PartialEq, Message)]
pub struct ControlPlaneMessageWire {
    #[prost(oneof = "UpdateWire", tags = "1, 2")]
    pub message: Option<UpdateWire>,
    #[prost(string, tag = "3")]
    pub control_plane_id: String,
}

/// The `message` oneof of [`ControlPlaneMessageWire`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum UpdateWire {
    #[prost(message, tag = "1")]
    Snapshot(SnapshotWire),
    #[prost(message, tag = "2")]
    Delta(DeltaWire),
}

impl From<Snapshot> for SnapshotWire {
    fn from(s: Snapshot) -> Self {
        SnapshotWire {
            revision: s.revision,
            deployments: s.deployments,
            aliases: s.aliases,
            access_groups: s.access_groups,
            teams: s.teams,
            organizations: s.organizations,
            keys: s
                .keys
                .iter()
                .map(|k| Bytes::from(k.encode_to_vec()))
                .collect(),
            router_settings: s.router_settings,
        }
    }
}

impl From<Delta> for DeltaWire {
    fn from(d: Delta) -> Self {
        DeltaWire {
            from_revision: d.from_revision,
            to_revision: d.to_revision,
            upserts: d.upserts.map(SnapshotWire::from),
            removals: d.removals,
        }
    }
}

impl From<ControlPlaneMessage> for ControlPlaneMessageWire {
    fn from(m: ControlPlaneMessage) -> Self {
        ControlPlaneMessageWire {
            message: m.message.map(|u| match u {
                control_plane_message::Message::Snapshot(s) => UpdateWire::Snapshot(s.into()),
                control_plane_message::Message::Delta(d) => UpdateWire::Delta(d.into()),
            }),
            control_plane_id: m.control_plane_id,
        }
    }
}
