//! Typed reads and writes of resources over a [`Store`], and the retry loop
//! for read-modify-write transactions.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::error::{Abort, AdminError, AdminResult};
use crate::resources::{Resource, decode, encode, key_of};
use crate::store::{Store, Txn, TxnOutcome};

/// How many times a read-modify-write is retried on conflict before the
/// caller gets ABORTED. High enough for 100 writers on one object.
const MAX_ATTEMPTS: u32 = 400;

/// A resource with the mod_revision it was read at.
#[derive(Clone, Debug)]
pub struct Versioned<R> {
    pub value: R,
    pub mod_revision: i64,
}

/// The typed view of the store used by every admin service.
#[derive(Clone)]
pub struct Catalog {
    store: Arc<dyn Store>,
}

impl Catalog {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn get<R: Resource>(&self, id: &str) -> AdminResult<Option<Versioned<R>>> {
        let Some(kv) = self.store.get(&key_of::<R>(id)).await? else {
            return Ok(None);
        };
        let value = decode::<R>(&kv.value, kv.mod_revision).map_err(|e| {
            AdminError::Internal(format!("{} {id:?} is stored corrupt: {e}", R::KIND))
        })?;
        Ok(Some(Versioned {
            value,
            mod_revision: kv.mod_revision,
        }))
    }

    /// Like [`Catalog::get`], but a missing object is NOT_FOUND naming it.
    pub async fn require<R: Resource>(&self, id: &str) -> AdminResult<Versioned<R>> {
        self.get::<R>(id)
            .await?
            .ok_or_else(|| AdminError::not_found(R::KIND, id))
    }

    /// Every object of a kind, sorted by id, and the revision they were read
    /// at. Values that do not decode (written around the API) are skipped
    /// with an error log rather than failing every listing.
    pub async fn list<R: Resource>(&self) -> AdminResult<(Vec<Versioned<R>>, i64)> {
        let range = self.store.range(R::PREFIX).await?;
        let mut out = Vec::with_capacity(range.kvs.len());
        for kv in range.kvs {
            match decode::<R>(&kv.value, kv.mod_revision) {
                Ok(value) => out.push(Versioned {
                    value,
                    mod_revision: kv.mod_revision,
                }),
                Err(e) => {
                    tracing::error!(key = %kv.key, error = %e, "skipping undecodable {}", R::KIND)
                }
            }
        }
        Ok((out, range.revision))
    }

    pub async fn commit(&self, txn: Txn) -> AdminResult<TxnOutcome> {
        Ok(self.store.txn(txn).await?)
    }

    pub async fn revision(&self) -> AdminResult<i64> {
        Ok(self.store.revision().await?)
    }
}

/// Checks an `expected_revision` precondition.
pub fn expect_revision(
    kind: &'static str,
    id: &str,
    expected: i64,
    actual: i64,
) -> AdminResult<()> {
    if expected != 0 && expected != actual {
        return Err(AdminError::aborted(
            kind,
            id,
            Abort::StaleRevision { expected, actual },
        ));
    }
    Ok(())
}

/// A lost race on a write that carried an expected revision.
pub fn lost_race(kind: &'static str, id: &str) -> AdminError {
    AdminError::aborted(kind, id, Abort::ChangedDuring)
}

/// Adds "put `value` if the object is still at `mod_revision`" to a txn.
pub fn put_if<R: Resource>(txn: Txn, value: &R, mod_revision: i64) -> Txn {
    let key = key_of::<R>(value.id());
    txn.when_mod_revision(key.clone(), mod_revision)
        .put(key, encode(value))
}

/// Adds "delete if the object is still at `mod_revision`" to a txn.
pub fn delete_if<R: Resource>(txn: Txn, id: &str, mod_revision: i64) -> Txn {
    let key = key_of::<R>(id);
    txn.when_mod_revision(key.clone(), mod_revision).delete(key)
}

/// One try of a read-modify-write.
pub enum Attempt<T> {
    Done(T),
    /// A compare failed: somebody wrote in between; read again and retry.
    Conflict,
}

/// Runs a block (which evaluates to `AdminResult<Attempt<T>>`) until it is
/// done, backing off with jitter between conflicts so that many writers on
/// one object all get through; `$kind` and `$name` say what is written, for
/// the ABORTED of a caller that kept losing. A macro rather than a function taking a
/// closure: the block borrows and mutates the caller's locals freely, and
/// the future stays `Send` for tonic.
macro_rules! retry_on_conflict {
    ($kind:expr, $name:expr, $body:block) => {{
        let mut conflicts = 0u32;
        loop {
            let attempt: $crate::error::AdminResult<$crate::catalog::Attempt<_>> =
                async { $body }.await;
            match attempt {
                Ok($crate::catalog::Attempt::Done(value)) => break Ok(value),
                Err(e) => break Err(e),
                Ok($crate::catalog::Attempt::Conflict) => {
                    if let Err(gave_up) = $crate::catalog::back_off(conflicts).await {
                        break Err($crate::error::AdminError::aborted(
                            $kind,
                            $name,
                            $crate::error::Abort::KeptConflicting {
                                attempts: gave_up.attempts,
                            },
                        ));
                    }
                    conflicts += 1;
                }
            }
        }
    }};
}
pub(crate) use retry_on_conflict;

/// A read-modify-write lost to other writers every time it was allowed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("gave up after {attempts} conflicting attempts")]
pub struct GaveUp {
    pub attempts: u32,
}

/// Waits before the next attempt after `conflicts` conflicts, or gives up.
pub async fn back_off(conflicts: u32) -> Result<(), GaveUp> {
    if conflicts + 1 >= MAX_ATTEMPTS {
        return Err(GaveUp {
            attempts: conflicts + 1,
        });
    }
    let cap_ms = 2u64.saturating_pow(conflicts.min(6)).min(50);
    let wait = rand::rng().random_range(0..=cap_ms * 1000);
    tokio::time::sleep(Duration::from_micros(wait)).await;
    Ok(())
}

/// Turns a txn outcome into an [`Attempt`], `value` made from the revision
/// it committed at.
pub fn outcome<T>(o: TxnOutcome, value: impl FnOnce(i64) -> T) -> Attempt<T> {
    if o.succeeded {
        Attempt::Done(value(o.revision))
    } else {
        Attempt::Conflict
    }
}

/// Like [`outcome`], for a write the caller may have pinned to an
/// `expected_revision`: a failed compare is then the caller's lost race
/// (ABORTED), not a conflict to retry.
pub fn pinned_outcome<T>(
    o: TxnOutcome,
    expected_revision: i64,
    kind: &'static str,
    id: &str,
    value: impl FnOnce(i64) -> T,
) -> AdminResult<Attempt<T>> {
    if !o.succeeded && expected_revision != 0 {
        return Err(lost_race(kind, id));
    }
    Ok(outcome(o, value))
}

/// The current time as a protobuf timestamp.
pub fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(std::time::SystemTime::now())
}

/// What a sweep does to one object.
pub enum Fix<R> {
    Keep,
    Put(R),
    Delete,
}

/// Objects per clean-up transaction: each is one compare and one op, within
/// etcd's 128-op limit and far under its 1.5 MiB request limit.
const SWEEP_BATCH: usize = 100;

/// What a sweep cleans up after, and what must hold for it to go on.
pub struct SweepFor<'a> {
    /// The object whose deletion the sweep cleans up after, for the ABORTED
    /// of a sweep that kept conflicting.
    pub kind: &'static str,
    pub name: &'a str,
    /// Keys with the mod_revision (0: absent) they must keep for the sweep
    /// to go on: each batch compares them, and a pass that finds one changed
    /// stops the sweep (what it would remove means something new now).
    pub only_while: Vec<(String, i64)>,
}

impl Catalog {
    /// Applies `fix` to every object of a kind, in transactions of
    /// [`SWEEP_BATCH`] objects, each guarded by the objects' mod_revisions.
    /// Objects that changed meanwhile are read again and fixed on the next
    /// pass, until a pass finds nothing to do. Returns how many objects were
    /// changed and the last revision written (0 when none).
    ///
    /// Every fix must be idempotent: a sweep cut short (the store went away)
    /// is run again from the start, and finds done what was done.
    pub async fn sweep<R: Resource>(
        &self,
        about: &SweepFor<'_>,
        fix: impl Fn(&R) -> Fix<R>,
    ) -> AdminResult<(u32, i64)> {
        let mut changed = 0u32;
        let mut last_revision = 0i64;
        for _pass in 0..MAX_ATTEMPTS {
            for (key, rev) in &about.only_while {
                let now = self.store.get(key).await?.map_or(0, |kv| kv.mod_revision);
                if now != *rev {
                    return Ok((changed, last_revision));
                }
            }
            let (objects, _) = self.list::<R>().await?;
            let mut pending = Vec::new();
            for o in objects {
                match fix(&o.value) {
                    Fix::Keep => {}
                    Fix::Put(new) => {
                        pending.push((o.value.id().to_string(), o.mod_revision, Some(new)))
                    }
                    Fix::Delete => pending.push((o.value.id().to_string(), o.mod_revision, None)),
                }
            }
            if pending.is_empty() {
                return Ok((changed, last_revision));
            }
            for batch in pending.chunks(SWEEP_BATCH) {
                let mut txn = Txn::new();
                for (key, rev) in &about.only_while {
                    txn = txn.when_mod_revision(key.clone(), *rev);
                }
                for (id, rev, new) in batch {
                    txn = match new {
                        Some(value) => put_if(txn, value, *rev),
                        None => delete_if::<R>(txn, id, *rev),
                    };
                }
                let o = self.commit(txn).await?;
                if o.succeeded {
                    changed += batch.len() as u32;
                    last_revision = last_revision.max(o.revision);
                }
            }
        }
        Err(AdminError::aborted(
            about.kind,
            about.name,
            Abort::KeptConflicting {
                attempts: MAX_ATTEMPTS,
            },
        ))
    }
}

impl Catalog {
    /// Deletes one object, retrying on conflict; with a non-zero
    /// `expected_revision`, only while it is still at that revision (ABORTED
    /// otherwise). Returns the revision of the delete.
    pub async fn delete<R: Resource>(&self, id: &str, expected_revision: i64) -> AdminResult<i64> {
        retry_on_conflict!(R::KIND, id, {
            let current = self.require::<R>(id).await?;
            expect_revision(R::KIND, id, expected_revision, current.mod_revision)?;
            let o = self
                .commit(delete_if::<R>(Txn::new(), id, current.mod_revision))
                .await?;
            pinned_outcome(o, expected_revision, R::KIND, id, |revision| revision)
        })
    }
}
