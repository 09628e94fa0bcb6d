//! The HTTP server on a real socket: health, readiness, metrics,
//! `/debug/config`, errors, HTTP/2 without TLS, graceful shutdown.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use sluice_data_plane::config::applied::{AppliedConfig, Outcome, WAITING_FOR_FIRST_CONFIG};
use sluice_data_plane::config::secrets::Secret;
use sluice_data_plane::http::{self, HttpState, PROTOBUF};
use sluice_data_plane::metrics::Metrics;
use sluice_proto::admin::v1::Deployment;
use sluice_proto::config::v1::Snapshot;
use tokio::sync::oneshot;

use support::{get, request, snapshot, within};

const TOKEN: &str = "dp-token";

struct Server {
    address: SocketAddr,
    applied: Arc<AppliedConfig>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start() -> Server {
    let metrics = Arc::new(Metrics::new());
    let env = HashMap::from([("OPENAI_API_KEY".to_owned(), "sk-from-env".to_owned())]);
    let applied = Arc::new(AppliedConfig::with_env(Arc::clone(&metrics), env));
    let (listener, address) = http::bind("127.0.0.1:0").await.expect("bind");
    let state = Arc::new(
        HttpState::new(Arc::clone(&applied), metrics, Some(Secret::new(TOKEN))).expect("state"),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(http::serve(listener, state, async {
        let _ = stopped.await;
    }));
    Server {
        address,
        applied,
        stop: Some(stop),
        task,
    }
}

fn config_with_provider_keys() -> Snapshot {
    let mut s = snapshot(21, &["sk-a", "sk-b"]);
    s.deployments = vec![
        Deployment {
            id: "literal".into(),
            model_name: "gpt-4o".into(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            api_key: "sk-provider-literal-secret".into(),
            ..Default::default()
        },
        Deployment {
            id: "reference".into(),
            model_name: "gpt-4o".into(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            api_key: "os.environ/OPENAI_API_KEY".into(),
            ..Default::default()
        },
    ];
    s
}

#[tokio::test]
async fn readiness_follows_the_config_and_liveness_always_answers() {
    let server = start().await;
    let live = get(server.address, "/health/liveness", None).await;
    assert_eq!(live.status, StatusCode::OK);

    let ready = get(server.address, "/health/readiness", None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["reason"], WAITING_FOR_FIRST_CONFIG);

    assert_eq!(
        server.applied.apply_snapshot(snapshot(5, &[])),
        Outcome::Applied { revision: 5 }
    );
    let ready = get(server.address, "/health/readiness", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["revision"], 5);
}

#[tokio::test]
async fn metrics_are_exposed() {
    let server = start().await;
    server.applied.apply_snapshot(snapshot(8, &["sk-a"]));
    let metrics = get(server.address, "/metrics", None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.text();
    for name in [
        "sluice_config_revision 8",
        "sluice_config_age_seconds",
        "sluice_config_apply_duration_seconds",
        "sluice_config_stream_connected",
        "sluice_config_snapshots_received_total 1",
        "sluice_config_deltas_received_total",
        "sluice_config_nacks_total",
        "sluice_deployments_unusable",
        "sluice_config_cache_load_errors_total",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
}

#[tokio::test]
async fn debug_config_needs_the_token_and_redacts_literal_keys() {
    let server = start().await;
    for bearer in [None, Some("wrong")] {
        let resp = get(server.address, "/debug/config", bearer).await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{bearer:?}");
        assert_eq!(resp.json()["error"]["code"], "invalid_api_key");
    }
    let resp = get(server.address, "/debug/config", Some(TOKEN)).await;
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);

    server.applied.apply_snapshot(config_with_provider_keys());
    let resp = get(server.address, "/debug/config", Some(TOKEN)).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some(PROTOBUF)
    );
    assert_eq!(
        resp.headers
            .get("x-sluice-revision")
            .and_then(|v| v.to_str().ok()),
        Some("21")
    );
    let body = resp.body.to_vec();
    let needle = b"sk-provider-literal-secret";
    assert!(!body.windows(needle.len()).any(|w| w == needle));
    assert!(!body.windows(11).any(|w| w == b"sk-from-env"));
    let snapshot = Snapshot::decode(resp.body).expect("a Snapshot");
    assert_eq!(snapshot.revision, 21);
    assert_eq!(snapshot.keys.len(), 2);
    let keys: Vec<_> = snapshot
        .deployments
        .iter()
        .map(|d| (d.id.as_str(), d.api_key.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("literal", "<redacted>"),
            ("reference", "os.environ/OPENAI_API_KEY")
        ]
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_openai_shape() {
    let server = start().await;
    let resp = get(server.address, "/v1/nothing-here", None).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let json = resp.json();
    let error = json["error"].as_object().expect("error object");
    for field in ["message", "type", "param", "code"] {
        assert!(error.contains_key(field), "{field} missing: {json}");
    }
    assert!(
        error["message"]
            .as_str()
            .expect("text")
            .contains("/v1/nothing-here")
    );

    let resp = request(server.address, "POST", "/health/liveness", None)
        .await
        .expect("answered");
    assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.json()["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn http2_without_tls_is_served() {
    let server = start().await;
    let stream = tokio::net::TcpStream::connect(server.address)
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    tokio::spawn(connection);
    let request = hyper::Request::get(format!("http://{}/health/liveness", server.address))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert!(body.starts_with(b"{"));
}

#[tokio::test]
async fn shutdown_stops_accepting_and_returns() {
    let mut server = start().await;
    assert_eq!(
        get(server.address, "/health/liveness", None).await.status,
        StatusCode::OK
    );
    let _ = server.stop.take().expect("running").send(());
    within("the server to stop", &mut server.task)
        .await
        .expect("clean exit");
    assert!(
        request(server.address, "GET", "/health/liveness", None)
            .await
            .is_err(),
        "still accepting after shutdown"
    );
}
