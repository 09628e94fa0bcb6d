//! etcd over TLS: the store passes the conformance suite over mutual TLS, the
//! control-plane binary serves with the TLS flags, and a client etcd does not
//! accept (or that it does not trust) fails with a clear error within the
//! connect timeout; bad TLS files are reported at once, naming the file.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sluice_control_plane::store::etcd::{EtcdOptions, EtcdStore, EtcdTls};
use sluice_control_plane::store::{Store, StoreError};
use sluice_tests::admin_client::{Admin, api};
use sluice_tests::certs::TestCerts;
use sluice_tests::control_plane::{ControlPlane, binary};
use sluice_tests::etcd::{ClientAuth, EtcdServer};
use sluice_tests::store_conformance::{self, put};
use tokio::time::Instant;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a failed connect may take beyond the connect timeout.
const MARGIN: Duration = Duration::from_secs(2);

fn mutual(certs: &TestCerts) -> EtcdTls {
    EtcdTls {
        ca_file: Some(certs.ca_file()),
        cert_file: Some(certs.client_cert_file()),
        key_file: Some(certs.client_key_file()),
        domain: None,
    }
}

async fn connect(endpoint: String, tls: EtcdTls) -> Result<EtcdStore, StoreError> {
    EtcdStore::connect(EtcdOptions {
        endpoints: vec![endpoint],
        request_timeout: Duration::from_secs(2),
        connect_timeout: CONNECT_TIMEOUT,
        tls: Some(tls),
        ..EtcdOptions::default()
    })
    .await
}

/// Connects, expecting `Unavailable` within the connect timeout; its message.
async fn refused_within_timeout(endpoint: String, tls: EtcdTls) -> String {
    let started = Instant::now();
    let result = tokio::time::timeout(CONNECT_TIMEOUT + MARGIN, connect(endpoint, tls))
        .await
        .unwrap_or_else(|_| panic!("connect hung for {:?}", started.elapsed()));
    let took = started.elapsed();
    assert!(took <= CONNECT_TIMEOUT + MARGIN, "took {took:?}");
    match result {
        Err(StoreError::Unavailable(message)) => message,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// Connects, expecting a configuration error at once; its message.
async fn refused_at_once(endpoint: String, tls: EtcdTls) -> String {
    let started = Instant::now();
    let result = connect(endpoint, tls).await;
    assert!(started.elapsed() < CONNECT_TIMEOUT, "{result:?}");
    match result {
        Err(StoreError::Other(message)) => message,
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn store_over_mutual_tls_conforms() -> anyhow::Result<()> {
    let certs = TestCerts::generate()?;
    let etcd = EtcdServer::start_tls(&certs, ClientAuth::Required).await?;
    assert!(etcd.endpoint().starts_with("https://"));
    let store = connect(etcd.endpoint(), mutual(&certs)).await?;
    store_conformance::run_all(&store).await;
    Ok(())
}

/// One-way TLS needs only the CA; `domain` checks the certificate against a
/// name other than the endpoint's host (here `localhost` for `127.0.0.1`).
#[tokio::test(flavor = "multi_thread")]
async fn server_only_tls_with_a_domain_override() -> anyhow::Result<()> {
    let certs = TestCerts::generate()?;
    let etcd = EtcdServer::start_tls(&certs, ClientAuth::None).await?;
    let store = connect(
        etcd.endpoint(),
        EtcdTls {
            ca_file: Some(certs.ca_file()),
            domain: Some("localhost".to_owned()),
            ..EtcdTls::default()
        },
    )
    .await?;
    let revision = put(&store, "/tls/one-way", b"v").await;
    assert_eq!(
        store.get("/tls/one-way").await?.map(|kv| kv.mod_revision),
        Some(revision)
    );

    // A name the certificate does not have is refused.
    let message = refused_within_timeout(
        etcd.endpoint(),
        EtcdTls {
            ca_file: Some(certs.ca_file()),
            domain: Some("etcd.example".to_owned()),
            ..EtcdTls::default()
        },
    )
    .await;
    assert!(message.contains("certificate"), "{message}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn control_plane_serves_over_mutual_tls() -> anyhow::Result<()> {
    let certs = TestCerts::generate()?;
    let etcd = EtcdServer::start_tls(&certs, ClientAuth::Required).await?;
    let path = |path: PathBuf| path.to_string_lossy().into_owned();
    let cp = ControlPlane::start_etcd_with(
        &etcd.endpoint(),
        [
            "--etcd-ca-file".to_owned(),
            path(certs.ca_file()),
            "--etcd-cert-file".to_owned(),
            path(certs.client_cert_file()),
            "--etcd-key-file".to_owned(),
            path(certs.client_key_file()),
        ],
    )?;
    let admin = Admin::connect(&cp.url()).await?;
    let created = admin
        .teams
        .clone()
        .create_team(api::CreateTeamRequest {
            team: Some(api::Team {
                team_id: "over-tls".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let team = admin
        .teams
        .clone()
        .get_team(api::GetTeamRequest {
            team_id: "over-tls".into(),
        })
        .await?
        .into_inner();
    assert_eq!(team.team_id, "over-tls");

    // It is in the TLS etcd, at the revision the create reported.
    let store = connect(etcd.endpoint(), mutual(&certs)).await?;
    let range = store.range("").await?;
    assert!(
        range.kvs.iter().any(|kv| kv.key.contains("over-tls")),
        "{:?}",
        range.kvs.iter().map(|kv| &kv.key).collect::<Vec<_>>()
    );
    assert!(store.revision().await? >= created.revision);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_without_a_client_certificate_fails_in_time() -> anyhow::Result<()> {
    let certs = TestCerts::generate()?;
    let etcd = EtcdServer::start_tls(&certs, ClientAuth::Required).await?;
    let message = refused_within_timeout(
        etcd.endpoint(),
        EtcdTls {
            ca_file: Some(certs.ca_file()),
            ..EtcdTls::default()
        },
    )
    .await;
    assert!(message.contains(&etcd.endpoint()), "{message}");
    // The cause varies with timing (etcd's BadCertificate alert, a broken
    // pipe, a cancelled call), so only the outcome is asserted: Unavailable
    // within the connect timeout, naming the endpoint.
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_with_another_ca_fails_in_time() -> anyhow::Result<()> {
    let certs = TestCerts::generate()?;
    let other = TestCerts::generate()?;
    let etcd = EtcdServer::start_tls(&certs, ClientAuth::Required).await?;
    let message = refused_within_timeout(
        etcd.endpoint(),
        EtcdTls {
            ca_file: Some(other.ca_file()),
            ..mutual(&certs)
        },
    )
    .await;
    assert!(message.contains("UnknownIssuer"), "{message}");
    Ok(())
}

/// Settings that cannot work are reported before any connection attempt.
#[tokio::test(flavor = "multi_thread")]
async fn bad_tls_settings_are_reported_at_once() -> anyhow::Result<()> {
    let certs = TestCerts::generate()?;
    let other = TestCerts::generate()?;
    let etcd = EtcdServer::start_tls(&certs, ClientAuth::Required).await?;

    // An https:// endpoint without a CA: no trust roots are built in.
    let message = match EtcdStore::connect(EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        connect_timeout: CONNECT_TIMEOUT,
        ..EtcdOptions::default()
    })
    .await
    {
        Err(StoreError::Other(message)) => message,
        other => panic!("expected a configuration error, got {other:?}"),
    };
    assert!(message.contains("--etcd-ca-file"), "{message}");

    let missing = certs.ca_file().with_file_name("missing-key.pem");
    let message = refused_at_once(
        etcd.endpoint(),
        EtcdTls {
            key_file: Some(missing.clone()),
            ..mutual(&certs)
        },
    )
    .await;
    assert!(message.contains(&*missing.to_string_lossy()), "{message}");

    // A certificate file given as the key.
    let message = refused_at_once(
        etcd.endpoint(),
        EtcdTls {
            key_file: Some(certs.client_cert_file()),
            ..mutual(&certs)
        },
    )
    .await;
    assert!(
        message.contains(&*certs.client_cert_file().to_string_lossy()),
        "{message}"
    );

    // A key that belongs to another certificate.
    let message = refused_at_once(
        etcd.endpoint(),
        EtcdTls {
            key_file: Some(other.client_key_file()),
            ..mutual(&certs)
        },
    )
    .await;
    assert!(message.contains("key"), "{message}");

    // TLS settings with a plain endpoint.
    let plain = etcd.endpoint().replacen("https://", "http://", 1);
    let message = refused_at_once(plain.clone(), mutual(&certs)).await;
    assert!(message.contains(&plain), "{message}");
    Ok(())
}

#[test]
fn the_cli_wants_a_client_certificate_with_its_key() -> anyhow::Result<()> {
    let output = Command::new(binary("sluice-control-plane")?)
        .args(["--etcd", "https://127.0.0.1:2379"])
        .args(["--etcd-ca-file", "ca.pem", "--etcd-cert-file", "client.pem"])
        .env("SLUICE_MASTER_KEY", "sk-unused")
        .env_remove("SLUICE_ETCD_KEY_FILE")
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--etcd-key-file"), "{stderr}");
    Ok(())
}
