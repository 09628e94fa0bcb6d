//! `UsageService`: what the data planes metered, as counted from their
//! reports (`crate::usage`). Reads only: the totals document of a scope for
//! its current budget window, or its day documents for a range of UTC days.

use std::collections::BTreeMap;

use prost::Message;
use sluice_proto::admin::v1::get_usage_request::Scope as RequestScope;
use sluice_proto::admin::v1::usage_service_server::UsageService;
use sluice_proto::admin::v1::{
    DayUsage, GetUsageRequest, GetUsageResponse, Key, ModelGroupUsage, Organization,
    StoredUsageDay, StoredUsageTotals, Team, UsageCounters,
};
use tonic::{Request, Response, Status};

use super::Admin;
use crate::error::{AdminError, AdminResult};
use crate::usage::ledger::{current_window, sum};
use crate::usage::paths::{Scope, ScopeKind, days_prefix, totals_key};
use crate::usage::window::{day_from_days, parse_day};
use crate::validate;

/// The longest day range one GetUsage answers.
pub const MAX_DAYS: i64 = 366;

/// What a scope's configuration says about its budget.
struct Budget {
    duration: String,
    max_budget: Option<i64>,
}

/// Unix seconds now.
pub fn now_s() -> i64 {
    crate::distribution::cooldowns::now_ms().div_euclid(1000)
}

/// The inclusive day range asked for, as days since the epoch.
fn day_range(start: &str, end: &str) -> AdminResult<Option<(i64, i64)>> {
    let parse = |field: &str, day: &str| {
        parse_day(day).ok_or_else(|| {
            AdminError::invalid(
                field,
                format!("{day:?} is not a UTC day written YYYY-MM-DD"),
            )
        })
    };
    let (start, end) = match (start.is_empty(), end.is_empty()) {
        (true, true) => return Ok(None),
        (false, true) => {
            let d = parse("start_day", start)?;
            (d, d)
        }
        (true, false) => {
            let d = parse("end_day", end)?;
            (d, d)
        }
        (false, false) => (parse("start_day", start)?, parse("end_day", end)?),
    };
    if start > end {
        return Err(AdminError::invalid(
            "end_day",
            format!(
                "must not be before start_day ({} > {})",
                day_from_days(start),
                day_from_days(end)
            ),
        ));
    }
    if end - start + 1 > MAX_DAYS {
        return Err(AdminError::invalid(
            "end_day",
            format!(
                "the range covers {} days; at most {MAX_DAYS} per call",
                end - start + 1
            ),
        ));
    }
    Ok(Some((start, end)))
}

fn breakdown(map: &BTreeMap<String, UsageCounters>) -> Vec<ModelGroupUsage> {
    map.iter()
        .map(|(group, usage)| ModelGroupUsage {
            model_group: group.clone(),
            usage: Some(*usage),
        })
        .collect()
}

impl Admin {
    /// The scope's budget from its configuration; NOT_FOUND for a key, team
    /// or organization that does not exist.
    async fn budget_of(&self, scope: &Scope) -> AdminResult<Budget> {
        Ok(match scope.kind {
            ScopeKind::Key => {
                let k = self.catalog.require::<Key>(&scope.id).await?.value;
                Budget {
                    duration: k.budget_duration,
                    max_budget: k.max_budget,
                }
            }
            ScopeKind::Team => {
                let t = self.catalog.require::<Team>(&scope.id).await?.value;
                Budget {
                    duration: t.budget_duration,
                    max_budget: t.max_budget,
                }
            }
            ScopeKind::Organization => {
                let o = self.catalog.require::<Organization>(&scope.id).await?.value;
                Budget {
                    duration: o.budget_duration,
                    max_budget: o.max_budget,
                }
            }
            ScopeKind::ModelGroup => Budget {
                duration: String::new(),
                max_budget: None,
            },
        })
    }

    /// A scope's stored totals; default (zeros) when nothing was counted.
    pub(crate) async fn stored_totals(&self, scope: &Scope) -> AdminResult<StoredUsageTotals> {
        let key = totals_key(scope);
        match self.catalog.store().get(&key).await? {
            None => Ok(StoredUsageTotals::default()),
            Some(kv) => StoredUsageTotals::decode(kv.value.as_slice())
                .map_err(|e| AdminError::Internal(format!("{key} is stored corrupt: {e}"))),
        }
    }

    /// The spend of a scope's current budget window (0 once it is over).
    pub(crate) async fn window_spend(
        &self,
        scope: &Scope,
        budget_duration: &str,
    ) -> AdminResult<i64> {
        let doc = self.stored_totals(scope).await?;
        let (_, current) = current_window(&doc, budget_duration, now_s());
        Ok(current
            .and_then(|d| d.window.as_ref())
            .map_or(0, |w| w.spend))
    }
}

#[tonic::async_trait]
impl UsageService for Admin {
    async fn get_usage(
        &self,
        request: Request<GetUsageRequest>,
    ) -> Result<Response<GetUsageResponse>, Status> {
        let req = request.into_inner();
        let (field, scope) = match req.scope {
            None => {
                return Err(AdminError::invalid(
                    "scope",
                    "name exactly one of key_id, team_id, organization_id, model_group",
                )
                .into());
            }
            Some(RequestScope::KeyId(id)) => ("key_id", Scope::new(ScopeKind::Key, id)),
            Some(RequestScope::TeamId(id)) => ("team_id", Scope::new(ScopeKind::Team, id)),
            Some(RequestScope::OrganizationId(id)) => {
                ("organization_id", Scope::new(ScopeKind::Organization, id))
            }
            Some(RequestScope::ModelGroup(id)) => {
                ("model_group", Scope::new(ScopeKind::ModelGroup, id))
            }
        };
        if scope.id.is_empty() {
            return Err(AdminError::invalid(field, "must not be empty").into());
        }
        validate::text(field, &scope.id)?;
        let range = day_range(&req.start_day, &req.end_day)?;
        let budget = self.budget_of(&scope).await?;
        let mut resp = GetUsageResponse {
            max_budget: budget.max_budget,
            ..Default::default()
        };
        match range {
            None => {
                let doc = self.stored_totals(&scope).await?;
                resp.revision = self.catalog.revision().await?;
                let (start, current) = current_window(&doc, &budget.duration, now_s());
                if budget.duration.is_empty() {
                    // No reset: everything so far.
                    resp.usage = Some(doc.lifetime.unwrap_or_default());
                    if doc.budget_duration.is_empty() {
                        resp.by_model_group =
                            breakdown(&doc.window_by_model_group.into_iter().collect());
                    }
                } else if let Some(doc) = current {
                    resp.usage = Some(doc.window.unwrap_or_default());
                    resp.by_model_group =
                        breakdown(&doc.window_by_model_group.clone().into_iter().collect());
                } else {
                    resp.usage = Some(UsageCounters::default());
                }
                resp.window_start = Some(prost_types::Timestamp {
                    seconds: start,
                    nanos: 0,
                });
                resp.budget_duration = budget.duration;
            }
            Some((first, last)) => {
                let (first, last) = (day_from_days(first), day_from_days(last));
                let prefix = days_prefix(&scope);
                let listed = self
                    .catalog
                    .store()
                    .range(&prefix)
                    .await
                    .map_err(AdminError::from)?;
                resp.revision = listed.revision;
                let mut total = UsageCounters::default();
                let mut groups: BTreeMap<String, UsageCounters> = BTreeMap::new();
                for kv in listed.kvs {
                    let Some(day) = kv.key.strip_prefix(&prefix) else {
                        continue;
                    };
                    if day < first.as_str() || day > last.as_str() {
                        continue;
                    }
                    let doc = StoredUsageDay::decode(kv.value.as_slice()).map_err(|e| {
                        AdminError::Internal(format!("{} is stored corrupt: {e}", kv.key))
                    })?;
                    let by_group: BTreeMap<String, UsageCounters> =
                        doc.by_model_group.into_iter().collect();
                    let mut day_total = UsageCounters::default();
                    for (group, c) in &by_group {
                        sum(&mut day_total, c);
                        sum(groups.entry(group.clone()).or_default(), c);
                    }
                    sum(&mut total, &day_total);
                    resp.by_day.push(DayUsage {
                        day: day.to_owned(),
                        usage: Some(day_total),
                        by_model_group: breakdown(&by_group),
                    });
                }
                resp.usage = Some(total);
                resp.by_model_group = breakdown(&groups);
            }
        }
        Ok(Response::new(resp))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use sluice_proto::admin::v1::credit_service_server::CreditService;
    use sluice_proto::admin::v1::team_service_server::TeamService;
    use sluice_proto::admin::v1::{GetBalanceRequest, GetTeamRequest};
    use sluice_proto::config::v1::{UsageEntry, UsageReport};

    use super::*;
    use crate::catalog::{Catalog, put_if};
    use crate::distribution::Distribution;
    use crate::metrics::Metrics;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::{Store, Txn};
    use crate::usage::window::day_of;

    #[tokio::test(flavor = "multi_thread")]
    async fn usage_balance_and_spend_answer_what_was_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let team = Team {
            team_id: "t".into(),
            budget_duration: "1d".into(),
            max_budget: Some(1000),
            credits_allocated: 10,
            ..Default::default()
        };
        let catalog = Catalog::new(store.clone());
        let o = catalog.commit(put_if(Txn::new(), &team, 0)).await.unwrap();
        let distribution = Distribution::start(
            store.clone(),
            "r".into(),
            None,
            false,
            Arc::new(Metrics::new()),
            Default::default(),
            tokio_util::sync::CancellationToken::new(),
        );
        assert!(
            distribution
                .hub
                .wait_for(o.revision, Duration::from_secs(5))
                .await
        );
        let now = now_s();
        let earlier = now - 3 * 86_400;
        let entry = |group: &str, at_s: i64, spend: i64| UsageEntry {
            key_id: "k".into(),
            team_id: "t".into(),
            model_group: group.into(),
            deployment_id: "d".into(),
            at_s,
            requests: 1,
            spend,
            credits_used: 2,
            ..Default::default()
        };
        let report = UsageReport {
            journal_id: "j".into(),
            from_record: 0,
            to_record: 3,
            entries: vec![
                entry("a", earlier, 1),
                entry("a", now, 10),
                entry("openai/*", now, 20),
            ],
        };
        distribution.usage.apply("dp", &report).await.unwrap();
        let admin = Admin::start(catalog, distribution);

        let usage = |scope, start: &str, end: &str| GetUsageRequest {
            scope: Some(scope),
            start_day: start.into(),
            end_day: end.into(),
        };
        let window = admin
            .get_usage(Request::new(usage(
                RequestScope::TeamId("t".into()),
                "",
                "",
            )))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(window.usage.unwrap().spend, 30);
        assert_eq!(window.by_model_group.len(), 2);
        assert_eq!(window.budget_duration, "1d");
        assert_eq!(window.window_start.unwrap().seconds, now - now % 86_400);
        assert_eq!(window.max_budget, Some(1000));

        let days = admin
            .get_usage(Request::new(usage(
                RequestScope::TeamId("t".into()),
                &day_of(earlier),
                &day_of(now),
            )))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(days.usage.unwrap().spend, 31);
        assert_eq!(days.by_day.len(), 2);
        assert_eq!(days.by_day[0].day, day_of(earlier));
        assert_eq!(days.by_day[0].usage.unwrap().spend, 1);
        let a = days.by_model_group.iter().find(|g| g.model_group == "a");
        assert_eq!(a.unwrap().usage.unwrap().spend, 11);
        let only_today = admin
            .get_usage(Request::new(usage(
                RequestScope::TeamId("t".into()),
                &day_of(now),
                "",
            )))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(only_today.usage.unwrap().spend, 30);

        // A model group, with a slash in its name, breaks down by deployment.
        let group = admin
            .get_usage(Request::new(usage(
                RequestScope::ModelGroup("openai/*".into()),
                "",
                "",
            )))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(group.usage.unwrap().spend, 20);
        assert_eq!(group.by_model_group[0].model_group, "d");

        let balance = admin
            .get_balance(Request::new(GetBalanceRequest {
                team_id: "t".into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (
                balance.credits_allocated,
                balance.credits_used,
                balance.credits_remaining
            ),
            (10, 6, 4)
        );
        let got = admin
            .get_team(Request::new(GetTeamRequest {
                team_id: "t".into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.spend, 30);

        let missing = admin
            .get_usage(Request::new(usage(
                RequestScope::TeamId("nope".into()),
                "",
                "",
            )))
            .await
            .unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);
        let missing = admin
            .get_balance(Request::new(GetBalanceRequest {
                team_id: "nope".into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);
        let bad = admin
            .get_usage(Request::new(GetUsageRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn day_ranges_are_checked() {
        assert_eq!(day_range("", "").unwrap(), None);
        let d = parse_day("2026-12-02").unwrap();
        assert_eq!(day_range("2026-12-02", "").unwrap(), Some((d, d)));
        assert_eq!(day_range("", "2026-12-02").unwrap(), Some((d, d)));
        assert_eq!(
            day_range("2026-01-01", "2026-12-31").unwrap(),
            Some((
                parse_day("2026-01-01").unwrap(),
                parse_day("2026-12-31").unwrap()
            ))
        );
        let err = |s: &str, e: &str| day_range(s, e).unwrap_err().to_string();
        assert!(err("2026-13-01", "").starts_with("start_day: \"2026-13-01\" is not a UTC day"));
        assert!(err("2026-12-02", "yesterday").starts_with("end_day: "));
        assert!(err("2026-12-02", "2026-12-01").contains("must not be before start_day"));
        assert!(err("2024-01-01", "2025-01-01").contains("367 days; at most 366"));
        assert!(day_range("2024-01-01", "2024-12-31").is_ok());
    }
}
