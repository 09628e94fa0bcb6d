//! `OrganizationService`. An organization's `models` restrict its teams;
//! empty means no restriction.

use sluice_proto::admin::v1::organization_service_server::OrganizationService;
use sluice_proto::admin::v1::{
    CreateOrganizationRequest, DeleteOrganizationRequest, DeleteResponse, GetOrganizationRequest,
    ListOrganizationsRequest, ListOrganizationsResponse, Organization, OrganizationWriteResponse,
    Team, UpdateOrganizationRequest,
};
use tonic::{Request, Response, Status};

use super::{Admin, bind_groups, dedup, expect_revision, merge};
use crate::catalog::{Attempt, delete_if, now, outcome, pinned_outcome, put_if, retry_on_conflict};
use crate::error::{AdminError, AdminResult};
use crate::resources::Resource;
use crate::secrets;
use crate::store::Txn;
use crate::validate;

fn check_org(o: &Organization, field: &str) -> AdminResult<()> {
    let f = |name: &str| format!("{field}.{name}");
    validate::object_id(&f("organization_id"), &o.organization_id)?;
    validate::text(&f("name"), &o.name)?;
    validate::model_list(&f("models"), &o.models)?;
    validate::money(&f("max_budget"), o.max_budget)?;
    validate::window(&f("budget_duration"), &o.budget_duration)?;
    validate::metadata(&f("metadata"), &o.metadata)?;
    Ok(())
}

impl Admin {
    async fn write_org(
        &self,
        mut org: Organization,
        mod_revision: i64,
        expected_revision: i64,
    ) -> AdminResult<Attempt<OrganizationWriteResponse>> {
        let entries: Vec<&String> = org.models.iter().collect();
        let previous = org.access_group_uids.clone();
        let grants = bind_groups(&self.catalog, &entries, &[], "", &previous).await?;
        org.access_group_uids = grants.uids.clone();
        let txn = put_if(grants.guard(Txn::new()), &org, mod_revision);
        let o = self.catalog.commit(txn).await?;
        let id = org.organization_id.clone();
        pinned_outcome(o, expected_revision, Organization::KIND, &id, |revision| {
            OrganizationWriteResponse {
                organization: Some(Organization { revision, ..org }),
                revision,
            }
        })
    }
}

#[tonic::async_trait]
impl OrganizationService for Admin {
    async fn create_organization(
        &self,
        request: Request<CreateOrganizationRequest>,
    ) -> Result<Response<OrganizationWriteResponse>, Status> {
        let mut org = request.into_inner().organization.unwrap_or_default();
        if org.organization_id.is_empty() {
            org.organization_id = format!("org-{}", secrets::random_id(6));
        }
        let created = now();
        org.created_at = Some(created);
        org.updated_at = Some(created);
        org.access_group_uids.clear();
        dedup(&mut org.models);
        check_org(&org, "organization")?;
        let resp = retry_on_conflict!(Organization::KIND, &org.organization_id, {
            if self
                .catalog
                .get::<Organization>(&org.organization_id)
                .await?
                .is_some()
            {
                return Err(AdminError::already_exists(
                    Organization::KIND,
                    &org.organization_id,
                ));
            }
            self.write_org(org.clone(), 0, 0).await
        })?;
        Ok(Response::new(resp))
    }

    async fn get_organization(
        &self,
        request: Request<GetOrganizationRequest>,
    ) -> Result<Response<Organization>, Status> {
        let id = request.into_inner().organization_id;
        validate::object_id("organization_id", &id)?;
        Ok(Response::new(
            self.catalog.require::<Organization>(&id).await?.value,
        ))
    }

    async fn list_organizations(
        &self,
        _request: Request<ListOrganizationsRequest>,
    ) -> Result<Response<ListOrganizationsResponse>, Status> {
        let (orgs, revision) = self.catalog.list::<Organization>().await?;
        Ok(Response::new(ListOrganizationsResponse {
            organizations: orgs.into_iter().map(|o| o.value).collect(),
            revision,
        }))
    }

    async fn update_organization(
        &self,
        request: Request<UpdateOrganizationRequest>,
    ) -> Result<Response<OrganizationWriteResponse>, Status> {
        let req = request.into_inner();
        validate::object_id("organization_id", &req.organization_id)?;
        let update = req.update.clone().unwrap_or_default();
        let resp = retry_on_conflict!(Organization::KIND, &req.organization_id, {
            let current = self
                .catalog
                .require::<Organization>(&req.organization_id)
                .await?;
            expect_revision(
                Organization::KIND,
                &req.organization_id,
                req.expected_revision,
                current.mod_revision,
            )?;
            let mut org = current.value.clone();
            merge!(
                org,
                update,
                req.update_mask.as_ref(),
                "Organization",
                [name, models, max_budget, budget_duration, metadata,]
            );
            dedup(&mut org.models);
            check_org(&org, "update")?;
            org.updated_at = Some(now());
            self.write_org(org, current.mod_revision, req.expected_revision)
                .await
        })?;
        Ok(Response::new(resp))
    }

    async fn delete_organization(
        &self,
        request: Request<DeleteOrganizationRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let req = request.into_inner();
        let id = req.organization_id.clone();
        validate::object_id("organization_id", &id)?;
        let resp = retry_on_conflict!(Organization::KIND, &id, {
            let current = self.catalog.require::<Organization>(&id).await?;
            expect_revision(
                Organization::KIND,
                &id,
                req.expected_revision,
                current.mod_revision,
            )?;
            let (teams, _) = self.catalog.list::<Team>().await?;
            let members: Vec<&str> = teams
                .iter()
                .filter(|t| t.value.organization_id == id)
                .map(|t| t.value.team_id.as_str())
                .collect();
            if !members.is_empty() {
                return Err(AdminError::FailedPrecondition(format!(
                    "organization {id:?} still has {} team(s) ({}); delete them or move them to another organization first",
                    members.len(),
                    members
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            // Creating or moving a team re-writes its organization, so this
            // compare also catches a team added since the listing above.
            let o = self
                .catalog
                .commit(delete_if::<Organization>(
                    Txn::new(),
                    &id,
                    current.mod_revision,
                ))
                .await?;
            Ok(outcome(o, |revision| DeleteResponse { revision }))
        })?;
        Ok(Response::new(resp))
    }
}
