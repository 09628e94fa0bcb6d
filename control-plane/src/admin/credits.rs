//! `CreditService`: credits granted to teams. Adds are retried on conflict,
//! so concurrent grants all count. What is used comes from the team's usage
//! totals (`crate::usage`), as the data planes reported it.

use sluice_proto::admin::v1::credit_service_server::CreditService;
use sluice_proto::admin::v1::{
    AddCreditsRequest, AddCreditsResponse, GetBalanceRequest, GetBalanceResponse, Team,
};
use tonic::{Request, Response, Status};

use super::Admin;
use crate::catalog::{now, outcome, put_if, retry_on_conflict};
use crate::error::AdminError;
use crate::resources::Resource;
use crate::store::Txn;
use crate::usage::paths::{Scope, ScopeKind};
use crate::validate;

#[tonic::async_trait]
impl CreditService for Admin {
    async fn add_credits(
        &self,
        request: Request<AddCreditsRequest>,
    ) -> Result<Response<AddCreditsResponse>, Status> {
        let req = request.into_inner();
        validate::object_id("team_id", &req.team_id)?;
        validate::text("reason", &req.reason)?;
        if req.amount <= 0 {
            return Err(
                AdminError::invalid("amount", format!("must be > 0, got {}", req.amount)).into(),
            );
        }
        let resp = retry_on_conflict!(Team::KIND, &req.team_id, {
            let current = self.catalog.require::<Team>(&req.team_id).await?;
            let mut team = current.value.clone();
            team.credits_allocated =
                team.credits_allocated
                    .checked_add(req.amount)
                    .ok_or_else(|| {
                        AdminError::invalid("amount", "would overflow the team's credits")
                    })?;
            team.updated_at = Some(now());
            let o = self
                .catalog
                .commit(put_if(Txn::new(), &team, current.mod_revision))
                .await?;
            Ok(outcome(o, |revision| AddCreditsResponse {
                team_id: team.team_id.clone(),
                credits_allocated: team.credits_allocated,
                revision,
            }))
        })?;
        tracing::info!(team_id = %req.team_id, amount = req.amount, reason = %req.reason, "added credits");
        Ok(Response::new(resp))
    }

    async fn get_balance(
        &self,
        request: Request<GetBalanceRequest>,
    ) -> Result<Response<GetBalanceResponse>, Status> {
        let team_id = request.into_inner().team_id;
        validate::object_id("team_id", &team_id)?;
        let team = self.catalog.require::<Team>(&team_id).await?;
        // Credits are lifetime: no window to look at.
        let totals = self
            .stored_totals(&Scope::new(ScopeKind::Team, team_id.clone()))
            .await?;
        let credits_used = totals.lifetime.map_or(0, |l| l.credits_used);
        let credits_allocated = team.value.credits_allocated;
        Ok(Response::new(GetBalanceResponse {
            team_id,
            credits_allocated,
            credits_used,
            credits_remaining: credits_allocated.saturating_sub(credits_used),
            revision: self.catalog.revision().await?,
        }))
    }
}
