//! The admin API (`sluice.admin.v1`, DESIGN §8): one module per service,
//! all implemented on [`Admin`]: the [`Catalog`], this replica's
//! [`Distribution`] (for the data-plane service) and its [`Sweeper`].
//!
//! Shared here: update masks, and how allow-list entries that name access
//! groups are bound to the group's uid when granted (so a group deleted and
//! created again grants nothing to its former holders). [`sweeps`]: the
//! record that makes a fan-out delete finish whatever fails.

mod access_groups;
mod config;
mod credits;
mod data_planes;
mod keys;
mod models;
mod organizations;
mod router;
pub mod sweeps;
mod teams;
mod usage;

use std::collections::HashMap;

use sluice_proto::admin::v1::AccessGroup;

use crate::catalog::Catalog;
use crate::distribution::Distribution;
use crate::error::{AdminError, AdminResult};
use crate::resources::{Resource, key_of};
use crate::store::Txn;

pub use crate::catalog::{expect_revision, lost_race};
pub use crate::validate::dedup;
pub use sweeps::Sweeper;

/// Every admin service, over one catalog; the data-plane service also
/// reads this replica's distribution state.
#[derive(Clone)]
pub struct Admin {
    pub catalog: Catalog,
    pub distribution: Distribution,
    pub sweeper: Sweeper,
}

impl Admin {
    /// The services, with this replica's [`Sweeper`] started on the runtime:
    /// it finishes the fan-out deletes that were cut short, here or on
    /// another replica.
    pub fn start(catalog: Catalog, distribution: Distribution) -> Self {
        Self {
            sweeper: Sweeper::start(catalog.clone()),
            catalog,
            distribution,
        }
    }
}

/// Whether a field carries a value, for updates without a mask.
pub trait IsSet {
    fn is_set(&self) -> bool;
}

impl IsSet for String {
    fn is_set(&self) -> bool {
        !self.is_empty()
    }
}
impl<T> IsSet for Vec<T> {
    fn is_set(&self) -> bool {
        !self.is_empty()
    }
}
impl<T> IsSet for Option<T> {
    fn is_set(&self) -> bool {
        self.is_some()
    }
}
impl<K, V> IsSet for HashMap<K, V> {
    fn is_set(&self) -> bool {
        !self.is_empty()
    }
}
impl IsSet for bool {
    fn is_set(&self) -> bool {
        *self
    }
}
macro_rules! is_set_number {
    ($($t:ty),*) => {$(impl IsSet for $t { fn is_set(&self) -> bool { *self != 0 as $t } })*};
}
is_set_number!(i64, u32, u64, f64);

/// Which fields an update applies: those named in the mask, or, with no
/// mask, those that are set (non-empty, non-zero, true).
pub struct Mask {
    paths: Option<Vec<String>>,
}

impl Mask {
    pub fn new(
        mask: Option<&prost_types::FieldMask>,
        allowed: &[&str],
        object: &str,
    ) -> AdminResult<Self> {
        let Some(mask) = mask.filter(|m| !m.paths.is_empty()) else {
            return Ok(Self { paths: None });
        };
        let mut paths = Vec::with_capacity(mask.paths.len());
        for p in &mask.paths {
            let path = snake_case(p);
            if !allowed.contains(&path.as_str()) {
                return Err(AdminError::invalid(
                    "update_mask",
                    format!(
                        "{p:?} is not an updatable field of {object}; updatable: {}",
                        allowed.join(", ")
                    ),
                ));
            }
            paths.push(path);
        }
        Ok(Self { paths: Some(paths) })
    }

    pub fn wants(&self, field: &str, value: &impl IsSet) -> bool {
        match &self.paths {
            None => value.is_set(),
            Some(paths) => paths.iter().any(|p| p == field),
        }
    }
}

/// FieldMask paths may arrive in JSON's lowerCamelCase.
fn snake_case(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Copies the masked fields of `$src` into `$dst`; the field list is both
/// what may be updated and what is copied.
macro_rules! merge {
    ($dst:expr, $src:expr, $mask:expr, $object:literal, [$($f:ident),+ $(,)?]) => {{
        let mask = $crate::admin::Mask::new($mask, &[$(stringify!($f)),+], $object)?;
        $( if mask.wants(stringify!($f), &$src.$f) { $dst.$f = $src.$f.clone(); } )+
    }};
}
pub(crate) use merge;

/// The access-group grants an allow-list makes, bound to group uids.
pub struct Grants {
    /// Entry name -> uid of the group it names.
    pub uids: HashMap<String, String>,
    /// Store keys and mod_revisions of the groups newly bound, to compare in
    /// the write's transaction: a group deleted meanwhile makes it retry.
    pub compares: Vec<(String, i64)>,
}

impl Grants {
    pub fn guard(&self, mut txn: Txn) -> Txn {
        for (key, rev) in &self.compares {
            txn = txn.when_mod_revision(key.clone(), *rev);
        }
        txn
    }
}

/// Binds each entry of `entries` that names an existing access group to that
/// group's uid. Entries bound before (in `previous`) keep their old binding,
/// so a recreated group never silently re-grants. Entries of `required` must
/// name an existing group (NOT_FOUND otherwise, naming the field).
pub async fn bind_groups(
    catalog: &Catalog,
    entries: &[&String],
    required: &[String],
    required_field: &str,
    previous: &HashMap<String, String>,
) -> AdminResult<Grants> {
    let mut grants = Grants {
        uids: HashMap::new(),
        compares: Vec::new(),
    };
    let all = entries.iter().copied().chain(required.iter());
    for name in all {
        if grants.uids.contains_key(name) {
            continue;
        }
        if let Some(uid) = previous.get(name) {
            grants.uids.insert(name.clone(), uid.clone());
            continue;
        }
        let is_group_name = crate::validate::group_name("", name).is_ok();
        let group = if is_group_name {
            catalog.get::<AccessGroup>(name).await?
        } else {
            None
        };
        match group {
            Some(g) => {
                grants.uids.insert(name.clone(), g.value.uid.clone());
                grants
                    .compares
                    .push((key_of::<AccessGroup>(name), g.mod_revision));
            }
            None if required.contains(name) => {
                let i = required.iter().position(|r| r == name).unwrap_or(0);
                return Err(AdminError::not_found_in(
                    AccessGroup::KIND,
                    name,
                    format!("{required_field}[{i}]"),
                ));
            }
            None => {}
        }
    }
    Ok(grants)
}
