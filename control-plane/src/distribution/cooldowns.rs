//! Fleet-wide cooldowns (DESIGN §5): a deployment one data plane cooled is
//! skipped by every data plane, on every replica.
//!
//! A data plane reports the deployments it has just cooled on its config
//! stream (`CooldownReport`). The session hands each report to this module
//! without waiting ([`Cooldowns::report`]); the [`writer`] task decides what
//! reaches the store — [`Coalescer`], a pure function of the reports, what the
//! fleet already knows and the time — and writes
//! `/sluice-status/cooldowns/{deployment_id}` (a [`CooldownRecord`]) with a
//! TTL of the time remaining, so a cooldown whose reporter went away leaves
//! nothing behind. Every replica's [`watcher`] lists and watches that prefix
//! (outside `/sluice/`, so the config hub never sees it), keeps what is in
//! force in memory and announces each new or extended cooldown to the
//! replica's sessions, which relay it to their data planes as
//! `FleetCooldowns`.
//!
//! Times: a report says how long from the sender's now (`remaining_ms`), so
//! pods' clocks need not agree. This replica turns it into `until`, unix ms on
//! its own clock, for the record; a replica relaying it turns `until` back
//! into a remaining time on its clock at send time. Replicas' clocks are
//! assumed to agree within the usual NTP error, which a cooldown of seconds
//! tolerates.
//!
//! What limits the writes, per replica:
//! - a report that does not extend what the fleet already knows for its
//!   deployment (by more than [`min_extension`]) is dropped;
//! - per deployment, at most one write per [`WRITE_INTERVAL`]; reports in
//!   between are merged into one pending write at the end of the interval;
//! - at most [`WRITE_BURST`] writes at once and [`WRITES_PER_SECOND`] after
//!   that, whatever the number of deployments (a token bucket); what it holds
//!   back waits, merged, for a token.
//!
//! The first report of a deployment that is not cooling is written at once
//! (unless the bucket is empty), since the goal is the whole fleet skipping
//! it within 250 ms.
//!
//! Known limit: two replicas writing the same deployment at the same moment
//! race (plain puts; the later wins, even if shorter). Each replica's memory
//! keeps the longer `until` it has seen, so only a replica that lists the
//! store after the shorter lease ran out loses the difference.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use prost::Message;
use sluice_proto::config::v1::Cooldown;
use tokio::sync::{broadcast, mpsc};

use crate::metrics::Metrics;
use crate::store::{EventKind, Store, WatchMessage};

/// Where cooldowns live in the store, one key per deployment.
pub const PREFIX: &str = "/sluice-status/cooldowns/";
/// Shortest cooldown accepted; a shorter (or zero) report is raised to it.
pub const MIN_REMAINING: Duration = Duration::from_millis(1);
/// Longest cooldown accepted; a longer report is cut to it, so one data plane
/// cannot take a deployment away from the fleet for long.
pub const MAX_REMAINING: Duration = Duration::from_secs(3600);
/// Per deployment, at most one write this often.
pub const WRITE_INTERVAL: Duration = Duration::from_millis(100);
/// Writes per second per replica, all deployments together, after the burst.
pub const WRITES_PER_SECOND: f64 = 100.0;
/// Writes a replica may make at once before [`WRITES_PER_SECOND`] applies.
pub const WRITE_BURST: f64 = 100.0;
/// Reports queued between the streams and the writer; beyond it they are shed
/// (counted), never waited for.
const REPORT_QUEUE: usize = 4096;
/// Announcements buffered per session; a session further behind sends the
/// whole set again.
const ANNOUNCE_BUFFER: usize = 1024;
/// Backoff while the store is unreachable.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What `/sluice-status/cooldowns/{deployment_id}` holds.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CooldownRecord {
    #[prost(string, tag = "1")]
    pub deployment_id: String,
    /// Until when, unix ms on the writing replica's clock.
    #[prost(int64, tag = "2")]
    pub until_ms: i64,
    #[prost(string, tag = "3")]
    pub reason: String,
    /// Node id of the data plane that reported it.
    #[prost(string, tag = "4")]
    pub reporter: String,
}

impl CooldownRecord {
    /// The wire form, with the time left from `now_ms`; `None` once over.
    pub fn to_wire(&self, now_ms: i64) -> Option<Cooldown> {
        let remaining = self.until_ms.checked_sub(now_ms).filter(|r| *r > 0)?;
        Some(Cooldown {
            deployment_id: self.deployment_id.clone(),
            remaining_ms: u64::try_from(remaining).unwrap_or_default(),
            reason: self.reason.clone(),
            reporter: self.reporter.clone(),
        })
    }
}

/// Unix ms on this machine's clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A reported cooldown as this replica records it: `remaining_ms` clamped to
/// [[`MIN_REMAINING`], [`MAX_REMAINING`]] and turned into `until` on this
/// replica's clock; the reporter is the stream's node id, whatever the data
/// plane wrote there. `None` for a deployment id that cannot be one.
pub fn receive(report: &Cooldown, reporter: &str, now_ms: i64) -> Option<CooldownRecord> {
    crate::validate::deployment_id("cooldown.deployment_id", &report.deployment_id).ok()?;
    let remaining = report.remaining_ms.clamp(
        MIN_REMAINING.as_millis() as u64,
        MAX_REMAINING.as_millis() as u64,
    );
    let reason: String = report
        .reason
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    Some(CooldownRecord {
        deployment_id: report.deployment_id.clone(),
        until_ms: now_ms.saturating_add(remaining as i64),
        reason,
        reporter: reporter.to_owned(),
    })
}

/// How much later than what is known a report must end to be worth a write:
/// a tenth of the time left, at least [`WRITE_INTERVAL`]. Data planes hitting
/// the same failing deployment report nearly the same end, milliseconds
/// apart; writing each of those would only churn the store.
pub fn min_extension(known_until_ms: i64, now_ms: i64) -> i64 {
    let left = known_until_ms.saturating_sub(now_ms).max(0);
    (left / 10).max(WRITE_INTERVAL.as_millis() as i64)
}

/// What [`Coalescer::report`] did with a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write this now.
    Write(CooldownRecord),
    /// Held for the deployment's next write slot or a token, merged with
    /// whatever else arrives meanwhile.
    Deferred,
    /// Adds nothing to what the fleet knows.
    Dropped,
}

#[derive(Debug, Default)]
struct Entry {
    /// The latest end the fleet is known to have: seen on the watch, or
    /// written by us (optimistically, until the write fails).
    known_until_ms: i64,
    last_write: Option<Instant>,
    pending: Option<CooldownRecord>,
}

/// A token bucket: [`WRITE_BURST`] tokens, refilled at [`WRITES_PER_SECOND`].
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Bucket {
            tokens: WRITE_BURST,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * WRITES_PER_SECOND).min(WRITE_BURST);
        self.at = now;
    }

    fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next token is there.
    fn next_token(&self) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        self.at + Duration::from_secs_f64(missing / WRITES_PER_SECOND)
    }
}

/// The writer's decisions, with explicit instants: `now` (monotonic) paces
/// the writes, `now_ms` (this replica's unix ms) says which cooldowns are
/// over.
#[derive(Debug)]
pub struct Coalescer {
    entries: HashMap<String, Entry>,
    bucket: Bucket,
}

impl Coalescer {
    pub fn new(now: Instant) -> Self {
        Coalescer {
            entries: HashMap::new(),
            bucket: Bucket::new(now),
        }
    }

    /// A report from a data plane of this replica.
    pub fn report(&mut self, record: CooldownRecord, now: Instant, now_ms: i64) -> Decision {
        let entry = self
            .entries
            .entry(record.deployment_id.clone())
            .or_default();
        let pending_until = entry.pending.as_ref().map_or(0, |p| p.until_ms);
        let known = entry.known_until_ms.max(pending_until);
        if record.until_ms <= now_ms
            || record.until_ms < known.saturating_add(min_extension(known, now_ms))
        {
            return Decision::Dropped;
        }
        let slot_free = entry
            .last_write
            .is_none_or(|at| now.saturating_duration_since(at) >= WRITE_INTERVAL);
        if slot_free && entry.pending.is_none() && self.bucket.take(now) {
            entry.last_write = Some(now);
            entry.known_until_ms = record.until_ms;
            return Decision::Write(record);
        }
        // Merged: the longest end, with the reason and reporter that set it.
        entry.pending = Some(record);
        Decision::Deferred
    }

    /// A cooldown the fleet has (from the watch, this replica's writes
    /// included).
    pub fn known(&mut self, deployment_id: &str, until_ms: i64) {
        let entry = self.entries.entry(deployment_id.to_owned()).or_default();
        entry.known_until_ms = entry.known_until_ms.max(until_ms);
    }

    /// A write that failed: the fleet does not have it, so the next report
    /// may try again.
    pub fn write_failed(&mut self, record: &CooldownRecord) {
        if let Some(entry) = self.entries.get_mut(&record.deployment_id)
            && entry.known_until_ms == record.until_ms
        {
            entry.known_until_ms = 0;
        }
    }

    /// The pending writes whose slot has come and for which there is a token,
    /// and when to look again (`None`: nothing pending). Pending cooldowns
    /// that are over, or that the fleet meanwhile has, are dropped; entries
    /// with nothing left to say are forgotten.
    pub fn due(&mut self, now: Instant, now_ms: i64) -> (Vec<CooldownRecord>, Option<Instant>) {
        let mut writes = Vec::new();
        let mut next: Option<Instant> = None;
        let mut at_next = |at: Instant| next = Some(next.map_or(at, |n: Instant| n.min(at)));
        // Oldest slots first, so a flapping deployment cannot starve others
        // of tokens.
        let mut ready: Vec<(&String, &mut Entry)> = self.entries.iter_mut().collect();
        ready.sort_by_key(|(_, e)| e.last_write);
        for (_, entry) in ready {
            let Some(pending) = &entry.pending else {
                continue;
            };
            let known = entry.known_until_ms;
            if pending.until_ms <= now_ms
                || pending.until_ms < known.saturating_add(min_extension(known, now_ms))
            {
                entry.pending = None;
                continue;
            }
            let slot = entry.last_write.map_or(now, |at| at + WRITE_INTERVAL);
            if slot > now {
                at_next(slot);
                continue;
            }
            if !self.bucket.take(now) {
                at_next(self.bucket.next_token());
                continue;
            }
            let record = entry.pending.take().unwrap_or_default();
            entry.last_write = Some(now);
            entry.known_until_ms = record.until_ms;
            writes.push(record);
        }
        self.entries.retain(|_, e| {
            e.pending.is_some()
                || e.known_until_ms > now_ms
                || e.last_write
                    .is_some_and(|at| now.saturating_duration_since(at) < WRITE_INTERVAL)
        });
        (writes, next)
    }

    /// Deployments with state (for tests and bounds).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The cooldowns in force, as this replica knows them: the longer `until`
/// wins; those that are over are dropped when read.
#[derive(Debug, Default)]
pub struct InForce {
    records: HashMap<String, CooldownRecord>,
}

impl InForce {
    /// Takes `record` if it is new or ends later than what is held; says
    /// whether it did.
    pub fn offer(&mut self, record: CooldownRecord, now_ms: i64) -> bool {
        if record.until_ms <= now_ms {
            return false;
        }
        match self.records.get(&record.deployment_id) {
            Some(held) if held.until_ms >= record.until_ms => false,
            _ => {
                self.records.insert(record.deployment_id.clone(), record);
                true
            }
        }
    }

    /// Every cooldown still in force at `now_ms`, forgetting the rest.
    pub fn current(&mut self, now_ms: i64) -> Vec<CooldownRecord> {
        self.records.retain(|_, r| r.until_ms > now_ms);
        let mut out: Vec<CooldownRecord> = self.records.values().cloned().collect();
        out.sort_by(|a, b| a.deployment_id.cmp(&b.deployment_id));
        out
    }
}

/// A replica's handle: streams report into it and subscribe to it.
#[derive(Clone)]
pub struct Cooldowns {
    reports: mpsc::Sender<CooldownRecord>,
    in_force: Arc<Mutex<InForce>>,
    announce: broadcast::Sender<Arc<CooldownRecord>>,
    metrics: Arc<Metrics>,
}

impl Cooldowns {
    /// Starts this replica's watcher and writer tasks on the runtime.
    pub fn start(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        let (reports, reports_rx) = mpsc::channel(REPORT_QUEUE);
        let (announce, _) = broadcast::channel(ANNOUNCE_BUFFER);
        let in_force = Arc::new(Mutex::new(InForce::default()));
        tokio::spawn(watcher(
            store.clone(),
            in_force.clone(),
            announce.clone(),
            metrics.clone(),
        ));
        tokio::spawn(writer(
            store,
            reports_rx,
            announce.subscribe(),
            metrics.clone(),
        ));
        Cooldowns {
            reports,
            in_force,
            announce,
            metrics,
        }
    }

    /// Hands a data plane's report to the writer. Never waits: when the
    /// writer is that far behind, the report is shed (and counted).
    pub fn report(&self, reporter: &str, cooldowns: &[Cooldown]) {
        let now = now_ms();
        for c in cooldowns {
            self.metrics.cooldown_reports.inc();
            let Some(record) = receive(c, reporter, now) else {
                self.metrics.cooldown_reports_refused.inc();
                tracing::debug!(%reporter, deployment = %c.deployment_id, "refused a cooldown report");
                continue;
            };
            if self.reports.try_send(record).is_err() {
                self.metrics.cooldown_reports_shed.inc();
            }
        }
    }

    /// Announcements of each new or extended cooldown. Subscribe before
    /// reading [`Cooldowns::current`], so nothing falls between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CooldownRecord>> {
        self.announce.subscribe()
    }

    /// Every cooldown in force now.
    pub fn current(&self) -> Vec<CooldownRecord> {
        self.in_force
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .current(now_ms())
    }
}

/// The store key of a deployment's cooldown.
pub fn key_of(deployment_id: &str) -> String {
    format!("{PREFIX}{deployment_id}")
}

/// Decides and issues the writes. A write runs in a task of its own, so a
/// slow store delays no decision and no stream.
async fn writer(
    store: Arc<dyn Store>,
    mut reports: mpsc::Receiver<CooldownRecord>,
    mut fleet: broadcast::Receiver<Arc<CooldownRecord>>,
    metrics: Arc<Metrics>,
) {
    let (failed_tx, mut failed) = mpsc::unbounded_channel::<CooldownRecord>();
    let mut coalescer = Coalescer::new(Instant::now());
    let mut next: Option<Instant> = None;
    let write = |record: CooldownRecord| {
        let store = store.clone();
        let metrics = metrics.clone();
        let failed_tx = failed_tx.clone();
        tokio::spawn(async move {
            let ttl = Duration::from_millis(
                u64::try_from(record.until_ms.saturating_sub(now_ms())).unwrap_or(1),
            )
            .max(MIN_REMAINING);
            let key = key_of(&record.deployment_id);
            match store.put_with_ttl(&key, record.encode_to_vec(), ttl).await {
                Ok(_) => {
                    metrics.cooldown_writes.inc();
                }
                Err(e) => {
                    metrics.cooldown_write_failures.inc();
                    tracing::warn!(%key, error = %e, "writing a fleet cooldown failed");
                    let _ = failed_tx.send(record);
                }
            };
        });
    };
    loop {
        let wake = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            report = reports.recv() => {
                let Some(record) = report else { return };
                match coalescer.report(record, Instant::now(), now_ms()) {
                    Decision::Write(record) => write(record),
                    Decision::Deferred => {
                        metrics.cooldown_reports_deferred.inc();
                    }
                    Decision::Dropped => {
                        metrics.cooldown_reports_coalesced.inc();
                    }
                }
            }
            known = fleet.recv() => match known {
                Ok(record) => coalescer.known(&record.deployment_id, record.until_ms),
                // Missed some: only more writes than needed can follow.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            Some(record) = failed.recv() => coalescer.write_failed(&record),
            () = wake => {}
        }
        let (due, again) = coalescer.due(Instant::now(), now_ms());
        for record in due {
            write(record);
        }
        next = again;
    }
}

/// Lists and watches [`PREFIX`] like the hub does `/sluice/`: list, watch
/// from that revision + 1, list again after compaction; every put that is new
/// or extends what is held is announced. Deletes (the TTL ran out) need no
/// handling: what is held is dropped when its `until` passes.
async fn watcher(
    store: Arc<dyn Store>,
    in_force: Arc<Mutex<InForce>>,
    announce: broadcast::Sender<Arc<CooldownRecord>>,
    metrics: Arc<Metrics>,
) {
    let mut retry = RETRY_MIN;
    let offer = |value: &[u8]| {
        let Ok(record) = CooldownRecord::decode(value) else {
            tracing::warn!("ignoring an undecodable fleet cooldown record");
            return;
        };
        let mut held = in_force.lock().unwrap_or_else(PoisonError::into_inner);
        let now = now_ms();
        if held.offer(record.clone(), now) {
            metrics.fleet_cooldowns.set(held.current(now).len() as i64);
            drop(held);
            // No receivers is fine: no session and no writer yet.
            let _ = announce.send(Arc::new(record));
        }
    };
    loop {
        let range = match store.range(PREFIX).await {
            Ok(range) => range,
            Err(e) => {
                tracing::warn!(error = %e, "cooldowns: cannot list the store; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        for kv in &range.kvs {
            offer(&kv.value);
        }
        let mut from = range.revision + 1;
        'watch: loop {
            let mut stream = match store.watch(PREFIX, from).await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cooldowns: cannot watch the store; retrying");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                    continue;
                }
            };
            retry = RETRY_MIN;
            while let Some(message) = stream.next().await {
                match message {
                    Ok(WatchMessage::Events { revision, events }) => {
                        for event in events.iter().filter(|e| e.kind == EventKind::Put) {
                            offer(&event.kv.value);
                        }
                        from = revision + 1;
                    }
                    Ok(WatchMessage::Compacted { .. }) => break 'watch,
                    Err(e) => {
                        tracing::warn!(error = %e, "cooldowns: watch failed; watching again");
                        tokio::time::sleep(retry).await;
                        retry = (retry * 2).min(RETRY_MAX);
                        continue 'watch;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn record(id: &str, until_ms: i64) -> CooldownRecord {
        CooldownRecord {
            deployment_id: id.into(),
            until_ms,
            reason: "rate_limited".into(),
            reporter: "dp".into(),
        }
    }

    fn wire(id: &str, remaining_ms: u64) -> Cooldown {
        Cooldown {
            deployment_id: id.into(),
            remaining_ms,
            reason: "server_error".into(),
            reporter: "forged".into(),
        }
    }

    #[test]
    fn receive_clamps_converts_and_names_the_stream_as_reporter() {
        let r = receive(&wire("d", 0), "dp-1", T0).unwrap();
        assert_eq!(r.until_ms, T0 + 1);
        assert_eq!(r.reporter, "dp-1");
        let r = receive(&wire("d", u64::MAX), "dp-1", T0).unwrap();
        assert_eq!(r.until_ms, T0 + 3_600_000);
        let r = receive(&wire("d", 30_000), "dp-1", T0).unwrap();
        assert_eq!(r.until_ms, T0 + 30_000);
        assert_eq!(r.reason, "server_error");
        assert!(receive(&wire("Not An Id", 5), "dp-1", T0).is_none());
        assert!(receive(&wire("", 5), "dp-1", T0).is_none());
    }

    #[test]
    fn to_wire_is_the_time_left_and_none_once_over() {
        let r = record("d", T0 + 2_500);
        assert_eq!(r.to_wire(T0).unwrap().remaining_ms, 2_500);
        assert_eq!(r.to_wire(T0 + 2_499).unwrap().remaining_ms, 1);
        assert!(r.to_wire(T0 + 2_500).is_none());
    }

    #[test]
    fn the_first_report_of_a_deployment_is_written_at_once() {
        let now = Instant::now();
        let mut c = Coalescer::new(now);
        let r = record("d", T0 + 10_000);
        assert_eq!(c.report(r.clone(), now, T0), Decision::Write(r));
    }

    #[test]
    fn a_report_that_does_not_extend_what_is_known_is_dropped() {
        let now = Instant::now();
        let mut c = Coalescer::new(now);
        c.known("d", T0 + 10_000);
        assert_eq!(
            c.report(record("d", T0 + 9_000), now, T0),
            Decision::Dropped
        );
        // Later, but by less than a tenth of what is left (1 s here).
        assert_eq!(
            c.report(record("d", T0 + 10_500), now, T0),
            Decision::Dropped
        );
        // Already over.
        assert_eq!(c.report(record("e", T0), now, T0), Decision::Dropped);
        // By enough.
        assert!(matches!(
            c.report(record("d", T0 + 12_000), now, T0),
            Decision::Write(_)
        ));
    }

    #[test]
    fn extensions_within_the_interval_merge_into_the_next_write() {
        let t = Instant::now();
        let mut c = Coalescer::new(t);
        assert!(matches!(
            c.report(record("d", T0 + 1_000), t, T0),
            Decision::Write(_)
        ));
        let soon = t + Duration::from_millis(10);
        assert_eq!(
            c.report(record("d", T0 + 5_000), soon, T0 + 10),
            Decision::Deferred
        );
        let mut longest = record("d", T0 + 9_000);
        longest.reporter = "dp-9".into();
        assert_eq!(c.report(longest.clone(), soon, T0 + 10), Decision::Deferred);
        // Not yet: the slot opens 100 ms after the write.
        let (writes, next) = c.due(soon, T0 + 10);
        assert!(writes.is_empty());
        assert_eq!(next, Some(t + WRITE_INTERVAL));
        let (writes, next) = c.due(t + WRITE_INTERVAL, T0 + 100);
        assert_eq!(writes, vec![longest]);
        assert_eq!(next, None);
    }

    #[test]
    fn a_thousand_reports_in_a_burst_make_a_handful_of_writes() {
        let t = Instant::now();
        let mut c = Coalescer::new(t);
        let mut writes = 0;
        // 1,000 data planes, each a millisecond after the other, each cooling
        // the deployment for 30 s from its own now.
        for i in 0..1000u64 {
            let now = t + Duration::from_millis(i);
            let now_ms = T0 + i as i64;
            if let Decision::Write(_) = c.report(record("d", now_ms + 30_000), now, now_ms) {
                writes += 1;
            }
            writes += c.due(now, now_ms).0.len();
        }
        writes += c.due(t + Duration::from_secs(1), T0 + 1_000).0.len();
        assert!((1..=3).contains(&writes), "{writes} writes");
    }

    #[test]
    fn a_flapping_deployment_is_written_at_most_once_per_interval() {
        let t = Instant::now();
        let mut c = Coalescer::new(t);
        let mut writes = 0;
        // Every report extends by a whole second, every 5 ms, for a second.
        for i in 0..200u64 {
            let now = t + Duration::from_millis(5 * i);
            let now_ms = T0 + 5 * i as i64;
            if let Decision::Write(_) =
                c.report(record("d", T0 + 1_000 * (i as i64 + 1)), now, now_ms)
            {
                writes += 1;
            }
            writes += c.due(now, now_ms).0.len();
        }
        assert!(writes <= 11, "{writes} writes in 1 s");
    }

    #[test]
    fn the_global_cap_holds_back_writes_beyond_the_burst() {
        let t = Instant::now();
        let mut c = Coalescer::new(t);
        let mut written = 0;
        for i in 0..300 {
            if let Decision::Write(_) = c.report(record(&format!("d{i}"), T0 + 60_000), t, T0) {
                written += 1;
            }
        }
        assert_eq!(written, WRITE_BURST as usize);
        // A second later the bucket has refilled by WRITES_PER_SECOND.
        let (writes, next) = c.due(t + Duration::from_secs(1), T0 + 1_000);
        assert_eq!(writes.len(), WRITES_PER_SECOND as usize);
        assert!(next.is_some(), "the rest wait for tokens");
        let (writes, _) = c.due(t + Duration::from_secs(2), T0 + 2_000);
        assert_eq!(writes.len(), 100);
    }

    #[test]
    fn a_failed_write_lets_the_next_report_try_again() {
        let t = Instant::now();
        let mut c = Coalescer::new(t);
        let r = record("d", T0 + 10_000);
        assert_eq!(c.report(r.clone(), t, T0), Decision::Write(r.clone()));
        c.write_failed(&r);
        let later = t + WRITE_INTERVAL;
        assert!(matches!(
            c.report(record("d", T0 + 10_050), later, T0 + 100),
            Decision::Write(_)
        ));
    }

    #[test]
    fn pending_writes_the_fleet_meanwhile_has_are_dropped_and_state_forgotten() {
        let t = Instant::now();
        let mut c = Coalescer::new(t);
        c.report(record("d", T0 + 1_000), t, T0);
        c.report(record("d", T0 + 5_000), t, T0);
        c.known("d", T0 + 8_000);
        let (writes, next) = c.due(t + WRITE_INTERVAL, T0 + 100);
        assert!(writes.is_empty());
        assert_eq!(next, None);
        // Once over, nothing is kept.
        c.due(t + Duration::from_secs(10), T0 + 10_000);
        assert!(c.is_empty());
    }

    #[test]
    fn in_force_keeps_the_longest_and_forgets_what_is_over() {
        let mut f = InForce::default();
        assert!(f.offer(record("d", T0 + 1_000), T0));
        assert!(!f.offer(record("d", T0 + 500), T0));
        assert!(f.offer(record("d", T0 + 2_000), T0));
        assert!(!f.offer(record("e", T0), T0));
        assert!(f.offer(record("e", T0 + 100), T0));
        assert_eq!(
            f.current(T0 + 50)
                .iter()
                .map(|r| r.deployment_id.as_str())
                .collect::<Vec<_>>(),
            ["d", "e"]
        );
        assert_eq!(f.current(T0 + 100), vec![record("d", T0 + 2_000)]);
        assert!(f.current(T0 + 2_000).is_empty());
    }
}
