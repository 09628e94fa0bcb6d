//! Rate limits across data planes (DESIGN §7): each replica leases each of
//! its data planes a share of every limit they demand, so that the shares
//! never sum past the limit and follow the demand.
//!
//! - [`allocate`]: the rule for one limit, a pure function.
//! - [`Book`]: the bookkeeping, without sockets or a clock of its own:
//!   which data planes take part, their last demands, what was granted,
//!   what is still to be sent. Time and the fleet's size are passed in.
//! - [`Limits`]: the book behind a lock, the allocation tick, and the
//!   handle each config stream holds ([`LimitSession`]).
//!
//! **Membership.** `data_planes` is the fleet: every status record under
//! `/sluice-status/data_planes/` connected (heartbeat fresh), or
//! disconnected less than the grace period ago, and never fewer than this
//! replica counts itself. A data plane that disconnects is still counted,
//! with its shares held at `max(granted, held)`, for the grace period
//! ([`DEFAULT_GRACE`], two RPM windows): cut off from the control plane it
//! keeps applying its share, and a minute's window it is in may need to end.
//! Then it is dropped and its shares are free.
//!
//! **One change in flight.** A data plane whose `held` does not show its
//! last lease keeps its share until it does (that is what makes
//! `max(granted, held)` a bound); the lease is sent again after
//! [`RESEND_AFTER`], and a reconnecting stream is sent every lease it holds.
//!
//! **Replicas.** Each replica allocates only among its own data planes, out
//! of `floor(L × local / data_planes)` of each limit `L`, `local` being the
//! data planes it counts (connected to it, or in their grace period with
//! it). While the replicas agree on the counts, the parts sum to at most
//! `L`. While they disagree (a data plane moved and one replica still
//! counts it in its grace period, or a status record is not written yet)
//! a replica may count itself more of the fleet than the others leave it:
//! the overshoot is bounded by `L × (Σ local) / data_planes − L`, and ends
//! when the records agree (within the status heartbeat, 5 s, or the grace
//! period for a data plane held by two replicas at once).

pub mod allocate;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use prost::Message;
use prost::bytes::Bytes;
use sluice_proto::admin::v1::{DataPlaneStatus, Key};
use sluice_proto::config::v1::{Kind, Lease, LimitDemand, LimitKind, LimitLeases, UsageScope};
use tokio::sync::Notify;

use self::allocate::{Holder, allocate};
use super::hub::{Hub, Published};
use super::objects::Object;
use super::status::Registry;
use crate::metrics::Metrics;

/// How long a disconnected data plane's shares stay counted: two RPM
/// windows, so the minute it was cut off in and the next end first.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(120);
/// How often a replica allocates (and so at most how often a data plane is
/// sent new leases).
pub const DEFAULT_TICK: Duration = Duration::from_secs(1);
/// A limit nobody has demanded for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(120);
/// A lease its data plane's demands do not show applied after this long is
/// sent again (same share): it may have been lost with a stream, and until
/// it is applied that data plane's share cannot move.
pub const RESEND_AFTER: Duration = Duration::from_secs(5);
/// How long a tick waits for the fleet's status records before it keeps the
/// count it had.
const FLEET_READ_TIMEOUT: Duration = Duration::from_millis(900);

/// Timing, injectable for tests.
#[derive(Clone, Copy, Debug)]
pub struct LimitSettings {
    pub grace: Duration,
    pub tick: Duration,
    pub forget_after: Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            grace: DEFAULT_GRACE,
            tick: DEFAULT_TICK,
            forget_after: FORGET_AFTER,
        }
    }
}

/// One limit: whose, and which.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LimitId {
    pub scope: UsageScope,
    pub id: String,
    pub kind: LimitKind,
}

/// Why a demand was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RefusedDemand {
    #[error("limit demand for scope {0}: only keys and teams have rate limits")]
    Scope(i32),
    #[error("limit demand of kind {0}: not RPM, TPM or PARALLEL")]
    Kind(i32),
    #[error("limit demand for PARALLEL on a team: max_parallel_requests is per key")]
    ParallelOnTeam,
    #[error("limit demand without an id")]
    NoId,
    #[error("limit demand with limit 0")]
    NoLimit,
}

impl LimitId {
    fn of(scope: i32, id: &str, kind: i32) -> Result<Self, RefusedDemand> {
        let scope = match UsageScope::try_from(scope) {
            Ok(s @ (UsageScope::Key | UsageScope::Team)) => s,
            _ => return Err(RefusedDemand::Scope(scope)),
        };
        let kind = match LimitKind::try_from(kind) {
            Ok(k @ (LimitKind::Rpm | LimitKind::Tpm | LimitKind::Parallel)) => k,
            _ => return Err(RefusedDemand::Kind(kind)),
        };
        if kind == LimitKind::Parallel && scope == UsageScope::Team {
            return Err(RefusedDemand::ParallelOnTeam);
        }
        if id.is_empty() {
            return Err(RefusedDemand::NoId);
        }
        Ok(Self {
            scope,
            id: id.to_string(),
            kind,
        })
    }

    fn lease(&self, share: u64) -> Lease {
        Lease {
            scope: self.scope as i32,
            id: self.id.clone(),
            kind: self.kind as i32,
            share,
        }
    }
}

/// The limit the configuration sets, when this replica has the object.
pub fn configured_limit(published: &Published, limit: &LimitId) -> Option<u64> {
    match limit.scope {
        UsageScope::Key => match published.get(Kind::Key, &limit.id)?.as_ref() {
            Object::Key(bytes) => {
                let key = Key::decode(Bytes::clone(bytes)).ok()?;
                match limit.kind {
                    LimitKind::Rpm => key.rpm_limit,
                    LimitKind::Tpm => key.tpm_limit,
                    LimitKind::Parallel => key.max_parallel_requests,
                    LimitKind::Unspecified => None,
                }
            }
            _ => None,
        },
        UsageScope::Team => match published.get(Kind::Team, &limit.id)?.as_ref() {
            Object::Team(team) => match limit.kind {
                LimitKind::Rpm => team.rpm_limit,
                LimitKind::Tpm => team.tpm_limit,
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// One data plane's part in one limit.
#[derive(Clone, Debug, Default)]
struct Part {
    used: u64,
    refused: u64,
    /// `refused` was read by an allocation: the next demand replaces it
    /// instead of adding to it.
    refused_read: bool,
    held: Option<u64>,
    granted: Option<u64>,
    /// When `granted` was last put to be sent.
    granted_at: Option<Instant>,
    /// The limit its configuration says; 0 before its first demand.
    limit: u64,
}

#[derive(Default)]
struct LimitState {
    parts: HashMap<String, Part>,
    demanded_at: Option<Instant>,
    /// A demand arrived since the last allocation.
    fresh: bool,
}

#[derive(Default)]
struct Node {
    /// This node's open streams on this replica (a reconnect can overlap
    /// the old stream's end), each woken when there is something to send.
    streams: HashMap<u64, Arc<Notify>>,
    /// When its last stream closed.
    gone_since: Option<Instant>,
    /// Leases granted and not yet sent.
    pending: BTreeMap<LimitId, u64>,
    /// The `data_planes` it was last sent.
    sent_data_planes: Option<u32>,
}

/// What an allocation tick did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ticked {
    pub managed: usize,
    pub data_planes: u32,
    pub leases_granted: usize,
}

/// The bookkeeping of one replica (see the module's doc).
#[derive(Default)]
pub struct Book {
    limits: BTreeMap<LimitId, LimitState>,
    nodes: BTreeMap<String, Node>,
    next_stream: u64,
    /// The fleet as last counted.
    data_planes: u32,
    /// Someone came or went since the last tick: every limit is allocated.
    membership_changed: bool,
}

impl Book {
    /// A stream of `node_id` opened; it is woken by the returned notify.
    pub fn connect(&mut self, node_id: &str) -> (u64, Arc<Notify>) {
        self.next_stream += 1;
        let stream = self.next_stream;
        let notify = Arc::new(Notify::new());
        let node = self.nodes.entry(node_id.to_string()).or_default();
        if node.streams.is_empty() && node.gone_since.is_none() {
            self.membership_changed = true;
        }
        node.streams.insert(stream, notify.clone());
        node.gone_since = None;
        // Its first `LimitLeases` may leave before the next tick counts it.
        self.data_planes = self.data_planes.max(self.local());
        (stream, notify)
    }

    /// A stream closed; its node's shares stay counted for the grace period.
    pub fn disconnect(&mut self, node_id: &str, stream: u64, now: Instant) {
        if let Some(node) = self.nodes.get_mut(node_id) {
            node.streams.remove(&stream);
            if node.streams.is_empty() {
                node.gone_since = Some(now);
            }
        }
    }

    /// Takes a data plane's demands; the ones refused are returned.
    pub fn demand(
        &mut self,
        node_id: &str,
        demand: &LimitDemand,
        now: Instant,
    ) -> Vec<RefusedDemand> {
        if !self.nodes.contains_key(node_id) {
            return Vec::new();
        }
        let mut refused = Vec::new();
        for d in &demand.demands {
            let id = match LimitId::of(d.scope, &d.id, d.kind) {
                Ok(id) if d.limit > 0 => id,
                Ok(_) => {
                    refused.push(RefusedDemand::NoLimit);
                    continue;
                }
                Err(e) => {
                    refused.push(e);
                    continue;
                }
            };
            let limit = self.limits.entry(id).or_default();
            if limit.demanded_at.is_none() {
                // Newly managed: every data plane must get an explicit lease.
                self.membership_changed = true;
            }
            limit.demanded_at = Some(now);
            limit.fresh = true;
            let part = limit.parts.entry(node_id.to_string()).or_default();
            part.used = d.used;
            part.refused = if part.refused_read {
                d.refused
            } else {
                part.refused.saturating_add(d.refused)
            };
            part.refused_read = false;
            part.held = Some(d.held);
            part.limit = d.limit;
        }
        refused
    }

    /// The data planes this replica counts: connected, or in their grace
    /// period.
    pub fn local(&self) -> u32 {
        u32::try_from(self.nodes.len()).unwrap_or(u32::MAX)
    }

    /// The `data_planes` data planes are told.
    pub fn data_planes(&self) -> u32 {
        self.data_planes
    }

    /// Allocates: drops data planes gone for `grace` and limits nobody
    /// demanded for `forget_after`, counts the fleet (`fleet`: the store's
    /// count, `None` when it could not be read), and leases every limit with
    /// fresh demands (every limit when someone came or went). `cap` is what
    /// the configuration says of a limit, when known.
    pub fn tick(
        &mut self,
        now: Instant,
        settings: &LimitSettings,
        fleet: Option<u32>,
        cap: impl Fn(&LimitId) -> Option<u64>,
    ) -> Ticked {
        let expired: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                n.gone_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= settings.grace)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.nodes.remove(id);
            for limit in self.limits.values_mut() {
                limit.parts.remove(id);
            }
            self.membership_changed = true;
        }
        self.limits.retain(|_, l| {
            l.demanded_at
                .is_some_and(|t| now.saturating_duration_since(t) < settings.forget_after)
        });

        let local = self.local();
        let data_planes = fleet.unwrap_or(self.data_planes).max(local);
        if data_planes != self.data_planes {
            self.data_planes = data_planes;
            self.membership_changed = true;
        }
        let all = std::mem::take(&mut self.membership_changed);
        let mut granted = 0;
        let node_ids: Vec<String> = self.nodes.keys().cloned().collect();
        for (id, limit) in &mut self.limits {
            if !(all || limit.fresh) {
                continue;
            }
            limit.fresh = false;
            let reported = limit
                .parts
                .values()
                .map(|p| p.limit)
                .filter(|l| *l > 0)
                .min();
            let Some(reported) = reported else { continue };
            let l = cap(id).map_or(reported, |c| c.min(reported));
            let fleet = u128::from(data_planes.max(1));
            let capacity = u64::try_from(u128::from(l) * u128::from(local) / fleet).unwrap_or(l);
            let default = u64::try_from(u128::from(l) / fleet).unwrap_or(l);
            let holders: Vec<Holder> = node_ids
                .iter()
                .map(|n| {
                    let part = limit.parts.get(n).cloned().unwrap_or_default();
                    Holder {
                        used: part.used,
                        refused: part.refused,
                        held: part.held,
                        granted: part.granted,
                        connected: self.nodes.get(n).is_some_and(|n| !n.streams.is_empty()),
                    }
                })
                .collect();
            for part in limit.parts.values_mut() {
                part.refused_read = true;
            }
            let shares = allocate(capacity, default, &holders);
            for ((n, share), holder) in node_ids.iter().zip(shares).zip(&holders) {
                let part = limit.parts.entry(n.clone()).or_default();
                let share = match (share, part.granted) {
                    (Some(share), _) => share,
                    (None, Some(g))
                        if holder.connected
                            && holder.in_flight()
                            && part.granted_at.is_none_or(|t| {
                                now.saturating_duration_since(t) >= RESEND_AFTER
                            }) =>
                    {
                        g
                    }
                    _ => continue,
                };
                part.granted = Some(share);
                part.granted_at = Some(now);
                if let Some(node) = self.nodes.get_mut(n) {
                    node.pending.insert(id.clone(), share);
                }
                granted += 1;
            }
        }
        for node in self.nodes.values() {
            if !node.pending.is_empty() || node.sent_data_planes != Some(data_planes) {
                for notify in node.streams.values() {
                    notify.notify_one();
                }
            }
        }
        Ticked {
            managed: self.limits.len(),
            data_planes,
            leases_granted: granted,
        }
    }

    /// What a data plane is sent once its stream has its configuration:
    /// `data_planes` and every lease it holds from this replica.
    pub fn initial(&mut self, node_id: &str) -> LimitLeases {
        let leases = self
            .limits
            .iter()
            .filter_map(|(id, l)| Some(id.lease(l.parts.get(node_id)?.granted?)))
            .collect();
        if let Some(node) = self.nodes.get_mut(node_id) {
            node.pending.clear();
            node.sent_data_planes = Some(self.data_planes);
        }
        LimitLeases {
            data_planes: self.data_planes,
            leases,
        }
    }

    /// The leases granted since the last send, with `data_planes`; `None`
    /// when nothing changed for this data plane.
    pub fn take(&mut self, node_id: &str) -> Option<LimitLeases> {
        let data_planes = self.data_planes;
        let node = self.nodes.get_mut(node_id)?;
        if node.pending.is_empty() && node.sent_data_planes == Some(data_planes) {
            return None;
        }
        node.sent_data_planes = Some(data_planes);
        let leases = std::mem::take(&mut node.pending)
            .into_iter()
            .map(|(id, share)| id.lease(share))
            .collect();
        Some(LimitLeases {
            data_planes,
            leases,
        })
    }

    /// The share last granted to `node_id` (for tests and debugging).
    pub fn granted(&self, node_id: &str, limit: &LimitId) -> Option<u64> {
        self.limits.get(limit)?.parts.get(node_id)?.granted
    }
}

/// Counts the fleet from status records: connected, or disconnected less
/// than `grace` ago (its last heartbeat is when its stream closed).
pub fn fleet_of(statuses: &[DataPlaneStatus], grace: Duration) -> u32 {
    let now = SystemTime::now();
    let counted = statuses
        .iter()
        .filter(|s| {
            s.connected
                || s.heartbeat_at
                    .and_then(|t| SystemTime::try_from(t).ok())
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age < grace)
        })
        .count();
    u32::try_from(counted).unwrap_or(u32::MAX)
}

/// The book behind a lock, ticked once per [`LimitSettings::tick`].
#[derive(Clone)]
pub struct Limits {
    inner: Arc<Shared>,
}

struct Shared {
    book: Mutex<Book>,
    settings: LimitSettings,
    metrics: Arc<Metrics>,
    /// Woken when a data plane connects, so it gets its leases soon.
    wake: Notify,
}

impl Limits {
    /// Starts the allocation tick on the runtime.
    pub fn start(
        hub: Hub,
        registry: Registry,
        metrics: Arc<Metrics>,
        settings: LimitSettings,
    ) -> Self {
        let limits = Self {
            inner: Arc::new(Shared {
                book: Mutex::new(Book::default()),
                settings,
                metrics,
                wake: Notify::new(),
            }),
        };
        tokio::spawn(limits.clone().run(hub, registry));
        limits
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        // Every change to the book is made whole under the lock before any
        // call that could panic, so a poisoned lock still holds a usable book.
        self.inner.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn run(self, hub: Hub, registry: Registry) {
        let settings = self.inner.settings;
        loop {
            tokio::select! {
                () = tokio::time::sleep(settings.tick) => {}
                () = self.inner.wake.notified() => {}
            }
            // Every replica's records, so each knows its part of the fleet.
            let fleet = match tokio::time::timeout(FLEET_READ_TIMEOUT, registry.list()).await {
                Ok(Ok(all)) => Some(fleet_of(&all, settings.grace)),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "cannot count the fleet for limits; keeping the last count");
                    None
                }
                Err(_) => None,
            };
            let published = hub.current();
            let ticked = self.book().tick(Instant::now(), &settings, fleet, |id| {
                configured_limit(&published, id)
            });
            let metrics = &self.inner.metrics;
            metrics
                .limits_managed
                .set(i64::try_from(ticked.managed).unwrap_or(i64::MAX));
            metrics.limit_data_planes.set(i64::from(ticked.data_planes));
        }
    }

    /// Registers a data plane's stream.
    pub fn connect(&self, node_id: &str) -> LimitSession {
        let (stream, notify) = self.book().connect(node_id);
        self.inner.wake.notify_one();
        LimitSession {
            limits: self.clone(),
            node_id: node_id.to_string(),
            stream,
            notify,
        }
    }

    /// Takes a data plane's demands (a lock held briefly, never a wait).
    pub fn demand(&self, node_id: &str, demand: &LimitDemand) {
        let refused = self.book().demand(node_id, demand, Instant::now());
        for e in refused {
            tracing::debug!(%node_id, error = %e, "limit demand ignored");
        }
    }
}

/// One stream's part: what to send it, and when. Dropping it starts the
/// data plane's grace period (unless it has another stream).
pub struct LimitSession {
    limits: Limits,
    node_id: String,
    stream: u64,
    notify: Arc<Notify>,
}

impl LimitSession {
    /// Resolves when there may be leases to send.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    /// `data_planes` and every lease held, for right after the first
    /// configuration step.
    pub fn initial(&self) -> LimitLeases {
        let leases = self.limits.book().initial(&self.node_id);
        self.count(&leases);
        leases
    }

    /// What changed since the last send, if anything.
    pub fn take(&self) -> Option<LimitLeases> {
        let leases = self.limits.book().take(&self.node_id)?;
        self.count(&leases);
        Some(leases)
    }

    fn count(&self, leases: &LimitLeases) {
        self.limits
            .inner
            .metrics
            .limit_leases_sent
            .inc_by(leases.leases.len() as u64);
    }
}

impl Drop for LimitSession {
    fn drop(&mut self) {
        self.limits
            .book()
            .disconnect(&self.node_id, self.stream, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::config::v1::Demand;

    const RPM60: fn() -> LimitId = || LimitId {
        scope: UsageScope::Key,
        id: "k".into(),
        kind: LimitKind::Rpm,
    };

    fn demand(used: u64, held: u64, refused: u64) -> LimitDemand {
        LimitDemand {
            demands: vec![Demand {
                scope: UsageScope::Key as i32,
                id: "k".into(),
                kind: LimitKind::Rpm as i32,
                limit: 60,
                used,
                held,
                refused,
            }],
        }
    }

    fn settings() -> LimitSettings {
        LimitSettings {
            grace: Duration::from_secs(10),
            tick: Duration::from_secs(1),
            forget_after: Duration::from_secs(30),
        }
    }

    /// Drains what each node would be sent; returns their shares now.
    fn deliver(book: &mut Book, shares: &mut BTreeMap<&'static str, u64>) {
        for (node, share) in shares.iter_mut() {
            if let Some(leases) = book.take(node) {
                for lease in leases.leases {
                    *share = lease.share;
                }
            }
        }
    }

    #[test]
    fn demands_in_leases_out_and_a_departed_share_freed_after_the_grace_period() {
        let s = settings();
        let t0 = Instant::now();
        let mut book = Book::default();
        let mut streams = BTreeMap::new();
        for n in ["a", "b", "c"] {
            streams.insert(n, book.connect(n).0);
        }
        book.tick(t0, &s, Some(3), |_| None);
        for n in ["a", "b", "c"] {
            let first = book.initial(n);
            assert_eq!(first.data_planes, 3);
            assert!(first.leases.is_empty());
        }
        // Everyone applies the default, 20.
        let mut shares: BTreeMap<&'static str, u64> =
            [("a", 20), ("b", 20), ("c", 20)].into_iter().collect();
        let mut at = t0;
        for _ in 0..6 {
            at += s.tick;
            let a = shares["a"];
            book.demand("a", &demand(a, a, 30), at);
            book.demand("b", &demand(5, shares["b"], 0), at);
            book.demand("c", &demand(0, shares["c"], 0), at);
            let ticked = book.tick(at, &s, Some(3), |_| None);
            assert_eq!(ticked.data_planes, 3);
            deliver(&mut book, &mut shares);
            assert!(shares.values().sum::<u64>() <= 60, "{shares:?}");
        }
        assert!(
            shares["a"] > shares["b"] && shares["b"] > shares["c"],
            "{shares:?}"
        );
        assert_eq!(shares.values().sum::<u64>(), 60, "{shares:?}");

        // c leaves: its share stays counted through the grace period.
        let c_share = shares["c"];
        book.disconnect("c", streams["c"], at);
        shares.remove("c");
        let left = at;
        while at < left + s.grace - s.tick {
            at += s.tick;
            book.demand("a", &demand(shares["a"], shares["a"], 30), at);
            book.demand("b", &demand(5, shares["b"], 0), at);
            book.tick(at, &s, Some(3), |_| None);
            deliver(&mut book, &mut shares);
            assert!(shares.values().sum::<u64>() <= 60 - c_share, "{shares:?}");
        }
        // Then it is dropped: data_planes 2, its share goes to the others.
        for _ in 0..4 {
            at += s.tick;
            book.demand("a", &demand(shares["a"], shares["a"], 30), at);
            book.demand("b", &demand(5, shares["b"], 0), at);
            let ticked = book.tick(at, &s, Some(2), |_| None);
            assert_eq!(ticked.data_planes, 2);
            deliver(&mut book, &mut shares);
        }
        assert_eq!(book.take("a"), None);
        assert_eq!(shares.values().sum::<u64>(), 60, "{shares:?}");
        assert!(shares["a"] > 60 - c_share - shares["b"], "{shares:?}");
        assert_eq!(book.local(), 2);
    }

    #[test]
    fn the_configuration_caps_the_limit_and_a_replica_leases_only_its_part() {
        let s = settings();
        let t0 = Instant::now();
        let mut book = Book::default();
        book.connect("a");
        book.demand("a", &demand(0, 15, 100), t0);
        // Four data planes in the fleet, one here; the config says 40.
        let ticked = book.tick(t0, &s, Some(4), |_| Some(40));
        assert_eq!(ticked.data_planes, 4);
        assert_eq!(book.granted("a", &RPM60()), Some(10));
    }

    #[test]
    fn a_limit_nobody_demands_is_forgotten_and_bad_demands_refused() {
        let s = settings();
        let t0 = Instant::now();
        let mut book = Book::default();
        book.connect("a");
        let mut bad = demand(0, 0, 0);
        bad.demands[0].scope = UsageScope::Organization as i32;
        assert_eq!(
            book.demand("a", &bad, t0),
            vec![RefusedDemand::Scope(UsageScope::Organization as i32)]
        );
        book.demand("a", &demand(0, 60, 0), t0);
        assert_eq!(book.tick(t0, &s, Some(1), |_| None).managed, 1);
        assert_eq!(
            book.tick(t0 + s.forget_after, &s, Some(1), |_| None)
                .managed,
            0
        );
    }

    #[test]
    fn a_lease_not_shown_applied_is_sent_again() {
        let s = settings();
        let t0 = Instant::now();
        let mut book = Book::default();
        book.connect("a");
        book.demand("a", &demand(10, 60, 0), t0);
        book.tick(t0, &s, Some(1), |_| None);
        let sent = book.take("a").map(|l| l.leases);
        assert!(sent.as_ref().is_some_and(|l| l.len() == 1), "{sent:?}");
        // Its demands keep saying 20 (the lease never arrived): the same
        // lease again, after a while.
        book.demand("a", &demand(10, 20, 0), t0 + s.tick);
        book.tick(t0 + s.tick, &s, Some(1), |_| None);
        assert_eq!(book.take("a"), None);
        let later = t0 + RESEND_AFTER;
        book.demand("a", &demand(10, 20, 0), later);
        book.tick(later, &s, Some(1), |_| None);
        assert_eq!(book.take("a").map(|l| l.leases), sent);
    }

    #[test]
    fn a_reconnect_within_the_grace_period_keeps_the_leases_and_resends_them() {
        let s = settings();
        let t0 = Instant::now();
        let mut book = Book::default();
        let (stream, _) = book.connect("a");
        book.demand("a", &demand(10, 60, 0), t0);
        book.tick(t0, &s, Some(1), |_| None);
        let granted = book.granted("a", &RPM60());
        assert!(granted.is_some());
        book.disconnect("a", stream, t0);
        book.connect("a");
        book.tick(t0 + s.tick, &s, Some(1), |_| None);
        let again = book.initial("a");
        assert_eq!(again.leases.len(), 1);
        assert_eq!(Some(again.leases[0].share), book.granted("a", &RPM60()));
    }
}
