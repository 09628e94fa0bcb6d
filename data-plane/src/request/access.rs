//! Stage 3 of the request path, the access rule (DESIGN §3): may this key
//! call this model? A pure function of (config, key, model), so every data
//! plane decides the same way and the rule is tested as a table.
//!
//! A request is allowed only if the key, its team (if any) and the team's
//! organization (if any) each allow the requested name. Access is decided
//! before existence: a name the key may not use is denied whether or not it
//! exists, so a 404 never tells a caller which models exist.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_proto::admin::v1::{Key, ModelAlias, Team};

use crate::config::snapshot::{Config, ModelGroup, glob_matches};

/// Allow-list entries that allow every model.
const ALLOW_ALL: [&str; 2] = ["*", "all-proxy-models"];

/// The outcome of [`check`], one per row of DESIGN §4's error table.
#[derive(Debug)]
pub enum Decision<'a> {
    /// Served by `group`; `alias` is set when the requested name was an alias.
    Allowed {
        group: &'a ModelGroup,
        alias: Option<&'a ModelAlias>,
    },
    /// 403 `model_access_denied`: the message names `model` and lists
    /// `available_models`.
    Denied {
        model: String,
        available_models: Vec<String>,
    },
    /// 404 `model_not_found`: allowed, but nothing serves the name.
    NotFound { model: String },
}

/// Why a key may not make any request at all (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRejection {
    #[error("this key has expired; ask your administrator for a new one")]
    Expired,
    #[error("this key is blocked; ask your administrator to unblock it")]
    Blocked,
    #[error("this key's team is blocked; ask your administrator to unblock it")]
    TeamBlocked,
}

/// Decides whether `key` may call `model`.
///
/// Allocates only to build a [`Decision::Denied`] or [`Decision::NotFound`].
pub fn check<'a>(config: &'a Config, key: &Key, model: &str) -> Decision<'a> {
    let resolution = config.resolve(model);
    let request = Request {
        model,
        group: resolution.map(|r| r.group.name()),
    };
    if !allows(config, key, &request) {
        return Decision::Denied {
            model: model.to_owned(),
            available_models: available_models(config, key),
        };
    }
    match resolution {
        Some(r) => Decision::Allowed {
            group: r.group,
            alias: r.alias,
        },
        None => Decision::NotFound {
            model: model.to_owned(),
        },
    }
}

/// Every name `key` may call, sorted and deduplicated: the list in a 403
/// message and in `GET /v1/models`. That is every exact model group, alias
/// and wildcard pattern it may use, plus concrete names listed in its key,
/// team or access groups that only a wildcard group serves (a key granted
/// `openai/o1-mini` sees that name, not just `openai/o1-*`).
///
/// A name nothing serves is left out: this lists what can be called, not
/// what is written in allow-lists.
pub fn available_models(config: &Config, key: &Key) -> Vec<String> {
    // A pattern offered as a name stands for its own group: resolving its
    // text could pick a different pattern that happens to match it.
    let groups = config.model_groups().iter().map(|g| Request {
        model: g.name(),
        group: Some(g.name()),
    });
    let team = config.team(&key.team_id);
    let listed = config
        .access_groups()
        .flat_map(|g| g.group().models.iter())
        .chain(&key.models)
        .chain(team.iter().flat_map(|t| t.models.iter()))
        .map(String::as_str)
        .filter(|name| {
            !name.contains('*') && !ALLOW_ALL.contains(name) && config.access_group(name).is_none()
        });
    let named = config.aliases().map(|a| a.alias.as_str()).chain(listed);
    let resolved = named.filter_map(|name| {
        config.resolve(name).map(|r| Request {
            model: name,
            group: Some(r.group.name()),
        })
    });
    let mut names: Vec<String> = groups
        .chain(resolved)
        .filter(|request| allows(config, key, request))
        .map(|request| request.model.to_owned())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Whether `key` may be used at all at `now`: not blocked, not expired, and
/// its team not blocked. A key whose team is missing passes here and is
/// denied every model by [`check`].
pub fn key_status(config: &Config, key: &Key, now: SystemTime) -> Result<(), KeyRejection> {
    if key.blocked {
        return Err(KeyRejection::Blocked);
    }
    if let Some(expires_at) = &key.expires_at
        && !is_before(now, expires_at.seconds, expires_at.nanos)
    {
        return Err(KeyRejection::Expired);
    }
    if !key.team_id.is_empty() && config.team(&key.team_id).is_some_and(|t| t.blocked) {
        return Err(KeyRejection::TeamBlocked);
    }
    Ok(())
}

/// Whether `now` is strictly before the instant `seconds`.`nanos` since the
/// Unix epoch. Instants beyond what `SystemTime` holds are treated as the far
/// future or far past rather than failing.
fn is_before(now: SystemTime, seconds: i64, nanos: i32) -> bool {
    let nanos = Duration::from_nanos(u64::from(nanos.clamp(0, 999_999_999).unsigned_abs()));
    let instant = if seconds >= 0 {
        UNIX_EPOCH
            .checked_add(Duration::from_secs(seconds.unsigned_abs()))
            .and_then(|t| t.checked_add(nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(seconds.unsigned_abs()))
            .and_then(|t| t.checked_add(nanos))
    };
    match instant {
        Some(instant) => now < instant,
        None => seconds >= 0,
    }
}

/// A requested name and the group it resolved to, if any.
struct Request<'r> {
    model: &'r str,
    group: Option<&'r str>,
}

fn allows(config: &Config, key: &Key, request: &Request<'_>) -> bool {
    if key.team_id.is_empty() {
        // Empty without a team is a misconfiguration (GenerateKey stores
        // `["*"]` for "everything"), so it allows nothing.
        return list_allows(config, &key.models, &key.access_group_uids, request);
    }
    // A key naming a team that is gone must not fall back to having none.
    let Some(team) = config.team(&key.team_id) else {
        return false;
    };
    // An empty key list inherits the team's, which is checked anyway.
    (key.models.is_empty() || list_allows(config, &key.models, &key.access_group_uids, request))
        && team_allows(config, team, request)
        && org_allows(config, team, request)
}

fn team_allows(config: &Config, team: &Team, request: &Request<'_>) -> bool {
    // Both lists empty allows nothing, so removing a team's last group never
    // widens its access.
    list_allows(config, &team.models, &team.access_group_uids, request)
        || team
            .access_groups
            .iter()
            .any(|name| group_allows(config, name, &team.access_group_uids, request))
}

fn org_allows(config: &Config, team: &Team, request: &Request<'_>) -> bool {
    if team.organization_id.is_empty() {
        return true;
    }
    let Some(org) = config.organization(&team.organization_id) else {
        // Same reasoning as a missing team: fail closed.
        return false;
    };
    org.models.is_empty() || list_allows(config, &org.models, &org.access_group_uids, request)
}

fn list_allows(
    config: &Config,
    entries: &[String],
    uids: &HashMap<String, String>,
    request: &Request<'_>,
) -> bool {
    entries
        .iter()
        .any(|entry| entry_allows(config, entry, uids, request))
}

fn entry_allows(
    config: &Config,
    entry: &str,
    uids: &HashMap<String, String>,
    request: &Request<'_>,
) -> bool {
    entry == request.model
        || ALLOW_ALL.contains(&entry)
        || (entry.contains('*') && glob_matches(entry, request.model))
        || group_allows(config, entry, uids, request)
}

/// Whether `name` is an access group the holder was granted, and it contains
/// the request. The grant counts only against the incarnation it was recorded
/// for: a group deleted and recreated under the same name has a new uid.
fn group_allows(
    config: &Config,
    name: &str,
    uids: &HashMap<String, String>,
    request: &Request<'_>,
) -> bool {
    let Some(group) = config.access_group(name) else {
        return false;
    };
    uids.get(name).is_some_and(|uid| uid == group.uid())
        && group.contains(request.group, request.model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::admin::v1::{AccessGroup, Deployment, Organization};
    use sluice_proto::config::v1::Snapshot;
    use sluice_proto::prost_types::Timestamp;

    /// Builds a snapshot one object at a time, so each test row shows only
    /// what matters to it.
    #[derive(Default)]
    struct World(Snapshot);

    impl World {
        fn new() -> Self {
            Self::default()
        }

        fn deployment(self, model_name: &str) -> Self {
            self.deployment_in(model_name, &[])
        }

        fn deployment_in(mut self, model_name: &str, access_groups: &[&str]) -> Self {
            let id = format!("d{}", self.0.deployments.len());
            self.0.deployments.push(Deployment {
                id,
                model_name: model_name.into(),
                provider: "openai".into(),
                model: model_name.into(),
                access_groups: strings(access_groups),
                ..Default::default()
            });
            self
        }

        fn alias(mut self, alias: &str, target: &str) -> Self {
            self.0.aliases.push(ModelAlias {
                alias: alias.into(),
                target: target.into(),
                ..Default::default()
            });
            self
        }

        /// An access group whose uid is `{name}-uid`.
        fn group(self, name: &str, models: &[&str]) -> Self {
            self.group_with_uid(name, &format!("{name}-uid"), models)
        }

        fn group_with_uid(mut self, name: &str, uid: &str, models: &[&str]) -> Self {
            self.0.access_groups.push(AccessGroup {
                name: name.into(),
                uid: uid.into(),
                models: strings(models),
                ..Default::default()
            });
            self
        }

        fn team(mut self, team: Team) -> Self {
            self.0.teams.push(team);
            self
        }

        fn org(mut self, id: &str, models: &[&str]) -> Self {
            self.0.organizations.push(Organization {
                organization_id: id.into(),
                models: strings(models),
                ..Default::default()
            });
            self
        }

        fn build(self) -> Config {
            Config::from_snapshot(self.0).expect("test snapshot is valid")
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Grants recorded against the `{name}-uid` incarnation of each group.
    fn uids(groups: &[&str]) -> HashMap<String, String> {
        groups
            .iter()
            .map(|g| ((*g).to_owned(), format!("{g}-uid")))
            .collect()
    }

    /// A key with its own list; group entries are granted at their current uid.
    fn key(models: &[&str]) -> Key {
        Key {
            models: strings(models),
            access_group_uids: uids(models),
            ..Default::default()
        }
    }

    fn team_key(team_id: &str, models: &[&str]) -> Key {
        Key {
            team_id: team_id.into(),
            ..key(models)
        }
    }

    fn team(id: &str, models: &[&str], access_groups: &[&str]) -> Team {
        let mut granted = uids(models);
        granted.extend(uids(access_groups));
        Team {
            team_id: id.into(),
            models: strings(models),
            access_groups: strings(access_groups),
            access_group_uids: granted,
            ..Default::default()
        }
    }

    #[derive(Debug, PartialEq)]
    enum Outcome {
        Allowed(String),
        Denied,
        NotFound,
    }
    use Outcome::{Allowed, Denied, NotFound};

    fn allowed(group: &str) -> Outcome {
        Allowed(group.to_owned())
    }

    fn outcome(config: &Config, key: &Key, model: &str) -> Outcome {
        match check(config, key, model) {
            Decision::Allowed { group, .. } => Allowed(group.name().to_owned()),
            Decision::Denied { .. } => Denied,
            Decision::NotFound { .. } => NotFound,
        }
    }

    /// Runs `(what, key, model, expected)` rows against one config.
    fn table(config: &Config, rows: &[(&str, &Key, &str, Outcome)]) {
        for (what, key, model, want) in rows {
            assert_eq!(&outcome(config, key, model), want, "{what}: {model}");
        }
    }

    #[test]
    fn key_own_models() {
        let config = World::new()
            .deployment("gpt-4o")
            .deployment("gpt-4o-mini")
            .build();
        let k = key(&["gpt-4o"]);
        table(
            &config,
            &[
                ("listed", &k, "gpt-4o", allowed("gpt-4o")),
                ("not listed", &k, "gpt-4o-mini", Denied),
                ("no prefix matching", &k, "gpt-4", Denied),
                ("no team, no models", &key(&[]), "gpt-4o", Denied),
            ],
        );
    }

    #[test]
    fn key_inherits_team_list() {
        let config = World::new()
            .deployment("gpt-4o")
            .deployment("claude")
            .team(team("t", &["gpt-4o"], &[]))
            .build();
        let inherits = team_key("t", &[]);
        let narrower = team_key("t", &["claude"]);
        let wider = team_key("t", &["*"]);
        table(
            &config,
            &[
                ("inherits team", &inherits, "gpt-4o", allowed("gpt-4o")),
                ("inherits team", &inherits, "claude", Denied),
                ("key list outside team's", &narrower, "claude", Denied),
                ("key list outside team's", &narrower, "gpt-4o", Denied),
                ("key * bounded by team", &wider, "gpt-4o", allowed("gpt-4o")),
                ("key * bounded by team", &wider, "claude", Denied),
                ("team missing", &team_key("gone", &["*"]), "gpt-4o", Denied),
            ],
        );
    }

    #[test]
    fn team_models_and_access_groups() {
        let config = World::new()
            .deployment("gpt-4o")
            .deployment("claude")
            .deployment("llama")
            .group("anthropic", &["claude"])
            .team(team("both", &["gpt-4o"], &["anthropic"]))
            .team(team("models-only", &["gpt-4o"], &[]))
            .team(team("groups-only", &[], &["anthropic"]))
            .team(team("group-in-models", &["anthropic"], &[]))
            .team(team("neither", &[], &[]))
            .build();
        table(
            &config,
            &[
                (
                    "models ∪ groups",
                    &team_key("both", &[]),
                    "gpt-4o",
                    allowed("gpt-4o"),
                ),
                (
                    "models ∪ groups",
                    &team_key("both", &[]),
                    "claude",
                    allowed("claude"),
                ),
                ("models ∪ groups", &team_key("both", &[]), "llama", Denied),
                (
                    "models only",
                    &team_key("models-only", &[]),
                    "claude",
                    Denied,
                ),
                (
                    "groups only",
                    &team_key("groups-only", &[]),
                    "claude",
                    allowed("claude"),
                ),
                (
                    "groups only",
                    &team_key("groups-only", &[]),
                    "gpt-4o",
                    Denied,
                ),
                (
                    "group named in models",
                    &team_key("group-in-models", &[]),
                    "claude",
                    allowed("claude"),
                ),
                (
                    "neither: nothing",
                    &team_key("neither", &[]),
                    "gpt-4o",
                    Denied,
                ),
                (
                    "neither: not even *",
                    &team_key("neither", &["*"]),
                    "gpt-4o",
                    Denied,
                ),
            ],
        );
    }

    #[test]
    fn access_groups_from_objects_and_deployments() {
        let config = World::new()
            .deployment("gpt-4o")
            .deployment_in("claude", &["yaml-group"])
            .deployment("llama")
            .group("object-group", &["gpt-4o"])
            .group("yaml-group", &[])
            .build();
        let object = key(&["object-group"]);
        let yaml = key(&["yaml-group"]);
        let undefined = key(&["no-such-group"]);
        table(
            &config,
            &[
                ("AccessGroup.models", &object, "gpt-4o", allowed("gpt-4o")),
                ("AccessGroup.models", &object, "claude", Denied),
                (
                    "deployment access_groups",
                    &yaml,
                    "claude",
                    allowed("claude"),
                ),
                ("deployment access_groups", &yaml, "gpt-4o", Denied),
                ("no such group", &undefined, "gpt-4o", Denied),
            ],
        );
    }

    #[test]
    fn deployment_access_group_without_object_grants_nothing() {
        let config = World::new().deployment_in("claude", &["yaml-only"]).build();
        assert_eq!(outcome(&config, &key(&["yaml-only"]), "claude"), Denied);
    }

    #[test]
    fn group_patterns_match_only_their_own_group() {
        let config = World::new()
            .deployment("openai/*")
            .deployment("openai/o1-*")
            .group("a", &["openai/*"])
            .group("b", &["openai/o1-*"])
            .build();
        let a = key(&["a"]);
        let b = key(&["b"]);
        let direct = key(&["openai/*"]);
        table(
            &config,
            &[
                ("a: o1 is b's group", &a, "openai/o1-mini", Denied),
                (
                    "a: rest of openai",
                    &a,
                    "openai/gpt-4o",
                    allowed("openai/*"),
                ),
                ("b: o1", &b, "openai/o1-mini", allowed("openai/o1-*")),
                ("b: not the rest", &b, "openai/gpt-4o", Denied),
                (
                    "direct pattern globs",
                    &direct,
                    "openai/o1-mini",
                    allowed("openai/o1-*"),
                ),
                (
                    "direct pattern globs",
                    &direct,
                    "openai/gpt-4o",
                    allowed("openai/*"),
                ),
                ("direct pattern globs", &direct, "azure/gpt-4o", Denied),
            ],
        );
    }

    #[test]
    fn allow_all_entries() {
        let config = World::new()
            .deployment("gpt-4o")
            .deployment("openai/*")
            .build();
        for entry in ["*", "all-proxy-models"] {
            let k = key(&[entry]);
            table(
                &config,
                &[
                    (entry, &k, "gpt-4o", allowed("gpt-4o")),
                    (entry, &k, "openai/o3", allowed("openai/*")),
                    (entry, &k, "nonexistent", NotFound),
                ],
            );
        }
    }

    #[test]
    fn aliases_are_decided_on_the_alias_name() {
        let config = World::new()
            .deployment("gpt-4o")
            .deployment("openai/*")
            .alias("fast", "gpt-4o")
            .alias("smart", "openai/*")
            .alias("o3", "openai/o3")
            .alias("broken", "deleted-group")
            .group("has-target", &["gpt-4o"])
            .group("has-alias", &["fast"])
            .build();
        let target_only = key(&["gpt-4o"]);
        let alias_only = key(&["fast", "smart", "o3", "broken"]);
        table(
            &config,
            &[
                ("target but not alias", &target_only, "fast", Denied),
                (
                    "target but not alias",
                    &target_only,
                    "gpt-4o",
                    allowed("gpt-4o"),
                ),
                (
                    "alias but not target",
                    &alias_only,
                    "fast",
                    allowed("gpt-4o"),
                ),
                ("alias but not target", &alias_only, "gpt-4o", Denied),
                (
                    "alias to a pattern's name",
                    &alias_only,
                    "smart",
                    allowed("openai/*"),
                ),
                (
                    "alias to a name a pattern serves",
                    &alias_only,
                    "o3",
                    allowed("openai/*"),
                ),
                ("alias to nothing", &alias_only, "broken", NotFound),
                (
                    "alias listed in a group",
                    &key(&["has-alias"]),
                    "fast",
                    allowed("gpt-4o"),
                ),
                (
                    "alias listed in a group",
                    &key(&["has-alias"]),
                    "gpt-4o",
                    Denied,
                ),
                // Groups contain resolved model groups (DESIGN §3.2), so a
                // group holding the target covers the alias too.
                (
                    "group holding the target",
                    &key(&["has-target"]),
                    "fast",
                    allowed("gpt-4o"),
                ),
            ],
        );
        match check(&config, &alias_only, "o3") {
            Decision::Allowed { alias, .. } => {
                assert_eq!(alias.map(|a| a.target.as_str()), Some("openai/o3"));
            }
            other => panic!("expected allowed, got {other:?}"),
        }
    }

    #[test]
    fn organization_restricts_its_teams() {
        let mut restricted = team("in-restricted-org", &["gpt-4o", "claude"], &[]);
        restricted.organization_id = "restricted".into();
        let mut open = team("in-open-org", &["gpt-4o", "claude"], &[]);
        open.organization_id = "open".into();
        let mut orphan = team("in-missing-org", &["gpt-4o"], &[]);
        orphan.organization_id = "gone".into();
        let config = World::new()
            .deployment("gpt-4o")
            .deployment("claude")
            .org("restricted", &["gpt-4o"])
            .org("open", &[])
            .team(restricted)
            .team(open)
            .team(orphan)
            .build();
        let in_restricted = team_key("in-restricted-org", &[]);
        let in_open = team_key("in-open-org", &[]);
        table(
            &config,
            &[
                (
                    "org list allows",
                    &in_restricted,
                    "gpt-4o",
                    allowed("gpt-4o"),
                ),
                ("org list restricts", &in_restricted, "claude", Denied),
                (
                    "empty org list: no restriction",
                    &in_open,
                    "claude",
                    allowed("claude"),
                ),
                (
                    "org missing",
                    &team_key("in-missing-org", &[]),
                    "gpt-4o",
                    Denied,
                ),
            ],
        );
    }

    #[test]
    fn access_is_checked_before_existence() {
        let config = World::new()
            .deployment("gpt-4o")
            .group("g", &["gpt-4o", "retired-model"])
            .build();
        table(
            &config,
            &[
                (
                    "not allowed, does not exist",
                    &key(&["gpt-4o"]),
                    "nonexistent",
                    Denied,
                ),
                ("not allowed, exists", &key(&["claude"]), "gpt-4o", Denied),
                (
                    "allowed via group, deployment deleted",
                    &key(&["g"]),
                    "retired-model",
                    NotFound,
                ),
                (
                    "allowed by name, does not exist",
                    &key(&["retired-model"]),
                    "retired-model",
                    NotFound,
                ),
            ],
        );
    }

    #[test]
    fn denial_lists_available_models() {
        let config = World::new()
            .deployment("gpt-4o")
            .deployment("gpt-4o-mini")
            .deployment("claude")
            .deployment("openai/*")
            .deployment("openai/o1-*")
            .alias("fast", "gpt-4o-mini")
            .alias("sonnet", "claude")
            .group("cheap", &["gpt-4o-mini", "fast"])
            .build();
        let k = key(&["cheap", "openai/o1-*", "gpt-4o", "not-deployed"]);
        match check(&config, &k, "claude") {
            Decision::Denied {
                model,
                available_models,
            } => {
                assert_eq!(model, "claude");
                assert_eq!(
                    available_models,
                    ["fast", "gpt-4o", "gpt-4o-mini", "openai/o1-*"]
                );
            }
            other => panic!("expected denied, got {other:?}"),
        }
        assert_eq!(
            available_models(&config, &key(&["*"])),
            [
                "claude",
                "fast",
                "gpt-4o",
                "gpt-4o-mini",
                "openai/*",
                "openai/o1-*",
                "sonnet"
            ]
        );
        assert!(available_models(&config, &key(&[])).is_empty());
    }

    #[test]
    fn available_models_lists_callable_names_only() {
        let config = World::new()
            .deployment("openai/*")
            .alias("gone", "deleted-group")
            .alias("fast", "openai/gpt-4o-mini")
            .group("g", &["openai/gpt-4o"])
            .build();
        assert_eq!(
            available_models(&config, &key(&["g", "openai/o1-mini", "gone", "fast"])),
            ["fast", "openai/gpt-4o", "openai/o1-mini"],
            "concrete names served by a pattern are listed; an alias to nothing is not"
        );

        // A catch-all serves any name, yet group names and allow-all entries
        // are not model names.
        let config = World::new().deployment("*").group("g", &["*"]).build();
        assert_eq!(available_models(&config, &key(&["g"])), ["*"]);
        assert_eq!(
            available_models(&config, &key(&["all-proxy-models"])),
            ["*"]
        );
    }

    #[test]
    fn grants_hold_only_for_the_recorded_uid() {
        let config = World::new()
            .deployment("gpt-4o")
            .group_with_uid("g", "second-incarnation", &["gpt-4o"])
            .build();
        let stale = Key {
            models: strings(&["g"]),
            access_group_uids: [("g".to_owned(), "first-incarnation".to_owned())].into(),
            ..Default::default()
        };
        let unrecorded = Key {
            models: strings(&["g"]),
            ..Default::default()
        };
        let current = Key {
            models: strings(&["g"]),
            access_group_uids: [("g".to_owned(), "second-incarnation".to_owned())].into(),
            ..Default::default()
        };
        let mut stale_team = team("stale-team", &[], &["g"]);
        stale_team.access_group_uids = [("g".to_owned(), "first-incarnation".to_owned())].into();
        let config_with_team = World::new()
            .deployment("gpt-4o")
            .group_with_uid("g", "second-incarnation", &["gpt-4o"])
            .team(stale_team)
            .build();
        table(
            &config,
            &[
                ("recreated group", &stale, "gpt-4o", Denied),
                ("no uid recorded", &unrecorded, "gpt-4o", Denied),
                ("current uid", &current, "gpt-4o", allowed("gpt-4o")),
            ],
        );
        assert_eq!(
            outcome(&config_with_team, &team_key("stale-team", &[]), "gpt-4o"),
            Denied,
            "team access_groups follow the uid rule too"
        );
        assert!(available_models(&config, &stale).is_empty());
    }

    #[test]
    fn key_status_cases() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |seconds: i64| Some(Timestamp { seconds, nanos: 0 });
        let mut blocked_team = team("blocked", &["*"], &[]);
        blocked_team.blocked = true;
        let config = World::new()
            .team(team("fine", &["*"], &[]))
            .team(blocked_team)
            .build();
        let rows: &[(&str, Key, Result<(), KeyRejection>)] = &[
            ("no expiry", key(&["*"]), Ok(())),
            (
                "expires later",
                Key {
                    expires_at: at(1_000_001),
                    ..key(&["*"])
                },
                Ok(()),
            ),
            (
                "expires now",
                Key {
                    expires_at: at(1_000_000),
                    ..key(&["*"])
                },
                Err(KeyRejection::Expired),
            ),
            (
                "expired",
                Key {
                    expires_at: at(999_999),
                    ..key(&["*"])
                },
                Err(KeyRejection::Expired),
            ),
            (
                "before the epoch",
                Key {
                    expires_at: at(-5),
                    ..key(&["*"])
                },
                Err(KeyRejection::Expired),
            ),
            (
                "far past",
                Key {
                    expires_at: at(i64::MIN),
                    ..key(&["*"])
                },
                Err(KeyRejection::Expired),
            ),
            (
                "far future",
                Key {
                    expires_at: at(i64::MAX),
                    ..key(&["*"])
                },
                Ok(()),
            ),
            (
                "blocked",
                Key {
                    blocked: true,
                    ..key(&["*"])
                },
                Err(KeyRejection::Blocked),
            ),
            ("team fine", team_key("fine", &[]), Ok(())),
            (
                "team blocked",
                team_key("blocked", &[]),
                Err(KeyRejection::TeamBlocked),
            ),
            ("team missing: left to check", team_key("gone", &[]), Ok(())),
        ];
        for (what, k, want) in rows {
            assert_eq!(&key_status(&config, k, now), want, "{what}");
        }
    }
}
