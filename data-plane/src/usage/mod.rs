//! Usage, budgets and credits on the data plane (DESIGN §7).
//!
//! - [`window`]: budget windows (aligned to the epoch), the control plane's
//!   rule; [`price`]: a request's cost in micro-USD and its worst case.
//! - [`ledger`]: admission against budgets and credits, on atomics: spend
//!   reported by the control plane, own spend not yet in it, reservations.
//! - [`tap`]: the answer's body, watched for the upstream's `usage` (and the
//!   usage chunk Sluice asked for taken out of a stream the client did not
//!   ask it for); when the body ends the request is settled and journaled.
//! - [`limits`]: `rpm_limit`, `tpm_limit`, `max_parallel_requests` against
//!   this data plane's share of each, leased by the control plane.
//! - [`sharded`]: the concurrent map both keep their states in.
//! - [`journal`]: the file every answered request's usage is written to
//!   before it is reported; [`reporter`]: the thread that owns it, reports
//!   batches on the config stream and hands the control plane's answers to
//!   the ledger.
//!
//! [`Metering`] is what the request path holds: `admit` before routing,
//! `tap` on the answer.

pub mod journal;
pub mod ledger;
pub mod limits;
pub mod price;
pub mod reporter;
pub mod sharded;
pub mod tap;
pub mod window;

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_proto::admin::v1::Key;
use sluice_proto::config::v1::{
    LimitDemand, LimitLeases, UsageAck, UsageEntry, UsageReport, UsageTotals,
};
use tokio::sync::mpsc as async_mpsc;

use crate::config::snapshot::{Config, ModelGroup};
use crate::formats::Format;
use crate::metrics::{Metered, Metrics};
use crate::request::parse::Parsed;
use journal::{Journal, JournalError, Replayed};
use ledger::{Budget, CreditAsk, Ledger, Refusal, Reservation, Scope};
use limits::{Exceeded, Held, Kind, Limit, Limiter};
use reporter::{Drained, Event, Reporter};

/// Tokens of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Every prompt token, the cache's included.
    pub prompt: u64,
    pub completion: u64,
    /// Of `prompt`, read from the upstream's prompt cache.
    pub cache_read: u64,
    /// Of `prompt`, written to it.
    pub cache_write: u64,
    /// Images generated, priced apart from tokens.
    pub images: u64,
}

impl From<crate::formats::usage::Usage> for Tokens {
    /// An answer's usage as its upstream counted it.
    fn from(u: crate::formats::usage::Usage) -> Self {
        Tokens {
            prompt: u.prompt_tokens,
            completion: u.completion_tokens,
            cache_read: u.cache_read_tokens,
            cache_write: u.cache_write_tokens,
            images: 0,
        }
    }
}

/// Reports queued for the config stream at most; the reporter resends what
/// is not answered, so a full queue loses nothing.
const REPORT_QUEUE: usize = 4;

/// The request path's handle on metering.
#[derive(Debug)]
pub struct Metering {
    ledger: Arc<Ledger>,
    limiter: Arc<Limiter>,
    events: Sender<Event>,
    metrics: Arc<Metrics>,
}

/// The stream's end of metering: reports and limit demands to send, and
/// where the control plane's answers go.
pub struct UsageLink {
    pub reports: async_mpsc::Receiver<UsageReport>,
    pub demands: async_mpsc::Receiver<LimitDemand>,
    pub metering: Arc<Metering>,
}

impl Metering {
    /// Starts metering: opens (or makes) the journal at `journal` (none:
    /// usage is kept in memory only, and a restart loses what was not yet
    /// reported), replays what it holds into the ledger against `config`,
    /// and starts the usage thread.
    pub fn start(
        journal: Option<&Path>,
        config: Option<&Config>,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<Metering>, UsageLink), JournalError> {
        let new_id = || crate::headers::random_hex(16);
        let (journal, state) = match journal {
            Some(path) => {
                let (j, state) = Journal::open(path, new_id)?;
                if state.truncated > 0 {
                    tracing::warn!(path = %path.display(), bytes = state.truncated, "the usage journal ended in a torn write (the process died mid-write); cut there");
                }
                tracing::info!(path = %path.display(), journal_id = %state.journal_id, unreported = state.pending.len(), "usage journal open");
                (Some(j), state)
            }
            None => (
                None,
                Replayed {
                    journal_id: new_id(),
                    ..Replayed::default()
                },
            ),
        };
        let ledger = Arc::new(Ledger::default());
        let limiter = Arc::new(Limiter::default());
        if let Some(config) = config {
            for (_, e) in &state.pending {
                replay(&ledger, config, e);
            }
        }
        let (reports_tx, reports) = async_mpsc::channel(REPORT_QUEUE);
        let (demands_tx, demands) = async_mpsc::channel(REPORT_QUEUE);
        let (events, events_rx) = mpsc::channel();
        let reporter = Reporter::new(
            journal,
            state,
            Arc::clone(&ledger),
            Arc::clone(&metrics),
            reports_tx,
        )
        .with_limits(Arc::clone(&limiter), demands_tx);
        std::thread::Builder::new()
            .name("sluice-usage".into())
            .spawn(move || reporter.run(events_rx))
            .map_err(|source| JournalError::Io {
                path: "(usage thread)".into(),
                source,
            })?;
        let metering = Arc::new(Metering {
            ledger,
            limiter,
            events,
            metrics,
        });
        let link = UsageLink {
            reports,
            demands,
            metering: Arc::clone(&metering),
        };
        Ok((metering, link))
    }

    /// Metering with no journal and no control plane to report to (tests,
    /// tools): budgets and credits hold for this process alone.
    pub fn in_memory(metrics: Arc<Metrics>) -> Arc<Metering> {
        match Metering::start(None, None, Arc::clone(&metrics)) {
            Ok((metering, _)) => metering,
            Err(e) => {
                // Only the thread can fail to start: meter without it.
                tracing::error!(error = %e, "the usage thread did not start; usage is not recorded");
                Arc::new(Metering {
                    ledger: Arc::default(),
                    limiter: Arc::default(),
                    events: mpsc::channel().0,
                    metrics,
                })
            }
        }
    }

    /// The control plane counted a report.
    pub fn counted(&self, ack: UsageAck) {
        let _ = self.events.send(Event::Counted(ack));
    }

    /// The control plane's rate-limit shares.
    pub fn leased(&self, leases: &LimitLeases) {
        self.limiter.leased(leases);
        if leases.data_planes > 0 {
            self.metrics
                .fleet_data_planes
                .set(i64::from(leases.data_planes));
        }
    }

    /// Counts a request against every rate limit of its key and team, or
    /// refuses it naming the first it would pass.
    pub fn limit(&self, config: &Config, key: &Key, parsed: &Parsed) -> Result<Held, Exceeded> {
        let key_id = key.key_id.as_str();
        let team = config.team(&key.team_id);
        let team_id = team.map_or("", |t| t.team_id.as_str());
        let set = [
            (
                Scope::Key,
                key_id,
                Kind::Parallel,
                key.max_parallel_requests,
            ),
            (Scope::Key, key_id, Kind::Rpm, key.rpm_limit),
            (Scope::Key, key_id, Kind::Tpm, key.tpm_limit),
            (
                Scope::Team,
                team_id,
                Kind::Rpm,
                team.and_then(|t| t.rpm_limit),
            ),
            (
                Scope::Team,
                team_id,
                Kind::Tpm,
                team.and_then(|t| t.tpm_limit),
            ),
        ];
        // On the stack: most keys have none, the rest one or two.
        let mut list = [Limit {
            scope: Scope::Key,
            id: "",
            kind: Kind::Rpm,
            limit: 0,
        }; 5];
        let mut n = 0;
        for (scope, id, kind, limit) in set {
            if let Some(limit) = limit {
                list[n] = Limit {
                    scope,
                    id,
                    kind,
                    limit,
                };
                n += 1;
            }
        }
        if n == 0 {
            return Ok(Held::default());
        }
        self.limiter
            .admit(&list[..n], parsed.prompt_tokens, now_s())
            .inspect_err(|e| self.metrics.limit_refused(e.kind.label()))
    }

    /// Totals the control plane announced.
    pub fn totals(&self, totals: &UsageTotals) {
        self.ledger.reported(&totals.totals);
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Admits a request for `group` from `key`, reserving its worst case
    /// against every budget that applies and the team's credits.
    pub fn admit(
        &self,
        config: &Config,
        key: &Key,
        group: &ModelGroup,
        parsed: &Parsed,
        format: Format,
    ) -> Result<Reservation, Refusal> {
        let (budgets, n) = budgets(config, key);
        let team = config.team(&key.team_id);
        let deployments = || group.deployments().iter().map(|d| d.deployment());
        let images = format == Format::ImageGenerations;
        let ask = price::Ask {
            prompt: parsed.prompt_tokens,
            max_tokens: if images {
                Some(price::IMAGE_OUTPUT_TOKENS)
            } else {
                parsed.max_tokens
            },
            n: parsed.n,
            images,
        };
        let (spend, per_call) = price::worst_case(deployments(), ask);
        let credits = team.filter(|_| per_call > 0).map(|t| CreditAsk {
            team_id: &t.team_id,
            allocated: t.credits_allocated,
            per_call,
        });
        if n == 0 && credits.is_none() {
            return Ok(Reservation::default());
        }
        self.ledger
            .admit(
                &budgets[..n],
                credits,
                spend,
                self.limiter.data_planes(),
                now_s(),
            )
            .inspect_err(|refusal| {
                self.metrics.quota_refused(match refusal {
                    Refusal::Budget { scope, .. } | Refusal::Pacing { scope, .. } => scope.noun(),
                    Refusal::Credits { .. } => "credits",
                })
            })
    }

    /// Settles a request that was answered: its reservation swapped for
    /// what it cost, its usage journaled for the control plane.
    fn settle(&self, settled: Settled) {
        let Settled {
            reservation,
            who,
            deployment_id,
            prices,
            credits_per_call,
            tokens,
            estimated,
        } = settled;
        let spend = price::cost(prices, tokens);
        let credits = credits_per_call.max(0);
        reservation.settle(spend, credits);
        let metered = Metered {
            prompt_tokens: tokens.prompt,
            completion_tokens: tokens.completion,
            cache_read_tokens: tokens.cache_read,
            cache_write_tokens: tokens.cache_write,
            spend,
            estimated,
        };
        self.metrics
            .metered(&who.team_id, &who.model_group, metered);
        let _ = self.events.send(Event::Used(UsageEntry {
            key_id: who.key_id,
            team_id: who.team_id,
            organization_id: who.organization_id,
            model_group: who.model_group,
            deployment_id,
            at_s: now_s(),
            requests: 1,
            prompt_tokens: tokens.prompt,
            completion_tokens: tokens.completion,
            cache_read_tokens: tokens.cache_read,
            cache_write_tokens: tokens.cache_write,
            spend,
            credits_used: credits,
        }));
    }

    /// Shutting down: journals, syncs and reports what it can within
    /// `within`; what is left is reported after the restart.
    pub fn drain(&self, within: Duration) -> Option<Drained> {
        let (done, drained) = mpsc::channel();
        self.events.send(Event::Drain(within, done)).ok()?;
        drained.recv_timeout(within + Duration::from_secs(1)).ok()
    }
}

/// Who a request's usage is attributed to.
#[derive(Debug, Clone, Default)]
pub struct Who {
    pub key_id: String,
    pub team_id: String,
    pub organization_id: String,
    pub model_group: String,
}

impl Who {
    pub fn new(config: &Config, key: &Key, model_group: &str) -> Who {
        let organization_id = config
            .team(&key.team_id)
            .map(|t| t.organization_id.clone())
            .unwrap_or_default();
        Who {
            key_id: key.key_id.clone(),
            team_id: key.team_id.clone(),
            organization_id,
            model_group: model_group.to_owned(),
        }
    }
}

/// A request's end, for [`Metering::settle`].
struct Settled {
    reservation: Reservation,
    who: Who,
    deployment_id: String,
    prices: price::Prices,
    credits_per_call: i64,
    tokens: Tokens,
    estimated: bool,
}

/// The budgets that apply to `key`'s requests: its own, its team's, its
/// team's organization's; only those with a `max_budget`.
fn budgets<'c>(config: &'c Config, key: &'c Key) -> ([Budget<'c>; 3], usize) {
    let none = Budget {
        scope: Scope::Key,
        id: "",
        max_budget: None,
        budget_duration: "",
    };
    let mut out = [none; 3];
    let mut n = 0;
    let mut push = |b: Budget<'c>| {
        if b.max_budget.is_some() {
            out[n] = b;
            n += 1;
        }
    };
    push(Budget {
        scope: Scope::Key,
        id: &key.key_id,
        max_budget: key.max_budget,
        budget_duration: &key.budget_duration,
    });
    if let Some(team) = config.team(&key.team_id) {
        push(Budget {
            scope: Scope::Team,
            id: &team.team_id,
            max_budget: team.max_budget,
            budget_duration: &team.budget_duration,
        });
        if let Some(org) = config.organization(&team.organization_id) {
            push(Budget {
                scope: Scope::Organization,
                id: &org.organization_id,
                max_budget: org.max_budget,
                budget_duration: &org.budget_duration,
            });
        }
    }
    (out, n)
}

/// A record journaled before a restart and not yet counted: local spend
/// again, for the scopes the config still knows.
fn replay(ledger: &Ledger, config: &Config, e: &UsageEntry) {
    let Some(key) = hex_digest(&e.key_id).and_then(|d| config.key_by_digest(&d)) else {
        return;
    };
    let (budgets, n) = budgets(config, &key);
    ledger.replayed(&budgets[..n], e.at_s, e.spend, e.credits_used);
    if e.credits_used > 0 && !budgets[..n].iter().any(|b| b.scope == Scope::Team) {
        ledger.replayed(
            &[Budget {
                scope: Scope::Team,
                id: &e.team_id,
                max_budget: None,
                budget_duration: "",
            }],
            e.at_s,
            0,
            e.credits_used,
        );
    }
}

fn hex_digest(id: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(id).ok()?;
    bytes.try_into().ok()
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
