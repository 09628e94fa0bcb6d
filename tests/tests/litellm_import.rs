//! Importing a LiteLLM config.yaml through the real binary and grpcurl:
//! idempotent, warns about what it does not understand, and round-trips
//! through ExportConfig into a fresh store.

use serde_json::{Value, json};
use sluice_tests::control_plane::ControlPlane;
use sluice_tests::etcd::EtcdServer;
use sluice_tests::grpcurl::{self, call};

const IMPORT: &str = "sluice.admin.v1.ConfigService/ImportLiteLLMConfig";
const EXPORT: &str = "sluice.admin.v1.ConfigService/ExportConfig";
const DEPLOYMENTS: &str = "sluice.admin.v1.ModelService/ListDeployments";
const ROUTER: &str = "sluice.admin.v1.RouterService/GetRouterSettings";

fn fixture() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/every-field.yaml"
    ))
    .expect("fixture")
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

/// Deployments without what differs between two stores: timestamps, revisions.
fn deployments(cp: &ControlPlane) -> Value {
    let mut all = call(&cp.addr(), DEPLOYMENTS, &json!({})).unwrap().ok();
    for d in all["deployments"].as_array_mut().unwrap() {
        let d = d.as_object_mut().unwrap();
        d.remove("createdAt");
        d.remove("updatedAt");
        d.remove("revision");
    }
    all["deployments"].clone()
}

fn router(cp: &ControlPlane) -> Value {
    let mut r = call(&cp.addr(), ROUTER, &json!({})).unwrap().ok();
    r.as_object_mut().unwrap().remove("revision");
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn import_twice_export_and_reimport_into_a_fresh_store() {
    assert!(
        grpcurl::available(),
        "grpcurl is not installed; run the README's test command"
    );
    let etcd = EtcdServer::start().await.unwrap();
    let cp = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();

    let first = call(&cp.addr(), IMPORT, &json!({"yaml": fixture()}))
        .unwrap()
        .ok();
    let created = strings(&first["created"]);
    assert_eq!(
        created
            .iter()
            .filter(|c| c.starts_with("deployment/"))
            .count(),
        5,
        "{first}"
    );
    assert!(created.contains(&"access_group/premium".to_string()));
    assert!(created.contains(&"access_group/standard".to_string()));
    assert!(created.contains(&"router_settings".to_string()));
    let warnings = strings(&first["warnings"]);
    for expected in [
        "model_list[0].litellm_params.max_retries",
        "router_settings.redis_host",
        "litellm_settings.drop_params",
        "litellm_settings.num_retries: ignored, router_settings.num_retries takes precedence",
        "general_settings",
    ] {
        assert!(
            warnings.iter().any(|w| w.starts_with(expected)),
            "no warning for {expected}: {warnings:?}"
        );
    }

    let second = call(&cp.addr(), IMPORT, &json!({"yaml": fixture()}))
        .unwrap()
        .ok();
    assert!(strings(&second["created"]).is_empty(), "{second}");
    assert!(strings(&second["updated"]).is_empty(), "{second}");
    assert_eq!(strings(&second["unchanged"]).len(), created.len());
    assert_eq!(second["revision"], first["revision"], "nothing was written");

    let d = deployments(&cp);
    let gpt = d
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "gpt-4o-primary")
        .unwrap();
    assert_eq!(gpt["provider"], "openai");
    assert_eq!(gpt["model"], "gpt-4o");
    assert_eq!(gpt["apiKey"], "os.environ/OPENAI_API_KEY");
    assert_eq!(gpt["weight"], 3);
    assert_eq!(gpt["timeout"], "30s");
    assert_eq!(gpt["streamTimeout"], "10s");
    assert_eq!(gpt["order"], 1);
    // proto3 JSON writes a uint64 as a string.
    assert_eq!(gpt["maxInputTokens"], "128000");
    assert_eq!(strings(&gpt["accessGroups"]), ["premium", "standard"]);
    let r = router(&cp);
    assert_eq!(r["routingStrategy"], "least-busy");
    assert_eq!(r["lowestLatencyBuffer"], 0.5);
    assert_eq!(r["numRetries"], 3);
    assert_eq!(
        r["retryPolicy"],
        json!({"rateLimitErrorRetries": 5, "badRequestErrorRetries": 0})
    );
    assert_eq!(
        r["allowedFailsPolicy"],
        json!({"internalServerErrorAllowedFails": 20})
    );
    assert_eq!(r["maxFallbacks"], 2);
    assert_eq!(r["enablePreCallChecks"], true);
    assert_eq!(r["cooldownTime"], "45s");
    assert_eq!(strings(&r["defaultFallbacks"]), ["mock-model"]);

    let exported = call(&cp.addr(), EXPORT, &json!({"include_secrets": true}))
        .unwrap()
        .ok();
    let yaml = exported["yaml"].as_str().unwrap().to_string();
    let fresh = ControlPlane::start_embedded().unwrap();
    let again = call(&fresh.addr(), IMPORT, &json!({"yaml": yaml}))
        .unwrap()
        .ok();
    assert!(strings(&again["warnings"]).is_empty(), "{again}");
    assert_eq!(deployments(&fresh), deployments(&cp));
    assert_eq!(router(&fresh), router(&cp));
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_yaml_names_line_and_column() {
    assert!(
        grpcurl::available(),
        "grpcurl is not installed; run the README's test command"
    );
    let cp = ControlPlane::start_embedded().unwrap();
    let yaml = "model_list:\n  - model_name: gpt-4o\n   litellm_params: {model: mock/x}\n";
    let (code, message) = call(&cp.addr(), IMPORT, &json!({"yaml": yaml}))
        .unwrap()
        .err();
    assert_eq!(code, "InvalidArgument");
    assert!(message.contains("line 3, column"), "{message}");
    // Nothing was written.
    let d = call(&cp.addr(), DEPLOYMENTS, &json!({})).unwrap().ok();
    assert!(d["deployments"].as_array().is_none_or(|a| a.is_empty()));
}
