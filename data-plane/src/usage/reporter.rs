//! The usage thread: journals each request's usage, reports it in batches
//! on the config stream, and hands what the control plane counted to the
//! [`Ledger`].
//!
//! One thread owns the journal, so the request path only sends a record
//! down a channel (no lock, no I/O). The thread writes what arrived every
//! [`FLUSH_EVERY`] (the kernel has it from then on: a killed process loses
//! nothing older), syncs about every second, and reports at most every
//! [`REPORT_EVERY`]: so etcd sees about one transaction per second per data
//! plane, whatever the request rate. One report is outstanding at a time;
//! one unanswered for [`RESEND_AFTER`] (the stream broke, the control plane
//! restarted) is sent again, which the control plane counts once.
//!
//! A report covers the records after the last one counted, summed by (key,
//! model group, deployment, second), up to [`MAX_SCOPES`] distinct scopes
//! (keys, teams, organizations, model groups): the control plane writes two
//! documents per scope in one transaction, under etcd's 128 operations.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use sluice_proto::config::v1::{LimitDemand, UsageAck, UsageEntry, UsageReport};
use tokio::sync::mpsc;

use super::journal::{COMPACT_BYTES, Journal, Replayed};
use super::ledger::{Ledger, Scope};
use super::limits::Limiter;
use crate::metrics::Metrics;

pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
pub const SYNC_EVERY: Duration = Duration::from_secs(1);
pub const REPORT_EVERY: Duration = Duration::from_secs(1);
pub const RESEND_AFTER: Duration = Duration::from_secs(5);
pub const MAX_SCOPES: usize = 30;
/// Most entries in one report (after summing).
pub const MAX_ENTRIES: usize = 5000;

/// What reaches the usage thread.
pub enum Event {
    /// One answered request.
    Used(UsageEntry),
    /// The control plane's answer to a report.
    Counted(UsageAck),
    /// Shutting down: write and sync everything, report what can be
    /// reported within the time given, then say so.
    Drain(Duration, Sender<Drained>),
}

/// What a drain left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Records journaled but not yet counted: they are reported after the
    /// restart.
    pub unreported: usize,
}

/// The thread's state.
pub struct Reporter {
    journal: Option<Journal>,
    state: Replayed,
    pending: VecDeque<(u64, UsageEntry)>,
    ledger: Arc<Ledger>,
    metrics: Arc<Metrics>,
    reports: mpsc::Sender<UsageReport>,
    outstanding: Option<Outstanding>,
    /// Rate limits' demands, sent every [`DEMAND_EVERY`].
    limits: Option<(Arc<Limiter>, mpsc::Sender<LimitDemand>)>,
}

pub const DEMAND_EVERY: Duration = Duration::from_secs(1);

struct Outstanding {
    to: u64,
    sent: Instant,
    /// The batch stopped before the end of what was waiting.
    full: bool,
}

impl Reporter {
    /// `state` is what the journal held (its pending records are reported
    /// first); without a journal, usage is kept in memory only.
    pub fn new(
        journal: Option<Journal>,
        mut state: Replayed,
        ledger: Arc<Ledger>,
        metrics: Arc<Metrics>,
        reports: mpsc::Sender<UsageReport>,
    ) -> Reporter {
        let pending = std::mem::take(&mut state.pending).into();
        Reporter {
            journal,
            state,
            pending,
            ledger,
            metrics,
            reports,
            outstanding: None,
            limits: None,
        }
    }

    /// Also sends the rate limits' demands about every second.
    pub fn with_limits(
        mut self,
        limiter: Arc<Limiter>,
        demands: mpsc::Sender<LimitDemand>,
    ) -> Self {
        self.limits = Some((limiter, demands));
        self
    }

    fn send_demands(&self) {
        let Some((limiter, tx)) = &self.limits else {
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let demands = limiter.demands(now);
        if !demands.is_empty() {
            // Dropped when the stream is not taking them: the next second's
            // says as much.
            let _ = tx.try_send(LimitDemand { demands });
        }
    }

    /// Runs until every sender of `events` is gone.
    pub fn run(mut self, events: Receiver<Event>) {
        let mut next_number = self.state.last_number;
        let mut unflushed_since: Option<Instant> = None;
        let mut last_sync = Instant::now();
        let mut last_report = Instant::now() - REPORT_EVERY;
        let mut last_demand = Instant::now();
        loop {
            // Idle, the thread sleeps until an event: no timer of its own
            // wakes an idle data plane.
            let mut wait: Option<Duration> = None;
            let mut within = |d: Duration| wait = Some(wait.map_or(d, |w| w.min(d)));
            if let Some(since) = unflushed_since {
                within(FLUSH_EVERY.saturating_sub(since.elapsed()));
            }
            if self.journal.as_ref().is_some_and(Journal::dirty) {
                within(SYNC_EVERY.saturating_sub(last_sync.elapsed()));
            }
            match &self.outstanding {
                // An answer is awaited: look for it every flush interval.
                Some(_) => within(FLUSH_EVERY),
                None if !self.pending.is_empty() => {
                    within(REPORT_EVERY.saturating_sub(last_report.elapsed()));
                }
                None => {}
            }
            if self.limits.as_ref().is_some_and(|(l, _)| !l.is_empty()) {
                within(DEMAND_EVERY.saturating_sub(last_demand.elapsed()));
            }
            // Busy, it sleeps rather than waits on the channel, so a request
            // sending its usage never has to wake it (a futex wake, and a
            // context switch per request on a small machine); what arrived
            // meanwhile is taken in one go. Idle, it waits on the channel,
            // so no timer of its own wakes an idle data plane.
            let first = match wait {
                Some(wait) => {
                    std::thread::sleep(wait);
                    None
                }
                None => match events.recv() {
                    Ok(event) => Some(event),
                    Err(_) => {
                        self.write_out(true);
                        return;
                    }
                },
            };
            let mut gone = false;
            let arrived = first
                .into_iter()
                .chain(std::iter::from_fn(|| match events.try_recv() {
                    Ok(event) => Some(event),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => {
                        gone = true;
                        None
                    }
                }));
            for event in arrived {
                match event {
                    Event::Used(entry) => {
                        next_number += 1;
                        if let Some(j) = self.journal.as_mut() {
                            j.append(next_number, entry.clone());
                        }
                        self.pending.push_back((next_number, entry));
                        unflushed_since.get_or_insert_with(Instant::now);
                    }
                    Event::Counted(ack) => {
                        if ack.journal_id != self.state.journal_id {
                            tracing::warn!(journal_id = %ack.journal_id, "a usage answer for another journal; ignored");
                            continue;
                        }
                        let full = self.outstanding.as_ref().is_some_and(|o| o.full);
                        self.counted(ack);
                        // A batch that had to stop short (a backlog, after
                        // an outage): the next goes at once. Otherwise the
                        // pause keeps etcd at about a transaction a second.
                        if full {
                            last_report = Instant::now() - REPORT_EVERY;
                        }
                    }
                    Event::Drain(within, done) => {
                        let unreported = self.drain(&events, within, &mut next_number);
                        let _ = done.send(Drained { unreported });
                        return;
                    }
                }
            }
            if gone {
                self.write_out(true);
                return;
            }
            if unflushed_since.is_some_and(|s| s.elapsed() >= FLUSH_EVERY) {
                self.write_out(false);
                unflushed_since = None;
            }
            if last_demand.elapsed() >= DEMAND_EVERY
                && self.limits.as_ref().is_some_and(|(l, _)| !l.is_empty())
            {
                self.send_demands();
                last_demand = Instant::now();
            }
            if last_sync.elapsed() >= SYNC_EVERY
                && self.journal.as_ref().is_some_and(Journal::dirty)
            {
                self.sync();
                last_sync = Instant::now();
            }
            let due = match &self.outstanding {
                Some(o) => o.sent.elapsed() >= RESEND_AFTER,
                None => !self.pending.is_empty() && last_report.elapsed() >= REPORT_EVERY,
            };
            if due {
                // Only what is journaled is reported: under steady load
                // something always waits for the next flush, so flush now.
                if unflushed_since.take().is_some() {
                    self.write_out(false);
                }
                self.report();
                last_report = Instant::now();
            }
        }
    }

    /// Writes what arrived to the journal (and syncs it when `sync`).
    fn write_out(&mut self, sync: bool) {
        if let Some(j) = self.journal.as_mut() {
            if let Err(e) = j.flush() {
                tracing::error!(error = %e, "writing the usage journal failed; usage is kept in memory");
            }
            if sync {
                self.sync();
            }
        }
        self.metrics
            .usage_backlog
            .set(i64::try_from(self.pending.len()).unwrap_or(i64::MAX));
    }

    fn sync(&mut self) {
        if let Some(j) = self.journal.as_mut()
            && let Err(e) = j.sync()
        {
            tracing::error!(error = %e, "syncing the usage journal failed");
        }
    }

    /// Sends the next report, if anything is waiting.
    fn report(&mut self) {
        let Some((report, to)) = batch(
            &self.state.journal_id,
            self.state.counted_through,
            &self.pending,
        ) else {
            return;
        };
        match self.reports.try_send(report) {
            Ok(()) => self.metrics.usage_report_sent(),
            // The stream is down or behind; resent when due.
            Err(_) => {
                tracing::debug!("usage report not queued: the config stream is not taking them")
            }
        }
        let full = self.pending.back().is_some_and(|(last, _)| *last > to);
        self.outstanding = Some(Outstanding {
            to,
            sent: Instant::now(),
            full,
        });
    }

    /// The control plane counted everything up to `ack.applied_through`.
    fn counted(&mut self, ack: UsageAck) {
        // Raise the reported totals before lowering what is local, so no
        // instant counts the batch zero times.
        self.ledger.reported(&ack.totals);
        let through = ack.applied_through;
        let mut confirmed = 0;
        while self.pending.front().is_some_and(|(n, _)| *n <= through) {
            let Some((_, e)) = self.pending.pop_front() else {
                break;
            };
            confirmed += 1;
            let scopes = [
                (Scope::Key, &e.key_id),
                (Scope::Team, &e.team_id),
                (Scope::Organization, &e.organization_id),
            ];
            for (scope, id) in scopes {
                if !id.is_empty() {
                    let credits = if scope == Scope::Team {
                        e.credits_used
                    } else {
                        0
                    };
                    self.ledger.confirmed(scope, id, e.at_s, e.spend, credits);
                }
            }
        }
        if through > self.state.counted_through {
            self.state.counted_through = through;
            if let Some(j) = self.journal.as_mut() {
                j.counted_through(through);
            }
        }
        let took = self.outstanding.take().map(|o| {
            if through < o.to {
                tracing::debug!(
                    through,
                    sent_to = o.to,
                    "the control plane had counted part of a report: reporting from there"
                );
            }
            o.sent.elapsed()
        });
        tracing::debug!(through, confirmed, revision = ack.revision, "usage counted");
        self.metrics.usage_counted(confirmed, took);
        if let Some(j) = self.journal.as_mut()
            && j.bytes() > COMPACT_BYTES
        {
            self.state.pending = self.pending.iter().cloned().collect();
            if let Err(e) = j.compact(&self.state) {
                tracing::error!(error = %e, "compacting the usage journal failed");
            }
        }
        self.write_out(false);
    }

    /// Shutting down: journal and sync everything, and report until all is
    /// counted or `within` has passed.
    fn drain(&mut self, events: &Receiver<Event>, within: Duration, next: &mut u64) -> usize {
        let deadline = Instant::now() + within;
        loop {
            // Whatever is still queued is journaled first.
            while let Ok(event) = events.try_recv() {
                match event {
                    Event::Used(entry) => {
                        *next += 1;
                        if let Some(j) = self.journal.as_mut() {
                            j.append(*next, entry.clone());
                        }
                        self.pending.push_back((*next, entry));
                    }
                    Event::Counted(ack) if ack.journal_id == self.state.journal_id => {
                        self.counted(ack);
                    }
                    Event::Counted(_) | Event::Drain(..) => {}
                }
            }
            self.write_out(true);
            if self.pending.is_empty() || Instant::now() >= deadline {
                return self.pending.len();
            }
            if self
                .outstanding
                .as_ref()
                .is_none_or(|o| o.sent.elapsed() >= RESEND_AFTER)
            {
                self.report();
            }
            match events.recv_timeout(Duration::from_millis(20).min(deadline - Instant::now())) {
                Ok(Event::Counted(ack)) if ack.journal_id == self.state.journal_id => {
                    self.counted(ack);
                }
                Ok(Event::Used(entry)) => {
                    *next += 1;
                    if let Some(j) = self.journal.as_mut() {
                        j.append(*next, entry.clone());
                    }
                    self.pending.push_back((*next, entry));
                }
                _ => {}
            }
        }
    }
}

/// The report of what follows `counted_through` in `pending`, and its last
/// record; `None` when nothing is waiting.
pub fn batch(
    journal_id: &str,
    counted_through: u64,
    pending: &VecDeque<(u64, UsageEntry)>,
) -> Option<(UsageReport, u64)> {
    type Sum = (String, String, String, i64);
    let mut sums: HashMap<Sum, UsageEntry> = HashMap::new();
    let mut order: Vec<Sum> = Vec::new();
    let mut scopes: HashSet<(u8, &str)> = HashSet::new();
    let mut to = None;
    for (number, e) in pending.iter().filter(|(n, _)| *n > counted_through) {
        let named = [
            (0u8, e.key_id.as_str()),
            (1, e.team_id.as_str()),
            (2, e.organization_id.as_str()),
            (3, e.model_group.as_str()),
        ];
        let adding: Vec<(u8, &str)> = named
            .iter()
            .copied()
            .filter(|(k, id)| !id.is_empty() && !scopes.contains(&(*k, *id)))
            .collect();
        let sum: Sum = (
            e.key_id.clone(),
            e.model_group.clone(),
            e.deployment_id.clone(),
            e.at_s,
        );
        let full = scopes.len() + adding.len() > MAX_SCOPES
            || (!sums.contains_key(&sum) && sums.len() >= MAX_ENTRIES);
        if full && to.is_some() {
            break;
        }
        scopes.extend(adding);
        match sums.get_mut(&sum) {
            Some(s) => {
                s.requests += e.requests;
                s.prompt_tokens += e.prompt_tokens;
                s.completion_tokens += e.completion_tokens;
                s.cache_read_tokens += e.cache_read_tokens;
                s.cache_write_tokens += e.cache_write_tokens;
                s.spend = s.spend.saturating_add(e.spend);
                s.credits_used = s.credits_used.saturating_add(e.credits_used);
            }
            None => {
                order.push(sum.clone());
                sums.insert(sum, e.clone());
            }
        }
        to = Some(*number);
    }
    let to = to?;
    let entries = order.into_iter().filter_map(|k| sums.remove(&k)).collect();
    Some((
        UsageReport {
            journal_id: journal_id.to_owned(),
            from_record: counted_through,
            to_record: to,
            entries,
        },
        to,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(key: &str, team: &str, group: &str, at_s: i64) -> UsageEntry {
        UsageEntry {
            key_id: key.into(),
            team_id: team.into(),
            model_group: group.into(),
            deployment_id: format!("{group}-1"),
            at_s,
            requests: 1,
            prompt_tokens: 10,
            completion_tokens: 5,
            spend: 7,
            credits_used: 1,
            cache_read_tokens: 3,
            cache_write_tokens: 2,
            ..Default::default()
        }
    }

    /// Under steady load something always waits for the next flush; reports
    /// must go out all the same, each covering what was journaled, and an
    /// answer lets the next one go at once.
    #[test]
    fn reports_go_out_under_steady_load_and_answers_confirm_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.journal");
        let (journal, state) = Journal::open(&path, || "j1".into()).unwrap();
        let (reports_tx, mut reports) = mpsc::channel(4);
        let reporter = Reporter::new(
            Some(journal),
            state,
            Arc::default(),
            Arc::new(Metrics::new()),
            reports_tx,
        );
        let (events, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || reporter.run(rx));
        let started = Instant::now();
        let mut sent = 0u64;
        let first = loop {
            events
                .send(Event::Used(used("k1", "t1", "gpt", 100)))
                .unwrap();
            sent += 1;
            std::thread::sleep(Duration::from_millis(2));
            if let Ok(report) = reports.try_recv() {
                break report;
            }
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "no report under load"
            );
        };
        assert_eq!(first.from_record, 0);
        assert!(first.to_record >= 1 && first.to_record <= sent);
        // Everything reported is in the journal already.
        let on_disk = super::super::journal::read(&path).unwrap();
        assert!(on_disk.last_number >= first.to_record);
        events
            .send(Event::Counted(UsageAck {
                journal_id: "j1".into(),
                applied_through: first.to_record,
                revision: 5,
                totals: vec![],
            }))
            .unwrap();
        let (done, drained) = std::sync::mpsc::channel();
        events
            .send(Event::Drain(Duration::from_millis(200), done))
            .unwrap();
        let left = drained.recv().unwrap();
        thread.join().unwrap();
        // The rest stays journaled for after the restart.
        assert_eq!(left.unreported as u64, sent - first.to_record);
        let after = super::super::journal::read(&path).unwrap();
        assert_eq!(after.counted_through, first.to_record);
        assert_eq!(after.pending.len() as u64, sent - first.to_record);
    }

    #[test]
    fn a_report_sums_requests_of_the_same_key_group_and_second() {
        let pending: VecDeque<_> = (1..=10)
            .map(|n| (n, used("k1", "t1", "gpt", 100 + (n as i64 % 2))))
            .collect();
        let (report, to) = batch("j", 0, &pending).unwrap();
        assert_eq!((report.from_record, report.to_record, to), (0, 10, 10));
        assert_eq!(report.entries.len(), 2);
        let total: u64 = report.entries.iter().map(|e| e.requests).sum();
        assert_eq!(total, 10);
        assert_eq!(report.entries.iter().map(|e| e.spend).sum::<i64>(), 70);
        let cache = |f: fn(&UsageEntry) -> u64| report.entries.iter().map(f).sum::<u64>();
        assert_eq!(cache(|e| e.cache_read_tokens), 30);
        assert_eq!(cache(|e| e.cache_write_tokens), 20);
        // What was counted is not reported again.
        let (report, _) = batch("j", 6, &pending).unwrap();
        assert_eq!(report.from_record, 6);
        assert_eq!(report.entries.iter().map(|e| e.requests).sum::<u64>(), 4);
        assert!(batch("j", 10, &pending).is_none());
    }

    #[test]
    fn a_report_stops_before_it_would_name_too_many_scopes() {
        // Each record a new key in the same team and group: 2 shared scopes.
        let pending: VecDeque<_> = (1..=100)
            .map(|n| (n, used(&format!("k{n}"), "t1", "gpt", 100)))
            .collect();
        let (first, to) = batch("j", 0, &pending).unwrap();
        assert_eq!(first.entries.len(), MAX_SCOPES - 2);
        assert_eq!(to, (MAX_SCOPES - 2) as u64);
        let (second, _) = batch("j", to, &pending).unwrap();
        assert_eq!(second.from_record, to);
    }
}
