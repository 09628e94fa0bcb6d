//! TLS between the parts (DESIGN §6): the control plane's gRPC server over
//! TLS, the config stream over mutual TLS, and the data plane's HTTPS server,
//! with throwaway certificates from `openssl`, real etcd and the real
//! binaries. Admin calls (typed client and grpcurl) need the CA and the
//! master key, not a client certificate.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_tests::admin_client::{Admin, api};
use sluice_tests::certs::TestCerts;
use sluice_tests::control_plane::{ControlPlane, MASTER_KEY};
use sluice_tests::data_plane::DataPlane;
use sluice_tests::etcd::EtcdServer;
use sluice_tests::grpcurl;

const WAIT: Duration = Duration::from_secs(30);

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// A client that trusts only the test CA.
fn https_client(certs: &TestCerts) -> reqwest::Client {
    let _ = sluice_tests::http_client();
    let ca = std::fs::read(certs.ca_file()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap()
}

/// Polls `GET url` until it answers 200; the last answer otherwise.
async fn wait_ready(http: &reqwest::Client, url: &str, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let last = match http.get(url).send().await {
            Ok(r) if r.status() == 200 => return Ok(()),
            Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => format!("{e:?}"),
        };
        if Instant::now() > deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_parts_talk_over_tls_and_the_config_stream_requires_a_client_certificate() {
    let certs = TestCerts::generate().expect("openssl makes test certificates");
    let (ca, cert, key) = (
        certs.ca_file(),
        certs.server_cert_file(),
        certs.server_key_file(),
    );
    let etcd = EtcdServer::start().await.expect("etcd starts");
    let cp = ControlPlane::start_etcd_with(
        &etcd.endpoint(),
        [
            "--tls-cert-file",
            path(&cert),
            "--tls-key-file",
            path(&key),
            "--tls-client-ca-file",
            path(&ca),
        ],
    )
    .expect("control plane starts with TLS");
    let cp_url = format!("https://{}", cp.addr());

    // Admin over TLS with the CA and the master key; no client certificate.
    let admin = Admin::connect_tls(&cp_url, &std::fs::read(&ca).unwrap())
        .await
        .expect("admin connects over TLS");
    let created = admin
        .models
        .clone()
        .create_deployment(api::CreateDeploymentRequest {
            deployment: Some(api::Deployment {
                model_name: "gpt-4o-mini".into(),
                provider: "mock".into(),
                model: "gpt-4o-mini".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("CreateDeployment over TLS")
        .into_inner();
    let generated = admin
        .keys
        .clone()
        .generate_key(api::GenerateKeyRequest {
            key: Some(api::Key {
                models: vec!["gpt-4o-mini".into()],
                ..Default::default()
            }),
        })
        .await
        .expect("GenerateKey")
        .into_inner();

    // grpcurl, as operators use it: over TLS with -cacert; plaintext fails.
    if grpcurl::available() {
        let listed = grpcurl::call_over_tls(
            &cp.addr(),
            &ca,
            Some(MASTER_KEY),
            "sluice.admin.v1.ModelService/ListModelGroups",
            &json!({}),
        )
        .expect("grpcurl runs")
        .ok();
        assert!(listed.to_string().contains("gpt-4o-mini"), "{listed}");
        let plaintext = grpcurl::call_with_key(
            &cp.addr(),
            Some(MASTER_KEY),
            "sluice.admin.v1.ModelService/ListModelGroups",
            &json!({}),
        );
        assert!(
            plaintext.is_err() || matches!(plaintext, Ok(grpcurl::Reply::Err { .. })),
            "plaintext gRPC to a TLS control plane must fail"
        );
    }

    // A data plane with the CA and a client certificate: streams over mutual
    // TLS, and serves HTTPS itself.
    let dir = tempfile::tempdir().unwrap();
    let client_cert = certs.client_cert_file();
    let client_key = certs.client_key_file();
    let dp = DataPlane::start_with_args(
        std::slice::from_ref(&cp_url),
        "dp-mtls",
        dir.path(),
        &[
            "--control-plane-ca-file",
            path(&ca),
            "--control-plane-cert-file",
            path(&client_cert),
            "--control-plane-key-file",
            path(&client_key),
            "--tls-cert-file",
            path(&cert),
            "--tls-key-file",
            path(&key),
        ],
    )
    .expect("data plane starts");
    let https = https_client(&certs);
    let base = format!("https://localhost:{}", dp.port());
    wait_ready(&https, &format!("{base}/health/readiness"), WAIT)
        .await
        .unwrap_or_else(|last| panic!("not ready over mutual TLS ({last}):\n{}", dp.log()));
    admin
        .wait_for_revision(created.revision.max(generated.revision), WAIT)
        .await
        .expect("the data plane applied the writes");
    let answer = https
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&generated.key)
        .header("content-type", "application/json")
        .body(
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        )
        .send()
        .await
        .expect("HTTPS answers")
        .text()
        .await
        .expect("a body");
    let answer: Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(answer["object"], "chat.completion", "{answer}");

    // Plain HTTP to the HTTPS port gets no answer.
    let plain = sluice_tests::http_client()
        .get(format!("http://127.0.0.1:{}/health/liveness", dp.port()))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err() || plain.is_ok_and(|r| r.status() != 200),
        "plain HTTP reached the HTTPS server"
    );

    // Without a client certificate, the token alone is not enough: the
    // stream is refused and says why.
    let refused = DataPlane::start_with_args(
        std::slice::from_ref(&cp_url),
        "dp-no-cert",
        dir.path(),
        &["--control-plane-ca-file", path(&ca)],
    )
    .expect("data plane starts");
    let deadline = Instant::now() + WAIT;
    while !refused.log().contains("client certificate") {
        assert!(
            Instant::now() < deadline,
            "no refusal naming the client certificate:\n{}",
            refused.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(refused.readiness().await.unwrap().0, 503);
    assert!(cp.log().contains("no client certificate"), "{}", cp.log());

    // A data plane that does not trust the control plane's CA never
    // connects: another CA's certificate is not accepted.
    let other = TestCerts::generate().unwrap();
    let untrusting = DataPlane::start_with_args(
        &[cp_url],
        "dp-wrong-ca",
        dir.path(),
        &[
            "--control-plane-ca-file",
            path(&other.ca_file()),
            "--control-plane-cert-file",
            path(&other.client_cert_file()),
            "--control-plane-key-file",
            path(&other.client_key_file()),
        ],
    )
    .expect("data plane starts");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        untrusting.readiness().await.unwrap().0,
        503,
        "{}",
        untrusting.log()
    );
    assert!(
        untrusting
            .log()
            .contains("cannot connect to the control plane"),
        "{}",
        untrusting.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_tls_settings_stop_the_binaries_with_a_message_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();

    let cp = std::process::Command::new(
        sluice_tests::control_plane::binary("sluice-control-plane").unwrap(),
    )
    .args([
        "--data-dir",
        path(&dir.path().join("data")),
        "--listen",
        "127.0.0.1:0",
    ])
    .args([
        "--tls-cert-file",
        path(&missing),
        "--tls-key-file",
        path(&not_pem),
    ])
    .env("SLUICE_MASTER_KEY", MASTER_KEY)
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&cp.stderr);
    assert!(!cp.status.success());
    assert!(
        stderr.contains("--tls-cert-file") && stderr.contains("missing.pem"),
        "{stderr}"
    );

    let dp = |args: &[&str]| {
        let out = std::process::Command::new(
            sluice_tests::control_plane::binary("sluice-data-plane").unwrap(),
        )
        .args(["--listen", "127.0.0.1:0", "--node-id", "bad-tls"])
        .args(args)
        .output()
        .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let stderr = dp(&["--control-plane", "https://127.0.0.1:1"]);
    assert!(stderr.contains("--control-plane-ca-file"), "{stderr}");
    let stderr = dp(&[
        "--tls-cert-file",
        path(&not_pem),
        "--tls-key-file",
        path(&not_pem),
    ]);
    assert!(
        stderr.contains("--tls-cert-file") && stderr.contains("no PEM certificate"),
        "{stderr}"
    );
    let stderr = dp(&[
        "--control-plane",
        "https://127.0.0.1:1",
        "--control-plane-ca-file",
        path(&missing),
    ]);
    assert!(
        stderr.contains("--control-plane-ca-file") && stderr.contains("missing.pem"),
        "{stderr}"
    );
}
