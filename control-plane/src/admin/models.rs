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
use tonic::{Request, Response, Status};

use super::{Admin, merge};
use crate::catalog::{
    Attempt, Catalog, expect_revision, now, outcome, pinned_outcome, put_if, retry_on_conflict,
};
use crate::error::{AdminError, AdminResult};
use crate::litellm::{REDACTED, secret_is_reference};
use crate::resources::Resource;
use crate::secrets;
use crate::store::Txn;
use crate::validate;

/// A deployment as answers show it: literal provider keys (and AWS secret
/// keys and session tokens, Azure client secrets and tokens) redacted.
pub fn redacted(mut d: Deployment) -> Deployment {
    for secret in [
        &mut d.api_key,
        &mut d.aws_secret_access_key,
        &mut d.aws_session_token,
        &mut d.azure_client_secret,
        &mut d.azure_ad_token,
    ] {
        if !secret.is_empty() && !secret_is_reference(secret) {
            *secret = REDACTED.to_string();
        }
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

/// The kind of a model group, for errors: the deployments sharing a `model_name`.
const MODEL_GROUP: &str = "model group";

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
        d: Deployment,
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
        let id = d.id.clone();
        pinned_outcome(o, expected_revision, Deployment::KIND, &id, |revision| {
            DeploymentWriteResponse {
                deployment: Some(redacted(Deployment { revision, ..d })),
                revision,
            }
        })
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
        validate::deployment(&mut d, "deployment")?;
        let resp = retry_on_conflict!(Deployment::KIND, &d.id, {
            if self.catalog.get::<Deployment>(&d.id).await?.is_some() {
                return Err(AdminError::already_exists(Deployment::KIND, &d.id));
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
        let resp = retry_on_conflict!(Deployment::KIND, &req.id, {
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
                    supported_endpoints,
                    cache_read_input_token_cost,
                    cache_creation_input_token_cost,
                    output_cost_per_image,
                    vertex_project,
                    vertex_location,
                    aws_region_name,
                    aws_access_key_id,
                    aws_secret_access_key,
                    aws_session_token,
                    azure_tenant_id,
                    azure_client_id,
                    azure_client_secret,
                    azure_ad_token,
                ]
            );
            // A redacted secret sent back unchanged keeps the one stored.
            for (sent, stored) in [
                (
                    &mut d.aws_secret_access_key,
                    &current.value.aws_secret_access_key,
                ),
                (&mut d.aws_session_token, &current.value.aws_session_token),
                (
                    &mut d.azure_client_secret,
                    &current.value.azure_client_secret,
                ),
                (&mut d.azure_ad_token, &current.value.azure_ad_token),
            ] {
                if *sent == REDACTED {
                    sent.clone_from(stored);
                }
            }
            validate::deployment(&mut d, "update")?;
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
        let alias = ModelAlias {
            alias: req.alias.clone(),
            target: req.target.clone(),
            description: req.description.clone(),
            created_at: Some(now()),
            revision: 0,
        };
        let resp = retry_on_conflict!(ModelAlias::KIND, &alias.alias, {
            let groups = model_group_names(&self.catalog).await?;
            if groups.contains(&alias.alias) {
                // An exact model group always wins resolution: the alias could never apply.
                return Err(AdminError::already_exists(MODEL_GROUP, &alias.alias));
            }
            if !groups.contains(&alias.target) {
                return Err(AdminError::not_found_in(
                    MODEL_GROUP,
                    &alias.target,
                    "target",
                ));
            }
            if self
                .catalog
                .get::<ModelAlias>(&alias.alias)
                .await?
                .is_some()
            {
                return Err(AdminError::already_exists(ModelAlias::KIND, &alias.alias));
            }
            let o = self.catalog.commit(put_if(Txn::new(), &alias, 0)).await?;
            Ok(outcome(o, |revision| ModelAliasWriteResponse {
                alias: Some(ModelAlias {
                    revision,
                    ..alias.clone()
                }),
                revision,
            }))
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
        match validate::deployment(&mut d, "deployment") {
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
        validate::deployment(&mut d, "deployment").unwrap();
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

    #[test]
    fn cache_prices_must_be_prices_when_set() {
        for bad in [-1e-9, f64::NAN, f64::INFINITY] {
            let d = Deployment {
                cache_read_input_token_cost: Some(bad),
                ..mock("d1")
            };
            assert_eq!(refused(d), "deployment.cache_read_input_token_cost");
            let d = Deployment {
                cache_creation_input_token_cost: Some(bad),
                ..mock("d1")
            };
            assert_eq!(refused(d), "deployment.cache_creation_input_token_cost");
            let d = Deployment {
                output_cost_per_image: bad,
                ..mock("d1")
            };
            assert_eq!(refused(d), "deployment.output_cost_per_image");
        }
        let mut free_reads = Deployment {
            cache_read_input_token_cost: Some(0.0),
            ..mock("d1")
        };
        validate::deployment(&mut free_reads, "deployment").unwrap();
    }

    #[test]
    fn vertex_deployments_need_a_project_and_names_fit_for_a_url() {
        let vertex = |project: &str, location: &str, model: &str| Deployment {
            id: "v".into(),
            model_name: "g".into(),
            provider: "vertex_ai".into(),
            model: model.into(),
            vertex_project: project.into(),
            vertex_location: location.into(),
            ..Default::default()
        };
        validate::deployment(&mut vertex("my-proj", "", "gemini-2.5-pro"), "deployment").unwrap();
        validate::deployment(
            &mut vertex(
                "os.environ/PROJECT",
                "global",
                "meta/llama-3.3-70b-instruct-maas",
            ),
            "deployment",
        )
        .unwrap();
        let mut by_endpoint = Deployment {
            api_base: "https://europe-west4-aiplatform.googleapis.com/v1/projects/p/locations/europe-west4".into(),
            ..vertex("", "", "gemini-2.5-pro")
        };
        validate::deployment(&mut by_endpoint, "deployment").unwrap();
        assert_eq!(
            refused(vertex("", "", "gemini-2.5-pro")),
            "deployment.vertex_project"
        );
        assert_eq!(
            refused(vertex("p/../x", "", "gemini-2.5-pro")),
            "deployment.vertex_project"
        );
        assert_eq!(
            refused(vertex("p", "us central", "gemini-2.5-pro")),
            "deployment.vertex_location"
        );
        // Claude, through Anthropic's API there.
        validate::deployment(
            &mut vertex("p", "us-east5", "claude-sonnet-4@20250514"),
            "deployment",
        )
        .unwrap();
        let elsewhere = Deployment {
            vertex_project: "p".into(),
            ..mock("d1")
        };
        assert_eq!(refused(elsewhere), "deployment.vertex_project");
    }

    #[test]
    fn bedrock_deployments_name_claude_a_region_and_keys_in_pairs() {
        let bedrock = |model: &str| Deployment {
            id: "b".into(),
            model_name: "claude".into(),
            provider: "bedrock".into(),
            model: model.into(),
            aws_region_name: "us-east-1".into(),
            ..Default::default()
        };
        for model in [
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "us.anthropic.claude-sonnet-4-20250514-v1:0",
            "invoke/anthropic.claude-3-haiku-20240307-v1:0",
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc",
            // Open-weight models, through its OpenAI-compatible API.
            "openai.gpt-oss-120b-1:0",
            "deepseek.v3-v1:0",
            "us.deepseek.r1-v1:0",
            // Through Converse.
            "meta.llama3-70b-instruct-v1:0",
            "us.amazon.nova-pro-v1:0",
        ] {
            validate::deployment(&mut bedrock(model), "deployment").unwrap();
        }
        assert_eq!(refused(bedrock("")), "deployment.model");
        let keys = Deployment {
            aws_access_key_id: "AKIDEXAMPLE".into(),
            aws_secret_access_key: "os.environ/AWS_SECRET".into(),
            aws_session_token: "os.environ/AWS_TOKEN".into(),
            ..bedrock("anthropic.claude-3-5-sonnet-20240620-v1:0")
        };
        validate::deployment(&mut keys.clone(), "deployment").unwrap();
        let half = Deployment {
            aws_secret_access_key: String::new(),
            aws_session_token: String::new(),
            ..keys.clone()
        };
        assert_eq!(refused(half), "deployment.aws_secret_access_key");
        let token_alone = Deployment {
            aws_access_key_id: String::new(),
            aws_secret_access_key: String::new(),
            ..keys.clone()
        };
        assert_eq!(refused(token_alone), "deployment.aws_session_token");
        let bad_region = Deployment {
            aws_region_name: "us-east-1.evil.com/".into(),
            ..keys.clone()
        };
        assert_eq!(refused(bad_region), "deployment.aws_region_name");
        let elsewhere = Deployment {
            aws_region_name: "us-east-1".into(),
            ..mock("d1")
        };
        assert_eq!(refused(elsewhere), "deployment.aws_region_name");
        // Shown with the literal secret redacted, references as they are.
        let literal = Deployment {
            aws_secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            ..keys
        };
        let shown = redacted(literal);
        assert_eq!(shown.aws_secret_access_key, REDACTED);
        assert_eq!(shown.aws_session_token, "os.environ/AWS_TOKEN");
        assert_eq!(shown.aws_access_key_id, "AKIDEXAMPLE");
    }

    #[test]
    fn azure_identities_are_a_secret_with_its_app_or_a_token_and_never_beside_a_key() {
        let azure = Deployment {
            id: "a".into(),
            model_name: "gpt-4o".into(),
            provider: "azure".into(),
            model: "gpt-4o-prod".into(),
            api_base: "https://r.openai.azure.com".into(),
            ..Default::default()
        };
        let principal = Deployment {
            azure_tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            azure_client_id: "0b6c2b5e".into(),
            azure_client_secret: "os.environ/TEAM_A_SECRET".into(),
            ..azure.clone()
        };
        validate::deployment(&mut principal.clone(), "deployment").unwrap();
        let picked = Deployment {
            azure_client_id: "0b6c2b5e".into(),
            ..azure.clone()
        };
        validate::deployment(&mut picked.clone(), "deployment").unwrap();
        // An Entra ID access token is longer than free text may be.
        let token = Deployment {
            azure_ad_token: format!("eyJ0eXAiOiJKV1Qi.{}.sig", "a".repeat(2500)),
            ..azure.clone()
        };
        validate::deployment(&mut token.clone(), "deployment").unwrap();

        let secret_alone = Deployment {
            azure_tenant_id: String::new(),
            ..principal.clone()
        };
        assert_eq!(refused(secret_alone), "deployment.azure_client_secret");
        let both = Deployment {
            azure_ad_token: "eyJ0".into(),
            ..picked.clone()
        };
        assert_eq!(refused(both), "deployment.azure_client_id");
        let beside_a_key = Deployment {
            api_key: "os.environ/AZURE_API_KEY".into(),
            ..principal.clone()
        };
        assert_eq!(refused(beside_a_key), "deployment.azure_tenant_id");
        let oidc = Deployment {
            azure_ad_token: "oidc/github/api://AzureADTokenExchange".into(),
            ..azure.clone()
        };
        assert_eq!(refused(oidc), "deployment.azure_ad_token");
        let elsewhere = Deployment {
            azure_client_id: "0b6c2b5e".into(),
            ..mock("d1")
        };
        assert_eq!(refused(elsewhere), "deployment.azure_client_id");

        let shown = redacted(Deployment {
            azure_client_secret: "Xy8Q~literal-client-secret".into(),
            ..principal
        });
        assert_eq!(shown.azure_client_secret, REDACTED);
        assert_eq!(shown.azure_client_id, "0b6c2b5e");
        assert_eq!(redacted(token).azure_ad_token, REDACTED);
    }

    #[test]
    fn credentials_may_be_longer_than_text_and_a_json_key_may_have_lines() {
        let vertex = Deployment {
            id: "v".into(),
            model_name: "gemini".into(),
            provider: "vertex_ai".into(),
            model: "gemini-2.5-pro".into(),
            vertex_project: "p".into(),
            api_key: format!(
                "{{\n  \"type\": \"service_account\",\n  \"private_key\": \"{}\"\n}}\n",
                "k".repeat(1800)
            ),
            ..Default::default()
        };
        validate::deployment(&mut vertex.clone(), "deployment").unwrap();
        let openai_key = Deployment {
            api_key: "sk-abc\n".into(),
            ..mock("d1")
        };
        assert_eq!(refused(openai_key), "deployment.api_key");
        let huge = Deployment {
            api_key: "k".repeat(validate::MAX_CREDENTIAL_LEN + 1),
            ..mock("d1")
        };
        assert_eq!(refused(huge), "deployment.api_key");
    }

    #[test]
    fn supported_endpoints_must_be_paths() {
        for bad in ["responses", "/V1/Responses", "/v1/responses?x", ""] {
            let d = Deployment {
                supported_endpoints: vec!["/v1/chat/completions".into(), bad.into()],
                ..mock("d1")
            };
            assert_eq!(refused(d), "deployment.supported_endpoints[1]", "{bad:?}");
        }
    }
}
