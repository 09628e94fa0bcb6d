//! `KeyService`: virtual keys. The plaintext exists only in the answers of
//! GenerateKey and RegenerateKey; the store holds its SHA-256.

use sluice_proto::admin::v1::key_service_server::KeyService;
use sluice_proto::admin::v1::{
    DeleteKeyRequest, DeleteResponse, GenerateKeyRequest, GenerateKeyResponse, GetKeyRequest, Key,
    KeyWriteResponse, ListKeysRequest, ListKeysResponse, RegenerateKeyRequest, Team,
    UpdateKeyRequest,
};
use tonic::{Request, Response, Status};

use super::{Admin, bind_groups, dedup, expect_revision, lost_race, merge};
use crate::catalog::{Attempt, Catalog, delete_if, now, outcome, put_if, retry_on_conflict};
use crate::error::{AdminError, AdminResult};
use crate::resources::{Resource, key_of};
use crate::secrets;
use crate::store::Txn;
use crate::usage::paths::{Scope, ScopeKind};
use crate::validate;

/// The id of the key a request names, by `key_id` or by plaintext `key`.
pub fn key_id_of(key_id: &str, key: &str) -> AdminResult<String> {
    match (key_id.is_empty(), key.is_empty()) {
        (false, true) => {
            let ok = key_id.len() == 64
                && key_id
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
            if !ok {
                return Err(AdminError::invalid(
                    "key_id",
                    "must be the 64 lowercase hex characters of the key's SHA-256",
                ));
            }
            Ok(key_id.to_string())
        }
        (true, false) => Ok(secrets::sha256_hex(key)),
        (true, true) => Err(AdminError::invalid(
            "key_id",
            "name the key by key_id (its SHA-256) or by key (its plaintext)",
        )),
        (false, false) => Err(AdminError::invalid("key", "give key_id or key, not both")),
    }
}

/// The rules every stored key satisfies.
fn check_key(k: &Key, field: &str) -> AdminResult<()> {
    let f = |name: &str| format!("{field}.{name}");
    validate::text(&f("key_alias"), &k.key_alias)?;
    if !k.team_id.is_empty() {
        validate::object_id(&f("team_id"), &k.team_id)?;
    }
    validate::text(&f("user_id"), &k.user_id)?;
    validate::model_list(&f("models"), &k.models)?;
    validate::money(&f("max_budget"), k.max_budget)?;
    validate::window(&f("budget_duration"), &k.budget_duration)?;
    validate::metadata(&f("metadata"), &k.metadata)?;
    if k.team_id.is_empty() && k.models.is_empty() {
        return Err(AdminError::invalid(
            f("models"),
            "a key without a team needs models (use [\"*\"] for every model)",
        ));
    }
    Ok(())
}

fn check_expiry(k: &Key, field: &str) -> AdminResult<()> {
    if let Some(t) = &k.expires_at {
        let now = now();
        if (t.seconds, t.nanos) <= (now.seconds, now.nanos) {
            return Err(AdminError::invalid(
                format!("{field}.expires_at"),
                "must be in the future",
            ));
        }
    }
    Ok(())
}

/// Writes `key` (new, at `key_id`) with its team and group bindings checked
/// in the same transaction; the caller adds its own ops to `base`.
async fn write_key(
    catalog: &Catalog,
    key: &mut Key,
    key_mod_revision: i64,
    base: Txn,
) -> AdminResult<Attempt<i64>> {
    let mut txn = base;
    if !key.team_id.is_empty() {
        // A key may not outlive its team: the team must exist at commit.
        let team = catalog.require::<Team>(&key.team_id).await?;
        txn = txn.when_mod_revision(key_of::<Team>(&key.team_id), team.mod_revision);
    }
    let entries: Vec<&String> = key.models.iter().collect();
    let grants = bind_groups(catalog, &entries, &[], "", &key.access_group_uids).await?;
    key.access_group_uids = grants.uids.clone();
    txn = put_if(grants.guard(txn), &*key, key_mod_revision);
    Ok(outcome(catalog.commit(txn).await?, |rev| rev))
}

/// Creates a new key from the settable fields of `template` and returns its
/// plaintext. Also used by CreateTeam's first key.
pub fn new_key(template: Key) -> (String, Key) {
    let plaintext = secrets::generate(secrets::KEY_PREFIX);
    let created = now();
    let mut key = Key {
        key_id: secrets::sha256_hex(&plaintext),
        key_prefix: secrets::display_prefix(&plaintext),
        created_at: Some(created),
        updated_at: Some(created),
        revision: 0,
        access_group_uids: Default::default(),
        ..template
    };
    dedup(&mut key.models);
    // LiteLLM's behaviour, made explicit (DESIGN §3): no team, no models = all.
    if key.team_id.is_empty() && key.models.is_empty() {
        key.models = vec!["*".to_string()];
    }
    (plaintext, key)
}

impl Admin {
    async fn generate_key(&self, template: Key) -> AdminResult<GenerateKeyResponse> {
        let (plaintext, mut key) = new_key(template);
        check_key(&key, "key")?;
        check_expiry(&key, "key")?;
        let revision = retry_on_conflict!(Key::KIND, &key.key_id, {
            write_key(&self.catalog, &mut key, 0, Txn::new()).await
        })?;
        key.revision = revision;
        tracing::info!(key_id = %key.key_id, team_id = %key.team_id, "generated key");
        Ok(GenerateKeyResponse {
            key: plaintext,
            info: Some(key),
            revision,
        })
    }

    async fn update_key(&self, req: UpdateKeyRequest) -> AdminResult<KeyWriteResponse> {
        let id = key_id_of(&req.key_id, &req.key)?;
        let update = req.update.unwrap_or_default();
        retry_on_conflict!(Key::KIND, &id, {
            let current = self.catalog.require::<Key>(&id).await?;
            expect_revision(Key::KIND, &id, req.expected_revision, current.mod_revision)?;
            let mut key = current.value.clone();
            merge!(
                key,
                update,
                req.update_mask.as_ref(),
                "Key",
                [
                    key_alias,
                    team_id,
                    user_id,
                    models,
                    max_budget,
                    budget_duration,
                    rpm_limit,
                    tpm_limit,
                    max_parallel_requests,
                    expires_at,
                    blocked,
                    metadata,
                ]
            );
            dedup(&mut key.models);
            check_key(&key, "update")?;
            if key.expires_at != current.value.expires_at {
                check_expiry(&key, "update")?;
            }
            key.updated_at = Some(now());
            match write_key(&self.catalog, &mut key, current.mod_revision, Txn::new()).await? {
                Attempt::Done(revision) => {
                    key.revision = revision;
                    Ok(Attempt::Done(KeyWriteResponse {
                        key: Some(key),
                        revision,
                    }))
                }
                Attempt::Conflict if req.expected_revision != 0 => Err(lost_race(Key::KIND, &id)),
                Attempt::Conflict => Ok(Attempt::Conflict),
            }
        })
    }

    async fn regenerate_key(&self, req: RegenerateKeyRequest) -> AdminResult<GenerateKeyResponse> {
        let id = key_id_of(&req.key_id, &req.key)?;
        retry_on_conflict!(Key::KIND, &id, {
            let current = self.catalog.require::<Key>(&id).await?;
            let (plaintext, mut key) = new_key(current.value.clone());
            key.created_at = current.value.created_at;
            key.access_group_uids = current.value.access_group_uids.clone();
            // The old key stops working in the same transaction that starts the new one.
            let base = delete_if::<Key>(Txn::new(), &id, current.mod_revision);
            match write_key(&self.catalog, &mut key, 0, base).await? {
                Attempt::Done(revision) => {
                    key.revision = revision;
                    tracing::info!(old_key_id = %id, key_id = %key.key_id, "regenerated key");
                    Ok(Attempt::Done(GenerateKeyResponse {
                        key: plaintext,
                        info: Some(key),
                        revision,
                    }))
                }
                Attempt::Conflict => Ok(Attempt::Conflict),
            }
        })
    }

    async fn delete_key(&self, req: DeleteKeyRequest) -> AdminResult<DeleteResponse> {
        let id = key_id_of(&req.key_id, &req.key)?;
        self.catalog
            .delete::<Key>(&id, req.expected_revision)
            .await
            .map(|revision| DeleteResponse { revision })
    }
}

#[tonic::async_trait]
impl KeyService for Admin {
    async fn generate_key(
        &self,
        request: Request<GenerateKeyRequest>,
    ) -> Result<Response<GenerateKeyResponse>, Status> {
        let template = request.into_inner().key.unwrap_or_default();
        Ok(Response::new(Admin::generate_key(self, template).await?))
    }

    async fn get_key(&self, request: Request<GetKeyRequest>) -> Result<Response<Key>, Status> {
        let req = request.into_inner();
        let id = key_id_of(&req.key_id, &req.key)?;
        let mut key = self.catalog.require::<Key>(&id).await?.value;
        key.spend = self
            .window_spend(&Scope::new(ScopeKind::Key, id), &key.budget_duration)
            .await?;
        Ok(Response::new(key))
    }

    async fn list_keys(
        &self,
        request: Request<ListKeysRequest>,
    ) -> Result<Response<ListKeysResponse>, Status> {
        let req = request.into_inner();
        if !req.team_id.is_empty() {
            validate::object_id("team_id", &req.team_id)?;
        }
        validate::text("user_id", &req.user_id)?;
        let (keys, revision) = self.catalog.list::<Key>().await?;
        let keys = keys
            .into_iter()
            .map(|k| k.value)
            .filter(|k| req.team_id.is_empty() || k.team_id == req.team_id)
            .filter(|k| req.user_id.is_empty() || k.user_id == req.user_id)
            .collect();
        Ok(Response::new(ListKeysResponse { keys, revision }))
    }

    async fn update_key(
        &self,
        request: Request<UpdateKeyRequest>,
    ) -> Result<Response<KeyWriteResponse>, Status> {
        Ok(Response::new(
            Admin::update_key(self, request.into_inner()).await?,
        ))
    }

    async fn regenerate_key(
        &self,
        request: Request<RegenerateKeyRequest>,
    ) -> Result<Response<GenerateKeyResponse>, Status> {
        Ok(Response::new(
            Admin::regenerate_key(self, request.into_inner()).await?,
        ))
    }

    async fn delete_key(
        &self,
        request: Request<DeleteKeyRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        Ok(Response::new(
            Admin::delete_key(self, request.into_inner()).await?,
        ))
    }
}
