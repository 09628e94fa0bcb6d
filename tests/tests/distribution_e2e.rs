//! Config distribution end to end: the real control-plane and data-plane
//! binaries on a real etcd. No fixed sleeps: tests wait for ACKed revisions
//! (WaitForRevision) or poll with a deadline.

use std::time::Duration;

use sluice_control_plane::resources::{encode, key_of};
use sluice_control_plane::store::etcd::{EtcdOptions, EtcdStore};
use sluice_control_plane::store::{Store, Txn};
use sluice_proto::admin::v1::Team;
use sluice_tests::admin_client::{Admin, api};
use sluice_tests::control_plane::ControlPlane;
use sluice_tests::data_plane::DataPlane;
use sluice_tests::etcd::EtcdServer;
use sluice_tests::relay::Relay;
use sluice_tests::sim_data_plane::{expected, objects_of};

const WAIT: Duration = Duration::from_secs(30);

async fn etcd_store(etcd: &EtcdServer) -> EtcdStore {
    EtcdStore::connect(EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn create_team(admin: &Admin, id: &str) -> tonic::Result<i64> {
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
        .map(|r| r.into_inner().revision)
}

/// Waits until `expected_planes` data planes are connected and every one
/// has applied `revision`. Asked again while fewer are connected: a data
/// plane started just before may not have opened its stream yet, and
/// WaitForRevision counts only connected ones.
async fn wait_all(admin: &Admin, revision: i64, expected_planes: u32) {
    let mut client = sluice_proto::admin::v1::data_plane_service_client::DataPlaneServiceClient::with_interceptor(
        admin.channel.clone(),
        sluice_tests::admin_client::Auth,
    );
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let resp = client
            .wait_for_revision(api::WaitForRevisionRequest {
                revision,
                timeout: Some(prost_types_duration(WAIT)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if resp.data_planes < expected_planes && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert!(
            resp.reached,
            "not every data plane applied {revision}: {:?}",
            resp.pending
        );
        assert_eq!(resp.data_planes, expected_planes);
        return;
    }
}

fn prost_types_duration(d: Duration) -> sluice_proto::prost_types::Duration {
    sluice_proto::prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: 0,
    }
}

async fn assert_matches_etcd(dp: &DataPlane, store: &EtcdStore) {
    let (want, _) = expected(store).await;
    let got = objects_of(&dp.config().await.unwrap());
    assert_eq!(
        got, want,
        "the data plane's applied config differs from etcd"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_data_planes_apply_every_write_and_match_etcd() {
    let etcd = EtcdServer::start().await.unwrap();
    let cp = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let admin = Admin::connect(&cp.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let planes: Vec<DataPlane> = (0..3)
        .map(|i| DataPlane::start(&[cp.url()], &format!("dp-{i}"), dir.path()).unwrap())
        .collect();
    for dp in &planes {
        dp.wait_ready(WAIT).await.unwrap();
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
    let revision = create_team(&admin, "support").await.unwrap();
    wait_all(&admin, revision, 3).await;
    let store = etcd_store(&etcd).await;
    for dp in &planes {
        assert_matches_etcd(dp, &store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_data_plane_resumes_with_deltas_only() {
    let etcd = EtcdServer::start().await.unwrap();
    let cp = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let admin = Admin::connect(&cp.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut dp = DataPlane::start(&[cp.url()], "resumer", dir.path()).unwrap();
    let first = create_team(&admin, "t-0").await.unwrap();
    wait_all(&admin, first, 1).await;
    // The cache is written in the background: wait until it exists.
    let deadline = std::time::Instant::now() + WAIT;
    while !dp.cache_path().exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no cache file written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    dp.kill();
    let mut last = 0;
    for i in 1..=50 {
        last = create_team(&admin, &format!("t-{i}")).await.unwrap();
    }
    dp.restart().unwrap();
    dp.wait_for_revision(last, WAIT).await.unwrap();
    assert_eq!(
        dp.metric("sluice_config_snapshots_received_total")
            .await
            .unwrap(),
        0.0,
        "{}",
        dp.log()
    );
    assert!(
        dp.metric("sluice_config_deltas_received_total")
            .await
            .unwrap()
            >= 1.0
    );
    assert_matches_etcd(&dp, &etcd_store(&etcd).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_past_a_data_plane_gets_it_a_fresh_snapshot_and_loses_nothing() {
    let etcd = EtcdServer::start().await.unwrap();
    let mut cp = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let admin = Admin::connect(&cp.url()).await.unwrap();
    let store = etcd_store(&etcd).await;
    let dir = tempfile::tempdir().unwrap();
    let live = DataPlane::start(&[cp.url()], "live", dir.path()).unwrap();
    let mut away = DataPlane::start(&[cp.url()], "away", dir.path()).unwrap();
    let r0 = create_team(&admin, "a").await.unwrap();
    wait_all(&admin, r0, 2).await;
    away.kill();
    let mut last = 0;
    for i in 0..20 {
        last = create_team(&admin, &format!("b-{i}")).await.unwrap();
    }
    // Compact while the live stream runs; it must keep getting changes.
    store.compact(last).await.unwrap();
    let after = create_team(&admin, "after-compaction").await.unwrap();
    live.wait_for_revision(after, WAIT).await.unwrap();
    assert_matches_etcd(&live, &store).await;

    // A control plane restarted after the compaction holds no history
    // before it: the returning data plane gets a fresh snapshot.
    cp.kill();
    let cp = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    away.restart_with(&[cp.url()]).unwrap();
    away.wait_for_revision(after, WAIT).await.unwrap();
    assert_eq!(
        away.metric("sluice_config_snapshots_received_total")
            .await
            .unwrap(),
        1.0
    );
    assert_matches_etcd(&away, &store).await;
}

/// A control plane cut off from etcd while others write and etcd compacts
/// past its revision cannot resume its watch: it lists the store again
/// (`sluice_hub_lists_total`), and its data plane ends with exactly what
/// etcd holds, the deletion made meanwhile included.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_control_plane_cut_off_past_a_compaction_lists_again_and_loses_nothing() {
    let etcd = EtcdServer::start().await.unwrap();
    let link = Relay::start(etcd.endpoint().trim_start_matches("http://"))
        .await
        .unwrap();
    let cp = ControlPlane::start_etcd(&link.endpoint()).unwrap();
    let admin = Admin::connect(&cp.url()).await.unwrap();
    let store = etcd_store(&etcd).await;
    let dir = tempfile::tempdir().unwrap();
    let dp = DataPlane::start(&[cp.url()], "dp", dir.path()).unwrap();
    create_team(&admin, "gone").await.unwrap();
    let before = create_team(&admin, "kept").await.unwrap();
    dp.wait_for_revision(before, WAIT).await.unwrap();
    assert_eq!(cp.metric("sluice_hub_lists_total").await.unwrap(), 1.0);

    link.cut();
    let mut txn = Txn::new().delete(key_of::<Team>("gone"));
    for i in 0..5 {
        let team = Team {
            team_id: format!("while-cut-{i}"),
            ..Default::default()
        };
        txn = txn.put(key_of::<Team>(&team.team_id), encode(&team));
    }
    let written = store.txn(txn).await.unwrap().revision;
    store.compact(written).await.unwrap();
    link.restore();

    dp.wait_for_revision(written, WAIT).await.unwrap();
    assert_matches_etcd(&dp, &store).await;
    assert_eq!(cp.metric("sluice_hub_lists_total").await.unwrap(), 2.0);
    let after = create_team(&admin, "after").await.unwrap();
    dp.wait_for_revision(after, WAIT).await.unwrap();
    assert_matches_etcd(&dp, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_etcd_down_data_planes_keep_serving_and_catch_up_after() {
    let mut etcd = EtcdServer::start().await.unwrap();
    let cp = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let admin = Admin::connect(&cp.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let planes: Vec<DataPlane> = (0..2)
        .map(|i| DataPlane::start(&[cp.url()], &format!("dp-{i}"), dir.path()).unwrap())
        .collect();
    let before = create_team(&admin, "before").await.unwrap();
    wait_all(&admin, before, 2).await;
    let applied = planes[0].config().await.unwrap();

    etcd.stop();
    let err = create_team(&admin, "during")
        .await
        .expect_err("etcd is down");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    for dp in &planes {
        assert_eq!(
            dp.readiness().await.unwrap().0,
            200,
            "still ready without etcd"
        );
        assert_eq!(dp.config().await.unwrap(), applied, "config kept");
    }

    etcd.restart().await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let after = loop {
        match create_team(&admin, "after").await {
            Ok(r) => break r,
            Err(e)
                if e.code() == tonic::Code::Unavailable && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    for dp in &planes {
        dp.wait_for_revision(after, WAIT).await.unwrap();
        assert_matches_etcd(dp, &etcd_store(&etcd).await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_plane_moves_to_another_replica_and_misses_nothing() {
    let etcd = EtcdServer::start().await.unwrap();
    let mut cp1 = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let cp2 = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let admin2 = Admin::connect(&cp2.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // cp1 first in its list: it connects there.
    let dp = DataPlane::start(&[cp1.url(), cp2.url()], "mover", dir.path()).unwrap();
    let r = create_team(&admin2, "one").await.unwrap();
    wait_all(&admin2, r, 1).await;
    cp1.kill();
    let mut last = 0;
    for i in 0..10 {
        last = create_team(&admin2, &format!("after-{i}")).await.unwrap();
    }
    wait_all(&admin2, last, 1).await;
    assert_matches_etcd(&dp, &etcd_store(&etcd).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cold_start_without_a_control_plane_serves_from_the_cache_unless_corrupt() {
    let etcd = EtcdServer::start().await.unwrap();
    let mut cp = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let admin = Admin::connect(&cp.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut dp = DataPlane::start(&[cp.url()], "cold", dir.path()).unwrap();
    let r = create_team(&admin, "cached").await.unwrap();
    wait_all(&admin, r, 1).await;
    let applied = dp.config().await.unwrap();
    dp.wait_for_cache(r, WAIT).await.unwrap();
    dp.kill();
    cp.kill();

    dp.restart().unwrap();
    dp.wait_ready(WAIT).await.unwrap();
    assert_eq!(dp.config().await.unwrap().revision, applied.revision);

    // Flip a byte in the payload: the cache must be refused, never served.
    dp.kill();
    let mut bytes = std::fs::read(dp.cache_path()).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(dp.cache_path(), &bytes).unwrap();
    dp.restart().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let (status, body) = loop {
        let answer = dp.readiness().await.unwrap();
        if answer.1.contains("cache") || std::time::Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("cache"), "readiness says why: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_in_etcd_never_reaches_a_data_plane() {
    let etcd = EtcdServer::start().await.unwrap();
    let cp = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let admin = Admin::connect(&cp.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dp = DataPlane::start(&[cp.url()], "dp", dir.path()).unwrap();
    let store = etcd_store(&etcd).await;
    store
        .txn(Txn::new().put("/sluice/teams/evil", b"garbage".to_vec()))
        .await
        .unwrap();
    let r = create_team(&admin, "good").await.unwrap();
    wait_all(&admin, r, 1).await;
    let config = dp.config().await.unwrap();
    assert!(config.teams.iter().any(|t| t.team_id == "good"));
    assert!(!config.teams.iter().any(|t| t.team_id == "evil"));
    assert_eq!(dp.metric("sluice_config_nacks_total").await.unwrap(), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_plane_without_a_valid_token_gets_no_config() {
    let etcd = EtcdServer::start().await.unwrap();
    let cp = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dp = DataPlane::start_with_token(&[cp.url()], "intruder", dir.path(), "sdp-not-a-token")
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !dp.log().to_lowercase().contains("unauthenticated") {
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal logged:\n{}",
            dp.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dp.readiness().await.unwrap().0, 503);
}
