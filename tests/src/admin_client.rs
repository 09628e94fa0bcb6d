//! Typed tonic clients of the admin API, for tests that need concurrency or
//! volume beyond what spawning grpcurl per call allows.

use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::control_plane::MASTER_KEY;

pub use sluice_proto::admin::v1 as api;
use sluice_proto::admin::v1::access_group_service_client::AccessGroupServiceClient;
use sluice_proto::admin::v1::config_service_client::ConfigServiceClient;
use sluice_proto::admin::v1::credit_service_client::CreditServiceClient;
use sluice_proto::admin::v1::data_plane_service_client::DataPlaneServiceClient;
use sluice_proto::admin::v1::key_service_client::KeyServiceClient;
use sluice_proto::admin::v1::model_service_client::ModelServiceClient;
use sluice_proto::admin::v1::router_service_client::RouterServiceClient;
use sluice_proto::admin::v1::team_service_client::TeamServiceClient;
use sluice_proto::admin::v1::usage_service_client::UsageServiceClient;

/// Adds `authorization: Bearer <master key>` to every call.
#[derive(Clone)]
pub struct Auth;

impl Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let value = format!("Bearer {MASTER_KEY}")
            .parse()
            .map_err(|_| tonic::Status::internal("bad header"))?;
        req.metadata_mut().insert("authorization", value);
        Ok(req)
    }
}

pub type Authed = InterceptedService<Channel, Auth>;

/// Clients of every admin service over one connection.
#[derive(Clone)]
pub struct Admin {
    pub channel: Channel,
    pub groups: AccessGroupServiceClient<Authed>,
    pub teams: TeamServiceClient<Authed>,
    pub keys: KeyServiceClient<Authed>,
    pub models: ModelServiceClient<Authed>,
    pub router: RouterServiceClient<Authed>,
    pub config: ConfigServiceClient<Authed>,
    pub data_planes: DataPlaneServiceClient<Authed>,
    pub credits: CreditServiceClient<Authed>,
    pub usage: UsageServiceClient<Authed>,
}

impl Admin {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let channel = Channel::from_shared(url.to_string())?.connect().await?;
        Ok(Self::on(channel))
    }

    /// Over TLS (`https://` URL), trusting the PEM CA certificate `ca_pem`.
    pub async fn connect_tls(url: &str, ca_pem: &[u8]) -> anyhow::Result<Self> {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem));
        let channel = Channel::from_shared(url.to_string())?
            .tls_config(tls)?
            .connect()
            .await?;
        Ok(Self::on(channel))
    }

    fn on(channel: Channel) -> Self {
        Self {
            groups: AccessGroupServiceClient::with_interceptor(channel.clone(), Auth),
            teams: TeamServiceClient::with_interceptor(channel.clone(), Auth),
            keys: KeyServiceClient::with_interceptor(channel.clone(), Auth),
            models: ModelServiceClient::with_interceptor(channel.clone(), Auth),
            router: RouterServiceClient::with_interceptor(channel.clone(), Auth),
            config: ConfigServiceClient::with_interceptor(channel.clone(), Auth),
            data_planes: DataPlaneServiceClient::with_interceptor(channel.clone(), Auth),
            credits: CreditServiceClient::with_interceptor(channel.clone(), Auth),
            usage: UsageServiceClient::with_interceptor(channel.clone(), Auth),
            channel,
        }
    }

    /// `UsageService/GetUsage` of one scope's current window.
    pub async fn usage_of(
        &self,
        scope: api::get_usage_request::Scope,
    ) -> anyhow::Result<api::GetUsageResponse> {
        let request = api::GetUsageRequest {
            scope: Some(scope),
            ..Default::default()
        };
        Ok(self.usage.clone().get_usage(request).await?.into_inner())
    }

    /// Polls [`Admin::usage_of`] `scope` until `view` of it equals `want`
    /// (usage is reported about once a second per data plane); fails with
    /// the last answer after `within`.
    pub async fn usage_reaches<T: PartialEq + std::fmt::Debug>(
        &self,
        scope: api::get_usage_request::Scope,
        want: &T,
        view: impl Fn(&api::GetUsageResponse) -> T,
        within: std::time::Duration,
    ) {
        let deadline = std::time::Instant::now() + within;
        loop {
            let got = self.usage_of(scope.clone()).await.map(|u| view(&u));
            if got.as_ref().ok() == Some(want) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "GetUsage {scope:?}: {got:?}, want {want:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// `CreditService/GetBalance`.
    pub async fn balance(&self, team_id: &str) -> anyhow::Result<api::GetBalanceResponse> {
        let request = api::GetBalanceRequest {
            team_id: team_id.into(),
        };
        Ok(self
            .credits
            .clone()
            .get_balance(request)
            .await?
            .into_inner())
    }

    /// `ModelService/CreateDeployment`; returns the revision it committed at.
    pub async fn deploy(&self, deployment: api::Deployment) -> anyhow::Result<i64> {
        let request = api::CreateDeploymentRequest {
            deployment: Some(deployment),
        };
        Ok(self
            .models
            .clone()
            .create_deployment(request)
            .await?
            .into_inner()
            .revision)
    }

    /// `RouterService/UpdateRouterSettings` with every field `settings`
    /// sets; returns the revision it committed at.
    pub async fn set_router(&self, settings: api::RouterSettings) -> anyhow::Result<i64> {
        let request = api::UpdateRouterSettingsRequest {
            settings: Some(settings),
            ..Default::default()
        };
        Ok(self
            .router
            .clone()
            .update_router_settings(request)
            .await?
            .into_inner()
            .revision)
    }

    /// `TeamService/CreateTeam`; returns the revision it committed at.
    pub async fn create_team(&self, team: api::Team) -> anyhow::Result<i64> {
        let request = api::CreateTeamRequest {
            team: Some(team),
            ..Default::default()
        };
        Ok(self
            .teams
            .clone()
            .create_team(request)
            .await?
            .into_inner()
            .revision)
    }

    /// `DataPlaneService/WaitForRevision`: returns once every connected data
    /// plane has applied `revision`; fails (naming the laggards) otherwise.
    pub async fn wait_for_revision(
        &self,
        revision: i64,
        within: std::time::Duration,
    ) -> anyhow::Result<u32> {
        let resp = self
            .data_planes
            .clone()
            .wait_for_revision(api::WaitForRevisionRequest {
                revision,
                timeout: Some(sluice_proto::prost_types::Duration {
                    seconds: within.as_secs() as i64,
                    nanos: within.subsec_nanos() as i32,
                }),
                ..Default::default()
            })
            .await?
            .into_inner();
        if !resp.reached {
            anyhow::bail!(
                "not every data plane applied revision {revision}: {:?}",
                resp.pending
            );
        }
        Ok(resp.data_planes)
    }

    /// `grpc.health.v1` status of the whole server ("").
    pub async fn health(&self) -> anyhow::Result<i32> {
        self.health_of("").await
    }

    /// `grpc.health.v1` status of `service` (`liveness`, an admin service).
    pub async fn health_of(&self, service: &str) -> anyhow::Result<i32> {
        let mut client = tonic_health::pb::health_client::HealthClient::new(self.channel.clone());
        let resp = client
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.to_string(),
            })
            .await?;
        Ok(resp.into_inner().status)
    }
}
