//! `DataPlaneService`: the tokens data planes present to receive snapshots
//! (stored as SHA-256 only, like keys), which data planes are connected and
//! what they applied, and waiting until a revision is enforced everywhere.

use std::collections::HashMap;
use std::time::Duration;

use sluice_proto::admin::v1::data_plane_service_server::DataPlaneService;
use sluice_proto::admin::v1::{
    CreateDataPlaneTokenRequest, CreateDataPlaneTokenResponse, DataPlaneStatus, DataPlaneToken,
    DeleteDataPlaneTokenRequest, DeleteResponse, ListDataPlaneTokensRequest,
    ListDataPlaneTokensResponse, ListDataPlanesRequest, ListDataPlanesResponse,
    WaitForRevisionRequest, WaitForRevisionResponse,
};
use tonic::{Request, Response, Status};

use super::Admin;
use super::keys::key_id_of;
use crate::catalog::{now, put_if};
use crate::error::AdminError;
use crate::secrets;
use crate::store::Txn;
use crate::validate;

#[tonic::async_trait]
impl DataPlaneService for Admin {
    async fn create_data_plane_token(
        &self,
        request: Request<CreateDataPlaneTokenRequest>,
    ) -> Result<Response<CreateDataPlaneTokenResponse>, Status> {
        let name = request.into_inner().name;
        validate::text("name", &name)?;
        let token = secrets::generate(secrets::DATA_PLANE_TOKEN_PREFIX);
        let mut info = DataPlaneToken {
            token_id: secrets::sha256_hex(&token),
            name,
            token_prefix: secrets::display_prefix(&token),
            created_at: Some(now()),
            revision: 0,
        };
        let o = self.catalog.commit(put_if(Txn::new(), &info, 0)).await?;
        info.revision = o.revision;
        tracing::info!(token_id = %info.token_id, name = %info.name, "created data-plane token");
        Ok(Response::new(CreateDataPlaneTokenResponse {
            token,
            info: Some(info),
            revision: o.revision,
        }))
    }

    async fn list_data_plane_tokens(
        &self,
        _request: Request<ListDataPlaneTokensRequest>,
    ) -> Result<Response<ListDataPlaneTokensResponse>, Status> {
        let (tokens, revision) = self.catalog.list::<DataPlaneToken>().await?;
        Ok(Response::new(ListDataPlaneTokensResponse {
            tokens: tokens.into_iter().map(|t| t.value).collect(),
            revision,
        }))
    }

    async fn delete_data_plane_token(
        &self,
        request: Request<DeleteDataPlaneTokenRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let id = key_id_of(&request.into_inner().token_id, "").map_err(|_| {
            crate::error::AdminError::invalid(
                "token_id",
                "must be the 64 lowercase hex characters of the token's SHA-256",
            )
        })?;
        let resp = self
            .catalog
            .delete::<DataPlaneToken>(&id, 0)
            .await
            .map(|revision| DeleteResponse { revision })?;
        Ok(Response::new(resp))
    }

    async fn list_data_planes(
        &self,
        request: Request<ListDataPlanesRequest>,
    ) -> Result<Response<ListDataPlanesResponse>, Status> {
        let req = request.into_inner();
        let published = self.distribution.hub.current();
        let data_planes = self
            .statuses(&req.label_selector, !req.include_disconnected)
            .await?;
        Ok(Response::new(ListDataPlanesResponse {
            data_planes,
            invalid_objects: published.invalid.values().cloned().collect(),
            config_revision: published.revision,
        }))
    }

    async fn wait_for_revision(
        &self,
        request: Request<WaitForRevisionRequest>,
    ) -> Result<Response<WaitForRevisionResponse>, Status> {
        let req = request.into_inner();
        if req.revision <= 0 {
            return Err(AdminError::invalid(
                "revision",
                "must be > 0: the revision an admin write returned",
            )
            .into());
        }
        let timeout = match &req.timeout {
            None => DEFAULT_WAIT,
            Some(d) if d.seconds < 0 || d.nanos < 0 || d.seconds > MAX_WAIT.as_secs() as i64 => {
                return Err(AdminError::invalid("timeout", "must be between 0s and 300s").into());
            }
            Some(d) => Duration::new(d.seconds as u64, d.nanos as u32),
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let statuses = self.statuses(&req.label_selector, true).await?;
            let pending: Vec<DataPlaneStatus> = statuses
                .iter()
                .filter(|s| s.applied_revision < req.revision)
                .cloned()
                .collect();
            if pending.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(Response::new(WaitForRevisionResponse {
                    reached: pending.is_empty(),
                    data_planes: statuses.len() as u32,
                    pending,
                }));
            }
            // Local ACKs wake us at once; ACKs on other replicas are polled.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.distribution
                .registry
                .changed(left.min(POLL_EVERY))
                .await;
        }
    }
}

/// How long WaitForRevision waits without a timeout, and at most.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
const MAX_WAIT: Duration = Duration::from_secs(300);
/// How often WaitForRevision re-reads statuses written by other replicas.
const POLL_EVERY: Duration = Duration::from_millis(50);

fn matches(selector: &HashMap<String, String>, status: &DataPlaneStatus) -> bool {
    selector
        .iter()
        .all(|(k, v)| status.labels.get(k) == Some(v))
}

impl Admin {
    /// Data planes matching `selector` with their lag behind this replica's
    /// newest configuration.
    async fn statuses(
        &self,
        selector: &HashMap<String, String>,
        connected_only: bool,
    ) -> Result<Vec<DataPlaneStatus>, AdminError> {
        let current = self.distribution.hub.current().revision;
        let mut all = self.distribution.registry.list().await?;
        all.retain(|s| matches(selector, s) && (s.connected || !connected_only));
        for s in &mut all {
            s.lag_revisions = (current - s.applied_revision).max(0);
        }
        Ok(all)
    }
}
