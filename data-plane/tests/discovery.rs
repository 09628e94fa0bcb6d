//! The config stream client against a scripted in-process control plane.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_data_plane::backoff::BackoffPolicy;
use sluice_data_plane::config::applied::AppliedConfig;
use sluice_data_plane::config::discovery::{Discovery, DiscoveryOptions};
use sluice_data_plane::config::secrets::Secret;
use sluice_data_plane::metrics::Metrics;
use sluice_proto::admin::v1::Key;
use sluice_proto::config::v1::{ProtocolVersion, Snapshot};
use tonic::Status;

use support::{FakeControlPlane, delta, eventually, snapshot, unused_address};

struct DataPlane {
    applied: Arc<AppliedConfig>,
    metrics: Arc<Metrics>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn options(endpoints: Vec<String>, token: Option<&str>) -> DiscoveryOptions {
    let mut options = DiscoveryOptions::new(endpoints, "dp-1");
    options.labels = HashMap::from([("zone".to_owned(), "eu-1a".to_owned())]);
    options.token = token.map(Secret::new);
    // Short, so retries are quick; still exponential with jitter.
    options.backoff = BackoffPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(80),
    };
    options.connect_timeout = Duration::from_secs(2);
    options
}

fn start(options: DiscoveryOptions) -> DataPlane {
    let metrics = Arc::new(Metrics::new());
    let applied = Arc::new(AppliedConfig::with_env(
        Arc::clone(&metrics),
        HashMap::new(),
    ));
    let discovery = Discovery::new(options).expect("valid options");
    let task = tokio::spawn(discovery.run(Arc::clone(&applied), Arc::clone(&metrics)));
    DataPlane {
        applied,
        metrics,
        task,
    }
}

#[tokio::test]
async fn hello_apply_ack_nack_and_resume_after_the_stream_drops() {
    let mut cp = FakeControlPlane::start().await;
    let dp = start(options(vec![cp.url()], Some("dp-token")));

    let mut conn = cp.next_connection().await;
    assert_eq!(conn.authorization.as_deref(), Some("Bearer dp-token"));
    assert_eq!(conn.hello.node_id, "dp-1");
    assert_eq!(
        conn.hello.labels.get("zone").map(String::as_str),
        Some("eu-1a")
    );
    assert_eq!(conn.hello.held_revision, 0);
    assert_eq!(
        conn.hello.protocol_version,
        ProtocolVersion::ProtocolVersion1 as i32
    );
    assert_eq!(conn.hello.version, env!("CARGO_PKG_VERSION"));

    conn.send_snapshot(snapshot(10, &["sk-a"])).await;
    assert_eq!(conn.expect_ack().await, 10);
    // The ACK is sent after the apply: the config is already served.
    assert_eq!(dp.applied.revision(), 10);
    assert!(
        dp.metrics
            .encode()
            .contains("sluice_config_stream_connected 1")
    );

    conn.send_delta(delta(10, 11, &["sk-b"])).await;
    assert_eq!(conn.expect_ack().await, 11);

    conn.send_delta(delta(5, 12, &["sk-c"])).await;
    let (revision, reason) = conn.expect_nack().await;
    assert_eq!(revision, 12);
    assert!(
        reason.contains("revision 5") && reason.contains("11"),
        "{reason}"
    );

    let mut invalid = snapshot(13, &[]);
    invalid.keys.push(Key {
        key_id: "not-a-digest".into(),
        ..Default::default()
    });
    conn.send_snapshot(invalid).await;
    let (revision, reason) = conn.expect_nack().await;
    assert_eq!(revision, 13);
    assert!(reason.contains("key_id"), "{reason}");
    let config = dp.applied.current().expect("still held");
    assert_eq!(config.revision(), 11);
    assert!(config.key_by_plaintext("sk-b").is_some());

    // The control plane closes the stream: the data plane comes back and
    // says what it holds.
    drop(conn);
    let mut conn = cp.next_connection().await;
    assert_eq!(conn.hello.held_revision, 11);
    conn.send_delta(delta(11, 12, &["sk-c"])).await;
    assert_eq!(conn.expect_ack().await, 12);

    // A replica failing the stream: same.
    conn.fail(Status::unavailable("replica going away")).await;
    let conn = cp.next_connection().await;
    assert_eq!(conn.hello.held_revision, 12);

    let metrics = dp.metrics.encode();
    for line in [
        "sluice_config_revision 12",
        "sluice_config_snapshots_received_total 2",
        "sluice_config_deltas_received_total 3",
        "sluice_config_nacks_total 2",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    drop(conn);
    drop(dp);
    cp.stop().await;
}

#[tokio::test]
async fn unauthenticated_is_retried_with_backoff() {
    let mut cp = FakeControlPlane::start().await;
    cp.refuse_next(3);
    let dp = start(options(vec![cp.url()], Some("wrong-token")));
    let mut conn = cp.next_connection().await;
    assert_eq!(cp.attempts(), 4, "three refusals, then a stream");
    assert_eq!(conn.authorization.as_deref(), Some("Bearer wrong-token"));
    conn.send_snapshot(snapshot(1, &[])).await;
    assert_eq!(conn.expect_ack().await, 1);
    drop(dp);
    cp.stop().await;
}

#[tokio::test]
async fn without_a_token_no_authorization_is_sent() {
    let mut cp = FakeControlPlane::start().await;
    let _dp = start(options(vec![cp.url()], None));
    let conn = cp.next_connection().await;
    assert_eq!(conn.authorization, None);
    cp.stop().await;
}

#[tokio::test]
async fn tries_each_control_plane_and_each_resolved_address() {
    let mut cp = FakeControlPlane::start().await;
    let dead = unused_address().await;
    // `localhost` may resolve to ::1 first, where nothing listens: the
    // client must go on to 127.0.0.1.
    let endpoints = vec![
        format!("http://{dead}"),
        format!("http://localhost:{}", cp.address.port()),
    ];
    let dp = start(options(endpoints, Some("t")));
    let mut conn = cp.next_connection().await;
    conn.send_snapshot(snapshot(3, &[])).await;
    assert_eq!(conn.expect_ack().await, 3);
    drop(dp);
    cp.stop().await;
}

#[tokio::test]
async fn keeps_serving_while_the_control_plane_is_gone_and_resumes() {
    let mut cp = FakeControlPlane::start().await;
    let address = cp.address;
    let dp = start(options(vec![cp.url()], Some("t")));
    let mut conn = cp.next_connection().await;
    conn.send_snapshot(snapshot(4, &["sk-a"])).await;
    assert_eq!(conn.expect_ack().await, 4);
    drop(conn);
    cp.stop().await;

    eventually("the stream to be down", || async {
        dp.metrics
            .encode()
            .contains("sluice_config_stream_connected 0")
            .then_some(())
    })
    .await;
    let config = dp.applied.current().expect("last good config kept");
    assert!(config.key_by_plaintext("sk-a").is_some());

    // A control plane comes back on the same address.
    let mut cp = eventually("the port to be free again", || async {
        FakeControlPlane::try_start_on(address).await.ok()
    })
    .await;
    let mut conn = cp.next_connection().await;
    assert_eq!(conn.hello.held_revision, 4);
    conn.send_snapshot(Snapshot {
        revision: 5,
        ..Default::default()
    })
    .await;
    assert_eq!(conn.expect_ack().await, 5);
    drop(dp);
    cp.stop().await;
}
