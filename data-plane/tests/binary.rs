//! The real `sluice-data-plane` binary: flags, the stream, the snapshot
//! cache across restarts, and SIGTERM.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use hyper::StatusCode;
use sluice_data_plane::config::cache;
use tokio::process::{Child, Command};

use support::{FakeControlPlane, eventually, get, snapshot, unused_address, within};

struct Running {
    child: Child,
    address: SocketAddr,
    log: PathBuf,
}

async fn start(dir: &Path, control_plane: &str, run: &str) -> Running {
    let address = unused_address().await;
    let log = dir.join(format!("{run}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_sluice-data-plane"))
        .args(["--control-plane", control_plane])
        .args(["--listen", &address.to_string()])
        .arg("--snapshot-cache")
        .arg(dir.join("snapshot.pb"))
        .args(["--node-id", "bin-1", "--label", "zone=eu-1a"])
        .env("SLUICE_DATA_PLANE_TOKEN", "dp-token")
        .env_remove("SLUICE_CONTROL_PLANE")
        .env_remove("SLUICE_LISTEN")
        .env_remove("SLUICE_SNAPSHOT_CACHE")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("start the binary");
    let running = Running {
        child,
        address,
        log,
    };
    eventually("the HTTP server to answer", || async {
        support::request(address, "GET", "/health/liveness", None)
            .await
            .ok()
    })
    .await;
    running
}

impl Running {
    async fn readiness(&self) -> (StatusCode, serde_json::Value) {
        let resp = get(self.address, "/health/readiness", None).await;
        (resp.status, resp.json())
    }

    /// SIGTERM, then the exit status.
    async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running").to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill");
        assert!(status.success());
        within("the data plane to exit", self.child.wait())
            .await
            .expect("exit status")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[tokio::test]
async fn streams_caches_restarts_from_the_cache_and_refuses_a_corrupt_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache_path = dir.path().join("snapshot.pb");
    let mut cp = FakeControlPlane::start().await;

    // First run: waits, then serves what the control plane sends.
    let dp = start(dir.path(), &cp.url(), "first").await;
    assert!(
        dp.log().contains(&dp.address.to_string()),
        "the bound address is logged:\n{}",
        dp.log()
    );
    let (status, body) = dp.readiness().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let mut conn = cp.next_connection().await;
    assert_eq!(conn.hello.node_id, "bin-1");
    assert_eq!(
        conn.hello.labels.get("zone").map(String::as_str),
        Some("eu-1a")
    );
    assert_eq!(conn.authorization.as_deref(), Some("Bearer dp-token"));
    conn.send_snapshot(snapshot(7, &["sk-a", "sk-b"])).await;
    assert_eq!(conn.expect_ack().await, 7);
    let (status, body) = dp.readiness().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cached = eventually("the cache to hold revision 7", || async {
        cache::read(&cache_path)
            .ok()
            .flatten()
            .filter(|c| c.snapshot.revision == 7)
    })
    .await;
    assert_eq!(cached.snapshot.keys.len(), 2);
    let exit = dp.terminate().await;
    assert!(exit.success(), "SIGTERM is a clean exit: {exit:?}");
    drop(conn);
    cp.stop().await;

    // Second run, no control plane: serves from the cache at once.
    let nobody = format!("http://{}", unused_address().await);
    let dp = start(dir.path(), &nobody, "second").await;
    let (status, body) = dp.readiness().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revision"], 7);
    let debug = get(dp.address, "/debug/config", Some("dp-token")).await;
    assert_eq!(debug.status, StatusCode::OK);
    assert!(dp.terminate().await.success());

    // Third run, corrupt cache: refused, reported, never served.
    let mut bytes = std::fs::read(&cache_path).expect("cache");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&cache_path, &bytes).expect("corrupt it");
    let dp = start(dir.path(), &nobody, "third").await;
    let (status, body) = dp.readiness().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let reason = body["reason"].as_str().expect("reason");
    assert!(
        reason.contains("snapshot cache") && reason.contains("corrupt"),
        "{reason}"
    );
    let metrics = get(dp.address, "/metrics", None).await.text();
    assert!(
        metrics.contains("sluice_config_cache_load_errors_total 1"),
        "{metrics}"
    );
    assert!(dp.log().contains("snapshot cache refused"), "{}", dp.log());
    assert!(dp.terminate().await.success());
}
