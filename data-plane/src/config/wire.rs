//! The config protocol's messages as the data plane decodes them, keys left
//! encoded: see [`sluice_proto::wire`], where they live so that the control
//! plane encodes with the same types (see [`crate::config::keys`] for why keys stay
//! encoded).

pub use sluice_proto::wire::{ControlPlaneMessageWire, DeltaWire, SnapshotWire, UpdateWire};

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost::bytes::Bytes;
    use sluice_proto::admin::v1::{Deployment, Key, RouterSettings, Team};
    use sluice_proto::config::v1::{
        ControlPlaneMessage, Delta, Kind, ObjectRef, Snapshot, control_plane_message,
    };

    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            revision: 9,
            deployments: vec![Deployment {
                id: "d".into(),
                ..Default::default()
            }],
            teams: vec![Team {
                team_id: "t".into(),
                ..Default::default()
            }],
            keys: vec![
                Key {
                    key_id: "ab".repeat(32),
                    key_alias: "a".into(),
                    ..Default::default()
                },
                Key {
                    key_id: "cd".repeat(32),
                    ..Default::default()
                },
            ],
            router_settings: Some(RouterSettings {
                routing_strategy: "least-busy".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn reads_what_the_generated_types_write() {
        let message = ControlPlaneMessage {
            message: Some(control_plane_message::Message::Delta(Delta {
                from_revision: 8,
                to_revision: 9,
                upserts: Some(snapshot()),
                removals: vec![ObjectRef {
                    kind: Kind::Team as i32,
                    id: "x".into(),
                }],
            })),
            control_plane_id: "cp-1".into(),
        };
        let bytes = Bytes::from(message.encode_to_vec());
        let wire = ControlPlaneMessageWire::decode(bytes.clone()).expect("decodes");
        assert_eq!(wire, ControlPlaneMessageWire::from(message));
        // And writes what they read.
        let back = ControlPlaneMessage::decode(wire.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(back.encode_to_vec(), bytes);
    }
}
