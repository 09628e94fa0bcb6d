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
//! holding a `Snapshot` or `Delta` use the same code path. A large snapshot
//! is written with [`SnapshotWriter`], object by object, without building a
//! [`SnapshotWire`] first.

use crate::admin::v1::{AccessGroup, Deployment, ModelAlias, Organization, RouterSettings, Team};
use crate::config::v1::{
    ControlPlaneMessage, Delta, FleetCooldowns, LimitLeases, ObjectRef, Snapshot, UsageAck,
    UsageTotals, control_plane_message,
};
use prost::Message;
use prost::bytes::{BufMut, Bytes};
use prost::encoding::{self, WireType};

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

/// Writes an encoded `Snapshot` one object at a time, straight from where
/// the objects are kept: a million keys are then one pass of copies into
/// one buffer, rather than a [`SnapshotWire`] of a million `Bytes` handles
/// built, measured and encoded in three passes. The output is what
/// [`SnapshotWire`] decodes (protobuf lets a repeated field's elements come
/// interleaved with other fields').
#[derive(Debug)]
pub struct SnapshotWriter {
    buf: Vec<u8>,
}

impl SnapshotWriter {
    /// A snapshot at `revision`, written after what `buf` holds (nothing,
    /// usually: `buf` is the caller's, sized and allocated as it sees fit).
    pub fn with_buffer(revision: i64, mut buf: Vec<u8>) -> Self {
        if revision != 0 {
            encoding::int64::encode(1, &revision, &mut buf);
        }
        SnapshotWriter { buf }
    }

    pub fn deployment(&mut self, d: &Deployment) {
        encoding::message::encode(2, d, &mut self.buf);
    }

    pub fn alias(&mut self, a: &ModelAlias) {
        encoding::message::encode(3, a, &mut self.buf);
    }

    pub fn access_group(&mut self, g: &AccessGroup) {
        encoding::message::encode(4, g, &mut self.buf);
    }

    pub fn team(&mut self, t: &Team) {
        encoding::message::encode(5, t, &mut self.buf);
    }

    pub fn organization(&mut self, o: &Organization) {
        encoding::message::encode(6, o, &mut self.buf);
    }

    /// An encoded `sluice.admin.v1.Key`.
    pub fn key(&mut self, encoded: &[u8]) {
        encoding::encode_key(7, WireType::LengthDelimited, &mut self.buf);
        encoding::encode_varint(encoded.len() as u64, &mut self.buf);
        self.buf.put_slice(encoded);
    }

    pub fn router_settings(&mut self, r: &RouterSettings) {
        encoding::message::encode(8, r, &mut self.buf);
    }

    /// The encoded `Snapshot`.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
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
    #[prost(oneof = "UpdateWire", tags = "1, 2, 4, 5, 6, 7")]
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
    /// Not configuration, but on the same stream: nothing in it is a key, so
    /// it is the generated type as is.
    #[prost(message, tag = "4")]
    Cooldowns(FleetCooldowns),
    /// Usage (DESIGN §7): not configuration either.
    #[prost(message, tag = "5")]
    UsageAck(UsageAck),
    #[prost(message, tag = "6")]
    UsageTotals(UsageTotals),
    /// Rate-limit shares (DESIGN §7): not configuration either.
    #[prost(message, tag = "7")]
    LimitLeases(LimitLeases),
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
                control_plane_message::Message::Cooldowns(c) => UpdateWire::Cooldowns(c),
                control_plane_message::Message::UsageAck(a) => UpdateWire::UsageAck(a),
                control_plane_message::Message::UsageTotals(t) => UpdateWire::UsageTotals(t),
                control_plane_message::Message::LimitLeases(l) => UpdateWire::LimitLeases(l),
            }),
            control_plane_id: m.control_plane_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::v1::Key;

    /// One of each kind, the writer fed in an order other than the fields'.
    #[test]
    fn the_writer_writes_what_snapshot_wire_decodes() {
        let key = |id: &str| {
            Bytes::from(
                Key {
                    key_id: id.into(),
                    team_id: "t".into(),
                    ..Default::default()
                }
                .encode_to_vec(),
            )
        };
        let want = SnapshotWire {
            revision: 42,
            deployments: vec![Deployment {
                id: "d".into(),
                model_name: "gpt-4o".into(),
                ..Default::default()
            }],
            aliases: vec![ModelAlias {
                alias: "fast".into(),
                ..Default::default()
            }],
            access_groups: vec![AccessGroup {
                name: "standard".into(),
                ..Default::default()
            }],
            teams: vec![Team {
                team_id: "t".into(),
                ..Default::default()
            }],
            organizations: vec![Organization {
                organization_id: "o".into(),
                ..Default::default()
            }],
            keys: vec![key("k1"), key("k2")],
            router_settings: Some(RouterSettings {
                num_retries: Some(3),
                ..Default::default()
            }),
        };
        let mut w = SnapshotWriter::with_buffer(want.revision, Vec::new());
        w.key(&want.keys[0]);
        w.router_settings(want.router_settings.as_ref().unwrap());
        w.team(&want.teams[0]);
        w.deployment(&want.deployments[0]);
        w.key(&want.keys[1]);
        w.organization(&want.organizations[0]);
        w.access_group(&want.access_groups[0]);
        w.alias(&want.aliases[0]);
        let written = Bytes::from(w.finish());
        assert_eq!(SnapshotWire::decode(written.clone()).unwrap(), want);
        // And what the generated types read.
        let generated = Snapshot::decode(written).unwrap();
        assert_eq!(generated.keys.len(), 2);
        assert_eq!(generated.keys[1].key_id, "k2");
    }

    /// The cooldowns variant reads and writes exactly as the generated
    /// `ControlPlaneMessage` does, both ways.
    #[test]
    fn fleet_cooldowns_round_trip_against_the_generated_type() {
        use crate::config::v1::Cooldown;
        let generated = ControlPlaneMessage {
            message: Some(control_plane_message::Message::Cooldowns(FleetCooldowns {
                cooldowns: vec![
                    Cooldown {
                        deployment_id: "gpt-4o-east".into(),
                        remaining_ms: 30_000,
                        reason: "rate_limited".into(),
                        reporter: "dp-1".into(),
                    },
                    Cooldown {
                        deployment_id: "gpt-4o-west".into(),
                        remaining_ms: 1,
                        reason: "server_error".into(),
                        reporter: "dp-2".into(),
                    },
                ],
            })),
            control_plane_id: "cp-0".into(),
        };
        let bytes = generated.encode_to_vec();
        let wire = ControlPlaneMessageWire::decode(&bytes[..]).unwrap();
        assert_eq!(wire, ControlPlaneMessageWire::from(generated.clone()));
        assert_eq!(wire.encode_to_vec(), bytes);
        assert_eq!(
            ControlPlaneMessage::decode(&wire.encode_to_vec()[..]).unwrap(),
            generated
        );
    }

    #[test]
    fn revision_zero_writes_nothing_for_it() {
        assert!(
            SnapshotWriter::with_buffer(0, Vec::new())
                .finish()
                .is_empty()
        );
        assert_eq!(
            SnapshotWire::decode(&SnapshotWriter::with_buffer(7, Vec::new()).finish()[..])
                .unwrap()
                .revision,
            7
        );
    }
}
