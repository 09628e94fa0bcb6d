//! Fan-out deletes finish whatever fails in the middle (issue 21): the
//! delete records its clean-up in the transaction that deletes the parent,
//! and a control plane finishes the record once the store is back, or when
//! it starts, with no further admin call. On a real etcd with the real
//! control-plane binary; what the sweep has done is watched in etcd itself.

use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use futures::StreamExt;
use sluice_tests::admin_client::{Admin, api};
use sluice_tests::control_plane::ControlPlane;
use sluice_tests::etcd::EtcdServer;
use tonic::Code;

const TEAMS: usize = 5000;
const KEYS: usize = 1500;
/// How long a control plane may take to finish a sweep once it can.
const FINISH_WITHIN: Duration = Duration::from_secs(45);
const POLL: Duration = Duration::from_millis(100);

async fn etcd_client(etcd: &EtcdServer) -> Client {
    Client::connect([etcd.endpoint()], None).await.unwrap()
}

/// Waits until `n` events of `kind` happen under `prefix`, as etcd reports
/// them; returns how many it saw (at least `n`).
async fn await_events(mut stream: etcd_client::WatchStream, kind: EventType, n: usize) -> usize {
    let mut seen = 0;
    while seen < n {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("the sweep makes progress")
            .unwrap()
            .expect("the watch stays open");
        seen += message
            .events()
            .iter()
            .filter(|e| e.event_type() == kind)
            .count();
    }
    seen
}

/// Keys under `prefix`, straight from etcd.
async fn count(client: &mut Client, prefix: &str) -> i64 {
    client
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap()
        .count()
}

/// Teams that still show access group `name`, through the admin API (a
/// read; `None` while the control plane cannot answer).
async fn holders(admin: &Admin, name: &str) -> Option<usize> {
    let teams = admin
        .teams
        .clone()
        .list_teams(api::ListTeamsRequest::default())
        .await
        .ok()?
        .into_inner()
        .teams;
    assert_eq!(teams.len(), TEAMS);
    Some(
        teams
            .iter()
            .filter(|t| {
                t.access_groups.iter().any(|g| g == name)
                    || t.models.iter().any(|m| m == name)
                    || t.access_group_uids.contains_key(name)
            })
            .count(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_delete_cut_short_by_an_etcd_crash_finishes_once_etcd_is_back() {
    let mut etcd = EtcdServer::start().await.unwrap();
    let cp = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let admin = Admin::connect(&cp.url()).await.unwrap();
    admin
        .groups
        .clone()
        .create_access_group(api::CreateAccessGroupRequest {
            name: "bulk".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let creates = futures::stream::iter(0..TEAMS).map(|i| {
        let mut teams = admin.teams.clone();
        async move {
            teams
                .create_team(api::CreateTeamRequest {
                    team: Some(api::Team {
                        team_id: format!("team-{i:05}"),
                        access_groups: vec!["bulk".into()],
                        models: if i % 2 == 0 {
                            vec!["bulk".into()]
                        } else {
                            vec![]
                        },
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
        }
    });
    let created: Vec<_> = creates.buffer_unordered(64).collect().await;
    assert!(
        created.iter().all(|r| r.is_ok()),
        "all {TEAMS} teams created"
    );

    let mut client = etcd_client(&etcd).await;
    let sweep = client
        .watch("/sluice/teams/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let mut groups = admin.groups.clone();
    let delete = tokio::spawn(async move {
        groups
            .delete_access_group(api::DeleteAccessGroupRequest {
                name: "bulk".into(),
            })
            .await
    });
    // A fifth of the teams swept: kill etcd in the middle of the sweep.
    let swept = await_events(sweep, EventType::Put, TEAMS / 5).await;
    etcd.stop();
    let answer = delete.await.unwrap();
    let status = answer.expect_err("the delete cannot finish without etcd");
    assert_ne!(status.code(), Code::NotFound, "{status:?}");
    assert!(swept < TEAMS, "etcd went before the sweep ended ({swept})");

    etcd.restart().await.unwrap();
    // No further admin call but reads: the control plane finishes by itself.
    let deadline = Instant::now() + FINISH_WITHIN;
    loop {
        if holders(&admin, "bulk").await == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "teams still hold the deleted group after {FINISH_WITHIN:?}:\n{}",
            cp.log()
        );
        tokio::time::sleep(POLL).await;
    }
    let mut client = etcd_client(&etcd).await;
    while count(&mut client, "/sluice/sweeps/").await != 0 {
        assert!(
            Instant::now() < deadline,
            "the pending sweep is never deleted"
        );
        tokio::time::sleep(POLL).await;
    }
    let gone = admin
        .groups
        .clone()
        .get_access_group(api::GetAccessGroupRequest {
            name: "bulk".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let listed = admin
        .groups
        .clone()
        .list_access_groups(api::ListAccessGroupsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.groups.is_empty(), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_team_delete_cut_short_by_a_control_plane_crash_is_finished_by_the_next_one() {
    let etcd = EtcdServer::start().await.unwrap();
    let mut first = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let admin = Admin::connect(&first.url()).await.unwrap();
    for team_id in ["doomed", "other"] {
        admin
            .teams
            .clone()
            .create_team(api::CreateTeamRequest {
                team: Some(api::Team {
                    team_id: team_id.into(),
                    models: vec!["*".into()],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let generates = futures::stream::iter(0..KEYS).map(|i| {
        let mut keys = admin.keys.clone();
        async move {
            keys.generate_key(api::GenerateKeyRequest {
                key: Some(api::Key {
                    team_id: if i % 10 == 0 { "other" } else { "doomed" }.into(),
                    ..Default::default()
                }),
            })
            .await
        }
    });
    let generated: Vec<_> = generates.buffer_unordered(64).collect().await;
    assert!(generated.iter().all(|r| r.is_ok()), "all {KEYS} keys made");

    let mut client = etcd_client(&etcd).await;
    let sweep = client
        .watch("/sluice/keys/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let mut teams = admin.teams.clone();
    let delete = tokio::spawn(async move {
        teams
            .delete_team(api::DeleteTeamRequest {
                team_id: "doomed".into(),
                ..Default::default()
            })
            .await
    });
    let deleted = await_events(sweep, EventType::Delete, 200).await;
    first.kill();
    assert!(delete.await.unwrap().is_err(), "the control plane died");
    let doomed_keys = KEYS - KEYS / 10;
    assert!(
        deleted < doomed_keys,
        "killed before the sweep ended ({deleted})"
    );
    assert!(count(&mut client, "/sluice/sweeps/teams/doomed").await == 1);

    // Another control plane starts: it finishes the sweep, unasked.
    let second = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let deadline = Instant::now() + FINISH_WITHIN;
    while count(&mut client, "/sluice/sweeps/").await != 0 {
        assert!(
            Instant::now() < deadline,
            "the pending sweep is never finished:\n{}",
            second.log()
        );
        tokio::time::sleep(POLL).await;
    }
    let admin = Admin::connect(&second.url()).await.unwrap();
    let keys = admin
        .keys
        .clone()
        .list_keys(api::ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(keys.len(), KEYS / 10, "only the other team's keys remain");
    assert!(keys.iter().all(|k| k.team_id == "other"));
    // The id is free again, with none of the old keys.
    admin
        .teams
        .clone()
        .create_team(api::CreateTeamRequest {
            team: Some(api::Team {
                team_id: "doomed".into(),
                models: vec!["*".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let keys = admin
        .keys
        .clone()
        .list_keys(api::ListKeysRequest {
            team_id: "doomed".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert!(keys.is_empty());
}
