//! The configuration a data plane serves from: one [`Snapshot`] turned into an
//! immutable, indexed [`Config`] so that a request never scans the config, and
//! the deltas ([`DeltaWire`]) that turn one such value into the next.
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
//! A deployment whose `os.environ/` reference names a variable that is not
//! set is **unusable** ([`Config::unusable`]): it stays in the config (and in
//! [`Config::encode_snapshot`]) but not in its model group, so no request is
//! routed to it.
//!
//! Dangling references that the access rule already answers are kept as they
//! are: an alias whose target is gone resolves to nothing (404), a key whose
//! team is gone is denied (403).
//!
//! # Deltas and sharing
//!
//! Keys are the many objects (a million is a normal size): they live in
//! [`KeyIndex`], compact and sharded, where a delta copies only the shards it
//! touches. Teams and organizations, thousands, live in persistent hash maps
//! ([`imbl`]): a delta copies the path to what it changes, O(log n), and
//! shares the rest with the previous value. Deployments, aliases and access groups are few and depend on
//! one another, so the model index is rebuilt whole, and only when a delta
//! touches one of them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io;
use std::sync::{Arc, LazyLock, OnceLock};

use sha2::{Digest, Sha256};
use sluice_proto::admin::v1::{
    AccessGroup, Deployment, Key, ModelAlias, Organization, RouterSettings, Team,
};
use sluice_proto::config::v1::{Kind, Snapshot};

pub use crate::config::keys::KeyDigest;
use crate::config::keys::{self, KeyIndex, StoredKey};
use crate::config::secrets::{self, Env, MissingVariable, ProcessEnv, ProviderSecrets};
use crate::config::wire::{DeltaWire, SnapshotWire};
use crate::metrics::{Metrics, UpstreamMetrics};
use crate::providers::target::Targets;

/// Why a snapshot or delta was refused as a whole.
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
    #[error("a key does not decode as a sluice.admin.v1.Key: {0}")]
    MalformedKey(String),
    #[error("{kind} {id:?} appears more than once in the {within}")]
    Duplicate {
        kind: ObjectKind,
        id: String,
        within: &'static str,
    },
    #[error(
        "the delta applies to revision {from}, but this data plane holds revision {held} \
         (0: none); it needs a snapshot"
    )]
    RevisionMismatch { held: i64, from: i64 },
    #[error("the delta goes backwards, from revision {from} to {to}")]
    Backwards { from: i64, to: i64 },
    #[error("the delta removes an object of unknown kind {kind} (id {id:?})")]
    UnknownKind { kind: i32, id: String },
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

/// A deployment with its provider secrets resolved: what the router picks.
#[derive(Clone)]
pub struct ResolvedDeployment {
    deployment: Deployment,
    secrets: ProviderSecrets,
    /// Its upstream targets once made, for [`crate::forward`].
    targets: Arc<Targets>,
    /// Its upstream histograms once looked up ([`Self::upstream_metrics`]).
    upstream_metrics: OnceLock<UpstreamMetrics>,
}

impl ResolvedDeployment {
    /// The deployment as received (`api_key` may be a reference).
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// `api_key`, `api_base`, `api_version` with references resolved.
    pub fn secrets(&self) -> &ProviderSecrets {
        &self.secrets
    }

    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// Its upstream histograms in `metrics` (the process has one), looked
    /// up on first use and kept, so a request records its upstream leg with
    /// atomics only.
    pub fn upstream_metrics(&self, metrics: &Metrics) -> &UpstreamMetrics {
        self.upstream_metrics
            .get_or_init(|| metrics.upstream(&self.deployment.id))
    }
}

impl fmt::Debug for ResolvedDeployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        RedactedDeployment(&self.deployment).fmt(f)
    }
}

/// The deployments clients reach under one `model_name`, exact (`gpt-4o`) or
/// a wildcard pattern (`openai/*`).
pub struct ModelGroup {
    name: String,
    wildcard: bool,
    /// The usable ones, sorted by id, so routing sees the same order on every
    /// data plane. Empty when every deployment of the group is unusable: the
    /// group still exists, so access and "not found" answers do not depend on
    /// one data plane's environment.
    deployments: Vec<ResolvedDeployment>,
}

impl ModelGroup {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `name` is a pattern (contains `*`).
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    pub fn deployments(&self) -> &[ResolvedDeployment] {
        &self.deployments
    }
}

impl fmt::Debug for ModelGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelGroup")
            .field("name", &self.name)
            .field("wildcard", &self.wildcard)
            .field("deployments", &self.deployments)
            .finish()
    }
}

/// Debug view of a deployment: `api_key` shows only whether it is an
/// `os.environ/` reference, since a literal is a provider secret.
struct RedactedDeployment<'a>(&'a Deployment);

impl fmt::Debug for RedactedDeployment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        f.debug_struct("Deployment")
            .field("id", &d.id)
            .field("model_name", &d.model_name)
            .field("provider", &d.provider)
            .field("model", &d.model)
            .field("api_base", &d.api_base)
            .field("api_key", &secrets::displayable_api_key(&d.api_key))
            .field("api_version", &d.api_version)
            .field("access_groups", &d.access_groups)
            .finish_non_exhaustive()
    }
}

/// An AccessGroup object with what the access rule asks of it precomputed.
#[derive(Debug)]
pub struct AccessGroupEntry {
    group: AccessGroup,
    members: HashSet<String, Names>,
    /// Model groups with a deployment that lists this group in its
    /// `access_groups` (the config.yaml way of granting).
    deployment_groups: HashSet<String, Names>,
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

/// How [`Config::encode_snapshot`] writes literal provider `api_key`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeys {
    /// As received: for the cache file, which must restore the same config.
    AsReceived,
    /// Literals replaced by `<redacted>`, references kept: for anything shown.
    Redacted,
}

/// The deployments, aliases and access groups as received, by identity: what
/// the model index is built from, and rebuilt from when a delta touches one.
#[derive(Clone, Default)]
struct ModelObjects {
    deployments: BTreeMap<String, Deployment>,
    aliases: BTreeMap<String, ModelAlias>,
    access_groups: BTreeMap<String, AccessGroup>,
}

/// Everything derived from [`ModelObjects`]; shared between configs until a
/// delta touches a deployment, alias or access group.
struct ModelIndex {
    objects: ModelObjects,
    groups: Vec<ModelGroup>,
    /// Exact and wildcard groups by `model_name`.
    group_by_name: HashMap<String, usize, Names>,
    /// Wildcard groups, most specific first.
    wildcard_order: Vec<usize>,
    access_groups: HashMap<String, AccessGroupEntry, Names>,
    skipped: Vec<Skipped>,
    unusable: Vec<MissingVariable>,
}

impl ModelIndex {
    fn build(objects: ModelObjects, env: &dyn Env) -> ModelIndex {
        let mut skipped = Vec::new();
        let mut unusable = Vec::new();

        let mut access_groups =
            HashMap::with_capacity_and_hasher(objects.access_groups.len(), Names::default());
        for group in objects.access_groups.values() {
            if group.uid.is_empty() {
                skipped.push(skip(
                    ObjectKind::AccessGroup,
                    &group.name,
                    "empty uid, so no grant can refer to it",
                ));
                continue;
            }
            access_groups.insert(
                group.name.clone(),
                AccessGroupEntry {
                    group: group.clone(),
                    members: group.models.iter().cloned().collect(),
                    deployment_groups: HashSet::default(),
                },
            );
        }

        let mut by_group: HashMap<&str, Vec<ResolvedDeployment>> = HashMap::new();
        for deployment in objects.deployments.values() {
            if deployment.model_name.is_empty() {
                skipped.push(skip(
                    ObjectKind::Deployment,
                    &deployment.id,
                    "empty model_name, so no request can reach it",
                ));
                continue;
            }
            // Grants count even when the deployment is unusable here: who may
            // call a model must not depend on one data plane's environment.
            for name in &deployment.access_groups {
                match access_groups.get_mut(name) {
                    Some(entry) => {
                        entry
                            .deployment_groups
                            .insert(deployment.model_name.clone());
                    }
                    None => skipped.push(skip(
                        ObjectKind::Deployment,
                        &deployment.id,
                        "lists an access group that does not exist; that entry grants nothing",
                    )),
                }
            }
            let members = by_group.entry(&deployment.model_name).or_default();
            match secrets::resolve(deployment, env) {
                Ok(secrets) => members.push(ResolvedDeployment {
                    deployment: deployment.clone(),
                    secrets,
                    targets: Arc::default(),
                    upstream_metrics: OnceLock::new(),
                }),
                Err(missing) => unusable.push(missing),
            }
        }

        // BTreeMap iteration is by id, so each group's deployments are too.
        let mut groups: Vec<ModelGroup> = by_group
            .into_iter()
            .map(|(name, deployments)| ModelGroup {
                wildcard: name.contains('*'),
                name: name.to_owned(),
                deployments,
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

        ModelIndex {
            objects,
            groups,
            group_by_name,
            wildcard_order,
            access_groups,
            skipped,
            unusable,
        }
    }
}

/// An immutable, indexed view of one configuration. Cheap to share behind an
/// `Arc`; every lookup a request makes is a hash lookup, except wildcard
/// resolution, which walks the (few) patterns in their precomputed order.
///
/// Cloning is cheap too (the maps are persistent): that is how
/// [`Config::apply_delta`] starts.
#[derive(Clone)]
pub struct Config {
    revision: i64,
    /// Unique to this content in this process ([`Config::generation`]).
    generation: u64,
    keys: KeyIndex,
    teams: NameIndex<Team>,
    organizations: NameIndex<Organization>,
    models: Arc<ModelIndex>,
    /// `None` when the control plane sent none: the defaults apply, and the
    /// snapshot written back says so too.
    router_settings: Option<RouterSettings>,
    /// What the load or delta that made this value skipped, then the model
    /// index's skips.
    skipped: Vec<Skipped>,
}

static DEFAULT_ROUTER_SETTINGS: LazyLock<RouterSettings> = LazyLock::new(RouterSettings::default);

/// The hasher of the config's maps by name: several are read per request,
/// and SipHash was a visible share of it. Seeded per process; the names are
/// operators', and a request's model name only looks them up, so it cannot
/// flood them.
type Names = foldhash::fast::RandomState;

/// Teams and organizations by id: persistent, so a delta copies only what
/// it touches.
type NameIndex<T> = imbl::GenericHashMap<String, T, Names, imbl::shared_ptr::DefaultSharedPtr>;

/// Generations start at 1: 0 is "none yet" to caches.
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Config {
    /// Builds a config from a whole snapshot, resolving provider secrets from
    /// the process environment.
    pub fn from_snapshot(snapshot: Snapshot) -> Result<Config, SnapshotError> {
        Config::load(snapshot, &ProcessEnv)
    }

    /// Builds a config from a whole snapshot, decoded ([`Snapshot`]) or as
    /// received ([`SnapshotWire`]), with references resolved in `env`.
    pub fn load(snapshot: impl Into<SnapshotWire>, env: &dyn Env) -> Result<Config, SnapshotError> {
        const WITHIN: &str = "snapshot";
        let SnapshotWire {
            revision,
            deployments,
            aliases,
            access_groups,
            teams: team_list,
            organizations: org_list,
            keys: key_list,
            router_settings,
        } = snapshot.into();
        let mut skipped = Vec::new();

        let keys = KeyIndex::from_encoded(&key_list)?;
        drop(key_list);

        let mut teams = NameIndex::default();
        for team in team_list {
            insert_unique(&mut teams, team, &mut skipped, WITHIN)?;
        }
        let mut organizations = NameIndex::default();
        for org in org_list {
            insert_unique(&mut organizations, org, &mut skipped, WITHIN)?;
        }

        let mut objects = ModelObjects::default();
        for alias in aliases {
            insert_unique(&mut objects.aliases, alias, &mut skipped, WITHIN)?;
        }
        for group in access_groups {
            insert_unique(&mut objects.access_groups, group, &mut skipped, WITHIN)?;
        }
        for deployment in deployments {
            // An empty id is an identity like any other here: such a
            // deployment is still served, as before deltas existed.
            if objects.deployments.contains_key(&deployment.id) {
                return Err(duplicate(ObjectKind::Deployment, deployment.id, WITHIN));
            }
            objects
                .deployments
                .insert(deployment.id.clone(), deployment);
        }

        let models = Arc::new(ModelIndex::build(objects, env));
        skipped.extend(models.skipped.iter().cloned());
        Ok(Config {
            revision,
            generation: next_generation(),
            keys,
            teams,
            organizations,
            models,
            router_settings,
            skipped,
        })
    }

    /// The config at `delta.to_revision`: this one with the delta's removals,
    /// then its upserts, applied. Refused when the delta does not start from
    /// this config's revision, or breaks a snapshot invariant; `self` is never
    /// changed either way.
    ///
    /// Costs O(log n) per key, team or organization touched; the model index
    /// is rebuilt only if a deployment, alias or access group is touched.
    pub fn apply_delta(
        &self,
        delta: impl Into<DeltaWire>,
        env: &dyn Env,
    ) -> Result<Config, SnapshotError> {
        let delta = delta.into();
        const WITHIN: &str = "delta's upserts";
        if delta.from_revision != self.revision {
            return Err(SnapshotError::RevisionMismatch {
                held: self.revision,
                from: delta.from_revision,
            });
        }
        if delta.to_revision < delta.from_revision {
            return Err(SnapshotError::Backwards {
                from: delta.from_revision,
                to: delta.to_revision,
            });
        }
        let mut next = self.clone();
        next.revision = delta.to_revision;
        next.generation = next_generation();
        next.skipped.clear();
        // Copied from the shared index on first touch only.
        let mut touched: Option<ModelObjects> = None;

        // Removals first: a delta that removes and re-creates an object (the
        // control plane merging a burst) ends with the object present.
        for removal in delta.removals {
            match Kind::try_from(removal.kind) {
                Ok(Kind::Key) => {
                    // An id that is not a digest names nothing held; removing
                    // nothing is the answer that cannot widen access.
                    if let Some(digest) = keys::digest_of(&removal.id) {
                        next.keys.remove(&digest);
                    }
                }
                Ok(Kind::Team) => {
                    next.teams.remove(&removal.id);
                }
                Ok(Kind::Organization) => {
                    next.organizations.remove(&removal.id);
                }
                Ok(Kind::Deployment) => {
                    copy_on_write(&mut touched, &self.models.objects)
                        .deployments
                        .remove(&removal.id);
                }
                Ok(Kind::ModelAlias) => {
                    copy_on_write(&mut touched, &self.models.objects)
                        .aliases
                        .remove(&removal.id);
                }
                Ok(Kind::AccessGroup) => {
                    copy_on_write(&mut touched, &self.models.objects)
                        .access_groups
                        .remove(&removal.id);
                }
                Ok(Kind::RouterSettings) => next.router_settings = None,
                Ok(Kind::Unspecified) | Err(_) => {
                    return Err(SnapshotError::UnknownKind {
                        kind: removal.kind,
                        id: removal.id,
                    });
                }
            }
        }

        let upserts = delta.upserts.unwrap_or_default();
        let mut seen_keys = HashSet::with_capacity(upserts.keys.len());
        for encoded in upserts.keys {
            let (digest, key) = StoredKey::from_encoded(&encoded)?;
            if !seen_keys.insert(digest) {
                return Err(duplicate(ObjectKind::Key, hex::encode(digest), WITHIN));
            }
            next.keys.insert(digest, key);
        }
        replace_all(&mut next.teams, upserts.teams, &mut next.skipped)?;
        replace_all(
            &mut next.organizations,
            upserts.organizations,
            &mut next.skipped,
        )?;
        if !upserts.aliases.is_empty() {
            replace_all(
                &mut copy_on_write(&mut touched, &self.models.objects).aliases,
                upserts.aliases,
                &mut next.skipped,
            )?;
        }
        if !upserts.access_groups.is_empty() {
            replace_all(
                &mut copy_on_write(&mut touched, &self.models.objects).access_groups,
                upserts.access_groups,
                &mut next.skipped,
            )?;
        }
        if !upserts.deployments.is_empty() {
            let mut seen = HashSet::with_capacity(upserts.deployments.len());
            let objects = copy_on_write(&mut touched, &self.models.objects);
            for deployment in upserts.deployments {
                if !seen.insert(deployment.id.clone()) {
                    return Err(duplicate(ObjectKind::Deployment, deployment.id, WITHIN));
                }
                objects
                    .deployments
                    .insert(deployment.id.clone(), deployment);
            }
        }
        if let Some(settings) = upserts.router_settings {
            next.router_settings = Some(settings);
        }

        if let Some(objects) = touched {
            next.models = Arc::new(ModelIndex::build(objects, env));
        }
        next.skipped.extend(next.models.skipped.iter().cloned());
        Ok(next)
    }

    /// The etcd revision this config was taken at.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Objects left out when this value was made: by the snapshot or delta
    /// that made it, and by the model index.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Deployments left out of their group because a secret they refer to is
    /// missing from this data plane's environment.
    pub fn unusable(&self) -> &[MissingVariable] {
        &self.models.unusable
    }

    /// The key whose SHA-256 is the digest of `plaintext` (`sk-...`).
    pub fn key_by_plaintext(&self, plaintext: &str) -> Option<Key> {
        self.key_by_digest(&Sha256::digest(plaintext.as_bytes()).into())
    }

    /// The key with this digest, decoded for the caller (keys are stored
    /// encoded; see [`crate::config::keys`]).
    pub fn key_by_digest(&self, digest: &KeyDigest) -> Option<Key> {
        self.keys.key(digest)
    }

    /// A number unique to this config in this process: every load and delta
    /// makes a new one (a clone, the same content, keeps it). What is
    /// derived from a config may be cached under it.
    pub fn generation(&self) -> u64 {
        self.generation
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
        self.models.access_groups.get(name)
    }

    pub fn access_groups(&self) -> impl Iterator<Item = &AccessGroupEntry> {
        self.models.access_groups.values()
    }

    pub fn alias(&self, name: &str) -> Option<&ModelAlias> {
        self.models.objects.aliases.get(name)
    }

    pub fn aliases(&self) -> impl Iterator<Item = &ModelAlias> {
        self.models.objects.aliases.values()
    }

    /// Every deployment as received, usable or not, by id.
    pub fn deployments(&self) -> impl Iterator<Item = &Deployment> {
        self.models.objects.deployments.values()
    }

    /// The group whose `model_name` is exactly `name` (a pattern's name too).
    pub fn model_group(&self, name: &str) -> Option<&ModelGroup> {
        self.models
            .group_by_name
            .get(name)
            .map(|&i| &self.models.groups[i])
    }

    /// Every group, exact and wildcard, sorted by name.
    pub fn model_groups(&self) -> &[ModelGroup] {
        &self.models.groups
    }

    /// Wildcard groups in the order they are tried: most literal characters
    /// first, then by name.
    pub fn wildcard_groups(&self) -> impl Iterator<Item = &ModelGroup> {
        self.models
            .wildcard_order
            .iter()
            .map(|&i| &self.models.groups[i])
    }

    /// The router settings, or the defaults when none were sent.
    pub fn router_settings(&self) -> &RouterSettings {
        self.router_settings
            .as_ref()
            .unwrap_or(&DEFAULT_ROUTER_SETTINGS)
    }

    /// Resolves a requested model name (DESIGN §3.1): an exact group, else an
    /// alias's target, else the most specific matching wildcard group.
    pub fn resolve(&self, model: &str) -> Option<Resolution<'_>> {
        if let Some(group) = self.model_group(model).filter(|g| !g.wildcard) {
            return Some(Resolution { group, alias: None });
        }
        if let Some(alias) = self.alias(model) {
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

    /// Writes this config as a protobuf-encoded `sluice.config.v1.Snapshot`,
    /// object by object, so that a million keys are never copied into one
    /// message first. Deployments, aliases and access groups come sorted by
    /// id; keys, teams and organizations in no particular order.
    pub fn encode_snapshot(&self, api_keys: ApiKeys, out: &mut dyn io::Write) -> io::Result<()> {
        use prost::encoding::{int64, message};
        // Field numbers of `Snapshot` in snapshot.proto; a test decodes the
        // result with the generated code to keep them honest.
        const REVISION: u32 = 1;
        const DEPLOYMENTS: u32 = 2;
        const ALIASES: u32 = 3;
        const ACCESS_GROUPS: u32 = 4;
        const TEAMS: u32 = 5;
        const ORGANIZATIONS: u32 = 6;
        const KEYS: u32 = 7;
        const ROUTER_SETTINGS: u32 = 8;
        const FLUSH_AT: usize = 64 * 1024;

        let mut buf = Vec::with_capacity(2 * FLUSH_AT);
        let mut flush = |buf: &mut Vec<u8>, force: bool| -> io::Result<()> {
            if force || buf.len() >= FLUSH_AT {
                out.write_all(buf)?;
                buf.clear();
            }
            Ok(())
        };
        if self.revision != 0 {
            int64::encode(REVISION, &self.revision, &mut buf);
        }
        let objects = &self.models.objects;
        for d in objects.deployments.values() {
            match api_keys {
                ApiKeys::AsReceived => message::encode(DEPLOYMENTS, d, &mut buf),
                ApiKeys::Redacted => message::encode(DEPLOYMENTS, &secrets::redacted(d), &mut buf),
            }
            flush(&mut buf, false)?;
        }
        for a in objects.aliases.values() {
            message::encode(ALIASES, a, &mut buf);
            flush(&mut buf, false)?;
        }
        for g in objects.access_groups.values() {
            message::encode(ACCESS_GROUPS, g, &mut buf);
            flush(&mut buf, false)?;
        }
        for t in self.teams.values() {
            message::encode(TEAMS, t, &mut buf);
            flush(&mut buf, false)?;
        }
        for o in self.organizations.values() {
            message::encode(ORGANIZATIONS, o, &mut buf);
            flush(&mut buf, false)?;
        }
        for (digest, key) in self.keys.iter() {
            key.encode_as_field(KEYS, digest, &mut buf);
            flush(&mut buf, false)?;
        }
        if let Some(settings) = &self.router_settings {
            message::encode(ROUTER_SETTINGS, settings, &mut buf);
        }
        flush(&mut buf, true)
    }

    /// The whole config as one [`Snapshot`] message, literal `api_key`s as
    /// received. Copies every object: for tests and small configs;
    /// [`Config::encode_snapshot`] is the way to write a large one.
    pub fn to_snapshot(&self) -> Snapshot {
        let objects = &self.models.objects;
        Snapshot {
            revision: self.revision,
            deployments: objects.deployments.values().cloned().collect(),
            aliases: objects.aliases.values().cloned().collect(),
            access_groups: objects.access_groups.values().cloned().collect(),
            teams: self.teams.values().cloned().collect(),
            organizations: self.organizations.values().cloned().collect(),
            keys: self
                .keys
                .iter()
                .filter_map(|(digest, key)| key.decode(digest))
                .collect(),
            router_settings: self.router_settings.clone(),
        }
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
            .field("groups", &self.models.groups)
            .field("aliases", &self.models.objects.aliases)
            .field("access_groups", &self.models.access_groups)
            .field("skipped", &self.skipped)
            .field("unusable", &self.models.unusable)
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

/// The objects identified by a name: that name, and the kind for reports.
trait Named: Clone {
    const KIND: ObjectKind;
    fn identity(&self) -> &String;
}

impl Named for Team {
    const KIND: ObjectKind = ObjectKind::Team;
    fn identity(&self) -> &String {
        &self.team_id
    }
}

impl Named for Organization {
    const KIND: ObjectKind = ObjectKind::Organization;
    fn identity(&self) -> &String {
        &self.organization_id
    }
}

impl Named for ModelAlias {
    const KIND: ObjectKind = ObjectKind::ModelAlias;
    fn identity(&self) -> &String {
        &self.alias
    }
}

impl Named for AccessGroup {
    const KIND: ObjectKind = ObjectKind::AccessGroup;
    fn identity(&self) -> &String {
        &self.name
    }
}

/// Either map the objects live in.
trait NameMap<T> {
    fn contains(&self, name: &str) -> bool;
    fn put(&mut self, name: String, item: T);
}

impl<T: Clone> NameMap<T> for NameIndex<T> {
    fn contains(&self, name: &str) -> bool {
        self.contains_key(name)
    }
    fn put(&mut self, name: String, item: T) {
        self.insert(name, item);
    }
}

impl<T> NameMap<T> for BTreeMap<String, T> {
    fn contains(&self, name: &str) -> bool {
        self.contains_key(name)
    }
    fn put(&mut self, name: String, item: T) {
        self.insert(name, item);
    }
}

/// Adds `item` to a map being built from a snapshot: skipped without a
/// name, refused when the name is taken.
fn insert_unique<T: Named>(
    map: &mut impl NameMap<T>,
    item: T,
    skipped: &mut Vec<Skipped>,
    within: &'static str,
) -> Result<(), SnapshotError> {
    let (name, kind) = (item.identity(), T::KIND);
    if name.is_empty() {
        skipped.push(skip(kind, "", "empty name"));
        return Ok(());
    }
    if map.contains(name) {
        return Err(duplicate(kind, name.clone(), within));
    }
    map.put(name.clone(), item);
    Ok(())
}

/// Applies a delta's upserts of one kind: each replaces the held object of
/// its name; the same name twice in one delta is refused.
fn replace_all<T: Named>(
    map: &mut impl NameMap<T>,
    items: Vec<T>,
    skipped: &mut Vec<Skipped>,
) -> Result<(), SnapshotError> {
    let kind = T::KIND;
    let mut seen = HashSet::with_capacity(items.len());
    for item in items {
        let name = item.identity().clone();
        if name.is_empty() {
            skipped.push(skip(kind, "", "empty name"));
            continue;
        }
        if !seen.insert(name.clone()) {
            return Err(duplicate(kind, name, "delta's upserts"));
        }
        map.put(name, item);
    }
    Ok(())
}

/// The model objects a delta edits, copied from `held` on first use.
fn copy_on_write<'a>(
    slot: &'a mut Option<ModelObjects>,
    held: &ModelObjects,
) -> &'a mut ModelObjects {
    slot.get_or_insert_with(|| held.clone())
}

pub(crate) fn duplicate(kind: ObjectKind, id: String, within: &'static str) -> SnapshotError {
    SnapshotError::Duplicate { kind, id, within }
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
    use sluice_proto::config::v1::{Delta, ObjectRef};

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
                id: "t".into(),
                within: "snapshot",
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
        let env = env(&[("OPENAI_API_KEY", "sk-from-the-environment")]);
        let config = Config::load(
            Snapshot {
                deployments: vec![secret, reference],
                ..Default::default()
            },
            &env,
        )
        .expect("valid snapshot");
        let debug = format!("{config:?}");
        assert!(!debug.contains("sk-provider-secret"), "{debug}");
        assert!(!debug.contains("sk-from-the-environment"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(debug.contains("os.environ/OPENAI_API_KEY"), "{debug}");
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn no_env() -> HashMap<String, String> {
        HashMap::new()
    }

    fn team(id: &str) -> Team {
        Team {
            team_id: id.into(),
            ..Default::default()
        }
    }

    fn delta(from: i64, to: i64, upserts: Snapshot, removals: Vec<ObjectRef>) -> Delta {
        Delta {
            from_revision: from,
            to_revision: to,
            upserts: Some(upserts),
            removals,
        }
    }

    fn removal(kind: Kind, id: &str) -> ObjectRef {
        ObjectRef {
            kind: kind as i32,
            id: id.into(),
        }
    }

    #[test]
    fn missing_variable_makes_one_deployment_unusable() {
        let mut good = deployment("d1", "gpt-4o");
        good.api_key = "os.environ/SET".into();
        let mut bad = deployment("d2", "gpt-4o");
        bad.api_base = "os.environ/UNSET".into();
        let mut only = deployment("d3", "claude");
        only.api_key = "os.environ/UNSET".into();
        let config = Config::load(
            Snapshot {
                deployments: vec![good, bad, only],
                ..Default::default()
            },
            &env(&[("SET", "sk-set")]),
        )
        .expect("a missing variable does not refuse the config");
        let gpt = config.model_group("gpt-4o").expect("group");
        let ids: Vec<_> = gpt
            .deployments()
            .iter()
            .map(|d| d.deployment().id.as_str())
            .collect();
        assert_eq!(ids, ["d1"]);
        assert_eq!(gpt.deployments()[0].secrets().api_key.expose(), "sk-set");
        // The group survives with nothing to route to, so access and 404
        // answers do not depend on this data plane's environment.
        assert!(
            config
                .model_group("claude")
                .expect("group")
                .deployments()
                .is_empty()
        );
        let unusable: Vec<_> = config
            .unusable()
            .iter()
            .map(|u| (u.deployment_id.as_str(), u.field, u.variable.as_str()))
            .collect();
        assert_eq!(
            unusable,
            [("d2", "api_base", "UNSET"), ("d3", "api_key", "UNSET")]
        );
        // Kept as received, so the cache and /debug/config still show them.
        assert_eq!(config.deployments().count(), 3);
    }

    #[test]
    fn delta_upserts_and_removes_each_kind() {
        let k1 = sha_hex("sk-1");
        let k2 = sha_hex("sk-2");
        let base = Config::load(
            Snapshot {
                revision: 10,
                keys: vec![key(&k1)],
                teams: vec![team("t1"), team("t2")],
                deployments: vec![deployment("d1", "gpt-4o")],
                router_settings: Some(RouterSettings {
                    routing_strategy: "least-busy".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            &no_env(),
        )
        .expect("valid");

        let mut changed_team = team("t1");
        changed_team.blocked = true;
        let next = base
            .apply_delta(
                delta(
                    10,
                    12,
                    Snapshot {
                        revision: 12,
                        keys: vec![key(&k2)],
                        teams: vec![changed_team],
                        ..Default::default()
                    },
                    vec![removal(Kind::Key, &k1), removal(Kind::Team, "t2")],
                ),
                &no_env(),
            )
            .expect("applies");
        assert_eq!(next.revision(), 12);
        assert!(next.key_by_plaintext("sk-1").is_none());
        assert!(next.key_by_plaintext("sk-2").is_some());
        assert!(next.team("t1").expect("kept").blocked);
        assert!(next.team("t2").is_none());
        // Untouched: the model index is the very same value.
        assert!(Arc::ptr_eq(&base.models, &next.models));
        assert_eq!(next.router_settings().routing_strategy, "least-busy");
        // The old value is unchanged.
        assert_eq!(base.revision(), 10);
        assert!(base.key_by_plaintext("sk-1").is_some());
        assert!(base.team("t2").is_some());

        let moved = deployment("d1", "gpt-4o-mini");
        let next = next
            .apply_delta(
                delta(
                    12,
                    13,
                    Snapshot {
                        deployments: vec![moved, deployment("d2", "openai/*")],
                        aliases: vec![ModelAlias {
                            alias: "fast".into(),
                            target: "gpt-4o-mini".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                    vec![removal(Kind::RouterSettings, "")],
                ),
                &no_env(),
            )
            .expect("applies");
        assert!(next.model_group("gpt-4o").is_none());
        assert_eq!(
            next.resolve("fast").map(|r| r.group.name()),
            Some("gpt-4o-mini")
        );
        assert_eq!(
            next.resolve("openai/gpt-4o").map(|r| r.group.name()),
            Some("openai/*")
        );
        assert_eq!(next.router_settings(), &RouterSettings::default());
        assert!(next.to_snapshot().router_settings.is_none());

        let next = next
            .apply_delta(
                delta(
                    13,
                    14,
                    Snapshot::default(),
                    vec![
                        removal(Kind::Deployment, "d2"),
                        removal(Kind::ModelAlias, "fast"),
                    ],
                ),
                &no_env(),
            )
            .expect("applies");
        assert!(next.resolve("fast").is_none());
        assert!(next.model_group("openai/*").is_none());
    }

    #[test]
    fn delta_from_another_revision_is_refused() {
        let base = Config::load(
            Snapshot {
                revision: 5,
                ..Default::default()
            },
            &no_env(),
        )
        .expect("valid");
        let err = base
            .apply_delta(delta(4, 6, Snapshot::default(), vec![]), &no_env())
            .expect_err("wrong base");
        assert_eq!(err, SnapshotError::RevisionMismatch { held: 5, from: 4 });
        let err = base
            .apply_delta(delta(5, 3, Snapshot::default(), vec![]), &no_env())
            .expect_err("backwards");
        assert_eq!(err, SnapshotError::Backwards { from: 5, to: 3 });
    }

    #[test]
    fn invalid_delta_is_refused() {
        let base = Config::load(Snapshot::default(), &no_env()).expect("valid");
        let bad_key = base.apply_delta(
            delta(
                0,
                1,
                Snapshot {
                    keys: vec![key("not-hex")],
                    ..Default::default()
                },
                vec![],
            ),
            &no_env(),
        );
        assert!(matches!(bad_key, Err(SnapshotError::InvalidKeyId { .. })));
        let twice = base.apply_delta(
            delta(
                0,
                1,
                Snapshot {
                    teams: vec![team("t"), team("t")],
                    ..Default::default()
                },
                vec![],
            ),
            &no_env(),
        );
        assert!(matches!(twice, Err(SnapshotError::Duplicate { .. })));
        let unknown = base.apply_delta(
            delta(
                0,
                1,
                Snapshot::default(),
                vec![ObjectRef {
                    kind: 99,
                    id: "x".into(),
                }],
            ),
            &no_env(),
        );
        assert!(matches!(
            unknown,
            Err(SnapshotError::UnknownKind { kind: 99, .. })
        ));
    }

    #[test]
    fn encoded_snapshot_decodes_to_the_same_config() {
        let mut literal = deployment("d1", "gpt-4o");
        literal.api_key = "sk-provider-secret".into();
        let mut reference = deployment("d2", "gpt-4o");
        reference.api_key = "os.environ/K".into();
        let snapshot = Snapshot {
            revision: 42,
            deployments: vec![literal, reference],
            aliases: vec![ModelAlias {
                alias: "a".into(),
                target: "gpt-4o".into(),
                ..Default::default()
            }],
            access_groups: vec![AccessGroup {
                name: "g".into(),
                uid: "u".into(),
                models: vec!["gpt-4o".into()],
                ..Default::default()
            }],
            teams: vec![team("t")],
            organizations: vec![Organization {
                organization_id: "o".into(),
                ..Default::default()
            }],
            keys: vec![key(&sha_hex("sk-1")), key(&sha_hex("sk-2"))],
            router_settings: Some(RouterSettings {
                routing_strategy: "simple-shuffle".into(),
                ..Default::default()
            }),
        };
        let config = Config::load(snapshot.clone(), &no_env()).expect("valid");

        let mut bytes = Vec::new();
        config
            .encode_snapshot(ApiKeys::AsReceived, &mut bytes)
            .expect("in memory");
        let decoded = <Snapshot as prost::Message>::decode(bytes.as_slice()).expect("decodes");
        let sorted = |mut s: Snapshot| {
            s.keys.sort_by(|a, b| a.key_id.cmp(&b.key_id));
            s
        };
        assert_eq!(sorted(decoded.clone()), sorted(snapshot.clone()));
        assert_eq!(sorted(config.to_snapshot()), sorted(snapshot));

        let mut bytes = Vec::new();
        config
            .encode_snapshot(ApiKeys::Redacted, &mut bytes)
            .expect("in memory");
        let redacted = <Snapshot as prost::Message>::decode(bytes.as_slice()).expect("decodes");
        let keys: Vec<_> = redacted
            .deployments
            .iter()
            .map(|d| d.api_key.as_str())
            .collect();
        assert_eq!(keys, ["<redacted>", "os.environ/K"]);
    }
}
