//! What the admin API guarantees under concurrency, volume and outages, on
//! a real etcd with the real control-plane binary.

use std::time::{Duration, Instant};

use futures::StreamExt;
use sluice_tests::admin_client::{Admin, api};
use sluice_tests::control_plane::ControlPlane;
use sluice_tests::etcd::EtcdServer;
use tonic::Code;

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_add_models_on_two_control_planes_lose_nothing() {
    let etcd = EtcdServer::start().await.unwrap();
    let cp1 = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let cp2 = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let a1 = Admin::connect(&cp1.url()).await.unwrap();
    let a2 = Admin::connect(&cp2.url()).await.unwrap();
    a1.groups
        .clone()
        .create_access_group(api::CreateAccessGroupRequest {
            name: "shared".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let calls = (0..100).map(|i| {
        let mut client = if i % 2 == 0 {
            a1.groups.clone()
        } else {
            a2.groups.clone()
        };
        async move {
            client
                .add_models(api::AddModelsRequest {
                    name: "shared".into(),
                    models: vec![format!("vendor-{i}/*")],
                })
                .await
                .map(|r| r.into_inner().revision)
        }
    });
    let results = futures::future::join_all(calls).await;
    let mut revisions: Vec<i64> = results
        .into_iter()
        .map(|r| r.expect("every AddModels succeeds"))
        .collect();
    revisions.sort();
    let unique = revisions.windows(2).all(|w| w[0] < w[1]);
    assert!(
        unique,
        "each write commits at its own revision: {revisions:?}"
    );

    let group = a2
        .groups
        .clone()
        .get_access_group(api::GetAccessGroupRequest {
            name: "shared".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let models = group.group.unwrap().models;
    assert_eq!(models.len(), 100, "no lost update");
    for i in 0..100 {
        assert!(
            models.contains(&format!("vendor-{i}/*")),
            "vendor-{i}/* lost"
        );
    }
    assert!(group.revision >= *revisions.last().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_group_held_by_5000_teams_removes_it_everywhere() {
    let etcd = EtcdServer::start().await.unwrap();
    let cp = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let admin = Admin::connect(&cp.url()).await.unwrap();
    admin
        .groups
        .clone()
        .create_access_group(api::CreateAccessGroupRequest {
            name: "bulk".into(),
            models: vec!["vendor/*".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let creates = futures::stream::iter(0..5000).map(|i| {
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
    assert!(created.iter().all(|r| r.is_ok()), "all 5000 teams created");

    let deleted = admin
        .groups
        .clone()
        .delete_access_group(api::DeleteAccessGroupRequest {
            name: "bulk".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.teams_updated, 5000);

    let teams = admin
        .teams
        .clone()
        .list_teams(api::ListTeamsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .teams;
    assert_eq!(teams.len(), 5000);
    for t in &teams {
        assert!(
            !t.access_groups.contains(&"bulk".to_string()),
            "{} still lists bulk",
            t.team_id
        );
        assert!(
            !t.models.contains(&"bulk".to_string()),
            "{} still lists bulk",
            t.team_id
        );
        assert!(!t.access_group_uids.contains_key("bulk"));
    }
    assert!(deleted.revision >= teams.iter().map(|t| t.revision).max().unwrap());

    // A new group with the same name grants nothing to the former holders.
    admin
        .groups
        .clone()
        .create_access_group(api::CreateAccessGroupRequest {
            name: "bulk".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let got = admin
        .groups
        .clone()
        .get_access_group(api::GetAccessGroupRequest {
            name: "bulk".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(got.teams_with_access.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_outage_is_unavailable_and_not_serving_then_recovers() {
    let mut etcd = EtcdServer::start().await.unwrap();
    let cp = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let admin = Admin::connect(&cp.url()).await.unwrap();
    wait_for_health(&admin, SERVING).await;
    let create = |id: &str| api::CreateTeamRequest {
        team: Some(api::Team {
            team_id: id.into(),
            models: vec!["*".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    admin
        .teams
        .clone()
        .create_team(create("before"))
        .await
        .unwrap();

    etcd.stop();
    let started = Instant::now();
    let err = admin
        .teams
        .clone()
        .create_team(create("during"))
        .await
        .expect_err("etcd is down");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // The harness sets a 2 s store deadline; the call must not hang past it by much.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let err = admin
        .teams
        .clone()
        .get_team(api::GetTeamRequest {
            team_id: "before".into(),
        })
        .await
        .expect_err("etcd is down");
    assert_eq!(err.code(), Code::Unavailable);
    wait_for_health(&admin, NOT_SERVING).await;
    // Liveness is the process, not the store: the chart's liveness probe
    // asks for it, so an etcd outage restarts no pods.
    assert_eq!(
        admin
            .health_of(sluice_control_plane::server::LIVENESS_SERVICE)
            .await
            .unwrap(),
        SERVING
    );

    etcd.restart().await.unwrap();
    wait_for_health(&admin, SERVING).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match admin.teams.clone().create_team(create("after")).await {
            Ok(_) => break,
            Err(e) if e.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("write after etcd came back: {e:?}"),
        }
    }
    let team = admin
        .teams
        .clone()
        .get_team(api::GetTeamRequest {
            team_id: "before".into(),
        })
        .await
        .unwrap();
    assert_eq!(team.into_inner().team_id, "before");
}

async fn wait_for_health(admin: &Admin, want: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = admin.health().await.unwrap_or(-1);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed {got}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
