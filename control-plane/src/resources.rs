//! Where each resource lives in the store (DESIGN §2): one key per object,
//! `/sluice/{kind}/{id}`, the value the protobuf encoding of the message.

use sluice_proto::admin::v1::{
    AccessGroup, DataPlaneToken, Deployment, Key, ModelAlias, Organization, RouterSettings, Team,
};

/// The root of everything Sluice keeps in etcd.
pub const ROOT: &str = "/sluice/";

/// A message stored one per key under [`Resource::PREFIX`].
pub trait Resource: prost::Message + Default + Clone + Send + Sync + 'static {
    /// Singular noun for messages: `team "x" not found`.
    const KIND: &'static str;
    /// The key prefix, ending in `/`.
    const PREFIX: &'static str;
    /// The id the object is stored under.
    fn id(&self) -> &str;
    /// `revision` is output only: filled from the key's mod_revision on read,
    /// cleared before write so the stored bytes do not depend on it.
    fn set_revision(&mut self, revision: i64);
    /// Clears the other output-only fields (a key's and a team's `spend`,
    /// filled by GetKey/GetTeam from usage): never stored, never read back.
    fn clear_output_only(&mut self) {}
}

macro_rules! resource {
    ($ty:ty, $kind:literal, $prefix:literal, $id:ident $(, output_only: $($out:ident),+)?) => {
        impl Resource for $ty {
            const KIND: &'static str = $kind;
            const PREFIX: &'static str = $prefix;
            fn id(&self) -> &str {
                &self.$id
            }
            fn set_revision(&mut self, revision: i64) {
                self.revision = revision;
            }
            $(fn clear_output_only(&mut self) {
                $(self.$out = Default::default();)+
            })?
        }
    };
}

resource!(Deployment, "deployment", "/sluice/deployments/", id);
resource!(ModelAlias, "model alias", "/sluice/model_aliases/", alias);
resource!(AccessGroup, "access group", "/sluice/access_groups/", name);
resource!(Team, "team", "/sluice/teams/", team_id, output_only: spend);
resource!(
    Organization,
    "organization",
    "/sluice/organizations/",
    organization_id
);
resource!(Key, "key", "/sluice/keys/", key_id, output_only: spend);
resource!(
    DataPlaneToken,
    "data-plane token",
    "/sluice/data_plane_tokens/",
    token_id
);

/// The router settings are a singleton at `/sluice/settings/router`.
pub const ROUTER_SETTINGS_ID: &str = "router";

impl Resource for RouterSettings {
    const KIND: &'static str = "router settings";
    const PREFIX: &'static str = "/sluice/settings/";
    fn id(&self) -> &str {
        ROUTER_SETTINGS_ID
    }
    fn set_revision(&mut self, revision: i64) {
        self.revision = revision;
    }
}

/// The store key of the object of type `R` with this id.
pub fn key_of<R: Resource>(id: &str) -> String {
    format!("{}{id}", R::PREFIX)
}

/// The protobuf bytes stored for `value`, without its output-only revision.
pub fn encode<R: Resource>(value: &R) -> Vec<u8> {
    let mut copy = value.clone();
    copy.set_revision(0);
    copy.clear_output_only();
    copy.encode_to_vec()
}

/// Decodes a stored value and stamps it with the revision it was read at.
pub fn decode<R: Resource>(bytes: &[u8], mod_revision: i64) -> Result<R, prost::DecodeError> {
    let mut value = R::decode(bytes)?;
    value.set_revision(mod_revision);
    value.clear_output_only();
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_design_layout() {
        assert_eq!(key_of::<Team>("t1"), "/sluice/teams/t1");
        assert_eq!(key_of::<Key>("ab"), "/sluice/keys/ab");
        assert_eq!(
            key_of::<RouterSettings>(ROUTER_SETTINGS_ID),
            "/sluice/settings/router"
        );
        assert_eq!(
            key_of::<DataPlaneToken>("ff"),
            "/sluice/data_plane_tokens/ff"
        );
    }

    #[test]
    fn encoding_ignores_the_output_only_revision() {
        let mut t = Team {
            team_id: "t".into(),
            revision: 42,
            ..Default::default()
        };
        let a = encode(&t);
        t.revision = 7;
        assert_eq!(a, encode(&t));
        assert_eq!(decode::<Team>(&a, 9).unwrap().revision, 9);
    }

    #[test]
    fn spend_is_never_stored_nor_read_back() {
        let key = Key {
            key_id: "k".into(),
            spend: 5,
            ..Default::default()
        };
        assert_eq!(
            encode(&key),
            encode(&Key {
                spend: 0,
                ..key.clone()
            })
        );
        let team = Team {
            team_id: "t".into(),
            spend: 5,
            ..Default::default()
        };
        assert_eq!(
            encode(&team),
            encode(&Team {
                spend: 0,
                ..team.clone()
            })
        );
        // Written around the API: still not read back.
        let raw = prost::Message::encode_to_vec(&team);
        assert_eq!(decode::<Team>(&raw, 1).unwrap().spend, 0);
    }
}
