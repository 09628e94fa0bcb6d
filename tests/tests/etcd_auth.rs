//! The control plane on an etcd with authentication on (`etcdctl auth
//! enable`), as a shared production etcd runs: a `sluice` user whose role may
//! read and write only the `/sluice` prefixes, its password from
//! `SLUICE_ETCD_PASSWORD`. A wrong password stops the control plane at start
//! with a message that says so and does not show the password.

use std::time::Duration;

use etcd_client::{Client, Permission};
use sluice_tests::admin_client::{Admin, api};
use sluice_tests::control_plane::{ControlPlane, MASTER_KEY, binary};
use sluice_tests::data_plane::DataPlane;
use sluice_tests::etcd::EtcdServer;

const PASSWORD: &str = "sluice-etcd-password-5e1f";

/// Turns authentication on, with `root` (required by etcd) and `sluice`.
async fn enable_auth(endpoint: &str) {
    let mut etcd = Client::connect([endpoint], None).await.expect("etcd");
    etcd.role_add("root").await.expect("role root");
    etcd.user_add("root", "root-password", None)
        .await
        .expect("user root");
    etcd.user_grant_role("root", "root")
        .await
        .expect("grant root");
    etcd.role_add("sluice").await.expect("role sluice");
    // `/sluice/` and `/sluice-status/`, and nothing else.
    etcd.role_grant_permission("sluice", Permission::read_write("/sluice").with_prefix())
        .await
        .expect("grant /sluice");
    etcd.user_add("sluice", PASSWORD, None)
        .await
        .expect("user sluice");
    etcd.user_grant_role("sluice", "sluice")
        .await
        .expect("grant sluice");
    etcd.auth_enable().await.expect("auth enable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_control_plane_runs_as_an_etcd_user_limited_to_its_prefix() {
    let etcd = EtcdServer::start().await.expect("etcd starts");
    enable_auth(&etcd.endpoint()).await;

    // Without credentials etcd refuses everything, so the store is not ours.
    let mut anonymous = Client::connect([etcd.endpoint()], None)
        .await
        .expect("etcd");
    assert!(anonymous.get("/sluice/", None).await.is_err());

    let cp = ControlPlane::start_etcd_with_env(
        &etcd.endpoint(),
        &["--etcd-user", "sluice"],
        &[("SLUICE_ETCD_PASSWORD", PASSWORD)],
    )
    .expect("control plane starts as the sluice user");
    let admin = Admin::connect(&cp.url()).await.expect("admin connects");
    let created = admin
        .teams
        .clone()
        .create_team(api::CreateTeamRequest {
            team: Some(api::Team {
                team_id: "ml".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("a transactional write as the etcd user")
        .into_inner();

    // The data plane gets it through the hub's list + watch, which run as
    // the same user; status goes under /sluice-status/.
    let dir = tempfile::tempdir().unwrap();
    let dp = DataPlane::start(&[cp.url()], "dp-auth", dir.path()).unwrap();
    dp.wait_ready(Duration::from_secs(30)).await.expect("ready");
    let reached = admin
        .wait_for_revision(created.revision, Duration::from_secs(30))
        .await
        .expect("the data plane applied the write");
    assert_eq!(reached, 1);
    assert!(
        !cp.log().contains(PASSWORD),
        "the etcd password is in the log"
    );

    // Fleet cooldowns need a lease (granted to any authenticated user) and a
    // put under /sluice-status/ attached to it.
    let sim = sluice_tests::sim_data_plane::SimDataPlane::connect(
        &cp.url(),
        sluice_tests::control_plane::DATA_PLANE_TOKEN,
        "sim-auth",
        Default::default(),
    )
    .await
    .expect("sim connects");
    sim.report_cooldowns(vec![sluice_proto::config::v1::Cooldown {
        deployment_id: "d1".into(),
        remaining_ms: 5_000,
        reason: "rate_limited".into(),
        reporter: String::new(),
    }])
    .await
    .expect("report");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cp
        .metric("sluice_cooldown_writes_total")
        .await
        .unwrap_or(0.0)
        < 1.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no cooldown written as the etcd user: {}",
            cp.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A wrong password: the control plane does not start, and says why.
    let out = std::process::Command::new(binary("sluice-control-plane").unwrap())
        .args(["--etcd", &etcd.endpoint(), "--etcd-user", "sluice"])
        .args(["--listen", "127.0.0.1:0", "--store-timeout-ms", "2000"])
        .env("SLUICE_MASTER_KEY", MASTER_KEY)
        .env("SLUICE_ETCD_PASSWORD", "not-the-password")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a wrong password");
    assert!(
        stderr.to_lowercase().contains("authentication failed"),
        "no reason given: {stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");
}
