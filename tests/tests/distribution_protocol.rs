//! The control plane's side of config distribution, through the real binary
//! on a real etcd, with simulated data planes speaking the real protocol.

use std::time::Duration;

use serde_json::json;
use sluice_control_plane::store::etcd::{EtcdOptions, EtcdStore};
use sluice_control_plane::store::{Store, Txn};

use sluice_proto::config::v1::Kind;
use sluice_tests::admin_client::{Admin, api};
use sluice_tests::control_plane::{ControlPlane, DATA_PLANE_TOKEN};
use sluice_tests::etcd::EtcdServer;
use sluice_tests::sim_data_plane::{SimDataPlane, SimState, expected};

const WAIT: Duration = Duration::from_secs(20);

async fn etcd_store(etcd: &EtcdServer) -> EtcdStore {
    EtcdStore::connect(EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn team(admin: &Admin, id: &str) -> i64 {
    admin
        .teams
        .clone()
        .create_team(api::CreateTeamRequest {
            team: Some(api::Team {
                team_id: id.into(),
                models: vec!["*".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .revision
}

async fn wait_for_revision(cp: &ControlPlane, revision: i64) -> serde_json::Value {
    sluice_tests::grpcurl::call(
        &cp.addr(),
        "sluice.admin.v1.DataPlaneService/WaitForRevision",
        &json!({"revision": revision, "timeout": "20s"}),
    )
    .unwrap()
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_data_plane_gets_the_config_and_wait_for_revision_sees_it() {
    let etcd = EtcdServer::start().await.unwrap();
    let cp = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let admin = Admin::connect(&cp.url()).await.unwrap();
    let mut planes = Vec::new();
    for i in 0..3 {
        planes.push(
            SimDataPlane::connect(
                &cp.url(),
                DATA_PLANE_TOKEN,
                &format!("dp-{i}"),
                SimState::default(),
            )
            .await
            .unwrap(),
        );
    }
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/config.yaml"
    ))
    .unwrap();
    admin
        .config
        .clone()
        .import_lite_llm_config(api::ImportLiteLlmConfigRequest { yaml })
        .await
        .unwrap();
    let revision = team(&admin, "support").await;

    let waited = wait_for_revision(&cp, revision).await;
    assert_eq!(waited["reached"], true, "{waited}");
    assert_eq!(waited["dataPlanes"], 3, "{waited}");
    let store = etcd_store(&etcd).await;
    let (want, _) = expected(&store).await;
    for dp in &planes {
        let state = dp.state();
        assert!(state.revision >= revision);
        assert_eq!(
            state.objects, want,
            "a data plane's config differs from etcd"
        );
    }
    let listed = sluice_tests::grpcurl::call(
        &cp.addr(),
        "sluice.admin.v1.DataPlaneService/ListDataPlanes",
        &json!({}),
    )
    .unwrap()
    .ok();
    let nodes = listed["dataPlanes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{listed}");
    for n in nodes {
        assert_eq!(n["connected"], true);
        assert!(
            n["appliedRevision"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap()
                >= revision
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resuming_data_plane_gets_only_the_deltas_it_missed() {
    let etcd = EtcdServer::start().await.unwrap();
    let cp = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let admin = Admin::connect(&cp.url()).await.unwrap();
    let first = team(&admin, "t-0").await;
    let mut dp = SimDataPlane::connect(&cp.url(), DATA_PLANE_TOKEN, "resumer", SimState::default())
        .await
        .unwrap();
    dp.wait_for(first, WAIT).await.unwrap();
    let held = dp.state();
    assert_eq!(held.snapshots, 1);
    dp.close().await;

    let mut last = 0;
    for i in 1..=50 {
        last = team(&admin, &format!("t-{i}")).await;
    }
    let mut dp = SimDataPlane::connect(
        &cp.url(),
        DATA_PLANE_TOKEN,
        "resumer",
        SimState {
            snapshots: 0,
            deltas: 0,
            ..held
        },
    )
    .await
    .unwrap();
    dp.wait_for(last, WAIT).await.unwrap();
    let state = dp.state();
    assert_eq!(
        state.snapshots, 0,
        "resume must not resend the whole config"
    );
    assert!(state.deltas >= 1);
    assert_eq!(state.nacks, 0);
    let (want, _) = expected(&etcd_store(&etcd).await).await;
    assert_eq!(state.objects, want);
    assert_eq!(
        state
            .objects
            .keys()
            .filter(|(k, _)| *k == Kind::Team as i32)
            .count(),
        51
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_loses_nothing_and_an_uncovered_data_plane_gets_a_snapshot() {
    let etcd = EtcdServer::start().await.unwrap();
    let cp = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let admin = Admin::connect(&cp.url()).await.unwrap();
    let store = etcd_store(&etcd).await;
    let r0 = team(&admin, "a").await;
    let mut live = SimDataPlane::connect(&cp.url(), DATA_PLANE_TOKEN, "live", SimState::default())
        .await
        .unwrap();
    let mut away = SimDataPlane::connect(&cp.url(), DATA_PLANE_TOKEN, "away", SimState::default())
        .await
        .unwrap();
    away.wait_for(r0, WAIT).await.unwrap();
    let held = away.state();
    away.close().await;

    let mut last = 0;
    for i in 0..20 {
        last = team(&admin, &format!("b-{i}")).await;
    }
    store.compact(last).await.unwrap();
    let after = team(&admin, "after-compaction").await;
    live.wait_for(after, WAIT).await.unwrap();

    // A replica started after the compaction has no history before it.
    let cp2 = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let mut back = SimDataPlane::connect(
        &cp2.url(),
        DATA_PLANE_TOKEN,
        "away",
        SimState {
            snapshots: 0,
            deltas: 0,
            ..held
        },
    )
    .await
    .unwrap();
    back.wait_for(after, WAIT).await.unwrap();
    let (want, _) = expected(&store).await;
    assert_eq!(
        back.state().snapshots,
        1,
        "the uncovered data plane gets a fresh snapshot"
    );
    assert_eq!(back.state().objects, want);
    assert_eq!(
        live.state().objects,
        want,
        "the live stream lost nothing across the compaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_in_etcd_is_reported_and_never_distributed() {
    let etcd = EtcdServer::start().await.unwrap();
    let cp = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let admin = Admin::connect(&cp.url()).await.unwrap();
    let mut dp = SimDataPlane::connect(&cp.url(), DATA_PLANE_TOKEN, "dp", SimState::default())
        .await
        .unwrap();
    let store = etcd_store(&etcd).await;
    // As someone running `etcdctl put /sluice/teams/evil garbage` would.
    store
        .txn(Txn::new().put("/sluice/teams/evil", b"\xff\xfe not protobuf".to_vec()))
        .await
        .unwrap();
    let good = team(&admin, "good").await;
    dp.wait_for(good, WAIT).await.unwrap();
    let state = dp.state();
    assert!(
        state
            .objects
            .contains_key(&(Kind::Team as i32, "good".into()))
    );
    assert!(
        !state
            .objects
            .contains_key(&(Kind::Team as i32, "evil".into()))
    );

    let listed = sluice_tests::grpcurl::call(
        &cp.addr(),
        "sluice.admin.v1.DataPlaneService/ListDataPlanes",
        &json!({}),
    )
    .unwrap()
    .ok();
    let invalid = listed["invalidObjects"].as_array().expect("reported");
    assert_eq!(invalid[0]["key"], "/sluice/teams/evil", "{listed}");
    assert!(
        invalid[0]["reason"]
            .as_str()
            .unwrap()
            .contains("does not decode")
    );
    assert!(cp.log().contains("refusing to distribute"));
    assert_eq!(cp.metric("sluice_invalid_objects").await.unwrap(), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_need_a_valid_data_plane_token() {
    let etcd = EtcdServer::start().await.unwrap();
    let cp = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let err = SimDataPlane::connect(&cp.url(), "sdp-wrong", "dp", SimState::default())
        .await
        .err()
        .expect("refused");
    let status = err.downcast_ref::<tonic::Status>().expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");

    let created = sluice_tests::grpcurl::call(
        &cp.addr(),
        "sluice.admin.v1.DataPlaneService/CreateDataPlaneToken",
        &json!({"name": "edge"}),
    )
    .unwrap()
    .ok();
    let token = created["token"].as_str().unwrap().to_string();
    let token_id = created["info"]["tokenId"].as_str().unwrap().to_string();
    let mut dp = SimDataPlane::connect(&cp.url(), &token, "edge-1", SimState::default())
        .await
        .unwrap();
    dp.wait_for(1, WAIT).await.unwrap();

    sluice_tests::grpcurl::call(
        &cp.addr(),
        "sluice.admin.v1.DataPlaneService/DeleteDataPlaneToken",
        &json!({"token_id": token_id}),
    )
    .unwrap()
    .ok();
    let ended = dp.ended(WAIT).await.unwrap();
    assert!(
        ended.is_some_and(|e| e.contains("revoked")),
        "the live stream is closed when its token is deleted"
    );
    let err = SimDataPlane::connect(&cp.url(), &token, "edge-1", SimState::default())
        .await
        .err()
        .expect("refused");
    assert_eq!(
        err.downcast_ref::<tonic::Status>().unwrap().code(),
        tonic::Code::Unauthenticated
    );
}
