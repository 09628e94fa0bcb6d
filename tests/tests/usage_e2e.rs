//! Usage through the control plane (DESIGN §7): two replicas of the real
//! binary on one real etcd, simulated data planes speaking the real protocol.
//! A report is counted once however often it is sent, its totals reach the
//! data planes of the other replica, and the admin API answers from them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_proto::admin::v1::get_usage_request::Scope;
use sluice_proto::admin::v1::{AddCreditsRequest, GetBalanceRequest, GetUsageRequest, Team};
use sluice_proto::config::v1::{UsageEntry, UsageReport, UsageScope};
use sluice_tests::admin_client::Admin;
use sluice_tests::control_plane::{ControlPlane, DATA_PLANE_TOKEN};
use sluice_tests::etcd::EtcdServer;
use sluice_tests::sim_data_plane::{SimDataPlane, SimState};

const WAIT: Duration = Duration::from_secs(10);

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn report(from: u64, to: u64, spend: i64) -> UsageReport {
    UsageReport {
        journal_id: "journal-1".into(),
        from_record: from,
        to_record: to,
        entries: vec![UsageEntry {
            key_id: "ab".repeat(32),
            team_id: "t".into(),
            model_group: "openai/*".into(),
            deployment_id: "gpt-4o".into(),
            at_s: now_s(),
            requests: to - from,
            prompt_tokens: 10,
            completion_tokens: 20,
            spend,
            credits_used: 1,
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_is_counted_once_and_reaches_every_replica() {
    let etcd = EtcdServer::start().await.unwrap();
    let cp1 = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let cp2 = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let admin1 = Admin::connect(&cp1.url()).await.unwrap();
    let admin2 = Admin::connect(&cp2.url()).await.unwrap();
    admin1
        .create_team(Team {
            team_id: "t".into(),
            budget_duration: "1d".into(),
            max_budget: Some(1_000_000),
            models: vec!["*".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let config_revision = admin1
        .credits
        .clone()
        .add_credits(AddCreditsRequest {
            team_id: "t".into(),
            amount: 5,
            reason: "test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .revision;

    let mut a = SimDataPlane::connect(&cp1.url(), DATA_PLANE_TOKEN, "dp-a", SimState::default())
        .await
        .unwrap();
    a.wait_for(config_revision, WAIT).await.unwrap();
    let config_messages = a.state().snapshots + a.state().deltas;
    let mut b = SimDataPlane::connect(&cp2.url(), DATA_PLANE_TOKEN, "dp-b", SimState::default())
        .await
        .unwrap();
    b.wait_for(1, WAIT).await.unwrap();

    let first = report(0, 3, 700);
    let ack = a.report_usage_and_wait(first.clone(), WAIT).await.unwrap();
    assert_eq!(ack.applied_through, 3);
    assert!(ack.revision > 0);
    // Sent again (a lost ack, a reconnect): answered, not counted.
    let again = a.report_usage_and_wait(first, WAIT).await.unwrap();
    assert_eq!((again.applied_through, again.revision), (3, 0));
    // Overlapping what is counted: nothing counted, resend from the mark.
    let overlap = a
        .report_usage_and_wait(report(1, 5, 1), WAIT)
        .await
        .unwrap();
    assert_eq!((overlap.applied_through, overlap.revision), (3, 0));
    let next = a
        .report_usage_and_wait(report(3, 5, 300), WAIT)
        .await
        .unwrap();
    assert_eq!(next.applied_through, 5);

    // The other replica's data plane hears the team's totals.
    let team_total = |s: &SimState| {
        s.usage_totals
            .iter()
            .rev()
            .find(|t| t.scope == UsageScope::Team as i32 && t.id == "t")
            .cloned()
    };
    let state = b
        .wait_for_usage(WAIT, |s| {
            team_total(s).is_some_and(|t| t.window_spend == 1000)
        })
        .await
        .unwrap();
    let total = team_total(&state).unwrap();
    assert_eq!(total.credits_used, 2);
    assert_eq!(total.budget_duration, "1d");
    assert_eq!(total.window_start_s % 86_400, 0);

    // Either replica answers from the store.
    let balance = admin2
        .credits
        .clone()
        .get_balance(GetBalanceRequest {
            team_id: "t".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            balance.credits_allocated,
            balance.credits_used,
            balance.credits_remaining
        ),
        (5, 2, 3)
    );
    let usage = admin2
        .usage
        .clone()
        .get_usage(GetUsageRequest {
            scope: Some(Scope::TeamId("t".into())),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let counters = usage.usage.unwrap();
    assert_eq!((counters.requests, counters.spend), (5, 1000));
    assert_eq!(usage.by_model_group[0].model_group, "openai/*");
    assert_eq!(usage.max_budget, Some(1_000_000));

    // A data plane connecting later gets every total at once.
    let mut c = SimDataPlane::connect(&cp2.url(), DATA_PLANE_TOKEN, "dp-c", SimState::default())
        .await
        .unwrap();
    c.wait_for(1, WAIT).await.unwrap();
    let state = c
        .wait_for_usage(WAIT, |s| team_total(s).is_some())
        .await
        .unwrap();
    assert_eq!(team_total(&state).unwrap().window_spend, 1000);
    assert!(
        state
            .usage_totals
            .iter()
            .any(|t| t.scope == UsageScope::ModelGroup as i32 && t.id == "openai/*")
    );
    // Usage writes published no configuration: no delta, empty or not,
    // since the last admin write.
    let a = a.state();
    assert_eq!(a.snapshots + a.deltas, config_messages, "{:?}", a.kinds);
    assert_eq!(a.revision, config_revision);
}
