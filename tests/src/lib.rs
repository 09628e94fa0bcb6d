//! Sluice's end-to-end tests and the harness they share. Everything here
//! starts real things on loopback and cleans them up on drop, even when a
//! test panics.
//!
//! - [`etcd`]: a real `etcd` on free loopback ports with a temporary data
//!   directory, which tests can stop, pause or restart; plain or over TLS.
//! - [`certs`]: a throwaway CA with server and client certificates, made
//!   with the `openssl` command, for the TLS tests.
//! - [`control_plane`]: the real `sluice-control-plane` binary on a free port.
//! - [`data_plane`]: the real `sluice-data-plane` binary, its health,
//!   metrics and applied configuration.
//! - [`grpcurl`]: admin calls through the real `grpcurl` and server reflection.
//! - [`admin_client`]: typed tonic clients, for concurrency and volume.
//! - [`gateway`]: all of the above together for the OpenAI API tests, with
//!   the admin writes and HTTP calls they make.
//! - [`mock_upstream`]: an in-process OpenAI-compatible upstream that records
//!   what the data plane forwards and can be slow, fail, or hold a stream.
//! - [`mock_anthropic`]: an in-process Anthropic Messages API that checks
//!   what the real one requires, records requests, and answers scripted
//!   replies and faults, whole or in Anthropic's exact stream sequence.
//! - [`connect_proxy`]: an egress proxy that tunnels HTTPS (`CONNECT`).
//! - [`relay`]: a TCP relay a test can cut, to partition two processes.
//! - [`sim_data_plane`]: a simulated data plane speaking the real
//!   `ConfigDiscovery` protocol (protocol tests, benchmarks with many streams).
//! - [`store_conformance`]: the behaviour every `Store` must show, run against
//!   both the embedded store and real etcd by `tests/store.rs`.
//! - [`training`]: the workload profile-guided release builds of the data
//!   plane are trained on (`sluice-pgo-train`, `scripts/build-release.sh`).

pub mod admin_client;
pub mod certs;
pub mod connect_proxy;
pub mod control_plane;
pub mod data_plane;
pub mod etcd;
pub mod gateway;
pub mod grpcurl;
pub mod mock_anthropic;
pub mod mock_upstream;
pub mod relay;
pub mod sim_data_plane;
pub mod store_conformance;
pub mod training;

/// An HTTP client for tests. The workspace builds reqwest with rustls but no
/// built-in crypto provider (the data plane installs ring, which tonic
/// already builds), so the provider is installed here before any client.
pub fn http_client() -> reqwest::Client {
    // Err only means a provider is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Runs the pytest file `script` (under `tests/python/`) with `env`, and
/// fails with its output unless every test in it passed: one skipped (its
/// environment not given) fails too. The official SDKs' tests go through
/// here.
pub async fn pytest<K, V>(script: &str, env: impl IntoIterator<Item = (K, V)>)
where
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    let path = format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new("python3")
        .args(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", &path])
        .envs(env)
        .output()
        .await
        .expect("python3 runs (scripts/test.sh installs the SDKs and pytest)");
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains(" skipped"),
        "{script} skipped tests (what they need was not given):\n{stdout}"
    );
}
