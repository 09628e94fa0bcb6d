//! The control plane's SIGTERM drain, with data planes connected: the real
//! binaries on a real etcd. A config stream never ends by itself, so the
//! drain must end them (UNAVAILABLE, and the data plane moves to another
//! replica), let in-flight admin calls finish, write the disconnects, and
//! exit 0 within `--shutdown-grace-ms`. No fixed sleeps: every wait is on
//! an event, with a deadline.

use std::time::{Duration, Instant};

use prost::Message;
use sluice_control_plane::distribution::status::STATUS_PREFIX;
use sluice_control_plane::store::Store;
use sluice_control_plane::store::etcd::{EtcdOptions, EtcdStore};
use sluice_proto::admin::v1::DataPlaneStatus;
use sluice_tests::admin_client::{Admin, api};
use sluice_tests::control_plane::ControlPlane;
use sluice_tests::data_plane::DataPlane;
use sluice_tests::etcd::EtcdServer;

/// How long a stop may take with nothing in flight: far under the default
/// 10 s grace, so a drain that waits for streams fails here.
const PROMPT: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(30);
const NODE: &str = "dp-1";

fn replica(etcd: &EtcdServer, id: &str, extra: &[&str]) -> ControlPlane {
    let mut args = vec!["--replica-id", id];
    args.extend_from_slice(extra);
    ControlPlane::start_etcd_with(&etcd.endpoint(), args).unwrap()
}

/// Waits until `admin`'s replica lists [`NODE`] as connected through `via`.
async fn wait_connected_via(admin: &Admin, via: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let listed = admin
            .data_planes
            .clone()
            .list_data_planes(api::ListDataPlanesRequest::default())
            .await
            .map(|r| r.into_inner().data_planes);
        if let Ok(planes) = &listed
            && planes
                .iter()
                .any(|d| d.node_id == NODE && d.connected && d.control_plane_id == via)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{NODE} not connected through {via} after {WAIT:?}: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn assert_ready(dp: &DataPlane) {
    let (code, body) = dp.readiness().await.unwrap();
    assert_eq!(
        code,
        200,
        "the data plane stopped serving: {body}\n{}",
        dp.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_config_streams_and_the_data_plane_moves_to_the_other_replica() {
    let etcd = EtcdServer::start().await.unwrap();
    let mut a = replica(&etcd, "a", &[]);
    let b = replica(&etcd, "b", &[]);
    let dir = tempfile::tempdir().unwrap();
    // The first URL is tried first: the stream opens on `a`.
    let dp = DataPlane::start(&[a.url(), b.url()], NODE, dir.path()).unwrap();
    dp.wait_ready(WAIT).await.unwrap();
    let admin_b = Admin::connect(&b.url()).await.unwrap();
    wait_connected_via(&admin_b, "a").await;

    let (status, took) = a.stop(PROMPT).unwrap();
    assert!(status.success(), "exit {status}:\n{}", a.log());
    assert!(took < PROMPT, "took {took:?}:\n{}", a.log());
    let log = a.log();
    assert!(log.contains("data plane disconnected"), "{log}");
    assert!(!log.contains("cutting"), "nothing was left to cut:\n{log}");
    assert_ready(&dp).await;

    // UNAVAILABLE sends it to `b` at once, and `b` then feeds it.
    wait_connected_via(&admin_b, "b").await;
    assert!(
        dp.log().contains("control plane shutting down"),
        "{}",
        dp.log()
    );
    let revision = admin_b
        .teams
        .clone()
        .create_team(api::CreateTeamRequest {
            team: Some(api::Team {
                team_id: "after-a".into(),
                models: vec!["*".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .revision;
    dp.wait_for_revision(revision, WAIT).await.unwrap();
    assert_ready(&dp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_the_only_replica_records_the_disconnect_and_the_data_plane_serves_on() {
    let etcd = EtcdServer::start().await.unwrap();
    let mut cp = replica(&etcd, "only", &[]);
    let dir = tempfile::tempdir().unwrap();
    let dp = DataPlane::start(&[cp.url()], NODE, dir.path()).unwrap();
    dp.wait_ready(WAIT).await.unwrap();
    wait_connected_via(&Admin::connect(&cp.url()).await.unwrap(), "only").await;

    let (status, took) = cp.stop(PROMPT).unwrap();
    assert!(status.success(), "exit {status}:\n{}", cp.log());
    assert!(took < PROMPT, "took {took:?}:\n{}", cp.log());

    // Written before the exit, not left to go stale.
    let store = EtcdStore::connect(EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        ..Default::default()
    })
    .await
    .unwrap();
    let record = store
        .range(&format!("{STATUS_PREFIX}{NODE}"))
        .await
        .unwrap()
        .kvs
        .into_iter()
        .find(|kv| kv.key == format!("{STATUS_PREFIX}{NODE}"))
        .expect("the data plane's status record");
    let record = DataPlaneStatus::decode(record.value.as_slice()).unwrap();
    assert!(!record.connected, "{record:?}\n{}", cp.log());
    assert_eq!(record.control_plane_id, "only");

    // Nothing to reconnect to: it serves from the config it holds.
    assert_ready(&dp).await;
}

/// `WaitForRevision` on `admin` for a revision no data plane will reach,
/// made sure to be in flight on the server: a second call, sent after it on
/// the same HTTP/2 connection, has been answered (the server reads a
/// connection's streams in order).
async fn wait_for_revision_in_flight(
    admin: &Admin,
    timeout: Duration,
) -> tokio::task::JoinHandle<tonic::Result<api::WaitForRevisionResponse>> {
    let mut client = admin.data_planes.clone();
    let mut call = Box::pin(async move {
        client
            .wait_for_revision(api::WaitForRevisionRequest {
                revision: i64::MAX,
                timeout: Some(sluice_proto::prost_types::Duration {
                    seconds: timeout.as_secs() as i64,
                    nanos: timeout.subsec_nanos() as i32,
                }),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
    });
    let mut after = admin.data_planes.clone();
    let after = after.list_data_planes(api::ListDataPlanesRequest::default());
    tokio::select! {
        // The long call is polled first, so it is on the wire first.
        biased;
        done = &mut call => panic!("WaitForRevision ended at once: {done:?}"),
        listed = after => { listed.unwrap(); }
    }
    tokio::spawn(call)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_admin_call_finish() {
    let etcd = EtcdServer::start().await.unwrap();
    let mut a = replica(&etcd, "a", &[]);
    let b = replica(&etcd, "b", &[]);
    let dir = tempfile::tempdir().unwrap();
    // On `b`, so it stays pending for `a`'s WaitForRevision throughout.
    let dp = DataPlane::start(&[b.url()], NODE, dir.path()).unwrap();
    dp.wait_ready(WAIT).await.unwrap();
    let admin_a = Admin::connect(&a.url()).await.unwrap();
    wait_connected_via(&admin_a, "b").await;

    let call = wait_for_revision_in_flight(&admin_a, Duration::from_secs(2)).await;
    let (status, took) = a.stop(PROMPT).unwrap();
    assert!(status.success(), "exit {status}:\n{}", a.log());
    assert!(took < PROMPT, "took {took:?}:\n{}", a.log());
    let answer = call.await.unwrap().expect("the call ran to its end");
    assert!(!answer.reached);
    assert_eq!(answer.pending.len(), 1, "{answer:?}");
    assert!(!a.log().contains("cutting"), "{}", a.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_is_bounded_by_the_shutdown_grace() {
    let etcd = EtcdServer::start().await.unwrap();
    let mut a = replica(&etcd, "a", &["--shutdown-grace-ms", "500"]);
    let b = replica(&etcd, "b", &[]);
    let dir = tempfile::tempdir().unwrap();
    let dp = DataPlane::start(&[b.url()], NODE, dir.path()).unwrap();
    dp.wait_ready(WAIT).await.unwrap();
    let admin_a = Admin::connect(&a.url()).await.unwrap();
    wait_connected_via(&admin_a, "b").await;

    // Far longer than the grace: it is cut, and the exit says what it cut.
    let call = wait_for_revision_in_flight(&admin_a, Duration::from_secs(60)).await;
    let (status, took) = a.stop(PROMPT).unwrap();
    assert!(status.success(), "exit {status}:\n{}", a.log());
    assert!(took < PROMPT, "took {took:?}:\n{}", a.log());
    let log = a.log();
    assert!(
        log.lines()
            .any(|l| l.contains("cutting the calls still open")
                && l.contains("/sluice.admin.v1.DataPlaneService/WaitForRevision")),
        "{log}"
    );
    assert!(call.await.unwrap().is_err(), "the cut call failed");
}
