//! The admin API end to end: the real control-plane binary on a real etcd,
//! driven by the real `grpcurl` through server reflection (no .proto files).

use serde_json::{Value, json};
use sluice_tests::control_plane::ControlPlane;
use sluice_tests::etcd::EtcdServer;
use sluice_tests::grpcurl::{self, Reply, call, call_with_key};

const KEYS: &str = "sluice.admin.v1.KeyService";
const TEAMS: &str = "sluice.admin.v1.TeamService";
const ORGS: &str = "sluice.admin.v1.OrganizationService";
const GROUPS: &str = "sluice.admin.v1.AccessGroupService";
const MODELS: &str = "sluice.admin.v1.ModelService";
const ROUTER: &str = "sluice.admin.v1.RouterService";
const CREDITS: &str = "sluice.admin.v1.CreditService";
const CONFIG: &str = "sluice.admin.v1.ConfigService";
const DATA_PLANES: &str = "sluice.admin.v1.DataPlaneService";

fn rpc(cp: &ControlPlane, method: &str, body: Value) -> Reply {
    call(&cp.addr(), method, &body).expect("grpcurl runs")
}

/// proto3 JSON writes int64 as a string.
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().expect("int64 string"),
        Value::Number(n) => n.as_i64().expect("integer"),
        Value::Null => 0,
        other => panic!("not an integer: {other}"),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn example_config() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/config.yaml");
    std::fs::read_to_string(path).expect("examples/config.yaml")
}

async fn start() -> (EtcdServer, ControlPlane) {
    assert!(
        grpcurl::available(),
        "grpcurl is not installed; run the README's test command, which installs it"
    );
    let etcd = EtcdServer::start().await.expect("etcd starts");
    let cp = ControlPlane::start_etcd(&etcd.endpoint()).expect("control plane starts");
    (etcd, cp)
}

#[tokio::test(flavor = "multi_thread")]
async fn onboard_a_client_with_grpcurl() {
    let (_etcd, cp) = start().await;
    let services = grpcurl::list_services(&cp.addr()).unwrap();
    for s in [
        TEAMS,
        KEYS,
        GROUPS,
        "grpc.health.v1.Health",
        // Both reflection versions: older grpcurl builds only speak v1alpha.
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            services.iter().any(|x| x == s),
            "{s} missing from {services:?}"
        );
    }
    // The v1 reflection service answers too (grpcurl itself may use v1alpha).
    let v1 = grpcurl::call_with_key(
        &cp.addr(),
        None,
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        &json!({"list_services": ""}),
    )
    .unwrap()
    .ok();
    assert!(
        v1.to_string().contains("sluice.admin.v1.TeamService"),
        "{v1}"
    );
    let mut revisions = Vec::new();

    let imported = rpc(
        &cp,
        &format!("{CONFIG}/ImportLiteLLMConfig"),
        json!({"yaml": example_config()}),
    )
    .ok();
    assert_eq!(strings(&imported["created"]).len(), 3 + 2 + 1, "{imported}");
    revisions.push(int(&imported["revision"]));

    let org = rpc(
        &cp,
        &format!("{ORGS}/CreateOrganization"),
        json!({"organization": {"organization_id": "acme", "name": "Acme Corp"}}),
    )
    .ok();
    revisions.push(int(&org["revision"]));

    let basic = rpc(
        &cp,
        &format!("{GROUPS}/CreateAccessGroup"),
        json!({"name": "chat-basic", "description": "everyday chat", "models": ["gpt-4o-mini"]}),
    )
    .ok();
    revisions.push(int(&basic["revision"]));
    let pro = rpc(
        &cp,
        &format!("{GROUPS}/CreateAccessGroup"),
        json!({"name": "chat-pro", "models": ["gpt-4o", "o1"]}),
    )
    .ok();
    revisions.push(int(&pro["revision"]));

    let team = rpc(
        &cp,
        &format!("{TEAMS}/CreateTeam"),
        json!({"team": {
        "team_id": "support", "team_alias": "Support", "organization_id": "acme",
        "access_groups": ["chat-basic"], "credits_allocated": 1000, "max_budget": 50000000,
        "budget_duration": "30d"}}),
    )
    .ok();
    assert_eq!(strings(&team["team"]["accessGroups"]), ["chat-basic"]);
    revisions.push(int(&team["revision"]));

    let key = rpc(
        &cp,
        &format!("{KEYS}/GenerateKey"),
        json!({"key": {"team_id": "support", "key_alias": "support-bot"}}),
    )
    .ok();
    let plaintext = key["key"].as_str().unwrap().to_string();
    assert!(
        plaintext.starts_with("sk-") && plaintext.len() >= 40,
        "{plaintext}"
    );
    let key_id = key["info"]["keyId"].as_str().unwrap().to_string();
    assert_eq!(key_id.len(), 64);
    revisions.push(int(&key["revision"]));
    // The plaintext is never shown again: not by id, not by plaintext, not in lists.
    let by_plaintext = rpc(&cp, &format!("{KEYS}/GetKey"), json!({"key": plaintext})).ok();
    assert_eq!(by_plaintext["keyId"], key_id);
    let listed = rpc(
        &cp,
        &format!("{KEYS}/ListKeys"),
        json!({"team_id": "support"}),
    )
    .ok();
    assert!(!listed.to_string().contains(&plaintext));
    assert!(!by_plaintext.to_string().contains(&plaintext));

    let upgraded = rpc(
        &cp,
        &format!("{TEAMS}/UpdateTeam"),
        json!({"team_id": "support", "update": {"access_groups": ["chat-basic", "chat-pro"]}}),
    )
    .ok();
    assert_eq!(
        strings(&upgraded["team"]["accessGroups"]),
        ["chat-basic", "chat-pro"]
    );
    revisions.push(int(&upgraded["revision"]));

    let credits = rpc(
        &cp,
        &format!("{CREDITS}/AddCredits"),
        json!({"team_id": "support", "amount": 500, "reason": "upgrade"}),
    )
    .ok();
    assert_eq!(int(&credits["creditsAllocated"]), 1500);
    revisions.push(int(&credits["revision"]));

    let groups = rpc(&cp, &format!("{GROUPS}/ListAccessGroups"), json!({})).ok();
    let summary = |name: &str| {
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"]["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not listed: {groups}"))
    };
    assert_eq!(summary("chat-pro")["teamCount"], 1);
    assert_eq!(summary("chat-pro")["modelCount"], 2);
    // Declared by the config's deployments: gpt-4o and o1.
    assert_eq!(summary("premium")["modelCount"], 2);

    let got = rpc(
        &cp,
        &format!("{GROUPS}/GetAccessGroup"),
        json!({"name": "chat-pro"}),
    )
    .ok();
    assert_eq!(strings(&got["teamsWithAccess"]), ["support"]);
    assert_eq!(strings(&got["resolvedModels"]), ["gpt-4o", "o1"]);

    // Add and remove members: model_count follows.
    let added = rpc(
        &cp,
        &format!("{GROUPS}/AddModels"),
        json!({"name": "chat-basic", "models": ["gpt-4o", "openai/*"]}),
    )
    .ok();
    revisions.push(int(&added["revision"]));
    let count = |name: &str| {
        let all = rpc(&cp, &format!("{GROUPS}/ListAccessGroups"), json!({})).ok();
        all["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"]["name"] == name)
            .map(|g| g["modelCount"].as_u64().unwrap_or(0))
            .unwrap()
    };
    assert_eq!(count("chat-basic"), 3);
    let removed = rpc(
        &cp,
        &format!("{GROUPS}/RemoveModels"),
        json!({"name": "chat-basic", "models": ["openai/*"]}),
    )
    .ok();
    revisions.push(int(&removed["revision"]));
    assert_eq!(count("chat-basic"), 2);

    // Deleting a group removes it from its teams before returning.
    let deleted = rpc(
        &cp,
        &format!("{GROUPS}/DeleteAccessGroup"),
        json!({"name": "chat-pro"}),
    )
    .ok();
    assert_eq!(deleted["teamsUpdated"], 1);
    revisions.push(int(&deleted["revision"]));
    let team = rpc(
        &cp,
        &format!("{TEAMS}/GetTeam"),
        json!({"team_id": "support"}),
    )
    .ok();
    assert_eq!(strings(&team["accessGroups"]), ["chat-basic"]);
    let (code, _) = rpc(
        &cp,
        &format!("{GROUPS}/GetAccessGroup"),
        json!({"name": "chat-pro"}),
    )
    .err();
    assert_eq!(code, "NotFound");
    // A new group with the old name grants nothing to the former holder.
    rpc(
        &cp,
        &format!("{GROUPS}/CreateAccessGroup"),
        json!({"name": "chat-pro", "models": ["o1"]}),
    )
    .ok();
    let got = rpc(
        &cp,
        &format!("{GROUPS}/GetAccessGroup"),
        json!({"name": "chat-pro"}),
    )
    .ok();
    assert!(strings(&got["teamsWithAccess"]).is_empty(), "{got}");

    let mut sorted = revisions.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, revisions, "every write returns a later revision");

    // The master key is required, and compared exactly.
    let (code, _) = call_with_key(
        &cp.addr(),
        Some("sk-wrong"),
        &format!("{TEAMS}/GetTeam"),
        &json!({"team_id": "support"}),
    )
    .unwrap()
    .err();
    assert_eq!(code, "Unauthenticated");
    let (code, message) =
        call_with_key(&cp.addr(), None, &format!("{TEAMS}/ListTeams"), &json!({}))
            .unwrap()
            .err();
    assert_eq!(code, "Unauthenticated");
    assert!(message.contains("authorization"), "{message}");
    assert!(
        !cp.log().contains(sluice_tests::control_plane::MASTER_KEY),
        "the master key must never be logged"
    );
    assert!(
        !cp.log().contains(&plaintext),
        "a virtual key must never be logged"
    );
    // Written to a file, as under systemd or Kubernetes: plain text, no
    // terminal colours for a log collector to store.
    let log = cp.log();
    assert!(log.contains("generated key"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_the_documented_status_and_names_the_field() {
    let (_etcd, cp) = start().await;
    rpc(
        &cp,
        &format!("{CONFIG}/ImportLiteLLMConfig"),
        json!({"yaml": example_config()}),
    )
    .ok();
    rpc(
        &cp,
        &format!("{ORGS}/CreateOrganization"),
        json!({"organization": {"organization_id": "acme"}}),
    )
    .ok();
    rpc(
        &cp,
        &format!("{TEAMS}/CreateTeam"),
        json!({"team": {"team_id": "t1", "organization_id": "acme", "models": ["gpt-4o"]}}),
    )
    .ok();
    let too_many: Vec<String> = (0..1001).map(|i| format!("m{i}")).collect();
    let none = "0".repeat(64);
    let cases: Vec<(&str, &str, Value, &str, &str)> = vec![
        (
            KEYS,
            "GenerateKey",
            json!({"key": {"max_budget": -1}}),
            "InvalidArgument",
            "key.max_budget",
        ),
        (
            KEYS,
            "GenerateKey",
            json!({"key": {"team_id": "missing"}}),
            "NotFound",
            "team \"missing\"",
        ),
        (
            KEYS,
            "GenerateKey",
            json!({"key": {"budget_duration": "1w"}}),
            "InvalidArgument",
            "key.budget_duration",
        ),
        (KEYS, "GetKey", json!({}), "InvalidArgument", "key_id"),
        (KEYS, "GetKey", json!({"key_id": none}), "NotFound", "key"),
        (
            KEYS,
            "ListKeys",
            json!({"team_id": "bad id"}),
            "InvalidArgument",
            "team_id",
        ),
        (
            KEYS,
            "UpdateKey",
            json!({"key_id": "xyz"}),
            "InvalidArgument",
            "key_id",
        ),
        (
            KEYS,
            "RegenerateKey",
            json!({"key": "sk-unknown"}),
            "NotFound",
            "key",
        ),
        (
            KEYS,
            "DeleteKey",
            json!({"key_id": none}),
            "NotFound",
            "key",
        ),
        (
            TEAMS,
            "CreateTeam",
            json!({"team": {"team_id": "bad id"}}),
            "InvalidArgument",
            "team.team_id",
        ),
        (
            TEAMS,
            "CreateTeam",
            json!({"team": {"team_id": "t2", "access_groups": ["no-such-group"]}}),
            "NotFound",
            "no-such-group",
        ),
        (
            TEAMS,
            "CreateTeam",
            json!({"team": {"team_id": "t2", "max_budget": -5}}),
            "InvalidArgument",
            "team.max_budget",
        ),
        (
            TEAMS,
            "CreateTeam",
            json!({"team": {"team_id": "t2", "models": too_many}}),
            "InvalidArgument",
            "team.models",
        ),
        (
            TEAMS,
            "CreateTeam",
            json!({"team": {"team_id": "t2", "organization_id": "nope"}}),
            "NotFound",
            "organization \"nope\"",
        ),
        (
            TEAMS,
            "CreateTeam",
            json!({"team": {"team_id": "t1"}}),
            "AlreadyExists",
            "team \"t1\"",
        ),
        (
            TEAMS,
            "GetTeam",
            json!({"team_id": ""}),
            "InvalidArgument",
            "team_id",
        ),
        (
            TEAMS,
            "ListTeams",
            json!({"organization_id": "bad/id"}),
            "InvalidArgument",
            "organization_id",
        ),
        (
            TEAMS,
            "UpdateTeam",
            json!({"team_id": "t1", "update": {"budget_duration": "soon"}}),
            "InvalidArgument",
            "update.budget_duration",
        ),
        (
            TEAMS,
            "UpdateTeam",
            json!({"team_id": "t1", "update_mask": {"paths": ["colour"]}}),
            "InvalidArgument",
            "update_mask",
        ),
        (
            TEAMS,
            "UpdateTeam",
            json!({"team_id": "t1", "expected_revision": 1, "update": {"team_alias": "x"}}),
            "Aborted",
            "revision",
        ),
        (
            TEAMS,
            "DeleteTeam",
            json!({"team_id": "missing"}),
            "NotFound",
            "team \"missing\"",
        ),
        (
            ORGS,
            "CreateOrganization",
            json!({"organization": {"organization_id": "_bad"}}),
            "InvalidArgument",
            "organization.organization_id",
        ),
        (
            ORGS,
            "GetOrganization",
            json!({"organization_id": "missing"}),
            "NotFound",
            "organization",
        ),
        (
            ORGS,
            "UpdateOrganization",
            json!({"organization_id": "acme", "update": {"max_budget": -1}}),
            "InvalidArgument",
            "update.max_budget",
        ),
        (
            ORGS,
            "DeleteOrganization",
            json!({"organization_id": "acme"}),
            "FailedPrecondition",
            "t1",
        ),
        (
            GROUPS,
            "CreateAccessGroup",
            json!({"name": "Bad_Name"}),
            "InvalidArgument",
            "name",
        ),
        (
            GROUPS,
            "CreateAccessGroup",
            json!({"name": "ok-group", "models": ["no-such-model"]}),
            "NotFound",
            "no-such-model",
        ),
        (
            GROUPS,
            "CreateAccessGroup",
            json!({"name": "premium"}),
            "AlreadyExists",
            "premium",
        ),
        (
            GROUPS,
            "GetAccessGroup",
            json!({"name": "missing"}),
            "NotFound",
            "missing",
        ),
        (
            GROUPS,
            "AddModels",
            json!({"name": "premium", "models": []}),
            "InvalidArgument",
            "models",
        ),
        (
            GROUPS,
            "AddModels",
            json!({"name": "premium", "models": ["has space"]}),
            "InvalidArgument",
            "models[0]",
        ),
        (
            GROUPS,
            "RemoveModels",
            json!({"name": "missing", "models": ["o1"]}),
            "NotFound",
            "missing",
        ),
        (
            GROUPS,
            "DeleteAccessGroup",
            json!({"name": "UPPER"}),
            "InvalidArgument",
            "name",
        ),
        (
            MODELS,
            "CreateDeployment",
            json!({"deployment": {"model_name": "x", "model": "foo/bar"}}),
            "InvalidArgument",
            "\"foo\"",
        ),
        (
            MODELS,
            "CreateDeployment",
            json!({"deployment": {"model_name": "x", "model": "azure/x"}}),
            "InvalidArgument",
            "deployment.api_base",
        ),
        (
            MODELS,
            "CreateDeployment",
            json!({"deployment": {"model_name": "x", "model": "mock/x", "input_cost_per_token": -1.0}}),
            "InvalidArgument",
            "deployment.input_cost_per_token",
        ),
        (
            MODELS,
            "CreateDeployment",
            json!({"deployment": {"model_name": "x", "model": "mock/x", "api_base": "http://example.com"}}),
            "InvalidArgument",
            "deployment.api_base",
        ),
        (
            MODELS,
            "GetDeployment",
            json!({"id": "missing"}),
            "NotFound",
            "deployment",
        ),
        (
            MODELS,
            "ListDeployments",
            json!({"model_name": "has space"}),
            "InvalidArgument",
            "model_name",
        ),
        (
            MODELS,
            "UpdateDeployment",
            json!({"id": "missing", "update": {"rpm": 5}}),
            "NotFound",
            "deployment",
        ),
        (
            MODELS,
            "DeleteDeployment",
            json!({"id": "Bad"}),
            "InvalidArgument",
            "id",
        ),
        (
            MODELS,
            "CreateModelAlias",
            json!({"alias": "smart", "target": "missing"}),
            "NotFound",
            "missing",
        ),
        (
            MODELS,
            "CreateModelAlias",
            json!({"alias": "gpt-4o", "target": "o1"}),
            "AlreadyExists",
            "gpt-4o",
        ),
        (
            MODELS,
            "DeleteModelAlias",
            json!({"alias": "missing"}),
            "NotFound",
            "missing",
        ),
        (
            ROUTER,
            "UpdateRouterSettings",
            json!({"settings": {"routing_strategy": "random"}}),
            "InvalidArgument",
            "settings.routing_strategy",
        ),
        (
            ROUTER,
            "UpdateRouterSettings",
            json!({"settings": {"fallbacks": [{"model_group": "gpt-4o"}]}}),
            "InvalidArgument",
            "settings.fallbacks[0].fallbacks",
        ),
        (
            ROUTER,
            "UpdateRouterSettings",
            json!({"settings": {"lowest_latency_buffer": -0.5}}),
            "InvalidArgument",
            "settings.lowest_latency_buffer",
        ),
        (
            ROUTER,
            "UpdateRouterSettings",
            json!({"settings": {"fallbacks": [{"model_group": "gpt-4o", "fallbacks": ["o1", "gpt-4o"]}]}}),
            "InvalidArgument",
            "settings.fallbacks[0].fallbacks[1]",
        ),
        (
            ROUTER,
            "UpdateRouterSettings",
            json!({"settings": {"max_fallbacks": 21}}),
            "InvalidArgument",
            "settings.max_fallbacks",
        ),
        (
            ROUTER,
            "UpdateRouterSettings",
            json!({"settings": {"retry_policy": {"rate_limit_error_retries": 11}}}),
            "InvalidArgument",
            "settings.retry_policy.rate_limit_error_retries",
        ),
        (
            ROUTER,
            "UpdateRouterSettings",
            json!({"settings": {"cooldown_time": "-1s"}}),
            "InvalidArgument",
            "settings.cooldown_time",
        ),
        (
            MODELS,
            "CreateDeployment",
            json!({"deployment": {"model_name": "x", "model": "mock/x", "stream_timeout": "-1s"}}),
            "InvalidArgument",
            "deployment.stream_timeout",
        ),
        (
            MODELS,
            "CreateDeployment",
            json!({"deployment": {"model_name": "x", "model": "mock/x", "max_input_tokens": 0}}),
            "InvalidArgument",
            "deployment.max_input_tokens",
        ),
        (
            CREDITS,
            "AddCredits",
            json!({"team_id": "t1", "amount": -1}),
            "InvalidArgument",
            "amount",
        ),
        (
            CREDITS,
            "AddCredits",
            json!({"team_id": "missing", "amount": 1}),
            "NotFound",
            "team",
        ),
        (
            CONFIG,
            "ImportLiteLLMConfig",
            json!({"yaml": "model_list:\n  - model_name: [x\n"}),
            "InvalidArgument",
            "line",
        ),
        (
            CONFIG,
            "ImportLiteLLMConfig",
            json!({"yaml": "model_list:\n  - model_name: x\n    litellm_params: {model: nope/x}\n"}),
            "InvalidArgument",
            "nope",
        ),
        (
            DATA_PLANES,
            "CreateDataPlaneToken",
            json!({"name": "bad\u{7}name"}),
            "InvalidArgument",
            "name",
        ),
        (
            DATA_PLANES,
            "DeleteDataPlaneToken",
            json!({"token_id": "xyz"}),
            "InvalidArgument",
            "token_id",
        ),
    ];
    for (service, method, body, code, needle) in cases {
        let reply = rpc(&cp, &format!("{service}/{method}"), body.clone());
        let Reply::Err { code: got, message } = reply else {
            panic!("{method} {body} should fail with {code}, got {reply:?}");
        };
        assert_eq!(got, code, "{method} {body}: {message}");
        assert!(
            message.contains(needle),
            "{method} {body}: {message:?} should name {needle:?}"
        );
    }
    // Still serving, and nothing half-written.
    let teams = rpc(&cp, &format!("{TEAMS}/ListTeams"), json!({})).ok();
    assert_eq!(teams["teams"].as_array().unwrap().len(), 1);
}

/// Every routing field set through the admin API, partly cleared through a
/// field mask, and exported back in LiteLLM's names.
#[tokio::test(flavor = "multi_thread")]
async fn routing_fields_are_settable_maskable_and_exported() {
    let (_etcd, cp) = start().await;
    let created = rpc(
        &cp,
        &format!("{MODELS}/CreateDeployment"),
        json!({"deployment": {
            "id": "fast", "model_name": "gpt-4o", "model": "mock/fast",
            "order": 1, "stream_timeout": "5s", "max_input_tokens": 8000
        }}),
    )
    .ok();
    assert_eq!(created["deployment"]["order"], 1);
    assert_eq!(created["deployment"]["streamTimeout"], "5s");
    assert_eq!(created["deployment"]["maxInputTokens"], "8000");
    // Only the masked field changes; unset in the mask's sense clears it.
    let updated = rpc(
        &cp,
        &format!("{MODELS}/UpdateDeployment"),
        json!({"id": "fast", "update": {"order": 2}, "update_mask": {"paths": ["order", "max_input_tokens"]}}),
    )
    .ok();
    assert_eq!(updated["deployment"]["order"], 2);
    assert_eq!(updated["deployment"]["streamTimeout"], "5s");
    assert!(
        updated["deployment"].get("maxInputTokens").is_none(),
        "{updated}"
    );

    let settings = json!({
        "routing_strategy": "cost-based-routing",
        "lowest_latency_buffer": 0.5,
        "num_retries": 2,
        "retry_policy": {"rate_limit_error_retries": 4, "bad_request_error_retries": 0},
        "allowed_fails_policy": {"timeout_error_allowed_fails": 3},
        "max_fallbacks": 3,
        "enable_pre_call_checks": true,
        "fallbacks": [{"model_group": "gpt-4o", "fallbacks": ["o1"]}]
    });
    let set = rpc(
        &cp,
        &format!("{ROUTER}/UpdateRouterSettings"),
        json!({"settings": settings}),
    )
    .ok();
    let s = &set["settings"];
    assert_eq!(s["routingStrategy"], "cost-based-routing");
    assert_eq!(s["lowestLatencyBuffer"], 0.5);
    assert_eq!(s["retryPolicy"]["rateLimitErrorRetries"], 4);
    assert_eq!(s["retryPolicy"]["badRequestErrorRetries"], 0);
    assert_eq!(s["allowedFailsPolicy"]["timeoutErrorAllowedFails"], 3);
    assert_eq!(s["maxFallbacks"], 3);
    assert_eq!(s["enablePreCallChecks"], true);

    // A mask naming fields the update leaves empty clears exactly those.
    let cleared = rpc(
        &cp,
        &format!("{ROUTER}/UpdateRouterSettings"),
        json!({"settings": {}, "update_mask": {"paths": ["lowest_latency_buffer", "retry_policy", "enable_pre_call_checks"]}}),
    )
    .ok();
    let s = &cleared["settings"];
    assert!(s.get("lowestLatencyBuffer").is_none(), "{s}");
    assert!(s.get("retryPolicy").is_none(), "{s}");
    assert!(s.get("enablePreCallChecks").is_none(), "{s}");
    assert_eq!(s["maxFallbacks"], 3);
    assert_eq!(s["allowedFailsPolicy"]["timeoutErrorAllowedFails"], 3);

    let exported = rpc(&cp, &format!("{CONFIG}/ExportConfig"), json!({})).ok();
    let yaml = exported["yaml"].as_str().unwrap();
    for line in [
        "      stream_timeout: 5\n",
        "      order: 2\n",
        "  routing_strategy: cost-based-routing\n",
        "  allowed_fails_policy:\n    TimeoutErrorAllowedFails: 3\n",
        "  max_fallbacks: 3\n",
    ] {
        assert!(yaml.contains(line), "{line:?} not in:\n{yaml}");
    }
    assert!(!yaml.contains("retry_policy"), "{yaml}");
}

/// A deployment's cache prices and endpoints through grpcurl: set, updated
/// through a field mask, refused when not a price, exported in LiteLLM's
/// names.
#[tokio::test(flavor = "multi_thread")]
async fn cache_prices_and_endpoints_are_settable_maskable_and_exported() {
    let (_etcd, cp) = start().await;
    let created = rpc(
        &cp,
        &format!("{MODELS}/CreateDeployment"),
        json!({"deployment": {
            "id": "claude", "model_name": "claude", "model": "mock/claude",
            "input_cost_per_token": 3e-6, "cache_read_input_token_cost": 3e-7
        }}),
    )
    .ok();
    assert_eq!(created["deployment"]["cacheReadInputTokenCost"], 3e-7);
    assert!(
        created["deployment"]
            .get("cacheCreationInputTokenCost")
            .is_none(),
        "unset stays unset: {created}"
    );
    let updated = rpc(
        &cp,
        &format!("{MODELS}/UpdateDeployment"),
        json!({"id": "claude",
               "update": {"cache_creation_input_token_cost": 3.75e-6, "supported_endpoints": ["/v1/chat/completions"]},
               "update_mask": {"paths": ["cache_creation_input_token_cost", "supported_endpoints"]}}),
    )
    .ok();
    let d = &updated["deployment"];
    assert_eq!(d["cacheReadInputTokenCost"], 3e-7, "{d}");
    assert_eq!(d["cacheCreationInputTokenCost"], 3.75e-6, "{d}");
    assert_eq!(d["supportedEndpoints"], json!(["/v1/chat/completions"]));
    let refused = rpc(
        &cp,
        &format!("{MODELS}/UpdateDeployment"),
        json!({"id": "claude", "update": {"cache_read_input_token_cost": -1.0},
               "update_mask": {"paths": ["cache_read_input_token_cost"]}}),
    )
    .err();
    assert_eq!(refused.0, "InvalidArgument", "{refused:?}");
    assert!(
        refused.1.contains("cache_read_input_token_cost"),
        "{refused:?}"
    );

    let exported = rpc(&cp, &format!("{CONFIG}/ExportConfig"), json!({})).ok();
    let yaml = exported["yaml"].as_str().unwrap();
    for line in [
        "      cache_read_input_token_cost: 0.0000003\n",
        "      cache_creation_input_token_cost: 0.00000375\n",
    ] {
        assert!(yaml.contains(line), "{line:?} not in:\n{yaml}");
    }
}
