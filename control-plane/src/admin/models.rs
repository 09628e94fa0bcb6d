//! `ModelService`: deployments, the model groups they form (all deployments
//! sharing a `model_name`), and aliases of model groups.

use std::collections::{BTreeMap, BTreeSet};

use sluice_proto::admin::v1::model_service_server::ModelService;
use sluice_proto::admin::v1::{
    AccessGroup, CreateDeploymentRequest, CreateModelAliasRequest, DeleteDeploymentRequest,
    DeleteModelAliasRequest, DeleteResponse, Deployment, DeploymentWriteResponse,
    GetDeploymentRequest, ListDeploymentsRequest, ListDeploymentsResponse, ListModelAliasesRequest,
    ListModelAliasesResponse, ListModelGroupsRequest, ListModelGroupsResponse, ModelAlias,
    ModelAliasWriteResponse, ModelGroup, UpdateDeploymentRequest,
};
use sluice_proto::providers;
use tonic::{Request, Response, Status};

use super::{Admin, dedup, expect_revision, lost_race, merge};
use crate::catalog::{Attempt, Catalog, now, put_if, retry_on_conflict};
use crate::error::{AdminError, AdminResult};
use crate::litellm::{REDACTED, secret_is_reference};
use crate::resources::Resource;
use crate::secrets;
use crate::store::Txn;
use crate::validate;

/// Normalises and checks a deployment: a LiteLLM-style `model` such as
/// `openai/gpt-4o` with no `provider` is split, a bare model means `openai`,
/// and an unknown provider is refused here rather than failing later.
pub fn check_deployment(d: &mut Deployment, field: &str) -> AdminResult<()> {
    let f = |name: &str| format!("{field}.{name}");
    if d.provider.is_empty() {
        match d.model.split_once('/') {
            Some((p, m)) => {
                d.provider = p.to_string();
                d.model = m.to_string();
            }
            None => d.provider = "openai".to_string(),
        }
    }
    let Some(provider) = providers::lookup(&d.provider) else {
        return Err(AdminError::invalid(
            f("provider"),
            format!(
                "unknown provider prefix {:?}; known: {}",
                d.provider,
                providers::known_prefixes()
            ),
        ));
    };
    validate::deployment_id(&f("id"), &d.id)?;
    validate::model_name(&f("model_name"), &d.model_name)?;
    validate::model_name(&f("model"), &d.model)?;
    if d.api_base.is_empty() {
        if provider.default_api_base.is_none() {
            return Err(AdminError::invalid(
                f("api_base"),
                format!("is required for provider {:?}", d.provider),
            ));
        }
    } else if provider.wire == providers::Wire::Mock {
        // The mock provider reads its knobs from api_base: `mock://?latency_ms=200&fail=429`.
        if !(d.api_base.starts_with("mock://") || d.api_base.starts_with('?')) {
            return Err(AdminError::invalid(
                f("api_base"),
                "for a mock deployment must be mock://?knob=value&... (latency_ms, chunk_delay_ms, fail, content)",
            ));
        }
    } else if !(d.api_base.starts_with("http://")
        || d.api_base.starts_with("https://")
        || secret_is_reference(&d.api_base))
    {
        return Err(AdminError::invalid(
            f("api_base"),
            "must be an http:// or https:// URL, or os.environ/NAME",
        ));
    }
    validate::text(&f("api_key"), &d.api_key)?;
    validate::text(&f("api_version"), &d.api_version)?;
    validate::price(&f("input_cost_per_token"), d.input_cost_per_token)?;
    validate::price(&f("output_cost_per_token"), d.output_cost_per_token)?;
    validate::non_negative(&f("credits_per_call"), d.credits_per_call)?;
    validate::duration(&f("timeout"), d.timeout.as_ref())?;
    validate::duration(&f("stream_timeout"), d.stream_timeout.as_ref())?;
    if d.max_input_tokens == Some(0) {
        // Every prompt has a token: the deployment could never be picked.
        return Err(AdminError::invalid(
            f("max_input_tokens"),
            "must be at least 1 (leave it unset for no limit)",
        ));
    }
    dedup(&mut d.access_groups);
    validate::group_list(&f("access_groups"), &d.access_groups)?;
    Ok(())
}

/// A deployment as answers show it: literal provider keys redacted.
pub fn redacted(mut d: Deployment) -> Deployment {
    if !d.api_key.is_empty() && !secret_is_reference(&d.api_key) {
        d.api_key = REDACTED.to_string();
    }
    d
}

/// Adds to `txn` the creation of every access group a deployment names that
/// does not exist yet: in the config.yaml way, naming a group declares it.
pub async fn declare_groups(
    catalog: &Catalog,
    groups: &[String],
    declared_by: &str,
    mut txn: Txn,
    created: &mut Vec<String>,
) -> AdminResult<Txn> {
    for name in groups {
        if catalog.get::<AccessGroup>(name).await?.is_none() && !created.contains(name) {
            let group = AccessGroup {
                name: name.clone(),
                description: format!("declared by {declared_by}"),
                models: Vec::new(),
                created_at: Some(now()),
                uid: secrets::random_id(8),
                revision: 0,
            };
            txn = put_if(txn, &group, 0);
            created.push(name.clone());
        }
    }
    Ok(txn)
}

/// All model group names that exist: the `model_name` of some deployment.
pub async fn model_group_names(catalog: &Catalog) -> AdminResult<BTreeSet<String>> {
    let (deployments, _) = catalog.list::<Deployment>().await?;
    Ok(deployments
        .into_iter()
        .map(|d| d.value.model_name)
        .collect())
}

impl Admin {
    async fn write_deployment(
        &self,
        mut d: Deployment,
        mod_revision: i64,
        expected_revision: i64,
    ) -> AdminResult<Attempt<DeploymentWriteResponse>> {
        let mut created = Vec::new();
        let txn = declare_groups(
            &self.catalog,
            &d.access_groups,
            &format!("deployment {}", d.id),
            Txn::new(),
            &mut created,
        )
        .await?;
        let o = self.catalog.commit(put_if(txn, &d, mod_revision)).await?;
        if o.succeeded {
            d.revision = o.revision;
            Ok(Attempt::Done(DeploymentWriteResponse {
                deployment: Some(redacted(d)),
                revision: o.revision,
            }))
        } else if expected_revision != 0 {
            Err(lost_race(Deployment::KIND, &d.id))
        } else {
            Ok(Attempt::Conflict)
        }
    }
}

#[tonic::async_trait]
impl ModelService for Admin {
    async fn create_deployment(
        &self,
        request: Request<CreateDeploymentRequest>,
    ) -> Result<Response<DeploymentWriteResponse>, Status> {
        let mut d = request.into_inner().deployment.unwrap_or_default();
        if d.id.is_empty() {
            d.id = format!("dep-{}", secrets::random_id(6));
        }
        let created = now();
        d.created_at = Some(created);
        d.updated_at = Some(created);
        check_deployment(&mut d, "deployment")?;
        let resp = retry_on_conflict!({
            if self.catalog.get::<Deployment>(&d.id).await?.is_some() {
                return Err(AdminError::AlreadyExists(format!("deployment {:?}", d.id)));
            }
            self.write_deployment(d.clone(), 0, 0).await
        })?;
        tracing::info!(id = %d.id, model_name = %d.model_name, "created deployment");
        Ok(Response::new(resp))
    }

    async fn get_deployment(
        &self,
        request: Request<GetDeploymentRequest>,
    ) -> Result<Response<Deployment>, Status> {
        let id = request.into_inner().id;
        validate::deployment_id("id", &id)?;
        let d = self.catalog.require::<Deployment>(&id).await?.value;
        Ok(Response::new(redacted(d)))
    }

    async fn list_deployments(
        &self,
        request: Request<ListDeploymentsRequest>,
    ) -> Result<Response<ListDeploymentsResponse>, Status> {
        let filter = request.into_inner().model_name;
        if !filter.is_empty() {
            validate::model_name("model_name", &filter)?;
        }
        let (all, revision) = self.catalog.list::<Deployment>().await?;
        let deployments = all
            .into_iter()
            .map(|d| d.value)
            .filter(|d| filter.is_empty() || d.model_name == filter)
            .map(redacted)
            .collect();
        Ok(Response::new(ListDeploymentsResponse {
            deployments,
            revision,
        }))
    }

    async fn update_deployment(
        &self,
        request: Request<UpdateDeploymentRequest>,
    ) -> Result<Response<DeploymentWriteResponse>, Status> {
        let req = request.into_inner();
        validate::deployment_id("id", &req.id)?;
        let mut update = req.update.clone().unwrap_or_default();
        if update.api_key == REDACTED {
            // A redacted answer sent back unchanged must not overwrite the key.
            update.api_key.clear();
        }
        let resp = retry_on_conflict!({
            let current = self.catalog.require::<Deployment>(&req.id).await?;
            expect_revision(
                Deployment::KIND,
                &req.id,
                req.expected_revision,
                current.mod_revision,
            )?;
            let mut d = current.value.clone();
            merge!(
                d,
                update,
                req.update_mask.as_ref(),
                "Deployment",
                [
                    model_name,
                    provider,
                    model,
                    api_base,
                    api_key,
                    api_version,
                    weight,
                    rpm,
                    tpm,
                    timeout,
                    access_groups,
                    input_cost_per_token,
                    output_cost_per_token,
                    credits_per_call,
                    order,
                    stream_timeout,
                    max_input_tokens,
                ]
            );
            check_deployment(&mut d, "update")?;
            d.updated_at = Some(now());
            self.write_deployment(d, current.mod_revision, req.expected_revision)
                .await
        })?;
        Ok(Response::new(resp))
    }

    async fn delete_deployment(
        &self,
        request: Request<DeleteDeploymentRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let req = request.into_inner();
        validate::deployment_id("id", &req.id)?;
        let resp = self
            .catalog
            .delete::<Deployment>(&req.id, req.expected_revision)
            .await
            .map(|revision| DeleteResponse { revision })?;
        Ok(Response::new(resp))
    }

    async fn list_model_groups(
        &self,
        _request: Request<ListModelGroupsRequest>,
    ) -> Result<Response<ListModelGroupsResponse>, Status> {
        let (deployments, revision) = self.catalog.list::<Deployment>().await?;
        let (groups, _) = self.catalog.list::<AccessGroup>().await?;
        let (aliases, _) = self.catalog.list::<ModelAlias>().await?;
        let mut by_name: BTreeMap<String, (Vec<String>, BTreeSet<String>, BTreeSet<String>)> =
            BTreeMap::new();
        for d in &deployments {
            let entry = by_name.entry(d.value.model_name.clone()).or_default();
            entry.0.push(d.value.id.clone());
            entry.1.extend(d.value.access_groups.iter().cloned());
        }
        for g in &groups {
            for m in &g.value.models {
                if let Some(entry) = by_name.get_mut(m) {
                    entry.1.insert(g.value.name.clone());
                }
            }
        }
        for a in &aliases {
            if let Some(entry) = by_name.get_mut(&a.value.target) {
                entry.2.insert(a.value.alias.clone());
            }
        }
        let groups = by_name
            .into_iter()
            .map(
                |(model_name, (deployment_ids, access_groups, aliases))| ModelGroup {
                    model_name,
                    deployment_ids,
                    access_groups: access_groups.into_iter().collect(),
                    aliases: aliases.into_iter().collect(),
                },
            )
            .collect();
        Ok(Response::new(ListModelGroupsResponse { groups, revision }))
    }

    async fn create_model_alias(
        &self,
        request: Request<CreateModelAliasRequest>,
    ) -> Result<Response<ModelAliasWriteResponse>, Status> {
        let req = request.into_inner();
        validate::model_name("alias", &req.alias)?;
        validate::model_name("target", &req.target)?;
        validate::text("description", &req.description)?;
        let mut alias = ModelAlias {
            alias: req.alias.clone(),
            target: req.target.clone(),
            description: req.description.clone(),
            created_at: Some(now()),
            revision: 0,
        };
        let resp = retry_on_conflict!({
            let groups = model_group_names(&self.catalog).await?;
            if groups.contains(&alias.alias) {
                // An exact model group always wins resolution: the alias could never apply.
                return Err(AdminError::AlreadyExists(format!(
                    "model group {:?} (an alias cannot shadow it)",
                    alias.alias
                )));
            }
            if !groups.contains(&alias.target) {
                return Err(AdminError::NotFound(format!(
                    "model group {:?} (alias target)",
                    alias.target
                )));
            }
            if self
                .catalog
                .get::<ModelAlias>(&alias.alias)
                .await?
                .is_some()
            {
                return Err(AdminError::AlreadyExists(format!(
                    "model alias {:?}",
                    alias.alias
                )));
            }
            let o = self.catalog.commit(put_if(Txn::new(), &alias, 0)).await?;
            Ok(if o.succeeded {
                alias.revision = o.revision;
                Attempt::Done(ModelAliasWriteResponse {
                    alias: Some(alias.clone()),
                    revision: o.revision,
                })
            } else {
                Attempt::Conflict
            })
        })?;
        Ok(Response::new(resp))
    }

    async fn list_model_aliases(
        &self,
        _request: Request<ListModelAliasesRequest>,
    ) -> Result<Response<ListModelAliasesResponse>, Status> {
        let (aliases, revision) = self.catalog.list::<ModelAlias>().await?;
        Ok(Response::new(ListModelAliasesResponse {
            aliases: aliases.into_iter().map(|a| a.value).collect(),
            revision,
        }))
    }

    async fn delete_model_alias(
        &self,
        request: Request<DeleteModelAliasRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let name = request.into_inner().alias;
        validate::model_name("alias", &name)?;
        let resp = self
            .catalog
            .delete::<ModelAlias>(&name, 0)
            .await
            .map(|revision| DeleteResponse { revision })?;
        Ok(Response::new(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mock(id: &str) -> Deployment {
        Deployment {
            id: id.into(),
            model_name: "a".into(),
            model: "mock/a".into(),
            ..Default::default()
        }
    }

    fn refused(mut d: Deployment) -> String {
        match check_deployment(&mut d, "deployment") {
            Err(AdminError::Invalid { field, .. }) => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn routing_fields_take_their_sensible_values() {
        let mut d = Deployment {
            order: 3,
            stream_timeout: Some(prost_types::Duration {
                seconds: 30,
                nanos: 0,
            }),
            max_input_tokens: Some(1),
            ..mock("d1")
        };
        check_deployment(&mut d, "deployment").unwrap();
    }

    #[test]
    fn a_negative_stream_timeout_is_refused() {
        let d = Deployment {
            stream_timeout: Some(prost_types::Duration {
                seconds: 0,
                nanos: -1,
            }),
            ..mock("d1")
        };
        assert_eq!(refused(d), "deployment.stream_timeout");
    }

    #[test]
    fn max_input_tokens_zero_is_refused() {
        let d = Deployment {
            max_input_tokens: Some(0),
            ..mock("d1")
        };
        assert_eq!(refused(d), "deployment.max_input_tokens");
    }
}
