//! What the control plane distributes: stored values decoded and checked,
//! addressed by (kind, id), and assembled into snapshots and deltas.
//!
//! A value that does not decode, or breaks a rule a data plane relies on,
//! is never distributed: it is skipped, and why ([`Refusal`]) is reported as
//! an [`InvalidObject`].
//!
//! Keys, which outnumber everything else by orders of magnitude, are checked
//! and then kept encoded, and snapshots are built in the keys-as-bytes shape
//! of [`sluice_proto::wire`]: a million keys then cost the control plane
//! their encoded size, not a million decoded structs.

use std::sync::Arc;

use prost::Message;
use prost::bytes::Bytes;
use sluice_proto::admin::v1::{
    AccessGroup, DataPlaneToken, Deployment, InvalidObject, Key, ModelAlias, Organization,
    RouterSettings, Team,
};
use sluice_proto::config::v1::{Kind, ObjectRef};
use sluice_proto::wire::{SnapshotWire, SnapshotWriter};

use crate::error::AdminError;
use crate::huge_pages;
use crate::resources::{ROUTER_SETTINGS_ID, Resource, decode};
use crate::validate;

/// Why a stored value is not distributed.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("does not decode as {kind}: {source}")]
    Undecodable {
        kind: &'static str,
        source: prost::DecodeError,
    },
    /// The value's own id is not the one in its key: the data plane indexes
    /// by the id, the hub by the key, and they would disagree.
    #[error("{kind} names itself {named:?} but is stored under {stored:?}")]
    Misplaced {
        kind: &'static str,
        named: String,
        stored: String,
    },
    /// Keys and tokens are looked up by their SHA-256.
    #[error("a {kind} must be stored under its SHA-256 hex")]
    NotUnderItsHash { kind: &'static str },
    /// A rule the admin API enforces, broken by a value written around it.
    #[error(transparent)]
    BreaksRule(#[from] AdminError),
    /// A deployment the admin API would have written differently.
    #[error("deployment is not in canonical form (provider not split from model)")]
    NotCanonical,
    /// Grants are bound to the uid: a group without one binds nothing.
    #[error("access group has no uid")]
    NoUid,
    #[error("unknown kind")]
    UnknownKind,
}

/// A decoded, checked object.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// Boxed: by far the largest, and the fewest.
    Deployment(Box<Deployment>),
    Alias(ModelAlias),
    Group(AccessGroup),
    Team(Team),
    Organization(Organization),
    /// An encoded `Key`, checked, its `revision` set.
    Key(Bytes),
    Router(RouterSettings),
    /// Kept to authenticate data planes; never sent to them.
    Token(DataPlaneToken),
}

/// Where an object lives: its kind and id. Tokens have no distributed kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Address {
    Distributed(Kind, String),
    Token(String),
}

impl Address {
    pub fn object_ref(&self) -> Option<ObjectRef> {
        match self {
            Address::Distributed(kind, id) => Some(ObjectRef {
                kind: *kind as i32,
                id: id.clone(),
            }),
            Address::Token(_) => None,
        }
    }
}

/// The address a store key names, if it is one Sluice distributes or uses.
pub fn address_of(key: &str) -> Option<Address> {
    let table: [(&str, Option<Kind>); 8] = [
        (Deployment::PREFIX, Some(Kind::Deployment)),
        (ModelAlias::PREFIX, Some(Kind::ModelAlias)),
        (AccessGroup::PREFIX, Some(Kind::AccessGroup)),
        (Team::PREFIX, Some(Kind::Team)),
        (Organization::PREFIX, Some(Kind::Organization)),
        (Key::PREFIX, Some(Kind::Key)),
        (RouterSettings::PREFIX, Some(Kind::RouterSettings)),
        (DataPlaneToken::PREFIX, None),
    ];
    for (prefix, kind) in table {
        if let Some(id) = key.strip_prefix(prefix) {
            if id.is_empty() {
                return None;
            }
            return Some(match kind {
                Some(Kind::RouterSettings) if id != ROUTER_SETTINGS_ID => return None,
                Some(Kind::RouterSettings) => {
                    Address::Distributed(Kind::RouterSettings, String::new())
                }
                Some(kind) => Address::Distributed(kind, id.to_string()),
                None => Address::Token(id.to_string()),
            });
        }
    }
    None
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn checked<R: Resource>(bytes: &[u8], rev: i64, id: &str) -> Result<R, Refusal> {
    let value = decode::<R>(bytes, rev).map_err(|source| Refusal::Undecodable {
        kind: R::KIND,
        source,
    })?;
    if value.id() != id {
        return Err(Refusal::Misplaced {
            kind: R::KIND,
            named: value.id().to_string(),
            stored: id.to_string(),
        });
    }
    Ok(value)
}

/// Decodes and checks the value stored at `address`.
pub fn decode_object(
    address: &Address,
    bytes: &[u8],
    mod_revision: i64,
) -> Result<Object, Refusal> {
    let (kind, id) = match address {
        Address::Token(id) => {
            if !is_sha256_hex(id) {
                return Err(Refusal::NotUnderItsHash {
                    kind: DataPlaneToken::KIND,
                });
            }
            return checked::<DataPlaneToken>(bytes, mod_revision, id).map(Object::Token);
        }
        Address::Distributed(kind, id) => (kind, id),
    };
    Ok(match kind {
        Kind::Deployment => {
            let mut d: Deployment = checked(bytes, mod_revision, id)?;
            let before = d.clone();
            validate::deployment(&mut d, "deployment")?;
            if d != before {
                return Err(Refusal::NotCanonical);
            }
            Object::Deployment(Box::new(d))
        }
        Kind::ModelAlias => Object::Alias(checked(bytes, mod_revision, id)?),
        Kind::AccessGroup => {
            let g: AccessGroup = checked(bytes, mod_revision, id)?;
            if g.uid.is_empty() {
                return Err(Refusal::NoUid);
            }
            Object::Group(g)
        }
        Kind::Team => {
            let t: Team = checked(bytes, mod_revision, id)?;
            validate::object_id("team_id", &t.team_id)?;
            Object::Team(t)
        }
        Kind::Organization => Object::Organization(checked(bytes, mod_revision, id)?),
        Kind::Key => {
            if !is_sha256_hex(id) {
                return Err(Refusal::NotUnderItsHash { kind: Key::KIND });
            }
            let key: Key = checked(bytes, mod_revision, id)?;
            Object::Key(Bytes::from(key.encode_to_vec()))
        }
        Kind::RouterSettings => {
            let mut r = RouterSettings::decode(bytes).map_err(|source| Refusal::Undecodable {
                kind: RouterSettings::KIND,
                source,
            })?;
            r.revision = mod_revision;
            Object::Router(r)
        }
        Kind::Unspecified => return Err(Refusal::UnknownKind),
    })
}

/// An invalid stored value, for reports.
pub fn invalid(key: &str, mod_revision: i64, reason: Refusal) -> InvalidObject {
    InvalidObject {
        key: key.to_string(),
        mod_revision,
        reason: reason.to_string(),
    }
}

/// Adds an object to a snapshot-shaped container. Tokens are never added.
pub fn push(snapshot: &mut SnapshotWire, object: &Object) {
    match object {
        Object::Deployment(d) => snapshot.deployments.push((**d).clone()),
        Object::Alias(a) => snapshot.aliases.push(a.clone()),
        Object::Group(g) => snapshot.access_groups.push(g.clone()),
        Object::Team(t) => snapshot.teams.push(t.clone()),
        Object::Organization(o) => snapshot.organizations.push(o.clone()),
        Object::Key(k) => snapshot.keys.push(k.clone()),
        Object::Router(r) => snapshot.router_settings = Some(r.clone()),
        Object::Token(_) => {}
    }
}

/// Every distributed object at `revision`, as an encoded `Snapshot`.
/// `objects` is gone through once, each written as it comes: keys are
/// already encoded and are copied, not handled one by one three times.
pub fn encode_snapshot<'a>(
    revision: i64,
    objects: impl ExactSizeIterator<Item = &'a Arc<Object>>,
) -> Vec<u8> {
    // Keys, nearly all of a large config, encode to about 100 bytes.
    let mut w = SnapshotWriter::with_buffer(revision, huge_pages::buffer(objects.len() * 100));
    for o in objects {
        match &**o {
            Object::Deployment(d) => w.deployment(d),
            Object::Alias(a) => w.alias(a),
            Object::Group(g) => w.access_group(g),
            Object::Team(t) => w.team(t),
            Object::Organization(o) => w.organization(o),
            Object::Key(k) => w.key(k),
            Object::Router(r) => w.router_settings(r),
            Object::Token(_) => {}
        }
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::encode;

    #[test]
    fn keys_map_to_addresses() {
        assert_eq!(
            address_of("/sluice/teams/t1"),
            Some(Address::Distributed(Kind::Team, "t1".into()))
        );
        assert_eq!(
            address_of("/sluice/settings/router"),
            Some(Address::Distributed(Kind::RouterSettings, String::new()))
        );
        assert_eq!(address_of("/sluice/settings/other"), None);
        assert_eq!(address_of("/sluice/teams/"), None);
        assert_eq!(address_of("/sluice/usage/x"), None);
        assert!(matches!(
            address_of("/sluice/data_plane_tokens/ab"),
            Some(Address::Token(_))
        ));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let a = address_of("/sluice/teams/t1").unwrap();
        let err = decode_object(&a, b"\xff\xff garbage", 5).unwrap_err();
        assert!(
            matches!(err, Refusal::Undecodable { kind: "team", .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("does not decode as team: "),
            "{err}"
        );
        let other = Team {
            team_id: "t2".into(),
            ..Default::default()
        };
        let err = decode_object(&a, &encode(&other), 5).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"team names itself "t2" but is stored under "t1""#
        );

        let ok = Team {
            team_id: "t1".into(),
            ..Default::default()
        };
        assert!(matches!(
            decode_object(&a, &encode(&ok), 5),
            Ok(Object::Team(_))
        ));
    }

    #[test]
    fn a_snapshot_holds_every_object_but_tokens() {
        let key = Bytes::from(
            sluice_proto::admin::v1::Key {
                key_id: "k1".into(),
                team_id: "t1".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        let team = Team {
            team_id: "t1".into(),
            ..Default::default()
        };
        let router = RouterSettings {
            num_retries: Some(2),
            ..Default::default()
        };
        let objects = [
            Object::Key(key.clone()),
            Object::Token(DataPlaneToken::default()),
            Object::Team(team.clone()),
            Object::Router(router.clone()),
        ]
        .map(Arc::new);
        let mut want = SnapshotWire {
            revision: 9,
            ..Default::default()
        };
        for o in &objects {
            push(&mut want, o);
        }
        let got = SnapshotWire::decode(&encode_snapshot(9, objects.iter())[..]).unwrap();
        assert_eq!(got, want);
        assert_eq!((got.keys, got.teams), (vec![key], vec![team]));
        assert_eq!(got.router_settings, Some(router));
    }

    #[test]
    fn deployments_with_unknown_providers_are_refused() {
        let a = address_of("/sluice/deployments/d1").unwrap();
        let d = Deployment {
            id: "d1".into(),
            model_name: "m".into(),
            provider: "nope".into(),
            model: "x".into(),
            ..Default::default()
        };
        let err = decode_object(&a, &encode(&d), 3).unwrap_err();
        assert!(
            matches!(&err, Refusal::BreaksRule(AdminError::Invalid { field, .. }) if field == "deployment.provider"),
            "{err:?}"
        );
        assert!(err.to_string().contains("nope"), "{err}");
        let uncanonical = Deployment {
            provider: String::new(),
            model: "mock/x".into(),
            ..d
        };
        assert!(matches!(
            decode_object(&a, &encode(&uncanonical), 3),
            Err(Refusal::NotCanonical)
        ));
    }

    #[test]
    fn each_refusal_says_why() {
        let key = address_of(&format!("/sluice/keys/{}", "x".repeat(64))).unwrap();
        assert_eq!(
            decode_object(&key, &[], 1).unwrap_err().to_string(),
            "a key must be stored under its SHA-256 hex"
        );
        let token = address_of("/sluice/data_plane_tokens/ab").unwrap();
        assert_eq!(
            decode_object(&token, &[], 1).unwrap_err().to_string(),
            "a data-plane token must be stored under its SHA-256 hex"
        );
        let group = address_of("/sluice/access_groups/g").unwrap();
        let no_uid = AccessGroup {
            name: "g".into(),
            ..Default::default()
        };
        assert_eq!(
            decode_object(&group, &encode(&no_uid), 1)
                .unwrap_err()
                .to_string(),
            "access group has no uid"
        );
        let unknown = Address::Distributed(Kind::Unspecified, "x".into());
        assert!(matches!(
            decode_object(&unknown, &[], 1),
            Err(Refusal::UnknownKind)
        ));
        let reported = invalid("/sluice/access_groups/g", 1, Refusal::NoUid);
        assert_eq!(reported.reason, "access group has no uid");
    }
}
