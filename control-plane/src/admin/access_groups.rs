//! `AccessGroupService`: named sets of model groups that teams, keys and
//! organizations are granted by name.
//!
//! Deleting a group first deletes the group object (from that revision on it
//! grants nothing anywhere: grants are bound to the group's uid), then removes
//! the name from every holder in batches of transactions, so it scales to
//! thousands of holders within etcd's 128-ops-per-transaction limit.

use std::collections::{BTreeSet, HashMap};

use sluice_proto::admin::v1::access_group_service_server::AccessGroupService;
use sluice_proto::admin::v1::{
    AccessGroup, AccessGroupSummary, AccessGroupWriteResponse, AddModelsRequest,
    CreateAccessGroupRequest, DeleteAccessGroupRequest, DeleteAccessGroupResponse, Deployment,
    GetAccessGroupRequest, GetAccessGroupResponse, Key, ListAccessGroupsRequest,
    ListAccessGroupsResponse, ModelAlias, Organization, RemoveModelsRequest, Team,
};
use tonic::{Request, Response, Status};

use super::Admin;
use super::models::model_group_names;
use super::sweeps::{Pending, Swept};
use crate::catalog::{
    Attempt, Catalog, Fix, SweepFor, delete_if, now, outcome, put_if, retry_on_conflict,
};
use crate::error::{AdminError, AdminResult};
use crate::resources::{Resource, key_of};
use crate::secrets;
use crate::store::Txn;
use crate::validate;

/// Put in place of an allow-list that a deletion would leave empty, where
/// empty would mean more (inherit the team, or no restriction): LiteLLM's
/// name for "no models".
pub const NO_MODELS: &str = "no-default-models";

/// Members must name an existing model group or alias, or be a wildcard
/// pattern (DESIGN §3.5).
async fn check_members(admin: &Admin, members: &[String]) -> AdminResult<()> {
    validate::model_list("models", members)?;
    if members.iter().all(|m| m.contains('*')) {
        return Ok(());
    }
    let groups = model_group_names(&admin.catalog).await?;
    let (aliases, _) = admin.catalog.list::<ModelAlias>().await?;
    for (i, m) in members.iter().enumerate() {
        let known =
            m.contains('*') || groups.contains(m) || aliases.iter().any(|a| &a.value.alias == m);
        if !known {
            return Err(AdminError::not_found_in(
                "model group or alias",
                m,
                format!("models[{i}]"),
            ));
        }
    }
    Ok(())
}

/// The model groups a group grants: its members plus the model groups of
/// deployments that list it.
fn resolved_models(group: &AccessGroup, deployments: &[Deployment]) -> Vec<String> {
    let mut out: BTreeSet<String> = group.models.iter().cloned().collect();
    out.extend(
        deployments
            .iter()
            .filter(|d| d.access_groups.contains(&group.name))
            .map(|d| d.model_name.clone()),
    );
    out.into_iter().collect()
}

/// Whether a team holds the group (by name, bound to this incarnation).
fn team_holds(team: &Team, group: &AccessGroup) -> bool {
    let listed = team.access_groups.contains(&group.name) || team.models.contains(&group.name);
    listed && team.access_group_uids.get(&group.name) == Some(&group.uid)
}

/// Removes `name` from an allow-list, keeping it meaning "nothing" rather
/// than "everything" when it was the last entry and `empty_widens`.
fn strip(list: &mut Vec<String>, name: &str, empty_widens: bool) -> bool {
    let before = list.len();
    list.retain(|m| m != name);
    let changed = list.len() != before;
    if changed && list.is_empty() && empty_widens {
        list.push(NO_MODELS.to_string());
    }
    changed
}

impl Admin {
    async fn change_members(
        &self,
        name: &str,
        change: impl Fn(&mut Vec<String>),
    ) -> AdminResult<AccessGroupWriteResponse> {
        retry_on_conflict!(AccessGroup::KIND, name, {
            let current = self.catalog.require::<AccessGroup>(name).await?;
            let mut group = current.value.clone();
            change(&mut group.models);
            validate::list_len("models", group.models.len())?;
            let o = self
                .catalog
                .commit(put_if(Txn::new(), &group, current.mod_revision))
                .await?;
            Ok(outcome(o, |revision| AccessGroupWriteResponse {
                group: Some(AccessGroup { revision, ..group }),
                revision,
            }))
        })
    }

    /// Deletes the group and, in the same transaction, records the sweep of
    /// its holders (`sweeps`), then finishes it. A retry after a sweep was
    /// cut short finds the group gone and finishes what is recorded.
    async fn delete_group(&self, name: &str) -> AdminResult<DeleteAccessGroupResponse> {
        let (deleted_at, pending) = retry_on_conflict!(AccessGroup::KIND, name, {
            let Some(current) = self.catalog.get::<AccessGroup>(name).await? else {
                let pending = self.sweeper.pending_of_group(name).await?;
                if pending.is_empty() {
                    return Err(AdminError::not_found(AccessGroup::KIND, name));
                }
                return Ok(Attempt::Done((0, pending)));
            };
            let pending = Pending::AccessGroup {
                name: name.to_string(),
                uid: current.value.uid.clone(),
            };
            let txn = delete_if::<AccessGroup>(Txn::new(), name, current.mod_revision)
                .put(pending.key(), pending.value());
            let o = self.catalog.commit(txn).await?;
            Ok(outcome(o, |revision| (revision, vec![pending])))
        })?;
        let mut swept = Swept {
            revision: deleted_at,
            ..Default::default()
        };
        for p in pending {
            swept.add(self.sweeper.finish(p).await?);
        }
        tracing::info!(group = %name, ?swept, "deleted access group");
        Ok(DeleteAccessGroupResponse {
            revision: swept.revision,
            teams_updated: swept.teams,
            keys_updated: swept.keys,
            organizations_updated: swept.organizations,
            deployments_updated: swept.deployments,
        })
    }
}

/// Removes incarnation `uid` of access group `name` from everything that
/// holds it. Idempotent: run again, it finds nothing to do.
pub(super) async fn sweep(catalog: &Catalog, name: &str, uid: &str) -> AdminResult<Swept> {
    let about = SweepFor {
        kind: AccessGroup::KIND,
        name,
        only_while: Vec::new(),
    };
    let (teams, r1) = catalog
        .sweep::<Team>(&about, |t| without_group(t, name, uid))
        .await?;
    let (keys, r2) = catalog
        .sweep::<Key>(&about, |k| without_group(k, name, uid))
        .await?;
    let (organizations, r3) = catalog
        .sweep::<Organization>(&about, |o| without_group(o, name, uid))
        .await?;
    // Deployments name groups without a uid: only while no group of that
    // name exists again, or they would lose the new one (which a deployment
    // naming it may have declared).
    let while_absent = SweepFor {
        only_while: vec![(key_of::<AccessGroup>(name), 0)],
        ..about
    };
    let (deployments, r4) = catalog
        .sweep::<Deployment>(&while_absent, |d| {
            let mut d = d.clone();
            if strip(&mut d.access_groups, name, false) {
                Fix::Put(d)
            } else {
                Fix::Keep
            }
        })
        .await?;
    Ok(Swept {
        teams,
        keys,
        organizations,
        deployments,
        revision: r1.max(r2).max(r3).max(r4),
    })
}

/// A holder's allow-lists that may name a group, each with whether it would
/// mean more than nothing once empty; and its name → uid bindings.
type Grants<'a> = (
    Vec<(&'a mut Vec<String>, bool)>,
    &'a mut HashMap<String, String>,
);

/// A resource that may grant access groups: allow-lists naming them, and
/// the uid each name was bound to when granted.
trait Holder: Resource {
    fn grants(&mut self) -> Grants<'_>;
}

impl Holder for Team {
    fn grants(&mut self) -> Grants<'_> {
        // A team with no models and no groups has none (DESIGN §3).
        let lists = vec![(&mut self.access_groups, false), (&mut self.models, false)];
        (lists, &mut self.access_group_uids)
    }
}

impl Holder for Key {
    fn grants(&mut self) -> Grants<'_> {
        // An empty list would inherit the team (or, with no team, is refused).
        (vec![(&mut self.models, true)], &mut self.access_group_uids)
    }
}

impl Holder for Organization {
    fn grants(&mut self) -> Grants<'_> {
        // An organization's empty list means "no restriction".
        (vec![(&mut self.models, true)], &mut self.access_group_uids)
    }
}

/// `holder` without incarnation `uid` of group `name`: its name out of
/// every list, its binding dropped. A name bound to another uid is a group
/// created again under that name after this one was deleted: kept.
fn without_group<R: Holder>(holder: &R, name: &str, uid: &str) -> Fix<R> {
    let mut fixed = holder.clone();
    let (lists, uids) = fixed.grants();
    if uids.get(name).is_some_and(|bound| bound != uid) {
        return Fix::Keep;
    }
    let mut changed = uids.remove(name).is_some();
    for (list, empty_widens) in lists {
        changed |= strip(list, name, empty_widens);
    }
    if changed { Fix::Put(fixed) } else { Fix::Keep }
}

#[tonic::async_trait]
impl AccessGroupService for Admin {
    async fn create_access_group(
        &self,
        request: Request<CreateAccessGroupRequest>,
    ) -> Result<Response<AccessGroupWriteResponse>, Status> {
        let req = request.into_inner();
        validate::group_name("name", &req.name)?;
        validate::text("description", &req.description)?;
        let mut models = req.models.clone();
        super::dedup(&mut models);
        check_members(self, &models).await?;
        let mut group = AccessGroup {
            name: req.name.clone(),
            description: req.description.clone(),
            models,
            created_at: Some(now()),
            uid: secrets::random_id(8),
            revision: 0,
        };
        if self
            .catalog
            .get::<AccessGroup>(&group.name)
            .await?
            .is_some()
        {
            return Err(AdminError::already_exists(AccessGroup::KIND, &group.name).into());
        }
        let o = self.catalog.commit(put_if(Txn::new(), &group, 0)).await?;
        if !o.succeeded {
            return Err(AdminError::already_exists(AccessGroup::KIND, &group.name).into());
        }
        group.revision = o.revision;
        tracing::info!(group = %group.name, "created access group");
        Ok(Response::new(AccessGroupWriteResponse {
            group: Some(group),
            revision: o.revision,
        }))
    }

    async fn get_access_group(
        &self,
        request: Request<GetAccessGroupRequest>,
    ) -> Result<Response<GetAccessGroupResponse>, Status> {
        let name = request.into_inner().name;
        validate::group_name("name", &name)?;
        let group = self.catalog.require::<AccessGroup>(&name).await?.value;
        let (deployments, revision) = self.catalog.list::<Deployment>().await?;
        let deployments: Vec<Deployment> = deployments.into_iter().map(|d| d.value).collect();
        let (teams, _) = self.catalog.list::<Team>().await?;
        let teams_with_access = teams
            .iter()
            .filter(|t| team_holds(&t.value, &group))
            .map(|t| t.value.team_id.clone())
            .collect();
        Ok(Response::new(GetAccessGroupResponse {
            resolved_models: resolved_models(&group, &deployments),
            group: Some(group),
            teams_with_access,
            revision,
        }))
    }

    async fn list_access_groups(
        &self,
        _request: Request<ListAccessGroupsRequest>,
    ) -> Result<Response<ListAccessGroupsResponse>, Status> {
        let (groups, revision) = self.catalog.list::<AccessGroup>().await?;
        let (deployments, _) = self.catalog.list::<Deployment>().await?;
        let deployments: Vec<Deployment> = deployments.into_iter().map(|d| d.value).collect();
        let (teams, _) = self.catalog.list::<Team>().await?;
        let groups = groups
            .into_iter()
            .map(|g| AccessGroupSummary {
                model_count: resolved_models(&g.value, &deployments).len() as u32,
                team_count: teams
                    .iter()
                    .filter(|t| team_holds(&t.value, &g.value))
                    .count() as u32,
                group: Some(g.value),
            })
            .collect();
        Ok(Response::new(ListAccessGroupsResponse { groups, revision }))
    }

    async fn add_models(
        &self,
        request: Request<AddModelsRequest>,
    ) -> Result<Response<AccessGroupWriteResponse>, Status> {
        let req = request.into_inner();
        validate::group_name("name", &req.name)?;
        if req.models.is_empty() {
            return Err(AdminError::invalid("models", "must name at least one model").into());
        }
        check_members(self, &req.models).await?;
        let resp = self
            .change_members(&req.name, |models| {
                for m in &req.models {
                    if !models.contains(m) {
                        models.push(m.clone());
                    }
                }
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn remove_models(
        &self,
        request: Request<RemoveModelsRequest>,
    ) -> Result<Response<AccessGroupWriteResponse>, Status> {
        let req = request.into_inner();
        validate::group_name("name", &req.name)?;
        if req.models.is_empty() {
            return Err(AdminError::invalid("models", "must name at least one model").into());
        }
        validate::model_list("models", &req.models)?;
        let resp = self
            .change_members(&req.name, |models| {
                models.retain(|m| !req.models.contains(m))
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn delete_access_group(
        &self,
        request: Request<DeleteAccessGroupRequest>,
    ) -> Result<Response<DeleteAccessGroupResponse>, Status> {
        let name = request.into_inner().name;
        validate::group_name("name", &name)?;
        Ok(Response::new(self.delete_group(&name).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(uid: &str) -> HashMap<String, String> {
        [("bulk".to_string(), uid.to_string())].into()
    }

    #[test]
    fn one_fix_removes_a_group_from_every_kind_of_holder() {
        let team = Team {
            access_groups: vec!["bulk".into()],
            models: vec!["bulk".into()],
            access_group_uids: bound("u1"),
            ..Default::default()
        };
        let Fix::Put(t) = without_group(&team, "bulk", "u1") else {
            panic!("the team held the group");
        };
        // A team's empty lists already mean "nothing".
        assert!(t.access_groups.is_empty() && t.models.is_empty());
        assert!(t.access_group_uids.is_empty());

        let key = Key {
            models: vec!["bulk".into()],
            access_group_uids: bound("u1"),
            ..Default::default()
        };
        let Fix::Put(k) = without_group(&key, "bulk", "u1") else {
            panic!("the key held the group");
        };
        // Empty, a key's list would inherit its team's: it must say "none".
        assert_eq!(k.models, vec![NO_MODELS]);

        let org = Organization {
            models: vec!["bulk".into(), "gpt-4o".into()],
            access_group_uids: bound("u1"),
            ..Default::default()
        };
        let Fix::Put(o) = without_group(&org, "bulk", "u1") else {
            panic!("the organization held the group");
        };
        assert_eq!(o.models, vec!["gpt-4o"]);
    }

    #[test]
    fn a_holder_of_a_newer_incarnation_keeps_it() {
        let team = Team {
            access_groups: vec!["bulk".into()],
            access_group_uids: bound("u2"),
            ..Default::default()
        };
        assert!(matches!(without_group(&team, "bulk", "u1"), Fix::Keep));
        assert!(matches!(
            without_group(&Team::default(), "bulk", "u1"),
            Fix::Keep
        ));
    }
}
