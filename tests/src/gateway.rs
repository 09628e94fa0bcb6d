//! The whole gateway on loopback for the OpenAI API tests: real etcd, the
//! real control plane, real data-plane binaries and a [`MockUpstream`], with
//! the admin writes tests make and the HTTP calls they send.
//!
//! ```ignore
//! let gw = Gateway::start(1).await;
//! gw.deploy_openai("gpt-4o", "gpt-4o-2024-08-06").await;
//! gw.team("ml", &["gpt-4o"], &[]).await;
//! let key = gw.key(Some("ml"), &[]).await;
//! gw.sync().await;                       // WaitForRevision on every data plane
//! gw.chat(&key, "gpt-4o").await.assert_ok();
//! ```

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::admin_client::{Admin, api};
use crate::control_plane::ControlPlane;
use crate::data_plane::DataPlane;
use crate::etcd::EtcdServer;
use crate::mock_upstream::MockUpstream;

/// How long tests wait for anything to start or propagate.
pub const WAIT: Duration = Duration::from_secs(30);
/// The provider key of [`openai_deployment`]s: distinctive, so a leak into
/// any log is found by grep.
pub const UPSTREAM_KEY: &str = "sk-upstream-secret-XYZ-7f3a9c1e";

/// The sending half of an HTTP/2 client connection, bodies sent whole.
pub type Http2Sender =
    hyper::client::conn::http2::SendRequest<http_body_util::Full<hyper::body::Bytes>>;

/// etcd + control plane + `n` data planes + a mock upstream, ready to serve.
pub struct Gateway {
    pub admin: Admin,
    pub planes: Vec<DataPlane>,
    pub upstream: MockUpstream,
    pub http: reqwest::Client,
    /// The newest revision any admin write returned.
    pub revision: AtomicI64,
    pub cp: ControlPlane,
    /// None when the control plane runs on its embedded store.
    pub etcd: Option<EtcdServer>,
    /// Logs and snapshot caches.
    pub dir: tempfile::TempDir,
}

impl Gateway {
    pub async fn start(data_planes: usize) -> Gateway {
        Self::start_with_args(data_planes, &[]).await
    }

    /// One data plane serving `model` (from the mock upstream, as
    /// `upstream_model`), and a key allowed it, in force everywhere.
    pub async fn serving(model: &str, upstream_model: &str) -> (Gateway, String) {
        let gw = Self::start(1).await;
        gw.deploy_openai(model, upstream_model).await;
        let key = gw.key(None, &[model]).await;
        gw.sync().await;
        (gw, key)
    }

    /// Like [`Gateway::start`], each data plane with more command-line
    /// arguments.
    pub async fn start_with_args(data_planes: usize, args: &[&str]) -> Gateway {
        Self::start_with_env(data_planes, args, &[]).await
    }

    /// Like [`Gateway::start_with_args`], each data plane with more
    /// environment variables too.
    pub async fn start_with_env(
        data_planes: usize,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Gateway {
        let etcd = EtcdServer::start().await.expect("etcd starts");
        let cp = ControlPlane::start_etcd(&etcd.endpoint()).expect("control plane starts");
        let admin = Admin::connect(&cp.url()).await.expect("admin connects");
        let dir = tempfile::tempdir().unwrap();
        let planes: Vec<DataPlane> = (0..data_planes)
            .map(|i| {
                DataPlane::start_with_env(&[cp.url()], &format!("dp-{i}"), dir.path(), args, env)
                    .unwrap()
            })
            .collect();
        Self::assemble(Some(etcd), cp, admin, planes, dir).await
    }

    /// The control plane on its embedded store (no etcd) and one data plane
    /// run from `program` with more environment variables: for tools that
    /// drive a build of the data plane (profile-guided builds).
    pub async fn start_program(
        program: &std::path::Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Gateway> {
        let cp = ControlPlane::start_embedded()?;
        let admin = Admin::connect(&cp.url()).await?;
        let dir = tempfile::tempdir()?;
        let dp = DataPlane::start_program(program, &[cp.url()], "dp-0", dir.path(), env)?;
        Ok(Self::assemble(None, cp, admin, vec![dp], dir).await)
    }

    async fn assemble(
        etcd: Option<EtcdServer>,
        cp: ControlPlane,
        admin: Admin,
        planes: Vec<DataPlane>,
        dir: tempfile::TempDir,
    ) -> Gateway {
        for dp in &planes {
            dp.wait_ready(WAIT).await.unwrap();
        }
        Gateway {
            admin,
            planes,
            upstream: MockUpstream::start().await.expect("mock upstream starts"),
            http: crate::http_client(),
            revision: AtomicI64::new(0),
            cp,
            etcd,
            dir,
        }
    }

    pub fn wrote(&self, revision: i64) {
        self.revision.fetch_max(revision, Ordering::SeqCst);
    }

    /// Imports a LiteLLM `config.yaml` through `ConfigService`, the write
    /// counted for [`Gateway::sync`]; its answer.
    pub async fn import_litellm(&self, yaml: String) -> api::ImportLiteLlmConfigResponse {
        let r = self
            .admin
            .config
            .clone()
            .import_lite_llm_config(api::ImportLiteLlmConfigRequest { yaml })
            .await
            .expect("import")
            .into_inner();
        self.wrote(r.revision);
        r
    }

    /// Returns once every data plane has applied every write made so far.
    pub async fn sync(&self) {
        let revision = self.revision.load(Ordering::SeqCst);
        let planes = self
            .admin
            .wait_for_revision(revision, WAIT)
            .await
            .expect("WaitForRevision");
        assert_eq!(planes as usize, self.planes.len(), "connected data planes");
    }

    pub async fn deploy(&self, deployment: api::Deployment) {
        let revision = self
            .admin
            .deploy(deployment)
            .await
            .expect("CreateDeployment");
        self.wrote(revision);
    }

    /// Every deployment, as the admin API lists it (credentials redacted).
    pub async fn deployments(&self) -> Vec<api::Deployment> {
        self.admin
            .models
            .clone()
            .list_deployments(api::ListDeploymentsRequest::default())
            .await
            .expect("ListDeployments")
            .into_inner()
            .deployments
    }

    /// Sets the router settings: every field `settings` sets.
    pub async fn set_router(&self, settings: api::RouterSettings) {
        let revision = self
            .admin
            .set_router(settings)
            .await
            .expect("UpdateRouterSettings");
        self.wrote(revision);
    }

    /// `model_name` served by OpenAI's API at the mock upstream as `upstream_model`.
    pub async fn deploy_openai(&self, model_name: &str, upstream_model: &str) {
        self.deploy(openai_deployment(
            &self.upstream,
            model_name,
            upstream_model,
        ))
        .await;
    }

    pub async fn alias(&self, alias: &str, target: &str) {
        let r = self
            .admin
            .models
            .clone()
            .create_model_alias(api::CreateModelAliasRequest {
                alias: alias.into(),
                target: target.into(),
                description: String::new(),
            })
            .await
            .expect("CreateModelAlias")
            .into_inner();
        self.wrote(r.revision);
    }

    pub async fn group(&self, name: &str, models: &[&str]) {
        let r = self
            .admin
            .groups
            .clone()
            .create_access_group(api::CreateAccessGroupRequest {
                name: name.into(),
                description: String::new(),
                models: strings(models),
            })
            .await
            .expect("CreateAccessGroup")
            .into_inner();
        self.wrote(r.revision);
    }

    pub async fn team(&self, team_id: &str, models: &[&str], access_groups: &[&str]) {
        let revision = self
            .admin
            .create_team(api::Team {
                team_id: team_id.into(),
                models: strings(models),
                access_groups: strings(access_groups),
                ..Default::default()
            })
            .await
            .expect("CreateTeam");
        self.wrote(revision);
    }

    /// Sets a team's `access_groups` (to exactly this list, even empty).
    pub async fn set_team_groups(&self, team_id: &str, access_groups: &[&str]) {
        self.update_team(
            team_id,
            api::Team {
                access_groups: strings(access_groups),
                ..Default::default()
            },
            "access_groups",
        )
        .await;
    }

    pub async fn update_team(&self, team_id: &str, update: api::Team, field: &str) {
        let r = self
            .admin
            .teams
            .clone()
            .update_team(api::UpdateTeamRequest {
                team_id: team_id.into(),
                update: Some(update),
                update_mask: Some(mask(field)),
                ..Default::default()
            })
            .await
            .expect("UpdateTeam")
            .into_inner();
        self.wrote(r.revision);
    }

    /// A new key (plaintext) of `team` (or none) allowed `models` ([] = inherit).
    pub async fn key(&self, team: Option<&str>, models: &[&str]) -> String {
        self.key_from(api::Key {
            team_id: team.unwrap_or_default().into(),
            models: strings(models),
            ..Default::default()
        })
        .await
    }

    pub async fn key_from(&self, template: api::Key) -> String {
        let r = self
            .admin
            .keys
            .clone()
            .generate_key(api::GenerateKeyRequest {
                key: Some(template),
            })
            .await
            .expect("GenerateKey")
            .into_inner();
        self.wrote(r.revision);
        r.key
    }

    pub fn url(&self, path: &str) -> String {
        self.planes[0].url(path)
    }

    /// A connection to data plane 0 speaking HTTP/2 from its first byte
    /// (prior knowledge, h2c), as gRPC-style and h2c-configured clients open one.
    pub async fn http2_connection(&self) -> anyhow::Result<Http2Sender> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.planes[0].port())).await?;
        tcp.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .map_err(|e| anyhow::anyhow!("h2c handshake: {e}"))?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// POSTs `body` as JSON to `path` of data plane `dp` with `key` as a Bearer token.
    pub async fn post_to(&self, dp: usize, key: &str, path: &str, body: &Value) -> Answer {
        let r = self
            .http
            .post(self.planes[dp].url(path))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("data plane answers");
        Answer::read(r).await
    }

    pub async fn post(&self, key: &str, path: &str, body: &Value) -> Answer {
        self.post_to(0, key, path, body).await
    }

    /// A one-message chat completion of `model` on data plane `dp`.
    pub async fn chat_on(&self, dp: usize, key: &str, model: &str) -> Answer {
        self.post_to(dp, key, "/v1/chat/completions", &chat_body(model))
            .await
    }

    pub async fn chat(&self, key: &str, model: &str) -> Answer {
        self.chat_on(0, key, model).await
    }

    /// Starts a streamed (`stream: true`) chat completion of `model` on data
    /// plane 0 and asserts it began with 200; the body is the caller's to read.
    pub async fn start_stream(&self, key: &str, model: &str) -> reqwest::Response {
        let mut body = chat_body(model);
        body["stream"] = json!(true);
        let r = self
            .http
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("the stream starts");
        assert_eq!(r.status().as_u16(), 200, "a stream of {model}");
        r
    }

    pub async fn get(&self, key: &str, path: &str) -> Answer {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("data plane answers");
        Answer::read(r).await
    }

    /// Neither log holds any of `secrets`.
    pub fn assert_logs_hold_none_of(&self, secrets: &[&str]) {
        // Data planes flush request log lines every 100 ms: let the last out.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut logs = vec![("control plane".to_string(), self.cp.log())];
        for (i, dp) in self.planes.iter().enumerate() {
            logs.push((format!("data plane {i}"), dp.log()));
        }
        for (who, log) in &logs {
            assert!(!log.is_empty(), "the {who} logged nothing: wrong log file?");
            for secret in secrets {
                assert!(
                    !log.contains(secret),
                    "the {who}'s log holds the secret {secret:?}"
                );
            }
        }
    }
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub fn mask(field: &str) -> sluice_proto::prost_types::FieldMask {
    sluice_proto::prost_types::FieldMask {
        paths: vec![field.to_string()],
    }
}

pub fn openai_deployment(
    upstream: &MockUpstream,
    model_name: &str,
    upstream_model: &str,
) -> api::Deployment {
    api::Deployment {
        model_name: model_name.into(),
        provider: "openai".into(),
        model: upstream_model.into(),
        api_base: upstream.url("/v1"),
        api_key: UPSTREAM_KEY.into(),
        ..Default::default()
    }
}

/// A protobuf duration of `millis` milliseconds.
pub fn millis(millis: u64) -> sluice_proto::prost_types::Duration {
    sluice_proto::prost_types::Duration {
        seconds: i64::try_from(millis / 1000).unwrap_or(i64::MAX),
        nanos: i32::try_from(millis % 1000 * 1_000_000).unwrap_or(0),
    }
}

pub fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}]})
}

/// An HTTP answer: status, headers, and the body parsed as JSON when it is.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Answer {
    pub async fn read(r: reqwest::Response) -> Answer {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a successful chat completion.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.status, 200, "expected 200, got: {}", self.text);
        self
    }

    /// Asserts an error in OpenAI's shape with this status and `code`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> &Value {
        assert_eq!(
            self.status, status,
            "expected {status} {code}, got: {}",
            self.text
        );
        assert_openai_error_shape(&self.json, &self.text);
        assert_eq!(
            self.json["error"]["code"], code,
            "expected code {code}, got: {}",
            self.text
        );
        &self.json["error"]
    }
}

/// `{"error": {"message": "...", "type": "...", "param": ..., "code": ...}}`
#[track_caller]
pub fn assert_openai_error_shape(body: &Value, text: &str) {
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("not OpenAI's error shape: {text:?}"));
    for field in ["message", "type", "param", "code"] {
        assert!(error.contains_key(field), "error.{field} missing: {text}");
    }
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error.message must say what happened: {text}"
    );
    assert!(error["type"].is_string(), "error.type: {text}");
}
