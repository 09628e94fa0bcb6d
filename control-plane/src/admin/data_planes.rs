//! `DataPlaneService`: the tokens data planes present to receive snapshots.
//! Stored as SHA-256 only, like keys.

use sluice_proto::admin::v1::data_plane_service_server::DataPlaneService;
use sluice_proto::admin::v1::{
    CreateDataPlaneTokenRequest, CreateDataPlaneTokenResponse, DataPlaneToken,
    DeleteDataPlaneTokenRequest, DeleteResponse, ListDataPlaneTokensRequest,
    ListDataPlaneTokensResponse, ListDataPlanesRequest, ListDataPlanesResponse,
    WaitForRevisionRequest, WaitForRevisionResponse,
};
use tonic::{Request, Response, Status};

use super::Admin;
use super::keys::key_id_of;
use crate::catalog::{Attempt, delete_if, now, put_if, retry_on_conflict};
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
        let resp = retry_on_conflict!({
            let current = self.catalog.require::<DataPlaneToken>(&id).await?;
            let o = self
                .catalog
                .commit(delete_if::<DataPlaneToken>(
                    Txn::new(),
                    &id,
                    current.mod_revision,
                ))
                .await?;
            Ok(if o.succeeded {
                Attempt::Done(DeleteResponse {
                    revision: o.revision,
                })
            } else {
                Attempt::Conflict
            })
        })?;
        Ok(Response::new(resp))
    }

    async fn list_data_planes(
        &self,
        _request: Request<ListDataPlanesRequest>,
    ) -> Result<Response<ListDataPlanesResponse>, Status> {
        Err(Status::unimplemented(
            "ListDataPlanes arrives with config distribution",
        ))
    }

    async fn wait_for_revision(
        &self,
        _request: Request<WaitForRevisionRequest>,
    ) -> Result<Response<WaitForRevisionResponse>, Status> {
        Err(Status::unimplemented(
            "WaitForRevision arrives with config distribution",
        ))
    }
}
