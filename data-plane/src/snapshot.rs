//! The configuration a data plane serves from: one [`Snapshot`] turned into an
//! immutable, indexed [`Config`] so that a request never scans the config.
//!
//! # What a snapshot may contain
//!
//! [`Config::from_snapshot`] **rejects** the whole snapshot (the data plane keeps
//! its last good config and NACKs with the error's message) when it breaks an
//! invariant the control plane guarantees, because then nobody can say which
//! object was meant:
//!
//! - a key whose `key_id` is not 64 hex characters (a SHA-256);
//! - two objects with the same identity: key digest, `team_id`,
//!   `organization_id`, access group `name`, alias name or deployment `id`.
//!
//! It **skips**, and lists in [`Config::skipped`], objects that are legal but
//! cannot be used; skipping them never widens anyone's access:
//!
//! - a deployment with an empty `model_name` (nobody can ask for it);
//! - a team, organization, alias or access group with an empty name;
//! - an access group with an empty `uid` (a grant is only valid against a uid,
//!   so such a group could only ever be matched by a blank record);
//! - a deployment's `access_groups` entry that names no AccessGroup object:
//!   it grants nothing (an entry counts as a group only if the object exists).
//!
//! Dangling references that the access rule already answers are kept as they
//! are: an alias whose target is gone resolves to nothing (404), a key whose
//! team is gone is denied (403).

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::fmt;

use sha2::{Digest, Sha256};
use sluice_proto::admin::v1::{
    AccessGroup, Deployment, Key, ModelAlias, Organization, RouterSettings, Team,
};
use sluice_proto::config::v1::Snapshot;

/// A SHA-256 digest of a plaintext virtual key, as stored in `key_id`.
pub type KeyDigest = [u8; 32];

/// Why a snapshot was refused as a whole.
///
/// Messages name objects by id, alias or prefix, never by a value that could
/// be a secret: a malformed `key_id` might be a plaintext key stored by mistake.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error(
        "key (alias {key_alias:?}, prefix {key_prefix:?}) has a key_id of {len} characters \
         that is not a hex SHA-256 (64 hex characters)"
    )]
    InvalidKeyId {
        key_alias: String,
        key_prefix: String,
        len: usize,
    },
    #[error("{kind} {id:?} appears more than once in the snapshot")]
    Duplicate { kind: ObjectKind, id: String },
}

/// The kinds of object a snapshot carries, for errors and skip reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Key,
    Team,
    Organization,
    AccessGroup,
    ModelAlias,
    Deployment,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Key => "key",
            ObjectKind::Team => "team",
            ObjectKind::Organization => "organization",
            ObjectKind::AccessGroup => "access group",
            ObjectKind::ModelAlias => "model alias",
            ObjectKind::Deployment => "deployment",
        })
    }
}

/// An object left out of the [`Config`], and why; meant to be logged once when
/// the snapshot is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub kind: ObjectKind,
    pub id: String,
    pub reason: &'static str,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} skipped: {}", self.kind, self.id, self.reason)
    }
}

/// The deployments clients reach under one `model_name`, exact (`gpt-4o`) or
/// a wildcard pattern (`openai/*`).
pub struct ModelGroup {
    name: String,
    wildcard: bool,
    /// Sorted by id, so routing sees the same order on every data plane.
    deployments: Vec<Deployment>,
}

impl ModelGroup {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `name` is a pattern (contains `*`).
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    pub fn deployments(&self) -> &[Deployment] {
        &self.deployments
    }
}

impl fmt::Debug for ModelGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelGroup")
            .field("name", &self.name)
            .field("wildcard", &self.wildcard)
            .field(
                "deployments",
                &self
                    .deployments
                    .iter()
                    .map(RedactedDeployment)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Debug view of a deployment: `api_key` shows only whether it is an
/// `os.environ/` reference, since a literal is a provider secret.
struct RedactedDeployment<'a>(&'a Deployment);

impl fmt::Debug for RedactedDeployment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let api_key: &str = if d.api_key.is_empty() {
            ""
        } else if d.api_key.starts_with("os.environ/") {
            &d.api_key
        } else {
            "<redacted>"
        };
        f.debug_struct("Deployment")
            .field("id", &d.id)
            .field("model_name", &d.model_name)
            .field("provider", &d.provider)
            .field("model", &d.model)
            .field("api_base", &d.api_base)
            .field("api_key", &api_key)
            .field("api_version", &d.api_version)
            .field("access_groups", &d.access_groups)
            .finish_non_exhaustive()
    }
}

/// An AccessGroup object with what the access rule asks of it precomputed.
#[derive(Debug)]
pub struct AccessGroupEntry {
    group: AccessGroup,
    members: HashSet<String>,
    /// Model groups with a deployment that lists this group in its
    /// `access_groups` (the config.yaml way of granting).
    deployment_groups: HashSet<String>,
}

impl AccessGroupEntry {
    pub fn name(&self) -> &str {
        &self.group.name
    }

    /// The incarnation a grant must have been recorded against.
    pub fn uid(&self) -> &str {
        &self.group.uid
    }

    /// The object as stored: `models` are the members the operator listed.
    pub fn group(&self) -> &AccessGroup {
        &self.group
    }

    /// Model groups whose deployments list this group, in no particular order.
    pub fn deployment_groups(&self) -> impl Iterator<Item = &str> {
        self.deployment_groups.iter().map(String::as_str)
    }

    /// Whether the group contains a request for `requested` that resolved to
    /// `resolved_group`. Members that are patterns are compared as names, not
    /// globbed: a group listing `openai/*` must not reach `openai/o1-mini`
    /// when that name is served by a more specific `openai/o1-*` group.
    pub fn contains(&self, resolved_group: Option<&str>, requested: &str) -> bool {
        if self.members.contains(requested) {
            return true;
        }
        resolved_group
            .is_some_and(|g| self.members.contains(g) || self.deployment_groups.contains(g))
    }
}

/// A model name resolved to the group that serves it.
#[derive(Debug, Clone, Copy)]
pub struct Resolution<'a> {
    pub group: &'a ModelGroup,
    /// Set when the name was an alias; for a wildcard group the router then
    /// expands the alias target rather than the alias name.
    pub alias: Option<&'a ModelAlias>,
}

/// An immutable, indexed view of one snapshot. Cheap to share behind an `Arc`;
/// every lookup a request makes is a hash lookup, except wildcard resolution,
/// which walks the (few) patterns in their precomputed order.
pub struct Config {
    revision: i64,
    keys: HashMap<KeyDigest, Key>,
    teams: HashMap<String, Team>,
    organizations: HashMap<String, Organization>,
    groups: Vec<ModelGroup>,
    /// Exact and wildcard groups by `model_name`.
    group_by_name: HashMap<String, usize>,
    /// Wildcard groups, most specific first.
    wildcard_order: Vec<usize>,
    aliases: HashMap<String, ModelAlias>,
    access_groups: HashMap<String, AccessGroupEntry>,
    router_settings: RouterSettings,
    skipped: Vec<Skipped>,
}

impl Config {
    pub fn from_snapshot(snapshot: Snapshot) -> Result<Config, SnapshotError> {
        let Snapshot {
            revision,
            deployments,
            aliases: alias_list,
            access_groups: access_group_list,
            teams: team_list,
            organizations: org_list,
            keys: key_list,
            router_settings,
        } = snapshot;
        let mut skipped = Vec::new();

        let mut keys = HashMap::with_capacity(key_list.len());
        for key in key_list {
            let digest = parse_key_id(&key)?;
            if keys.contains_key(&digest) {
                return Err(duplicate(ObjectKind::Key, key.key_id));
            }
            keys.insert(digest, key);
        }

        let teams = index_by(team_list, ObjectKind::Team, &mut skipped, |t| &t.team_id)?;
        let organizations = index_by(org_list, ObjectKind::Organization, &mut skipped, |o| {
            &o.organization_id
        })?;
        let aliases = index_by(alias_list, ObjectKind::ModelAlias, &mut skipped, |a| {
            &a.alias
        })?;

        let mut access_groups = HashMap::with_capacity(access_group_list.len());
        for group in access_group_list {
            if group.name.is_empty() {
                skipped.push(skip(ObjectKind::AccessGroup, "", "empty name"));
                continue;
            }
            if group.uid.is_empty() {
                skipped.push(skip(
                    ObjectKind::AccessGroup,
                    &group.name,
                    "empty uid, so no grant can refer to it",
                ));
                continue;
            }
            if access_groups.contains_key(&group.name) {
                return Err(duplicate(ObjectKind::AccessGroup, group.name));
            }
            let members = group.models.iter().cloned().collect();
            access_groups.insert(
                group.name.clone(),
                AccessGroupEntry {
                    group,
                    members,
                    deployment_groups: HashSet::new(),
                },
            );
        }

        let mut seen_deployments = HashSet::with_capacity(deployments.len());
        let mut by_group: HashMap<String, Vec<Deployment>> = HashMap::new();
        for deployment in deployments {
            if !seen_deployments.insert(deployment.id.clone()) {
                return Err(duplicate(ObjectKind::Deployment, deployment.id));
            }
            if deployment.model_name.is_empty() {
                skipped.push(skip(
                    ObjectKind::Deployment,
                    &deployment.id,
                    "empty model_name, so no request can reach it",
                ));
                continue;
            }
            for name in &deployment.access_groups {
                match access_groups.get_mut(name) {
                    Some(entry) => {
                        entry
                            .deployment_groups
                            .insert(deployment.model_name.clone());
                    }
                    None => skipped.push(Skipped {
                        kind: ObjectKind::Deployment,
                        id: deployment.id.clone(),
                        reason: "lists an access group that does not exist; that entry grants nothing",
                    }),
                }
            }
            by_group
                .entry(deployment.model_name.clone())
                .or_default()
                .push(deployment);
        }

        let mut groups: Vec<ModelGroup> = by_group
            .into_iter()
            .map(|(name, mut deployments)| {
                deployments.sort_by(|a, b| a.id.cmp(&b.id));
                ModelGroup {
                    wildcard: name.contains('*'),
                    name,
                    deployments,
                }
            })
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        let group_by_name = groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.name.clone(), i))
            .collect();
        let mut wildcard_order: Vec<usize> = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.wildcard)
            .map(|(i, _)| i)
            .collect();
        wildcard_order.sort_by_key(|&i| {
            let name = groups[i].name.as_str();
            (Reverse(literal_chars(name)), name)
        });

        Ok(Config {
            revision,
            keys,
            teams,
            organizations,
            groups,
            group_by_name,
            wildcard_order,
            aliases,
            access_groups,
            router_settings: router_settings.unwrap_or_default(),
            skipped,
        })
    }

    /// The etcd revision this config was taken at.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Objects left out when the snapshot was loaded.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// The key whose SHA-256 is the digest of `plaintext` (`sk-...`).
    pub fn key_by_plaintext(&self, plaintext: &str) -> Option<&Key> {
        self.key_by_digest(&Sha256::digest(plaintext.as_bytes()).into())
    }

    pub fn key_by_digest(&self, digest: &KeyDigest) -> Option<&Key> {
        self.keys.get(digest)
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub fn team(&self, team_id: &str) -> Option<&Team> {
        self.teams.get(team_id)
    }

    pub fn organization(&self, organization_id: &str) -> Option<&Organization> {
        self.organizations.get(organization_id)
    }

    pub fn access_group(&self, name: &str) -> Option<&AccessGroupEntry> {
        self.access_groups.get(name)
    }

    pub fn access_groups(&self) -> impl Iterator<Item = &AccessGroupEntry> {
        self.access_groups.values()
    }

    pub fn alias(&self, name: &str) -> Option<&ModelAlias> {
        self.aliases.get(name)
    }

    pub fn aliases(&self) -> impl Iterator<Item = &ModelAlias> {
        self.aliases.values()
    }

    /// The group whose `model_name` is exactly `name` (a pattern's name too).
    pub fn model_group(&self, name: &str) -> Option<&ModelGroup> {
        self.group_by_name.get(name).map(|&i| &self.groups[i])
    }

    /// Every group, exact and wildcard, sorted by name.
    pub fn model_groups(&self) -> &[ModelGroup] {
        &self.groups
    }

    /// Wildcard groups in the order they are tried: most literal characters
    /// first, then by name.
    pub fn wildcard_groups(&self) -> impl Iterator<Item = &ModelGroup> {
        self.wildcard_order.iter().map(|&i| &self.groups[i])
    }

    pub fn router_settings(&self) -> &RouterSettings {
        &self.router_settings
    }

    /// Resolves a requested model name (DESIGN §3.1): an exact group, else an
    /// alias's target, else the most specific matching wildcard group.
    pub fn resolve(&self, model: &str) -> Option<Resolution<'_>> {
        if let Some(group) = self.model_group(model).filter(|g| !g.wildcard) {
            return Some(Resolution { group, alias: None });
        }
        if let Some(alias) = self.aliases.get(model) {
            // The target is a group's name (exact or pattern); a concrete name
            // served by a wildcard group (`openai/gpt-4o`) works too, as an
            // operator aliasing to it would expect.
            let group = self
                .model_group(&alias.target)
                .or_else(|| self.matching_wildcard(&alias.target))?;
            return Some(Resolution {
                group,
                alias: Some(alias),
            });
        }
        self.matching_wildcard(model)
            .map(|group| Resolution { group, alias: None })
    }

    fn matching_wildcard(&self, model: &str) -> Option<&ModelGroup> {
        self.wildcard_groups()
            .find(|g| glob_matches(&g.name, model))
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys, teams and orgs are summarised: they are many, and the groups
        // are what one usually debugs.
        f.debug_struct("Config")
            .field("revision", &self.revision)
            .field("keys", &self.keys.len())
            .field("teams", &self.teams.len())
            .field("organizations", &self.organizations.len())
            .field("groups", &self.groups)
            .field("aliases", &self.aliases)
            .field("access_groups", &self.access_groups)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

/// Whether `pattern` matches `text`, where `*` matches any sequence of
/// characters, `/` included, and every other character matches itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    // Byte-wise is exact for UTF-8: `*` is ASCII and never part of a
    // multi-byte character. Backtracking only to the last `*` keeps this
    // O(pattern × text) in the worst case, with no allocation.
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if p.get(pi) == Some(&b'*') {
            last_star = Some((pi, ti));
            pi += 1;
        } else if p.get(pi) == Some(&t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((star_pi, star_ti)) = last_star {
            pi = star_pi + 1;
            ti = star_ti + 1;
            last_star = Some((star_pi, star_ti + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

fn literal_chars(pattern: &str) -> usize {
    pattern.chars().filter(|&c| c != '*').count()
}

fn parse_key_id(key: &Key) -> Result<KeyDigest, SnapshotError> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(&key.key_id, &mut digest).map_err(|_| SnapshotError::InvalidKeyId {
        key_alias: key.key_alias.clone(),
        key_prefix: key.key_prefix.clone(),
        len: key.key_id.chars().count(),
    })?;
    Ok(digest)
}

fn index_by<T>(
    items: Vec<T>,
    kind: ObjectKind,
    skipped: &mut Vec<Skipped>,
    id: impl Fn(&T) -> &String,
) -> Result<HashMap<String, T>, SnapshotError> {
    let mut map = HashMap::with_capacity(items.len());
    for item in items {
        let id = id(&item).clone();
        if id.is_empty() {
            skipped.push(skip(kind, "", "empty name"));
            continue;
        }
        if map.contains_key(&id) {
            return Err(duplicate(kind, id));
        }
        map.insert(id, item);
    }
    Ok(map)
}

fn duplicate(kind: ObjectKind, id: String) -> SnapshotError {
    SnapshotError::Duplicate { kind, id }
}

fn skip(kind: ObjectKind, id: &str, reason: &'static str) -> Skipped {
    Skipped {
        kind,
        id: id.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(id: &str, model_name: &str) -> Deployment {
        Deployment {
            id: id.into(),
            model_name: model_name.into(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            ..Default::default()
        }
    }

    fn key(key_id: &str) -> Key {
        Key {
            key_id: key_id.into(),
            key_prefix: "sk-abc".into(),
            ..Default::default()
        }
    }

    fn sha_hex(plaintext: &str) -> String {
        hex::encode(Sha256::digest(plaintext.as_bytes()))
    }

    #[test]
    fn glob() {
        let cases = [
            ("*", "", true),
            ("*", "anything/at/all", true),
            ("openai/*", "openai/gpt-4o", true),
            ("openai/*", "openai/", true),
            ("openai/*", "openai", false),
            ("openai/*", "azure/gpt-4o", false),
            ("*/gpt-4o", "openai/gpt-4o", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("a**", "a", true),
            ("gpt-4o", "gpt-4o", true),
            ("gpt-4o", "gpt-4o-mini", false),
            ("é*", "été", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(glob_matches(pattern, text), want, "{pattern} vs {text}");
        }
    }

    #[test]
    fn wildcards_are_tried_most_specific_first() {
        let config = Config::from_snapshot(Snapshot {
            deployments: vec![
                deployment("d1", "*"),
                deployment("d2", "openai/*"),
                deployment("d3", "openai/o1-*"),
                deployment("d4", "azure/*"),
                deployment("d5", "gpt-4o"),
            ],
            ..Default::default()
        })
        .expect("valid snapshot");
        let order: Vec<_> = config.wildcard_groups().map(ModelGroup::name).collect();
        assert_eq!(order, ["openai/o1-*", "openai/*", "azure/*", "*"]);
        let resolved = |m: &str| config.resolve(m).map(|r| r.group.name().to_owned());
        assert_eq!(resolved("openai/o1-mini").as_deref(), Some("openai/o1-*"));
        assert_eq!(resolved("openai/gpt-4o").as_deref(), Some("openai/*"));
        assert_eq!(resolved("gpt-4o").as_deref(), Some("gpt-4o"));
        assert_eq!(resolved("claude").as_deref(), Some("*"));
    }

    #[test]
    fn keys_are_found_by_plaintext_and_digest() {
        let id = sha_hex("sk-test");
        let config = Config::from_snapshot(Snapshot {
            keys: vec![key(&id.to_uppercase())],
            ..Default::default()
        })
        .expect("valid snapshot");
        assert!(config.key_by_plaintext("sk-test").is_some());
        assert!(config.key_by_plaintext("sk-other").is_none());
        let mut digest = [0u8; 32];
        hex::decode_to_slice(&id, &mut digest).expect("hex");
        assert!(config.key_by_digest(&digest).is_some());
    }

    #[test]
    fn malformed_key_id_is_rejected_without_echoing_it() {
        for bad in [
            "",
            "f00",
            "sk-plaintext-by-mistake",
            &"g".repeat(64),
            &"a".repeat(66),
        ] {
            let err = Config::from_snapshot(Snapshot {
                keys: vec![key(bad)],
                ..Default::default()
            })
            .expect_err("must reject");
            assert!(matches!(err, SnapshotError::InvalidKeyId { .. }), "{bad}");
            if !bad.is_empty() {
                assert!(!err.to_string().contains(bad), "{err}");
            }
        }
    }

    #[test]
    fn duplicates_are_rejected() {
        let id = sha_hex("sk-test");
        let err = Config::from_snapshot(Snapshot {
            keys: vec![key(&id), key(&id.to_uppercase())],
            ..Default::default()
        })
        .expect_err("duplicate key");
        assert!(matches!(
            err,
            SnapshotError::Duplicate {
                kind: ObjectKind::Key,
                ..
            }
        ));

        let team = Team {
            team_id: "t".into(),
            ..Default::default()
        };
        let err = Config::from_snapshot(Snapshot {
            teams: vec![team.clone(), team],
            ..Default::default()
        })
        .expect_err("duplicate team");
        assert_eq!(
            err,
            SnapshotError::Duplicate {
                kind: ObjectKind::Team,
                id: "t".into()
            }
        );

        let err = Config::from_snapshot(Snapshot {
            deployments: vec![deployment("d", "a"), deployment("d", "b")],
            ..Default::default()
        })
        .expect_err("duplicate deployment");
        assert!(matches!(
            err,
            SnapshotError::Duplicate {
                kind: ObjectKind::Deployment,
                ..
            }
        ));
    }

    #[test]
    fn unusable_objects_are_skipped_with_a_reason() {
        let mut listed = deployment("d2", "gpt-4o");
        listed.access_groups = vec!["ghost".into(), "real".into()];
        let config = Config::from_snapshot(Snapshot {
            deployments: vec![deployment("d1", ""), listed],
            access_groups: vec![
                AccessGroup {
                    name: "no-uid".into(),
                    ..Default::default()
                },
                AccessGroup {
                    name: "real".into(),
                    uid: "u1".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        })
        .expect("valid snapshot");
        let skipped: Vec<_> = config
            .skipped()
            .iter()
            .map(|s| (s.kind, s.id.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [
                (ObjectKind::AccessGroup, "no-uid"),
                (ObjectKind::Deployment, "d1"),
                (ObjectKind::Deployment, "d2"),
            ]
        );
        assert!(config.access_group("no-uid").is_none());
        let real = config.access_group("real").expect("indexed");
        assert_eq!(real.deployment_groups().collect::<Vec<_>>(), ["gpt-4o"]);
    }

    #[test]
    fn debug_output_hides_provider_keys() {
        let mut secret = deployment("d1", "gpt-4o");
        secret.api_key = "sk-provider-secret".into();
        let mut reference = deployment("d2", "gpt-4o");
        reference.api_key = "os.environ/OPENAI_API_KEY".into();
        let config = Config::from_snapshot(Snapshot {
            deployments: vec![secret, reference],
            ..Default::default()
        })
        .expect("valid snapshot");
        let debug = format!("{config:?}");
        assert!(!debug.contains("sk-provider-secret"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(debug.contains("os.environ/OPENAI_API_KEY"), "{debug}");
    }
}
