//! `ConfigService`: LiteLLM `config.yaml` in and out.
//!
//! An import is planned against what the store holds (create, update, or
//! leave unchanged each object), then committed in batches guarded by the
//! revisions it planned from; a conflict re-plans, and since the plan is
//! idempotent a re-plan only finishes what is left. Importing the same file
//! twice writes nothing the second time.

use sluice_proto::admin::v1::config_service_server::ConfigService;
use sluice_proto::admin::v1::{
    AccessGroup, Deployment, ExportConfigRequest, ExportConfigResponse, ImportLiteLlmConfigRequest,
    ImportLiteLlmConfigResponse, RouterSettings,
};
use tonic::{Request, Response, Status};

use super::Admin;
use super::router::check_router_settings;
use crate::catalog::{Attempt, now, retry_on_conflict};
use crate::error::{AdminError, AdminResult};
use crate::litellm::{self, ImportError};
use crate::resources::ROUTER_SETTINGS_ID;
use crate::secrets;
use crate::store::{MAX_TXN_OPS, Txn};
use crate::validate;

/// Writes per import transaction: a compare and a put each.
const IMPORT_BATCH: usize = MAX_TXN_OPS - 28;

/// Most bytes of YAML accepted.
const MAX_YAML_BYTES: usize = 4 * 1024 * 1024;

impl From<ImportError> for AdminError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::Yaml {
                line,
                column,
                message,
            } => AdminError::invalid(
                "yaml",
                format!("malformed YAML at line {line}, column {column}: {message}"),
            ),
            ImportError::Invalid { path, message } => {
                AdminError::invalid(format!("yaml: {path}"), message)
            }
        }
    }
}

/// Deployments compared without their timestamps and revision.
fn same_deployment(a: &Deployment, b: &Deployment) -> bool {
    let strip = |d: &Deployment| Deployment {
        created_at: None,
        updated_at: None,
        revision: 0,
        ..d.clone()
    };
    strip(a) == strip(b)
}

/// One planned write.
struct Write {
    label: String,
    created: bool,
    key: String,
    mod_revision: i64,
    value: Vec<u8>,
}

impl Admin {
    async fn import(&self, yaml: &str) -> AdminResult<ImportLiteLlmConfigResponse> {
        if yaml.len() > MAX_YAML_BYTES {
            return Err(AdminError::invalid(
                "yaml",
                format!(
                    "is {} bytes; at most {MAX_YAML_BYTES} are accepted",
                    yaml.len()
                ),
            ));
        }
        let imported = litellm::parse(yaml)?;
        let mut deployments = imported.deployments;
        for (i, d) in deployments.iter_mut().enumerate() {
            validate::deployment(d, &format!("model_list[{i}]"))?;
        }
        if let Some(r) = &imported.router_settings {
            check_router_settings(r, "router_settings")?;
        }
        let mut created_labels = Vec::new();
        let mut updated_labels = Vec::new();
        let mut unchanged_labels = Vec::new();
        // Many objects in one go: the subject of a give-up is the configuration.
        let revision = retry_on_conflict!("configuration", crate::resources::ROOT, {
            created_labels.clear();
            updated_labels.clear();
            unchanged_labels.clear();
            let mut writes: Vec<Write> = Vec::new();
            let stamp = now();
            for d in &deployments {
                let label = format!("deployment/{}", d.id);
                match self.catalog.get::<Deployment>(&d.id).await? {
                    Some(cur) if same_deployment(&cur.value, d) => unchanged_labels.push(label),
                    Some(cur) => {
                        let mut new = d.clone();
                        new.created_at = cur.value.created_at;
                        new.updated_at = Some(stamp);
                        writes.push(Write {
                            label,
                            created: false,
                            key: crate::resources::key_of::<Deployment>(&d.id),
                            mod_revision: cur.mod_revision,
                            value: crate::resources::encode(&new),
                        });
                    }
                    None => {
                        let mut new = d.clone();
                        new.created_at = Some(stamp);
                        new.updated_at = Some(stamp);
                        writes.push(Write {
                            label,
                            created: true,
                            key: crate::resources::key_of::<Deployment>(&d.id),
                            mod_revision: 0,
                            value: crate::resources::encode(&new),
                        });
                    }
                }
            }
            for name in &imported.access_groups {
                let label = format!("access_group/{name}");
                if self.catalog.get::<AccessGroup>(name).await?.is_some() {
                    unchanged_labels.push(label);
                } else {
                    let group = AccessGroup {
                        name: name.clone(),
                        description: "declared in config.yaml".to_string(),
                        models: Vec::new(),
                        created_at: Some(stamp),
                        uid: secrets::random_id(8),
                        revision: 0,
                    };
                    writes.push(Write {
                        label,
                        created: true,
                        key: crate::resources::key_of::<AccessGroup>(name),
                        mod_revision: 0,
                        value: crate::resources::encode(&group),
                    });
                }
            }
            if let Some(r) = &imported.router_settings {
                let label = "router_settings".to_string();
                let current = self
                    .catalog
                    .get::<RouterSettings>(ROUTER_SETTINGS_ID)
                    .await?;
                let (cur, rev) = match current {
                    Some(v) => (v.value, v.mod_revision),
                    None => (RouterSettings::default(), 0),
                };
                let mut wanted = r.clone();
                wanted.revision = cur.revision;
                if wanted == cur {
                    unchanged_labels.push(label);
                } else {
                    writes.push(Write {
                        label,
                        created: rev == 0,
                        key: crate::resources::key_of::<RouterSettings>(ROUTER_SETTINGS_ID),
                        mod_revision: rev,
                        value: crate::resources::encode(r),
                    });
                }
            }
            if writes.is_empty() {
                return Ok(Attempt::Done(self.catalog.revision().await?));
            }
            let mut last = 0;
            for batch in writes.chunks(IMPORT_BATCH) {
                let mut txn = Txn::new();
                for w in batch {
                    txn = txn
                        .when_mod_revision(w.key.clone(), w.mod_revision)
                        .put(w.key.clone(), w.value.clone());
                }
                let o = self.catalog.commit(txn).await?;
                if !o.succeeded {
                    return Ok(Attempt::Conflict);
                }
                last = o.revision;
                for w in batch {
                    if w.created {
                        created_labels.push(w.label.clone());
                    } else {
                        updated_labels.push(w.label.clone());
                    }
                }
            }
            Ok(Attempt::Done(last))
        })?;
        tracing::info!(
            created = created_labels.len(),
            updated = updated_labels.len(),
            unchanged = unchanged_labels.len(),
            warnings = imported.warnings.len(),
            "imported LiteLLM config"
        );
        Ok(ImportLiteLlmConfigResponse {
            created: created_labels,
            updated: updated_labels,
            unchanged: unchanged_labels,
            warnings: imported.warnings,
            revision,
        })
    }
}

#[tonic::async_trait]
impl ConfigService for Admin {
    async fn import_lite_llm_config(
        &self,
        request: Request<ImportLiteLlmConfigRequest>,
    ) -> Result<Response<ImportLiteLlmConfigResponse>, Status> {
        Ok(Response::new(
            self.import(&request.into_inner().yaml).await?,
        ))
    }

    async fn export_config(
        &self,
        request: Request<ExportConfigRequest>,
    ) -> Result<Response<ExportConfigResponse>, Status> {
        let include_secrets = request.into_inner().include_secrets;
        let (deployments, revision) = self.catalog.list::<Deployment>().await?;
        let deployments: Vec<Deployment> = deployments.into_iter().map(|d| d.value).collect();
        let router = self
            .catalog
            .get::<RouterSettings>(ROUTER_SETTINGS_ID)
            .await?
            .map(|v| v.value);
        let yaml = litellm::export(&deployments, router.as_ref(), include_secrets);
        Ok(Response::new(ExportConfigResponse { yaml, revision }))
    }
}
