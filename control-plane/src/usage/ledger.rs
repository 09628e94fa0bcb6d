//! The pure part of counting a usage report: which documents it touches,
//! whether it is new, a repeat or an overlap of what is counted, and the
//! fold of its entries into the documents.

use std::collections::{BTreeMap, BTreeSet};

use sluice_proto::admin::v1::{
    StoredJournalMark, StoredUsageDay, StoredUsageTotals, UsageCounters,
};
use sluice_proto::config::v1::{UsageEntry, UsageReport, UsageTotal};

use super::paths::{Scope, ScopeKind};
use super::window::{day_of, window_of};

/// What a report is, against the journal mark of its data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Count it, and move the mark to its `to_record`.
    Apply {
        /// A journal the mark does not name (or no mark yet).
        new_journal: bool,
        /// Records between the mark and the report's `from_record` never
        /// arrived: `Some(applied_through)` of the mark. Counted anyway:
        /// refusing would stop the data plane's reports for good, and what
        /// arrives is better counted than not.
        gap_after: Option<u64>,
    },
    /// Everything in it is counted already (`to_record <= applied_through`):
    /// answer the mark again, count nothing.
    Repeat { applied_through: u64 },
    /// Part of it is counted (`from_record < applied_through < to_record`): a
    /// report cannot be counted in part, so nothing is, and the answer tells
    /// the data plane to report again from `applied_through`.
    Overlap { applied_through: u64 },
}

/// Decides what to do with `report` given its data plane's mark.
pub fn decide(mark: Option<&StoredJournalMark>, report: &UsageReport) -> Decision {
    let Some(mark) = mark.filter(|m| m.journal_id == report.journal_id) else {
        return Decision::Apply {
            new_journal: true,
            gap_after: None,
        };
    };
    let at = mark.applied_through;
    if report.to_record <= at {
        Decision::Repeat {
            applied_through: at,
        }
    } else if report.from_record < at {
        Decision::Overlap {
            applied_through: at,
        }
    } else {
        Decision::Apply {
            new_journal: false,
            gap_after: (report.from_record > at).then_some(at),
        }
    }
}

/// Why a report cannot be counted at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("journal_id is empty")]
    NoJournal,
    #[error("to_record {to} is before from_record {from}")]
    Backwards { from: u64, to: u64 },
    #[error("entry {index} has no key_id")]
    NoKey { index: usize },
    #[error("entry {index} has no model_group")]
    NoModelGroup { index: usize },
}

pub fn check(report: &UsageReport) -> Result<(), Malformed> {
    if report.journal_id.is_empty() {
        return Err(Malformed::NoJournal);
    }
    if report.to_record < report.from_record {
        return Err(Malformed::Backwards {
            from: report.from_record,
            to: report.to_record,
        });
    }
    for (index, e) in report.entries.iter().enumerate() {
        if e.key_id.is_empty() {
            return Err(Malformed::NoKey { index });
        }
        if e.model_group.is_empty() {
            return Err(Malformed::NoModelGroup { index });
        }
    }
    Ok(())
}

/// The scopes an entry counts in, each with the name its breakdown (by
/// model group, or by deployment for the model group itself) files it under.
pub fn scopes_of(entry: &UsageEntry) -> impl Iterator<Item = (Scope, &str)> {
    let by_group = entry.model_group.as_str();
    [
        Some((Scope::new(ScopeKind::Key, &entry.key_id), by_group)),
        (!entry.team_id.is_empty())
            .then(|| (Scope::new(ScopeKind::Team, &entry.team_id), by_group)),
        (!entry.organization_id.is_empty()).then(|| {
            (
                Scope::new(ScopeKind::Organization, &entry.organization_id),
                by_group,
            )
        }),
        Some((
            Scope::new(ScopeKind::ModelGroup, &entry.model_group),
            entry.deployment_id.as_str(),
        )),
    ]
    .into_iter()
    .flatten()
}

/// The documents a report reads and writes: its scopes' totals, and one day
/// document per (scope, UTC day) its entries fall in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub scopes: BTreeSet<Scope>,
    pub days: BTreeSet<(Scope, String)>,
}

impl Touched {
    pub fn of(entries: &[UsageEntry]) -> Self {
        let mut t = Touched::default();
        for e in entries {
            let day = day_of(e.at_s);
            for (scope, _) in scopes_of(e) {
                t.days.insert((scope.clone(), day.clone()));
                t.scopes.insert(scope);
            }
        }
        t
    }

    /// Puts the report's transaction needs: every document, plus the mark.
    pub fn puts(&self) -> usize {
        self.scopes.len() + self.days.len() + 1
    }
}

/// The documents being folded into, as read (absent ones default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Docs {
    pub totals: BTreeMap<Scope, StoredUsageTotals>,
    pub days: BTreeMap<(Scope, String), StoredUsageDay>,
}

fn add(c: &mut UsageCounters, e: &UsageEntry) {
    c.requests = c.requests.saturating_add(e.requests);
    c.prompt_tokens = c.prompt_tokens.saturating_add(e.prompt_tokens);
    c.completion_tokens = c.completion_tokens.saturating_add(e.completion_tokens);
    c.cache_read_tokens = c.cache_read_tokens.saturating_add(e.cache_read_tokens);
    c.cache_write_tokens = c.cache_write_tokens.saturating_add(e.cache_write_tokens);
    c.spend = c.spend.saturating_add(e.spend);
    c.credits_used = c.credits_used.saturating_add(e.credits_used);
}

/// Sums counters (for answers that add days or groups up).
pub fn sum(into: &mut UsageCounters, c: &UsageCounters) {
    into.requests = into.requests.saturating_add(c.requests);
    into.prompt_tokens = into.prompt_tokens.saturating_add(c.prompt_tokens);
    into.completion_tokens = into.completion_tokens.saturating_add(c.completion_tokens);
    into.cache_read_tokens = into.cache_read_tokens.saturating_add(c.cache_read_tokens);
    into.cache_write_tokens = into.cache_write_tokens.saturating_add(c.cache_write_tokens);
    into.spend = into.spend.saturating_add(c.spend);
    into.credits_used = into.credits_used.saturating_add(c.credits_used);
}

/// Counts one entry into a scope's totals, by the window rule of
/// [`super::window::Window`]. `configured` is the scope's budget_duration in
/// the configuration now; `None` when the configuration does not know the
/// scope (a key deleted since), which keeps the document's own.
pub fn count(
    totals: &mut StoredUsageTotals,
    entry: &UsageEntry,
    breakdown: &str,
    configured: Option<&str>,
) {
    add(totals.lifetime.get_or_insert_with(Default::default), entry);
    let duration = configured.unwrap_or(&totals.budget_duration).to_owned();
    let window = window_of(&duration, entry.at_s);
    if duration != totals.budget_duration || window.start_s > totals.window_start_s {
        totals.budget_duration = duration;
        totals.window_start_s = window.start_s;
        totals.window = Some(UsageCounters::default());
        totals.window_by_model_group.clear();
    } else if window.start_s < totals.window_start_s {
        return;
    }
    add(totals.window.get_or_insert_with(Default::default), entry);
    add(
        totals
            .window_by_model_group
            .entry(breakdown.to_owned())
            .or_default(),
        entry,
    );
}

/// Folds every entry into `docs` (which must hold a document, read or
/// default, for everything [`Touched::of`] names). `configured` gives a
/// scope's budget_duration as configured now (see [`count`]).
pub fn fold<'a>(
    entries: &[UsageEntry],
    docs: &mut Docs,
    configured: impl Fn(&Scope) -> Option<&'a str>,
) {
    for e in entries {
        let day = day_of(e.at_s);
        for (scope, breakdown) in scopes_of(e) {
            let duration = configured(&scope);
            count(
                docs.totals.entry(scope.clone()).or_default(),
                e,
                breakdown,
                duration,
            );
            add(
                docs.days
                    .entry((scope, day.clone()))
                    .or_default()
                    .by_model_group
                    .entry(breakdown.to_owned())
                    .or_default(),
                e,
            );
        }
    }
}

/// What data planes admit by: a scope's totals document as a `UsageTotal`.
pub fn total_of(scope: &Scope, doc: &StoredUsageTotals, revision: i64) -> UsageTotal {
    UsageTotal {
        scope: scope.kind.wire() as i32,
        id: scope.id.clone(),
        window_start_s: doc.window_start_s,
        budget_duration: doc.budget_duration.clone(),
        window_spend: doc.window.as_ref().map_or(0, |w| w.spend),
        credits_used: doc.lifetime.as_ref().map_or(0, |l| l.credits_used),
        revision,
    }
}

/// The counters of the window current at `now_s` under the configured
/// `budget_duration`: the document's window when it is that window, else
/// zeros (the window is over, or the duration changed since). Returns the
/// window's start with them.
pub fn current_window<'a>(
    doc: &'a StoredUsageTotals,
    budget_duration: &str,
    now_s: i64,
) -> (i64, Option<&'a StoredUsageTotals>) {
    let window = window_of(budget_duration, now_s);
    let current = doc.budget_duration == budget_duration && doc.window_start_s == window.start_s;
    (window.start_s, current.then_some(doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const T: i64 = 20_000 * DAY + 3600;

    fn entry(key: &str, team: &str, group: &str, at_s: i64, spend: i64) -> UsageEntry {
        UsageEntry {
            key_id: key.into(),
            team_id: team.into(),
            organization_id: String::new(),
            model_group: group.into(),
            deployment_id: format!("{group}-d"),
            at_s,
            requests: 1,
            prompt_tokens: 10,
            completion_tokens: 5,
            spend,
            credits_used: 1,
            cache_read_tokens: 4,
            cache_write_tokens: 2,
        }
    }

    fn report(journal: &str, from: u64, to: u64) -> UsageReport {
        UsageReport {
            journal_id: journal.into(),
            from_record: from,
            to_record: to,
            entries: vec![],
        }
    }

    fn mark(journal: &str, at: u64) -> StoredJournalMark {
        StoredJournalMark {
            journal_id: journal.into(),
            applied_through: at,
        }
    }

    #[test]
    fn decisions_follow_the_mark() {
        let m = mark("j", 10);
        let apply = Decision::Apply {
            new_journal: false,
            gap_after: None,
        };
        assert_eq!(
            decide(None, &report("j", 0, 5)),
            Decision::Apply {
                new_journal: true,
                gap_after: None
            }
        );
        assert_eq!(
            decide(Some(&m), &report("other", 0, 5)),
            Decision::Apply {
                new_journal: true,
                gap_after: None
            }
        );
        assert_eq!(decide(Some(&m), &report("j", 10, 20)), apply);
        for (from, to) in [(5, 10), (0, 3), (10, 10), (9, 10)] {
            assert_eq!(
                decide(Some(&m), &report("j", from, to)),
                Decision::Repeat {
                    applied_through: 10
                },
                "({from}, {to}]"
            );
        }
        assert_eq!(
            decide(Some(&m), &report("j", 5, 15)),
            Decision::Overlap {
                applied_through: 10
            }
        );
        assert_eq!(
            decide(Some(&m), &report("j", 12, 20)),
            Decision::Apply {
                new_journal: false,
                gap_after: Some(10)
            }
        );
    }

    #[test]
    fn malformed_reports_are_refused() {
        assert_eq!(check(&report("", 0, 1)), Err(Malformed::NoJournal));
        assert_eq!(
            check(&report("j", 3, 2)),
            Err(Malformed::Backwards { from: 3, to: 2 })
        );
        let mut r = report("j", 0, 1);
        r.entries.push(entry("", "", "g", T, 1));
        assert_eq!(check(&r), Err(Malformed::NoKey { index: 0 }));
        r.entries[0] = entry("k", "", "", T, 1);
        assert_eq!(check(&r), Err(Malformed::NoModelGroup { index: 0 }));
        r.entries[0] = entry("k", "", "g", T, 1);
        assert_eq!(check(&r), Ok(()));
    }

    #[test]
    fn an_entry_counts_in_its_key_team_organization_and_model_group() {
        let mut e = entry("k", "t", "openai/*", T, 7);
        e.organization_id = "o".into();
        let scopes: Vec<_> = scopes_of(&e).collect();
        assert_eq!(
            scopes,
            vec![
                (Scope::new(ScopeKind::Key, "k"), "openai/*"),
                (Scope::new(ScopeKind::Team, "t"), "openai/*"),
                (Scope::new(ScopeKind::Organization, "o"), "openai/*"),
                (Scope::new(ScopeKind::ModelGroup, "openai/*"), "openai/*-d"),
            ]
        );
        let lone = entry("k", "", "g", T, 1);
        assert_eq!(scopes_of(&lone).count(), 2);
        // Across midnight: two day documents per scope.
        let t = Touched::of(&[entry("k", "t", "g", T, 1), entry("k", "t", "g", T + DAY, 1)]);
        assert_eq!(t.scopes.len(), 3);
        assert_eq!(t.days.len(), 6);
        assert_eq!(t.puts(), 10);
    }

    #[test]
    fn fold_sums_lifetime_window_breakdowns_and_days() {
        let mut docs = Docs::default();
        let entries = [
            entry("k", "t", "a", T, 10),
            entry("k", "t", "b", T + 1, 20),
            entry("k2", "t", "a", T + DAY, 5),
        ];
        fold(&entries, &mut docs, |s| match s.kind {
            ScopeKind::Team => Some("1d"),
            _ => Some(""),
        });
        let team = &docs.totals[&Scope::new(ScopeKind::Team, "t")];
        assert_eq!(team.lifetime.as_ref().unwrap().spend, 35);
        assert_eq!(team.lifetime.as_ref().unwrap().requests, 3);
        // The cache's tokens are counted beside the prompt's.
        let lifetime = team.lifetime.as_ref().unwrap();
        assert_eq!(
            (
                lifetime.prompt_tokens,
                lifetime.cache_read_tokens,
                lifetime.cache_write_tokens
            ),
            (30, 12, 6)
        );
        let mut both = UsageCounters::default();
        sum(&mut both, lifetime);
        sum(&mut both, lifetime);
        assert_eq!((both.cache_read_tokens, both.cache_write_tokens), (24, 12));
        // The third entry is in the next day's window: the window moved.
        assert_eq!(team.window_start_s, T + DAY - 3600);
        assert_eq!(team.window.as_ref().unwrap().spend, 5);
        assert_eq!(team.window_by_model_group.len(), 1);
        assert_eq!(team.budget_duration, "1d");
        let key = &docs.totals[&Scope::new(ScopeKind::Key, "k")];
        assert_eq!(key.window_start_s, 0);
        assert_eq!(key.window.as_ref().unwrap().spend, 30);
        assert_eq!(key.window_by_model_group["a"].spend, 10);
        assert_eq!(key.window_by_model_group["b"].spend, 20);
        let group = &docs.totals[&Scope::new(ScopeKind::ModelGroup, "a")];
        assert_eq!(group.window_by_model_group["a-d"].spend, 15);
        let day = |s: Scope, at| docs.days[&(s, day_of(at))].by_model_group.clone();
        assert_eq!(day(Scope::new(ScopeKind::Team, "t"), T)["b"].spend, 20);
        assert_eq!(day(Scope::new(ScopeKind::Team, "t"), T + DAY)["a"].spend, 5);
        assert_eq!(
            day(Scope::new(ScopeKind::ModelGroup, "a"), T)["a-d"].credits_used,
            1
        );
    }

    #[test]
    fn windows_move_forward_never_back() {
        let mut doc = StoredUsageTotals::default();
        let d = Some("1h");
        count(&mut doc, &entry("k", "", "g", T, 1), "g", d);
        assert_eq!(
            (doc.window_start_s, doc.window.as_ref().unwrap().spend),
            (T, 1)
        );
        // Later in the same window.
        count(&mut doc, &entry("k", "", "g", T + 3599, 2), "g", d);
        assert_eq!(doc.window.as_ref().unwrap().spend, 3);
        // The next window resets it.
        count(&mut doc, &entry("k", "", "g", T + 3600, 4), "g", d);
        assert_eq!(
            (doc.window_start_s, doc.window.as_ref().unwrap().spend),
            (T + 3600, 4)
        );
        // A late entry of the previous window counts in the lifetime only.
        count(&mut doc, &entry("k", "", "g", T + 10, 8), "g", d);
        assert_eq!(doc.window.as_ref().unwrap().spend, 4);
        assert_eq!(doc.lifetime.as_ref().unwrap().spend, 15);
        // A changed duration starts afresh, even in the same instant.
        count(
            &mut doc,
            &entry("k", "", "g", T + 3600, 16),
            "g",
            Some("1d"),
        );
        assert_eq!(doc.budget_duration, "1d");
        assert_eq!(doc.window_start_s, T - 3600);
        assert_eq!(doc.window.as_ref().unwrap().spend, 16);
        // A scope the configuration lost keeps the document's duration.
        count(&mut doc, &entry("k", "", "g", T + 7200, 32), "g", None);
        assert_eq!(doc.budget_duration, "1d");
        assert_eq!(doc.window.as_ref().unwrap().spend, 48);
        assert_eq!(doc.lifetime.as_ref().unwrap().spend, 63);
        assert_eq!(doc.lifetime.as_ref().unwrap().credits_used, 6);
    }

    #[test]
    fn the_current_window_is_zero_once_over() {
        let mut doc = StoredUsageTotals::default();
        count(&mut doc, &entry("k", "", "g", T, 5), "g", Some("1h"));
        let (start, w) = current_window(&doc, "1h", T + 10);
        assert_eq!((start, w.is_some()), (T, true));
        let (start, w) = current_window(&doc, "1h", T + 3600);
        assert_eq!((start, w.is_some()), (T + 3600, false));
        let (_, w) = current_window(&doc, "1d", T);
        assert!(w.is_none(), "the duration changed: not the same window");
        let t = total_of(&Scope::new(ScopeKind::Key, "k"), &doc, 9);
        assert_eq!((t.window_spend, t.credits_used, t.revision), (5, 1, 9));
        assert_eq!(t.scope, sluice_proto::config::v1::UsageScope::Key as i32);
    }
}
