//! `TeamService`. A team's allowed models are `models` ∪ `access_groups`;
//! both empty means none (DESIGN §3). Deleting a team deletes its keys.

use sluice_proto::admin::v1::team_service_server::TeamService;
use sluice_proto::admin::v1::{
    CreateTeamRequest, CreateTeamResponse, DeleteResponse, DeleteTeamRequest, GetTeamRequest, Key,
    ListTeamsRequest, ListTeamsResponse, Organization, Team, TeamWriteResponse, UpdateTeamRequest,
};
use tonic::{Request, Response, Status};

use super::keys::new_key;
use super::sweeps::{Pending, Swept};
use super::{Admin, bind_groups, dedup, expect_revision, merge};
use crate::catalog::{
    Attempt, Catalog, Fix, SweepFor, delete_if, now, outcome, pinned_outcome, put_if,
    retry_on_conflict,
};
use crate::error::{AdminError, AdminResult};
use crate::resources::Resource;
use crate::secrets;
use crate::store::Txn;
use crate::usage::paths::{Scope, ScopeKind};
use crate::validate;

fn check_team(t: &Team, field: &str) -> AdminResult<()> {
    let f = |name: &str| format!("{field}.{name}");
    validate::object_id(&f("team_id"), &t.team_id)?;
    validate::text(&f("team_alias"), &t.team_alias)?;
    if !t.organization_id.is_empty() {
        validate::object_id(&f("organization_id"), &t.organization_id)?;
    }
    validate::model_list(&f("models"), &t.models)?;
    validate::group_list(&f("access_groups"), &t.access_groups)?;
    validate::money(&f("max_budget"), t.max_budget)?;
    validate::window(&f("budget_duration"), &t.budget_duration)?;
    validate::non_negative(&f("credits_allocated"), t.credits_allocated)?;
    validate::metadata(&f("metadata"), &t.metadata)?;
    Ok(())
}

/// Adds the team write to `txn` with everything it references checked in
/// the same transaction: its organization (re-put, so that a concurrent
/// DeleteOrganization sees the change and re-checks) and its access groups.
async fn guard_team(
    catalog: &Catalog,
    team: &mut Team,
    previous_uids: &std::collections::HashMap<String, String>,
    field: &str,
    mut txn: Txn,
) -> AdminResult<Txn> {
    if !team.organization_id.is_empty() {
        let org = catalog
            .get::<Organization>(&team.organization_id)
            .await?
            .ok_or_else(|| {
                AdminError::not_found_in(
                    Organization::KIND,
                    &team.organization_id,
                    format!("{field}.organization_id"),
                )
            })?;
        txn = put_if(txn, &org.value, org.mod_revision);
    }
    let entries: Vec<&String> = team.models.iter().collect();
    let grants = bind_groups(
        catalog,
        &entries,
        &team.access_groups,
        &format!("{field}.access_groups"),
        previous_uids,
    )
    .await?;
    team.access_group_uids = grants.uids.clone();
    Ok(grants.guard(txn))
}

impl Admin {
    async fn create_team(&self, req: CreateTeamRequest) -> AdminResult<CreateTeamResponse> {
        let mut team = req.team.unwrap_or_default();
        if team.team_id.is_empty() {
            team.team_id = format!("team-{}", secrets::random_id(6));
        }
        let created = now();
        team.created_at = Some(created);
        team.updated_at = Some(created);
        team.revision = 0;
        team.access_group_uids.clear();
        dedup(&mut team.models);
        dedup(&mut team.access_groups);
        check_team(&team, "team")?;
        let first_key = req.generate_key.then(|| {
            new_key(Key {
                team_id: team.team_id.clone(),
                key_alias: req.key_alias.clone(),
                ..Default::default()
            })
        });
        if let Some((_, k)) = &first_key {
            validate::text("key_alias", &k.key_alias)?;
        }
        let keys_of_old_team = Pending::Team {
            team_id: team.team_id.clone(),
        };
        let revision = retry_on_conflict!(Team::KIND, &team.team_id, {
            if self.catalog.get::<Team>(&team.team_id).await?.is_some() {
                return Err(AdminError::already_exists(Team::KIND, &team.team_id));
            }
            if self.sweeper.pending_of_team(&team.team_id).await? != 0 {
                // A team deleted under this id still has keys being deleted:
                // finish first, or they would join the new team.
                self.sweeper.finish(keys_of_old_team.clone()).await?;
            }
            let empty = Default::default();
            let mut txn = guard_team(&self.catalog, &mut team, &empty, "team", Txn::new()).await?;
            txn = put_if(txn, &team, 0).when_mod_revision(keys_of_old_team.key(), 0);
            if let Some((_, key)) = &first_key {
                txn = put_if(txn, key, 0);
            }
            let o = self.catalog.commit(txn).await?;
            Ok(outcome(o, |revision| revision))
        })?;
        team.revision = revision;
        tracing::info!(team_id = %team.team_id, "created team");
        let (key, key_info) = match first_key {
            Some((plaintext, mut info)) => {
                info.revision = revision;
                (plaintext, Some(info))
            }
            None => (String::new(), None),
        };
        Ok(CreateTeamResponse {
            team: Some(team),
            key,
            key_info,
            revision,
        })
    }

    async fn update_team(&self, req: UpdateTeamRequest) -> AdminResult<TeamWriteResponse> {
        let id = req.team_id.clone();
        validate::object_id("team_id", &id)?;
        let update = req.update.unwrap_or_default();
        retry_on_conflict!(Team::KIND, &id, {
            let current = self.catalog.require::<Team>(&id).await?;
            expect_revision(Team::KIND, &id, req.expected_revision, current.mod_revision)?;
            let mut team = current.value.clone();
            merge!(
                team,
                update,
                req.update_mask.as_ref(),
                "Team",
                [
                    team_alias,
                    organization_id,
                    models,
                    access_groups,
                    max_budget,
                    budget_duration,
                    rpm_limit,
                    tpm_limit,
                    credits_allocated,
                    blocked,
                    metadata,
                ]
            );
            dedup(&mut team.models);
            dedup(&mut team.access_groups);
            check_team(&team, "update")?;
            team.updated_at = Some(now());
            let previous = current.value.access_group_uids.clone();
            let txn = guard_team(&self.catalog, &mut team, &previous, "update", Txn::new()).await?;
            let txn = put_if(txn, &team, current.mod_revision);
            let o = self.catalog.commit(txn).await?;
            pinned_outcome(o, req.expected_revision, Team::KIND, &id, |revision| {
                TeamWriteResponse {
                    team: Some(Team { revision, ..team }),
                    revision,
                }
            })
        })
    }

    /// Deletes the team first, so no new key can name it (GenerateKey checks
    /// the team in its transaction) and its existing keys stop working at once
    /// (a key whose team is gone is refused), recording in the same
    /// transaction that its keys are to be deleted (`sweeps`); then deletes
    /// those keys in batches, before answering. A retry after that was cut
    /// short finds the team gone and finishes it.
    async fn delete_team(&self, req: DeleteTeamRequest) -> AdminResult<DeleteResponse> {
        let id = req.team_id.clone();
        validate::object_id("team_id", &id)?;
        let pending = Pending::Team {
            team_id: id.clone(),
        };
        let deleted_at = retry_on_conflict!(Team::KIND, &id, {
            let Some(current) = self.catalog.get::<Team>(&id).await? else {
                if self.sweeper.pending_of_team(&id).await? != 0 {
                    return Ok(Attempt::Done(0));
                }
                return Err(AdminError::not_found(Team::KIND, &id));
            };
            expect_revision(Team::KIND, &id, req.expected_revision, current.mod_revision)?;
            let txn = delete_if::<Team>(Txn::new(), &id, current.mod_revision)
                .put(pending.key(), pending.value());
            let o = self.catalog.commit(txn).await?;
            pinned_outcome(o, req.expected_revision, Team::KIND, &id, |revision| {
                revision
            })
        })?;
        let swept = self.sweeper.finish(pending).await?;
        tracing::info!(team_id = %id, keys_deleted = swept.keys, "deleted team");
        Ok(DeleteResponse {
            revision: deleted_at.max(swept.revision),
        })
    }
}

/// Deletes every key of team `team_id`. Idempotent; no key can name the
/// team again while it is absent, and CreateTeam finishes this first.
pub(super) async fn sweep(catalog: &Catalog, team_id: &str) -> AdminResult<Swept> {
    let about = SweepFor {
        kind: Team::KIND,
        name: team_id,
        only_while: Vec::new(),
    };
    let (keys, revision) = catalog
        .sweep::<Key>(&about, |k| {
            if k.team_id == team_id {
                Fix::Delete
            } else {
                Fix::Keep
            }
        })
        .await?;
    Ok(Swept {
        keys,
        revision,
        ..Default::default()
    })
}

#[tonic::async_trait]
impl TeamService for Admin {
    async fn create_team(
        &self,
        request: Request<CreateTeamRequest>,
    ) -> Result<Response<CreateTeamResponse>, Status> {
        Ok(Response::new(
            Admin::create_team(self, request.into_inner()).await?,
        ))
    }

    async fn get_team(&self, request: Request<GetTeamRequest>) -> Result<Response<Team>, Status> {
        let id = request.into_inner().team_id;
        validate::object_id("team_id", &id)?;
        let mut team = self.catalog.require::<Team>(&id).await?.value;
        team.spend = self
            .window_spend(&Scope::new(ScopeKind::Team, id), &team.budget_duration)
            .await?;
        Ok(Response::new(team))
    }

    async fn list_teams(
        &self,
        request: Request<ListTeamsRequest>,
    ) -> Result<Response<ListTeamsResponse>, Status> {
        let org = request.into_inner().organization_id;
        if !org.is_empty() {
            validate::object_id("organization_id", &org)?;
        }
        let (teams, revision) = self.catalog.list::<Team>().await?;
        let teams = teams
            .into_iter()
            .map(|t| t.value)
            .filter(|t| org.is_empty() || t.organization_id == org)
            .collect();
        Ok(Response::new(ListTeamsResponse { teams, revision }))
    }

    async fn update_team(
        &self,
        request: Request<UpdateTeamRequest>,
    ) -> Result<Response<TeamWriteResponse>, Status> {
        Ok(Response::new(
            Admin::update_team(self, request.into_inner()).await?,
        ))
    }

    async fn delete_team(
        &self,
        request: Request<DeleteTeamRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        Ok(Response::new(
            Admin::delete_team(self, request.into_inner()).await?,
        ))
    }
}
