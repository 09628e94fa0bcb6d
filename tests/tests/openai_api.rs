//! The data plane's OpenAI-compatible HTTP API end to end (DESIGN §3, §4):
//! real etcd, the real control plane, the real data-plane binary, and
//! deployments pointing at an in-process mock OpenAI upstream. Clients are
//! real too: reqwest, raw TCP for what reqwest will not send, and the
//! official `openai` Python SDK. No fixed sleeps for propagation: every
//! admin write is followed by `WaitForRevision`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde_json::{Value, json};
use sluice_tests::admin_client::api;
use sluice_tests::certs::TestCerts;
use sluice_tests::connect_proxy::ConnectProxy;
use sluice_tests::data_plane::DataPlane;
use sluice_tests::gateway::WAIT;
use sluice_tests::gateway::{
    Answer, Gateway, UPSTREAM_KEY, assert_openai_error_shape, chat_body, mask, openai_deployment,
    strings,
};
use sluice_tests::mock_upstream::{self, MockUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AZURE_KEY: &str = "azure-upstream-secret-XYZ-41d2b8";
/// What the `gpt-4o` deployment calls its model upstream.
const GPT_4O_UPSTREAM: &str = "gpt-4o-2024-08-06";
const LIMIT: usize = 10 * 1024 * 1024;

fn model_ids(list: &Value) -> BTreeSet<String> {
    list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a model list: {list}"))
        .iter()
        .map(|m| m["id"].as_str().expect("model id").to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// Access: who may call what (DESIGN §3), over HTTP.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_access_rule_holds_over_http() {
    let gw = Gateway::start(1).await;
    for (name, upstream) in [
        ("gpt-4o", GPT_4O_UPSTREAM),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("o1", "o1"),
        ("openai/*", "*"),
        ("openai/o1-*", "o1-*"),
    ] {
        gw.deploy_openai(name, upstream).await;
    }
    gw.alias("smart", "gpt-4o").await;
    gw.group("reasoning", &["o1"]).await;
    gw.group("openai-all", &["openai/*"]).await;
    gw.group("openai-o1", &["openai/o1-*"]).await;
    gw.team("inheritors", &["gpt-4o-mini"], &[]).await;
    gw.team("mixed", &["gpt-4o"], &["reasoning"]).await;
    gw.team("nothing", &[], &[]).await;
    gw.team("wide", &[], &["openai-all"]).await;
    gw.team("narrow", &[], &["openai-o1"]).await;

    let own = gw.key(None, &["gpt-4o"]).await;
    let inherits = gw.key(Some("inheritors"), &[]).await;
    let mixed = gw.key(Some("mixed"), &[]).await;
    let nothing = gw.key(Some("nothing"), &[]).await;
    let wide = gw.key(Some("wide"), &[]).await;
    let narrow = gw.key(Some("narrow"), &[]).await;
    let everything = gw.key(None, &["*"]).await;
    let alias_only = gw.key(None, &["smart"]).await;
    let retired = gw.key(None, &["retired-model"]).await;
    gw.sync().await;

    // A key's own models.
    gw.chat(&own, "gpt-4o").await.assert_ok();
    gw.chat(&own, "gpt-4o-mini")
        .await
        .assert_error(403, "model_access_denied");

    // A key with no models inherits its team's list.
    gw.chat(&inherits, "gpt-4o-mini").await.assert_ok();
    gw.chat(&inherits, "gpt-4o")
        .await
        .assert_error(403, "model_access_denied");

    // A team allows its models ∪ its access groups.
    gw.chat(&mixed, "gpt-4o").await.assert_ok();
    gw.chat(&mixed, "o1").await.assert_ok();
    let denied = gw.chat(&mixed, "gpt-4o-mini").await;
    let error = denied.assert_error(403, "model_access_denied");
    assert!(
        error["message"].as_str().unwrap().contains("gpt-4o-mini"),
        "the message names the model: {error}"
    );
    let available: BTreeSet<String> = error["available_models"]
        .as_array()
        .unwrap_or_else(|| panic!("error.available_models missing: {error}"))
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    assert!(
        available.contains("gpt-4o") && available.contains("o1"),
        "available_models lists what the key may use: {available:?}"
    );
    assert!(
        !available.contains("gpt-4o-mini") && !available.contains("openai/*"),
        "available_models lists nothing the key may not use: {available:?}"
    );

    // A team with neither models nor groups gets nothing (fail closed).
    for model in ["gpt-4o", "gpt-4o-mini", "o1", "openai/gpt-4o"] {
        gw.chat(&nothing, model)
            .await
            .assert_error(403, "model_access_denied");
    }

    // Wildcards: `openai/o1-*` is more specific than `openai/*`, so a team
    // holding only the `openai/*` group may not use openai/o1-mini.
    gw.chat(&wide, "openai/gpt-4o").await.assert_ok();
    gw.chat(&wide, "openai/o1-mini")
        .await
        .assert_error(403, "model_access_denied");
    gw.chat(&narrow, "openai/o1-mini").await.assert_ok();
    gw.chat(&narrow, "openai/gpt-4o")
        .await
        .assert_error(403, "model_access_denied");

    // `*` allows every model; an allowed model that resolves to nothing is 404.
    for model in ["gpt-4o", "o1", "openai/gpt-4o", "openai/o1-mini", "smart"] {
        gw.chat(&everything, model).await.assert_ok();
    }
    gw.chat(&everything, "no-such-model")
        .await
        .assert_error(404, "model_not_found");
    gw.chat(&retired, "retired-model")
        .await
        .assert_error(404, "model_not_found");

    // Access to an alias is decided on the alias name; it is served by its target.
    gw.upstream.clear();
    gw.chat(&alias_only, "smart").await.assert_ok();
    assert_eq!(
        gw.upstream.last_request().expect("forwarded").json()["model"],
        GPT_4O_UPSTREAM
    );
    gw.chat(&alias_only, "gpt-4o")
        .await
        .assert_error(403, "model_access_denied");
    gw.chat(&own, "smart")
        .await
        .assert_error(403, "model_access_denied");

    // 403 before 404: a denied key learns nothing about what exists.
    let missing = gw.chat(&own, "no-such-model").await;
    missing.assert_error(403, "model_access_denied");
    let existing = gw.chat(&own, "o1").await;
    existing.assert_error(403, "model_access_denied");

    // Missing and unknown keys; the three places a key may come in.
    let r = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(chat_body("gpt-4o").to_string())
        .send()
        .await
        .unwrap();
    Answer::read(r).await.assert_error(401, "invalid_api_key");
    gw.chat("sk-this-key-was-never-issued-0123456789abcdef", "gpt-4o")
        .await
        .assert_error(401, "invalid_api_key");
    for header in ["x-api-key", "api-key"] {
        let r = gw
            .http
            .post(gw.url("/v1/chat/completions"))
            .header(header, &own)
            .header("content-type", "application/json")
            .body(chat_body("gpt-4o").to_string())
            .send()
            .await
            .unwrap();
        Answer::read(r).await.assert_ok();
    }

    // GET /v1/models lists only what the key may use.
    let listed = gw.get(&mixed, "/v1/models").await;
    listed.assert_ok();
    assert_eq!(listed.json["object"], "list", "{}", listed.text);
    assert_eq!(model_ids(&listed.json), set(&["gpt-4o", "o1"]));
    let listed = gw.get(&nothing, "/v1/models").await;
    listed.assert_ok();
    assert_eq!(model_ids(&listed.json), set(&[]));
    let one = gw.get(&mixed, "/v1/models/gpt-4o").await;
    one.assert_ok();
    assert_eq!(one.json["id"], "gpt-4o", "{}", one.text);
    assert_eq!(one.json["object"], "model", "{}", one.text);
    let hidden = gw.get(&mixed, "/v1/models/gpt-4o-mini").await;
    assert!(
        [403, 404].contains(&hidden.status),
        "a model the key may not use is not shown: {}",
        hidden.text
    );
    assert_openai_error_shape(&hidden.json, &hidden.text);
    gw.get("sk-not-a-key-0123456789abcdef0123456789", "/v1/models")
        .await
        .assert_error(401, "invalid_api_key");

    let keys = [
        &own,
        &inherits,
        &mixed,
        &nothing,
        &wide,
        &narrow,
        &everything,
        &alias_only,
        &retired,
    ];
    let mut secrets: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
    secrets.push(UPSTREAM_KEY);
    gw.assert_logs_hold_none_of(&secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_changes_reach_every_data_plane_without_a_restart() {
    let gw = Gateway::start(2).await;
    gw.deploy_openai("gpt-4o", GPT_4O_UPSTREAM).await;
    gw.deploy_openai("gpt-4o-mini", "gpt-4o-mini").await;
    gw.group("basic", &["gpt-4o-mini"]).await;
    gw.group("premium", &["gpt-4o"]).await;
    gw.team("support", &[], &["basic"]).await;
    gw.team("sales", &["gpt-4o"], &[]).await;
    let key = gw.key(Some("support"), &[]).await;
    let doomed = gw.key(None, &["gpt-4o"]).await;
    let rotated = gw.key(None, &["gpt-4o"]).await;
    let blocked = gw.key(None, &["gpt-4o"]).await;
    let sales = gw.key(Some("sales"), &[]).await;
    let expires = gw
        .key_from(api::Key {
            models: strings(&["gpt-4o"]),
            expires_at: Some(in_seconds(2)),
            ..Default::default()
        })
        .await;
    gw.sync().await;
    let pids: Vec<_> = gw.planes.iter().map(|dp| dp.pid()).collect();

    for dp in 0..2 {
        gw.chat_on(dp, &key, "gpt-4o-mini").await.assert_ok();
        gw.chat_on(dp, &key, "gpt-4o")
            .await
            .assert_error(403, "model_access_denied");
        for k in [&doomed, &rotated, &blocked, &sales] {
            gw.chat_on(dp, k, "gpt-4o").await.assert_ok();
        }
    }

    // The team is upgraded to the premium group.
    gw.set_team_groups("support", &["basic", "premium"]).await;
    gw.sync().await;
    for dp in 0..2 {
        gw.chat_on(dp, &key, "gpt-4o").await.assert_ok();
    }

    // The premium group is taken away again.
    gw.set_team_groups("support", &["basic"]).await;
    gw.sync().await;
    for dp in 0..2 {
        gw.chat_on(dp, &key, "gpt-4o")
            .await
            .assert_error(403, "model_access_denied");
        gw.chat_on(dp, &key, "gpt-4o-mini").await.assert_ok();
    }

    // Removing the team's last group never widens access: it leaves nothing.
    gw.set_team_groups("support", &[]).await;
    gw.sync().await;
    for dp in 0..2 {
        gw.chat_on(dp, &key, "gpt-4o-mini")
            .await
            .assert_error(403, "model_access_denied");
    }

    // A deleted key, a regenerated key, a blocked key, a blocked team.
    let r = gw
        .admin
        .keys
        .clone()
        .delete_key(api::DeleteKeyRequest {
            key: doomed.clone(),
            ..Default::default()
        })
        .await
        .expect("DeleteKey")
        .into_inner();
    gw.wrote(r.revision);
    let r = gw
        .admin
        .keys
        .clone()
        .regenerate_key(api::RegenerateKeyRequest {
            key: rotated.clone(),
            ..Default::default()
        })
        .await
        .expect("RegenerateKey")
        .into_inner();
    gw.wrote(r.revision);
    let replacement = r.key;
    let r = gw
        .admin
        .keys
        .clone()
        .update_key(api::UpdateKeyRequest {
            key: blocked.clone(),
            update: Some(api::Key {
                blocked: true,
                ..Default::default()
            }),
            update_mask: Some(mask("blocked")),
            ..Default::default()
        })
        .await
        .expect("UpdateKey")
        .into_inner();
    gw.wrote(r.revision);
    gw.update_team(
        "sales",
        api::Team {
            blocked: true,
            ..Default::default()
        },
        "blocked",
    )
    .await;
    gw.sync().await;
    for dp in 0..2 {
        gw.chat_on(dp, &doomed, "gpt-4o")
            .await
            .assert_error(401, "invalid_api_key");
        gw.chat_on(dp, &rotated, "gpt-4o")
            .await
            .assert_error(401, "invalid_api_key");
        gw.chat_on(dp, &replacement, "gpt-4o").await.assert_ok();
        gw.chat_on(dp, &blocked, "gpt-4o")
            .await
            .assert_error(401, "key_blocked");
        gw.chat_on(dp, &sales, "gpt-4o")
            .await
            .assert_error(401, "team_blocked");
    }

    // A key past its expires_at is refused by the clock, with no write.
    for dp in 0..2 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let answer = gw.chat_on(dp, &expires, "gpt-4o").await;
            if answer.status == 401 {
                answer.assert_error(401, "key_expired");
                break;
            }
            answer.assert_ok();
            assert!(Instant::now() < deadline, "the key never expired");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let now: Vec<_> = gw.planes.iter().map(|dp| dp.pid()).collect();
    assert_eq!(pids, now, "nothing was restarted");
    gw.assert_logs_hold_none_of(&[
        &key,
        &doomed,
        &rotated,
        &replacement,
        &blocked,
        UPSTREAM_KEY,
    ]);
}

fn in_seconds(s: u64) -> sluice_proto::prost_types::Timestamp {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(s);
    sluice_proto::prost_types::Timestamp {
        seconds: t.as_secs() as i64,
        nanos: t.subsec_nanos() as i32,
    }
}

/// Answers as with everything up: a call reaches the upstream, a model the
/// key may not use is refused, an unknown key is refused.
async fn answers_from_memory(gw: &Gateway, key: &str, when: &str) {
    let calls = gw.upstream.requests().len();
    let answer = gw.chat(key, "gpt-4o").await;
    assert_eq!(answer.status, 200, "{when}: {}", answer.text);
    assert_eq!(
        gw.upstream.requests().len(),
        calls + 1,
        "{when}: the call reached the upstream"
    );
    gw.chat(key, "o1")
        .await
        .assert_error(403, "model_access_denied");
    gw.chat("sk-never-issued", "gpt-4o")
        .await
        .assert_error(401, "invalid_api_key");
}

/// Static stability (DESIGN §6) where users see it: requests are decided
/// from the data plane's memory, so losing etcd, then the control plane, then
/// restarting the data plane itself (from its snapshot cache) changes no
/// answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_are_answered_with_etcd_and_the_control_plane_gone() {
    let mut gw = Gateway::start(1).await;
    gw.deploy_openai("gpt-4o", GPT_4O_UPSTREAM).await;
    gw.deploy_openai("o1", "o1").await;
    let key = gw.key(None, &["gpt-4o"]).await;
    gw.sync().await;
    let revision = gw.revision.load(std::sync::atomic::Ordering::SeqCst);
    gw.planes[0].wait_for_cache(revision, WAIT).await.unwrap();
    answers_from_memory(&gw, &key, "everything up").await;

    gw.etcd.as_mut().expect("on etcd").stop();
    answers_from_memory(&gw, &key, "etcd down").await;

    gw.cp.kill();
    answers_from_memory(&gw, &key, "etcd and the control plane down").await;

    gw.planes[0].restart().unwrap();
    gw.planes[0].wait_ready(WAIT).await.unwrap();
    answers_from_memory(&gw, &key, "the data plane restarted with nothing to reach").await;
    assert!(
        gw.planes[0]
            .log()
            .contains("serving from the snapshot cache until the control plane answers"),
        "it started from its cache:\n{}",
        gw.planes[0].log()
    );
}

// ---------------------------------------------------------------------------
// Forwarding: what the upstream sees.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_reach_the_upstream_unchanged_but_for_the_model() {
    let gw = Gateway::start(1).await;
    gw.deploy_openai("gpt-4o", GPT_4O_UPSTREAM).await;
    gw.deploy_openai("embedder", "text-embedding-3-small").await;
    gw.deploy_openai("instruct", "gpt-3.5-turbo-instruct").await;
    gw.deploy(api::Deployment {
        model_name: "azure-gpt".into(),
        provider: "azure".into(),
        model: "my-gpt4o-deployment".into(),
        api_base: gw.upstream.url(""),
        api_key: AZURE_KEY.into(),
        api_version: "2024-10-21".into(),
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["*"]).await;
    gw.sync().await;

    // Odd spacing, escapes, key order and fields the gateway knows nothing about.
    let sent = concat!(
        "{ \"messages\" : [ {\"role\":\"user\",\"content\":\"caf\\u00e9 \\ud83d\\ude00 \\\"quoted\\\"\"} ],\n",
        "  \"model\"  :  \"gpt-4o\" ,\t\"temperature\": 0.70,",
        " \"x_vendor_extension\": {\"nested\": [1, 2.50, true, null, \"\\/\"]},",
        "\"max_tokens\":16,\"user\":\"alice\"  }"
    );
    let want = sent.replace("\"gpt-4o\"", &format!("\"{GPT_4O_UPSTREAM}\""));
    gw.upstream.clear();
    let r = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .header("x-request-id", "e2e-request-42")
        .body(sent)
        .send()
        .await
        .unwrap();
    let answer = Answer::read(r).await;
    answer.assert_ok();
    assert_eq!(
        answer.json["choices"][0]["message"]["content"],
        mock_upstream::CHAT_CONTENT
    );
    assert_eq!(
        answer.json["usage"]["total_tokens"],
        mock_upstream::PROMPT_TOKENS + mock_upstream::COMPLETION_TOKENS
    );
    assert_eq!(answer.header("x-request-id"), Some("e2e-request-42"));
    let seen = gw.upstream.last_request().expect("the upstream was called");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.json(),
        serde_json::from_str::<Value>(&want).unwrap(),
        "the upstream got a different request"
    );
    assert_eq!(
        String::from_utf8_lossy(&seen.body),
        want,
        "the body must be forwarded byte for byte, only the model rewritten"
    );
    assert_eq!(seen.header("x-request-id"), Some("e2e-request-42"));
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert!(
        seen.headers.iter().all(|(_, v)| !v.contains(&key)),
        "the client's Sluice key went upstream: {:?}",
        seen.headers
    );

    // Without an x-request-id, one is made up, returned, and sent upstream;
    // a key in x-api-key does not travel upstream either.
    let r = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", &key)
        .header("content-type", "application/json")
        .body(chat_body("gpt-4o").to_string())
        .send()
        .await
        .unwrap();
    let answer = Answer::read(r).await;
    answer.assert_ok();
    let id = answer
        .header("x-request-id")
        .expect("an x-request-id is returned")
        .to_string();
    assert!(!id.is_empty());
    let seen = gw.upstream.last_request().unwrap();
    assert_eq!(seen.header("x-request-id"), Some(id.as_str()));
    assert!(
        seen.headers.iter().all(|(_, v)| !v.contains(&key)),
        "the client's Sluice key went upstream: {:?}",
        seen.headers
    );

    // Embeddings and completions, with and without /v1.
    for (path, model, upstream_path, upstream_model) in [
        (
            "/v1/embeddings",
            "embedder",
            "/v1/embeddings",
            "text-embedding-3-small",
        ),
        (
            "/embeddings",
            "embedder",
            "/v1/embeddings",
            "text-embedding-3-small",
        ),
        (
            "/v1/completions",
            "instruct",
            "/v1/completions",
            "gpt-3.5-turbo-instruct",
        ),
        (
            "/completions",
            "instruct",
            "/v1/completions",
            "gpt-3.5-turbo-instruct",
        ),
        (
            "/chat/completions",
            "gpt-4o",
            "/v1/chat/completions",
            GPT_4O_UPSTREAM,
        ),
    ] {
        let body = json!({
            "model": model,
            "input": ["one", "two"],
            "prompt": "Say hello",
            "messages": [{"role": "user", "content": "hello"}]
        });
        let answer = gw.post(&key, path, &body).await;
        answer.assert_ok();
        assert!(
            answer.json["usage"]["prompt_tokens"].is_u64(),
            "{path}: usage is passed back: {}",
            answer.text
        );
        let seen = gw.upstream.last_request().unwrap();
        assert_eq!(seen.path, upstream_path, "{path}");
        let mut want = body.clone();
        want["model"] = json!(upstream_model);
        assert_eq!(seen.json(), want, "{path}");
    }
    let embedded = gw
        .post(
            &key,
            "/v1/embeddings",
            &json!({"model": "embedder", "input": ["one", "two"]}),
        )
        .await;
    assert_eq!(embedded.json["data"].as_array().map(Vec::len), Some(2));

    // Azure: deployment URL, api-version, and the key in `api-key`.
    let answer = gw.chat(&key, "azure-gpt").await;
    answer.assert_ok();
    let seen = gw.upstream.last_request().unwrap();
    assert_eq!(
        seen.path_only(),
        "/openai/deployments/my-gpt4o-deployment/chat/completions"
    );
    assert_eq!(seen.query("api-version"), Some("2024-10-21"));
    assert_eq!(seen.header("api-key"), Some(AZURE_KEY));
    assert!(
        seen.headers
            .iter()
            .all(|(_, v)| !v.contains(&key) && !v.contains(UPSTREAM_KEY)),
        "only the Azure deployment's key goes to Azure: {:?}",
        seen.headers
    );

    gw.assert_logs_hold_none_of(&[&key, UPSTREAM_KEY, AZURE_KEY]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_failures_come_back_in_openai_shape() {
    let gw = Gateway::start(1).await;
    let failing = MockUpstream::start().await.unwrap();
    failing.fail_with(500, "server_error");
    let refusing = MockUpstream::start().await.unwrap();
    refusing.fail_with(400, "context_length_exceeded");
    let limited = MockUpstream::start().await.unwrap();
    limited.fail_with(429, "rate_limit_exceeded");
    let unavailable = MockUpstream::start().await.unwrap();
    unavailable.fail_with_text(503, "<html>503 Service Temporarily Unavailable</html>");
    let slow = MockUpstream::start().await.unwrap();
    slow.set_latency(Duration::from_secs(20));
    let closed_port = sluice_tests::control_plane::free_port().unwrap();
    gw.deploy(openai_deployment(&failing, "failing", "gpt-4o"))
        .await;
    gw.deploy(openai_deployment(&refusing, "refusing", "gpt-4o"))
        .await;
    gw.deploy(openai_deployment(&limited, "limited", "gpt-4o"))
        .await;
    gw.deploy(openai_deployment(&unavailable, "unavailable", "gpt-4o"))
        .await;
    gw.deploy(api::Deployment {
        timeout: Some(sluice_proto::prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..openai_deployment(&slow, "slow", "gpt-4o")
    })
    .await;
    gw.deploy(api::Deployment {
        api_base: format!("http://127.0.0.1:{closed_port}/v1"),
        ..openai_deployment(&gw.upstream, "unreachable", "gpt-4o")
    })
    .await;
    let key = gw.key(None, &["*"]).await;
    gw.sync().await;

    let answer = gw.chat(&key, "failing").await;
    assert!(
        [500, 502].contains(&answer.status),
        "upstream 500: the upstream's status or 502, got {}",
        answer.text
    );
    assert_openai_error_shape(&answer.json, &answer.text);

    let answer = gw.chat(&key, "refusing").await;
    assert_eq!(
        answer.status, 400,
        "a 4xx upstream answer is passed on: {}",
        answer.text
    );
    assert_openai_error_shape(&answer.json, &answer.text);

    // When to come back is relayed, in OpenAI's shape or not; the upstream
    // account's rate-limit counters are not.
    let answer = gw.chat(&key, "limited").await;
    assert_eq!(answer.status, 429, "{}", answer.text);
    assert_openai_error_shape(&answer.json, &answer.text);
    let answer_503 = gw.chat(&key, "unavailable").await;
    answer_503.assert_error(503, "upstream_error");
    for answer in [&answer, &answer_503] {
        assert_eq!(answer.headers["retry-after"], mock_upstream::RETRY_AFTER);
        assert_eq!(
            answer.headers["retry-after-ms"],
            mock_upstream::RETRY_AFTER_MS
        );
        assert!(
            !answer
                .headers
                .contains_key("x-ratelimit-remaining-requests"),
            "{:?}",
            answer.headers
        );
    }
    let answer = gw.chat(&key, "failing").await;
    assert!(!answer.headers.contains_key("retry-after"));

    let started = Instant::now();
    gw.chat(&key, "slow")
        .await
        .assert_error(504, "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the deployment's 1s timeout was not applied: {:?}",
        started.elapsed()
    );

    gw.chat(&key, "unreachable")
        .await
        .assert_error(502, "upstream_error");

    let (status, _) = get_status(&gw, "/health/liveness").await;
    assert_eq!(status, 200);
}

/// A data plane whose environment names an HTTP proxy sends its upstream
/// calls through it, except to the hosts `NO_PROXY` lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_calls_go_through_the_proxy_the_environment_names() {
    // A second mock upstream stands in for the proxy: a proxied request
    // reaches it in absolute form, for a host that does not resolve.
    let proxy = MockUpstream::start().await.unwrap();
    let proxy_url = proxy.url("");
    let gw = Gateway::start_with_env(
        1,
        &[],
        &[("HTTP_PROXY", &proxy_url), ("NO_PROXY", "127.0.0.1")],
    )
    .await;
    gw.deploy(api::Deployment {
        api_base: "http://models.example.invalid/v1".into(),
        ..openai_deployment(&gw.upstream, "behind-proxy", "gpt-4o")
    })
    .await;
    gw.deploy(openai_deployment(&gw.upstream, "direct", "gpt-4o"))
        .await;
    let key = gw.key(None, &["*"]).await;
    gw.sync().await;

    gw.chat(&key, "behind-proxy").await.assert_ok();
    let via = proxy.last_request().expect("the request went to the proxy");
    assert_eq!(via.header("host"), Some("models.example.invalid"));
    assert_eq!(via.path_only(), "/v1/chat/completions");
    assert_eq!(
        via.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert!(gw.upstream.requests().is_empty());

    gw.chat(&key, "direct").await.assert_ok();
    assert_eq!(
        proxy.requests().len(),
        1,
        "a NO_PROXY host is reached directly"
    );
    assert_eq!(gw.upstream.requests().len(), 1);
}

/// HTTPS upstreams are verified: one signed by a private CA is reached by
/// a data plane given that CA (`--upstream-ca-file`), over HTTP/2 as the
/// upstream offers it, and refused by one that trusts only the system's
/// roots.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_upstreams_are_verified_and_spoken_to_over_http2() {
    let certs = TestCerts::generate().expect("openssl makes certificates");
    let ca = certs.ca_file();
    let ca = ca.to_str().unwrap();
    let mut gw = Gateway::start_with_args(1, &["--upstream-ca-file", ca]).await;
    let untrusting = DataPlane::start(&[gw.cp.url()], "dp-system-roots", gw.dir.path()).unwrap();
    untrusting.wait_ready(WAIT).await.unwrap();
    gw.planes.push(untrusting);
    let tls = MockUpstream::start_tls(&certs.server_cert_file(), &certs.server_key_file())
        .await
        .unwrap();
    gw.deploy(openai_deployment(&tls, "private", "gpt-4o"))
        .await;
    let key = gw.key(None, &["private"]).await;
    gw.sync().await;

    gw.chat_on(0, &key, "private").await.assert_ok();
    let seen = tls
        .last_request()
        .expect("the request reached the upstream");
    assert_eq!(seen.version, hyper::Version::HTTP_2, "h2 by ALPN");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );

    let refused = gw.chat_on(1, &key, "private").await;
    let error = refused.assert_error(502, "upstream_error");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("certificate")),
        "{error}"
    );
    assert_eq!(tls.requests().len(), 1, "nothing sent before the handshake");
}

/// An HTTPS upstream behind an egress proxy (`HTTPS_PROXY`) is reached
/// through a `CONNECT` tunnel, verified with the same roots as a direct one
/// (here a private CA), and offered HTTP/2 the same way. The proxy sees the
/// tunnel's target and nothing of what goes through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_upstreams_behind_an_egress_proxy_are_reached_through_a_tunnel() {
    let certs = TestCerts::generate().expect("openssl makes certificates");
    let ca = certs.ca_file();
    let proxy = ConnectProxy::start().await.unwrap();
    // One worker: each worker has its own upstream client, so a second
    // request arriving on a new client connection (handed to the next
    // worker) would rightly open a second tunnel.
    let gw = Gateway::start_with_env(
        1,
        &["--upstream-ca-file", ca.to_str().unwrap(), "--workers", "1"],
        &[("HTTPS_PROXY", &proxy.url())],
    )
    .await;
    let tls = MockUpstream::start_tls(&certs.server_cert_file(), &certs.server_key_file())
        .await
        .unwrap();
    gw.deploy(openai_deployment(&tls, "tunnelled", "gpt-4o"))
        .await;
    let key = gw.key(None, &["tunnelled"]).await;
    gw.sync().await;

    gw.chat(&key, "tunnelled").await.assert_ok();
    assert_eq!(proxy.tunnels(), [format!("localhost:{}", tls.port())]);
    let seen = tls
        .last_request()
        .expect("the request reached the upstream");
    assert_eq!(seen.version, hyper::Version::HTTP_2, "h2 by ALPN");
    assert_eq!(seen.json()["model"], "gpt-4o");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );

    gw.chat(&key, "tunnelled").await.assert_ok();
    assert_eq!(proxy.tunnels().len(), 1, "the tunnel is kept and reused");
}

async fn get_status(gw: &Gateway, path: &str) -> (u16, String) {
    let r = gw.http.get(gw.url(path)).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

// ---------------------------------------------------------------------------
// Streaming.
// ---------------------------------------------------------------------------

/// Reads from `stream` into `buffer` until it holds a whole SSE event; returns it.
async fn next_event<S>(stream: &mut S, buffer: &mut Vec<u8>) -> Option<String>
where
    S: futures::Stream<Item = reqwest::Result<hyper::body::Bytes>> + Unpin,
{
    loop {
        if let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buffer.drain(..end + 2).collect();
            return Some(String::from_utf8(event).expect("UTF-8 event"));
        }
        match stream.next().await {
            Some(Ok(bytes)) => buffer.extend_from_slice(&bytes),
            Some(Err(e)) => panic!("stream broke: {e}"),
            None => return None,
        }
    }
}

fn event_data(event: &str) -> &str {
    event
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no data in event {event:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_is_relayed_chunk_by_chunk() {
    let (gw, key) = Gateway::serving("gpt-4o", GPT_4O_UPSTREAM).await;

    let gate = gw.upstream.hold_streams();
    let r = gw.start_stream(&key, "gpt-4o").await;
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let mut stream = r.bytes_stream();
    let mut buffer = Vec::new();

    // The upstream holds everything after its first chunk: the client must
    // have that chunk anyway, or the gateway is buffering.
    let first = tokio::time::timeout(
        Duration::from_secs(10),
        next_event(&mut stream, &mut buffer),
    )
    .await
    .expect("the first chunk did not arrive while the upstream held back the rest")
    .expect("the stream ended early");
    let chunk: Value = serde_json::from_str(event_data(&first)).unwrap();
    assert_eq!(chunk["object"], "chat.completion.chunk");
    assert_eq!(
        chunk["choices"][0]["delta"]["content"],
        mock_upstream::STREAM_PIECES[0]
    );
    assert!(
        !String::from_utf8_lossy(&buffer).contains(mock_upstream::STREAM_PIECES[1]),
        "the rest arrived before the upstream sent it?"
    );

    gate.release();
    let mut text = String::new();
    let mut events = vec![first];
    while let Some(event) = tokio::time::timeout(
        Duration::from_secs(10),
        next_event(&mut stream, &mut buffer),
    )
    .await
    .expect("the rest of the stream did not arrive after release")
    {
        events.push(event);
    }
    for event in &events {
        let data = event_data(event);
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(piece);
        }
    }
    assert_eq!(text, mock_upstream::STREAM_PIECES.concat());
    assert_eq!(
        event_data(events.last().unwrap()),
        "[DONE]",
        "the stream ends with [DONE]: {events:?}"
    );
    assert_eq!(gw.upstream.last_request().unwrap().json()["stream"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_mock_provider_answers_locally() {
    let gw = Gateway::start(1).await;
    gw.deploy(api::Deployment {
        model_name: "demo".into(),
        model: "mock/gpt-4o".into(),
        ..Default::default()
    })
    .await;
    gw.deploy(api::Deployment {
        model_name: "demo-embed".into(),
        model: "mock/text-embedding-3-small".into(),
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["demo", "demo-embed"]).await;
    gw.sync().await;

    let answer = gw.chat(&key, "demo").await;
    answer.assert_ok();
    assert!(
        answer.json["choices"][0]["message"]["content"].is_string(),
        "{}",
        answer.text
    );
    assert!(answer.json["usage"]["total_tokens"].as_u64() > Some(0));

    let answer = gw
        .post(
            &key,
            "/v1/embeddings",
            &json!({"model": "demo-embed", "input": "hello"}),
        )
        .await;
    answer.assert_ok();
    assert!(
        answer.json["data"][0]["embedding"]
            .as_array()
            .is_some_and(|v| !v.is_empty()),
        "{}",
        answer.text
    );
    assert!(answer.json["usage"]["prompt_tokens"].is_u64());

    let mut body = chat_body("demo");
    body["stream"] = json!(true);
    let answer = gw.post(&key, "/v1/chat/completions", &body).await;
    answer.assert_ok();
    let events: Vec<&str> = answer
        .text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .collect();
    assert!(events.len() >= 2, "{}", answer.text);
    assert_eq!(event_data(events.last().unwrap()), "[DONE]");
    assert!(gw.upstream.requests().is_empty(), "mock answers locally");
}

// ---------------------------------------------------------------------------
// Bad input: documented errors, and the gateway keeps serving.
// ---------------------------------------------------------------------------

/// What a malformed request must get.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// This status, OpenAI's error shape, this code, and `param` when given.
    Error(u16, &'static str, Option<&'static str>),
    /// One of these statuses, OpenAI's error shape when there is a body.
    OneOf(&'static [u16]),
    /// 400 `invalid_request_error`, or the connection closed with no answer
    /// (the request never completed, so there may be nothing to answer).
    BadOrClosed,
    /// It is not malformed at all: 200.
    Ok,
}

struct Case {
    name: &'static str,
    request: Vec<u8>,
    /// Close our write half after sending (a body shorter than announced).
    half_close: bool,
    want: Want,
}

/// A raw HTTP/1.1 request with `Connection: close`.
fn raw(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (n, v) in headers {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
    {
        r.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The answer to a raw request: `None` when the connection closed without one.
struct RawAnswer {
    status: u16,
    body: String,
}

async fn send_raw(port: u16, request: &[u8], half_close: bool) -> Option<RawAnswer> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    let (mut reader, mut writer) = stream.into_split();
    let request = request.to_vec();
    // Write while reading: the server may answer (413) before taking it all.
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        if half_close {
            let _ = writer.shutdown().await;
        }
        writer
    });
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the data plane hung on this request");
    writing.abort();
    parse_response(&received)
}

fn parse_response(bytes: &[u8]) -> Option<RawAnswer> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]).to_string();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let raw_body = &bytes[end + 4..];
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked {
        let mut out = Vec::new();
        let mut rest = raw_body;
        while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..line_end])
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim(),
                16,
            )
            .unwrap_or(0);
            rest = &rest[line_end + 2..];
            if size == 0 || rest.len() < size {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[(size + 2).min(rest.len())..];
        }
        out
    } else {
        raw_body.to_vec()
    };
    Some(RawAnswer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_get_documented_errors_and_the_gateway_keeps_serving() {
    let gw = Gateway::start(1).await;
    gw.deploy_openai("gpt-4o", GPT_4O_UPSTREAM).await;
    gw.deploy_openai("embedder", "text-embedding-3-small").await;
    let key = gw.key(None, &["gpt-4o", "embedder"]).await;
    gw.sync().await;
    let bearer = format!("Bearer {key}");
    let auth = ("authorization", bearer.as_str());
    let json_type = ("content-type", "application/json");
    let chat = "/v1/chat/completions";
    let valid = chat_body("gpt-4o").to_string();
    let post = |body: &[u8]| raw("POST", chat, &[auth, json_type], body);
    let bad = |param: Option<&'static str>| Want::Error(400, "invalid_request_error", param);

    let huge_bearer = format!("Bearer sk-{}", "A".repeat(100 * 1024));
    let huge_header = "x".repeat(1024 * 1024);
    let over_limit = {
        let mut body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":""#.to_vec();
        body.resize(LIMIT + 1024, b'a');
        body.extend_from_slice(br#""}]}"#);
        body
    };
    let chunked_over_limit = {
        let mut r = format!(
            "POST {chat} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\nauthorization: {bearer}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        let piece = vec![b' '; 1024 * 1024];
        for _ in 0..11 {
            r.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            r.extend_from_slice(&piece);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
        r
    };
    let deeply_nested = format!(
        r#"{{"model":"gpt-4o","messages":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let truncated_content_length = format!("{}", valid.len() + 100);

    let cases = vec![
        Case {
            name: "invalid JSON",
            request: post(br#"{"model": "gpt-4o", "messages": [}"#),
            half_close: false,
            want: bad(None),
        },
        Case {
            name: "truncated JSON",
            request: post(br#"{"model": "gpt-4o", "messages": [{"role": "user""#),
            half_close: false,
            want: bad(None),
        },
        Case {
            name: "a JSON array",
            request: post(br#"[{"model": "gpt-4o"}]"#),
            half_close: false,
            want: bad(None),
        },
        Case {
            name: "a JSON string",
            request: post(br#""gpt-4o""#),
            half_close: false,
            want: bad(None),
        },
        Case {
            name: "model missing",
            request: post(br#"{"messages": [{"role": "user", "content": "hi"}]}"#),
            half_close: false,
            want: bad(Some("model")),
        },
        Case {
            name: "model a number",
            request: post(br#"{"model": 4, "messages": []}"#),
            half_close: false,
            want: bad(Some("model")),
        },
        Case {
            name: "model null",
            request: post(br#"{"model": null, "messages": []}"#),
            half_close: false,
            want: bad(Some("model")),
        },
        Case {
            name: "model an object",
            request: post(br#"{"model": {"name": "gpt-4o"}, "messages": []}"#),
            half_close: false,
            want: bad(Some("model")),
        },
        Case {
            name: "model a number, embeddings",
            request: raw(
                "POST",
                "/v1/embeddings",
                &[auth, json_type],
                br#"{"model": 4, "input": "x"}"#,
            ),
            half_close: false,
            want: bad(Some("model")),
        },
        Case {
            name: "stream not a boolean",
            request: post(br#"{"model": "gpt-4o", "messages": [], "stream": "yes"}"#),
            half_close: false,
            want: bad(Some("stream")),
        },
        Case {
            name: "invalid UTF-8",
            request: post(b"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\xc3\"}]}"),
            half_close: false,
            want: bad(None),
        },
        Case {
            name: "empty body",
            request: post(b""),
            half_close: false,
            want: bad(None),
        },
        Case {
            name: "JSON nested 100000 deep",
            request: post(deeply_nested.as_bytes()),
            half_close: false,
            want: bad(None),
        },
        Case {
            name: "Content-Type text/plain",
            request: raw(
                "POST",
                chat,
                &[auth, ("content-type", "text/plain")],
                valid.as_bytes(),
            ),
            half_close: false,
            want: bad(None),
        },
        Case {
            name: "Content-Type form",
            request: raw(
                "POST",
                chat,
                &[auth, ("content-type", "application/x-www-form-urlencoded")],
                valid.as_bytes(),
            ),
            half_close: false,
            want: bad(None),
        },
        Case {
            name: "a gzip-compressed body",
            request: raw(
                "POST",
                chat,
                &[auth, json_type, ("content-encoding", "gzip")],
                valid.as_bytes(),
            ),
            half_close: false,
            want: bad(None),
        },
        Case {
            name: "no Content-Type",
            request: raw("POST", chat, &[auth], valid.as_bytes()),
            half_close: false,
            want: bad(None),
        },
        Case {
            name: "Content-Type with charset (fine)",
            request: raw(
                "POST",
                chat,
                &[auth, ("content-type", "application/json; charset=utf-8")],
                valid.as_bytes(),
            ),
            half_close: false,
            want: Want::Ok,
        },
        Case {
            name: "no key",
            request: raw("POST", chat, &[json_type], valid.as_bytes()),
            half_close: false,
            want: Want::Error(401, "invalid_api_key", None),
        },
        Case {
            name: "Authorization: Basic",
            request: raw(
                "POST",
                chat,
                &[("authorization", "Basic dXNlcjpwYXNz"), json_type],
                valid.as_bytes(),
            ),
            half_close: false,
            want: Want::Error(401, "invalid_api_key", None),
        },
        Case {
            name: "Authorization: Bearer with no key",
            request: raw(
                "POST",
                chat,
                &[("authorization", "Bearer "), json_type],
                valid.as_bytes(),
            ),
            half_close: false,
            want: Want::Error(401, "invalid_api_key", None),
        },
        Case {
            name: "Authorization: Bearer and a key twice",
            request: raw(
                "POST",
                chat,
                &[("authorization", &format!("Bearer {key} {key}")), json_type],
                valid.as_bytes(),
            ),
            half_close: false,
            want: Want::Error(401, "invalid_api_key", None),
        },
        Case {
            name: "Authorization: 100 KiB bearer token",
            request: raw(
                "POST",
                chat,
                &[("authorization", &huge_bearer), json_type],
                valid.as_bytes(),
            ),
            half_close: false,
            want: Want::OneOf(&[400, 401, 431]),
        },
        Case {
            name: "a 1 MiB header",
            request: raw(
                "POST",
                chat,
                &[auth, json_type, ("x-padding", &huge_header)],
                valid.as_bytes(),
            ),
            half_close: false,
            want: Want::OneOf(&[400, 431]),
        },
        Case {
            name: "GET on chat completions",
            request: raw("GET", chat, &[auth], b""),
            half_close: false,
            want: Want::OneOf(&[404, 405]),
        },
        Case {
            name: "DELETE on chat completions",
            request: raw("DELETE", chat, &[auth], b""),
            half_close: false,
            want: Want::OneOf(&[404, 405]),
        },
        Case {
            name: "a model path that is not UTF-8 once percent-decoded",
            request: raw("GET", "/v1/models/gpt-4o%FF", &[auth], b""),
            half_close: false,
            want: bad(Some("model")),
        },
        Case {
            name: "an unknown route",
            request: raw("POST", "/v1/no-such-route", &[auth, json_type], valid.as_bytes()),
            half_close: false,
            want: Want::OneOf(&[404]),
        },
        Case {
            name: "body over 10 MiB",
            request: post(&over_limit),
            half_close: false,
            want: Want::Error(413, "request_too_large", None),
        },
        Case {
            name: "chunked body over 10 MiB",
            request: chunked_over_limit,
            half_close: false,
            want: Want::Error(413, "request_too_large", None),
        },
        Case {
            name: "Content-Length larger than the body",
            request: raw(
                "POST",
                chat,
                &[
                    auth,
                    json_type,
                    ("content-length", truncated_content_length.as_str()),
                ],
                valid.as_bytes(),
            ),
            half_close: true,
            want: Want::BadOrClosed,
        },
        Case {
            name: "a broken chunk size",
            request: raw(
                "POST",
                chat,
                &[auth, json_type, ("transfer-encoding", "chunked")],
                b"zz\r\n{}\r\n0\r\n\r\n",
            ),
            half_close: false,
            want: Want::BadOrClosed,
        },
    ];
    assert!(cases.len() >= 20);

    let port: u16 = gw
        .url("")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .expect("port");
    let mut failures = Vec::new();
    for case in &cases {
        let answer = send_raw(port, &case.request, case.half_close).await;
        if let Err(why) = check(case.want, answer.as_ref()) {
            failures.push(format!("{}: {why}", case.name));
        }
    }

    // Still alive, still serving.
    let (status, body) = get_status(&gw, "/health/liveness").await;
    assert_eq!(status, 200, "{body}");
    gw.chat(&key, "gpt-4o").await.assert_ok();
    assert!(
        failures.is_empty(),
        "{} of {} malformed requests got the wrong answer:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    gw.assert_logs_hold_none_of(&[&key, UPSTREAM_KEY]);
}

fn check(want: Want, answer: Option<&RawAnswer>) -> Result<(), String> {
    let shape = |a: &RawAnswer| -> Result<Value, String> {
        let body: Value = serde_json::from_str(&a.body)
            .map_err(|_| format!("{} with a body that is not JSON: {:?}", a.status, a.body))?;
        let error = body["error"]
            .as_object()
            .ok_or_else(|| format!("{} not in OpenAI's error shape: {}", a.status, a.body))?;
        for field in ["message", "type", "param", "code"] {
            if !error.contains_key(field) {
                return Err(format!("{} error.{field} missing: {}", a.status, a.body));
            }
        }
        Ok(body)
    };
    match (want, answer) {
        (Want::BadOrClosed, None) => Ok(()),
        (_, None) => Err("the connection closed with no answer".into()),
        (Want::Ok, Some(a)) if a.status == 200 => Ok(()),
        (Want::Ok, Some(a)) => Err(format!("expected 200, got {}: {}", a.status, a.body)),
        (Want::OneOf(statuses), Some(a)) => {
            if !statuses.contains(&a.status) {
                return Err(format!(
                    "expected one of {statuses:?}, got {}: {}",
                    a.status, a.body
                ));
            }
            // hyper answers 431 itself, before any handler, with no body.
            if a.status != 431 || !a.body.is_empty() {
                shape(a)?;
            }
            Ok(())
        }
        (Want::BadOrClosed, Some(a)) => {
            check(Want::Error(400, "invalid_request_error", None), Some(a))
        }
        (Want::Error(status, code, param), Some(a)) => {
            if a.status != status {
                return Err(format!(
                    "expected {status} {code}, got {}: {}",
                    a.status, a.body
                ));
            }
            let body = shape(a)?;
            let error = &body["error"];
            // `invalid_request_error` is a `type` in OpenAI's shape; accept it as either.
            if error["code"] != code && !(code == "invalid_request_error" && error["type"] == code)
            {
                return Err(format!("expected code {code}: {}", a.body));
            }
            if let Some(param) = param
                && error["param"] != param
            {
                return Err(format!("expected param {param:?}: {}", a.body));
            }
            Ok(())
        }
    }
}

/// `/v1/moderations`: sent only to the group's deployments that serve
/// moderations (OpenAI's here, not the Groq one beside it), the verdict
/// relayed as it came, billed for the input alone (OpenAI's answer reports
/// no usage: the prompt by estimate, no completion); a group with none that
/// serves them is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moderations_reach_the_deployments_that_serve_them_and_bill_the_input_alone() {
    let gw = Gateway::start(1).await;
    const UPSTREAM_MODEL: &str = "omni-moderation-2024-09-26";
    gw.deploy(api::Deployment {
        input_cost_per_token: 1e-6,
        output_cost_per_token: 1e-6,
        ..openai_deployment(&gw.upstream, "omni-moderation-latest", UPSTREAM_MODEL)
    })
    .await;
    let groq = |group: &str| api::Deployment {
        provider: "groq".into(),
        ..openai_deployment(&gw.upstream, group, "llama-guard-4-12b")
    };
    gw.deploy(groq("omni-moderation-latest")).await;
    gw.deploy(groq("llama-guard")).await;
    let key = gw
        .key(None, &["omni-moderation-latest", "llama-guard"])
        .await;
    gw.sync().await;

    let body = json!({
        "model": "omni-moderation-latest",
        "input": [format!("I will {} this process", mock_upstream::FLAGGED_WORD), "hello"],
    });
    const REQUESTS: u64 = 6;
    for _ in 0..REQUESTS {
        let r = gw.post(&key, "/v1/moderations", &body).await;
        r.assert_ok();
        assert_eq!(r.json["id"], "modr-mock-upstream");
        assert_eq!(r.json["results"][0]["flagged"], true, "{}", r.text);
        assert_eq!(r.json["results"][0]["categories"]["violence"], true);
        assert_eq!(r.json["results"][1]["flagged"], false);
        assert_eq!(
            r.header("x-sluice-model-group"),
            Some("omni-moderation-latest")
        );
        assert_eq!(r.header("x-sluice-attempts"), Some("1"));
    }
    let sent = gw.upstream.requests();
    assert_eq!(sent.len() as u64, REQUESTS);
    for r in &sent {
        assert_eq!(r.path, "/v1/moderations");
        assert_eq!(r.json()["model"], UPSTREAM_MODEL);
        assert_eq!(r.json()["input"], body["input"]);
    }

    // Nothing in the group serves moderations: refused, nothing sent.
    gw.upstream.clear();
    let r = gw
        .post(
            &key,
            "/moderations",
            &json!({"model": "llama-guard", "input": "hi"}),
        )
        .await;
    let error = r.assert_error(400, "invalid_request_error");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("does not serve /moderations"), "{message}");
    assert!(gw.upstream.requests().is_empty());
    // Nor is a body without `input`.
    let r = gw
        .post(
            &key,
            "/v1/moderations",
            &json!({"model": "omni-moderation-latest"}),
        )
        .await;
    assert_eq!(
        r.assert_error(400, "invalid_request_error")["param"],
        "input"
    );

    // Billed: the prompt at 4 bytes of body a token, no completion; the
    // refused requests not at all.
    let prompt = (body.to_string().len() as u64).div_ceil(4);
    let key_id = sluice_control_plane::secrets::sha256_hex(&key);
    gw.admin
        .usage_reaches(
            api::get_usage_request::Scope::KeyId(key_id),
            &(REQUESTS, REQUESTS * prompt, 0, (REQUESTS * prompt) as i64),
            billed,
            WAIT,
        )
        .await;
}

/// Image generations go to the deployments that serve them (OpenAI's and
/// Azure's, not the Groq one beside them), relayed as they came, and are
/// billed their tokens when the answer reports them (the GPT image models)
/// plus their images at the deployment's price each; DALL·E's, without
/// usage, the prompt by estimate and the images. A stream, and a group
/// with none that serves them, are refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn image_generations_reach_the_deployments_that_serve_them_and_bill_each_image() {
    let gw = Gateway::start(1).await;
    gw.deploy(api::Deployment {
        input_cost_per_token: 1e-6,
        output_cost_per_token: 1e-6,
        output_cost_per_image: 0.01,
        ..openai_deployment(&gw.upstream, "gpt-image-1", "gpt-image-1")
    })
    .await;
    gw.deploy(api::Deployment {
        provider: "groq".into(),
        ..openai_deployment(&gw.upstream, "gpt-image-1", "llama")
    })
    .await;
    gw.deploy(api::Deployment {
        model_name: "dall-e-3".into(),
        provider: "azure".into(),
        model: "dall-e-3".into(),
        api_base: gw.upstream.url(""),
        api_key: AZURE_KEY.into(),
        api_version: "2024-10-21".into(),
        output_cost_per_image: 0.04,
        ..Default::default()
    })
    .await;
    gw.deploy(api::Deployment {
        provider: "groq".into(),
        ..openai_deployment(&gw.upstream, "llama", "llama")
    })
    .await;
    let key = gw.key(None, &["gpt-image-1", "dall-e-3", "llama"]).await;
    gw.sync().await;

    let gpt_image = json!({"model": "gpt-image-1", "prompt": "a red fox in snow", "n": 2});
    for _ in 0..3 {
        let r = gw.post(&key, "/v1/images/generations", &gpt_image).await;
        r.assert_ok();
        assert_eq!(
            r.json["data"].as_array().map(Vec::len),
            Some(2),
            "{}",
            r.text
        );
        assert_eq!(r.json["data"][0]["b64_json"], mock_upstream::IMAGE_B64);
        assert_eq!(r.header("x-sluice-attempts"), Some("1"));
    }
    let dalle = json!({"model": "dall-e-3", "prompt": "a fox", "response_format": "url"});
    for _ in 0..2 {
        let r = gw.post(&key, "/images/generations", &dalle).await;
        r.assert_ok();
        assert!(r.json["data"][0]["url"].is_string(), "{}", r.text);
    }
    let sent = gw.upstream.requests();
    let paths: Vec<&str> = sent.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/images/generations",
            "/v1/images/generations",
            "/v1/images/generations",
            "/openai/deployments/dall-e-3/images/generations?api-version=2024-10-21",
            "/openai/deployments/dall-e-3/images/generations?api-version=2024-10-21",
        ]
    );
    assert_eq!(sent[0].json()["prompt"], gpt_image["prompt"]);
    assert_eq!(sent[0].json()["n"], 2);

    // Refused before sending: a stream, a group whose deployments have no
    // images API, a body without a prompt.
    gw.upstream.clear();
    let streamed = json!({"model": "gpt-image-1", "prompt": "a fox", "stream": true});
    let r = gw.post(&key, "/v1/images/generations", &streamed).await;
    assert_eq!(
        r.assert_error(400, "invalid_request_error")["param"],
        "stream"
    );
    let r = gw
        .post(
            &key,
            "/v1/images/generations",
            &json!({"model": "llama", "prompt": "a fox"}),
        )
        .await;
    let error = r.assert_error(400, "invalid_request_error");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("does not serve /images/generations"),
        "{message}"
    );
    let r = gw
        .post(
            &key,
            "/v1/images/generations",
            &json!({"model": "dall-e-3"}),
        )
        .await;
    assert_eq!(
        r.assert_error(400, "invalid_request_error")["param"],
        "prompt"
    );
    assert!(gw.upstream.requests().is_empty());

    // Billed per model group: GPT image, its tokens at 1 µ$ each and two
    // images at 10,000 µ$; DALL·E, the prompt by estimate (no price) and
    // one image at 40,000 µ$.
    let completion = 2 * mock_upstream::IMAGE_TOKENS;
    let dalle_prompt = (dalle.to_string().len() as u64).div_ceil(4);
    for (group, requests, prompt, completion, spend) in [
        (
            "gpt-image-1",
            3,
            mock_upstream::PROMPT_TOKENS,
            completion,
            (mock_upstream::PROMPT_TOKENS + completion) as i64 + 20_000,
        ),
        ("dall-e-3", 2, dalle_prompt, 0, 40_000),
    ] {
        gw.admin
            .usage_reaches(
                api::get_usage_request::Scope::ModelGroup(group.into()),
                &(
                    requests,
                    requests * prompt,
                    requests * completion,
                    requests as i64 * spend,
                ),
                billed,
                WAIT,
            )
            .await;
    }
}

/// What a scope was billed: (requests, prompt tokens, completion tokens, spend).
fn billed(usage: &api::GetUsageResponse) -> (u64, u64, u64, i64) {
    let u = usage.usage.unwrap_or_default();
    (u.requests, u.prompt_tokens, u.completion_tokens, u.spend)
}

// ---------------------------------------------------------------------------
// The official OpenAI Python SDK.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_openai_python_sdk_works_against_the_gateway() {
    let gw = Gateway::start(1).await;
    let failing = MockUpstream::start().await.unwrap();
    failing.fail_with(500, "server_error");
    let limited = MockUpstream::start().await.unwrap();
    limited.fail_with(429, "rate_limit_exceeded");
    gw.deploy_openai("gpt-4o", GPT_4O_UPSTREAM).await;
    gw.deploy_openai("gpt-4o-mini", "gpt-4o-mini").await;
    gw.deploy_openai("vendor/chat-model", "gpt-4o").await;
    gw.deploy_openai("text-embedding-3-small", "text-embedding-3-small")
        .await;
    gw.deploy_openai("omni-moderation-latest", "omni-moderation-2024-09-26")
        .await;
    gw.deploy_openai("gpt-image-1", "gpt-image-1").await;
    gw.deploy(openai_deployment(&failing, "failing", "gpt-4o"))
        .await;
    gw.deploy(openai_deployment(&limited, "limited", "gpt-4o"))
        .await;
    let key = gw
        .key(
            None,
            &[
                "gpt-4o",
                "vendor/chat-model",
                "text-embedding-3-small",
                "omni-moderation-latest",
                "gpt-image-1",
                "retired-model",
                "failing",
                "limited",
            ],
        )
        .await;
    gw.sync().await;

    let mut env: Vec<(&str, String)> = vec![
        ("SLUICE_TEST_BASE_URL", gw.url("/v1")),
        ("SLUICE_TEST_KEY", key.clone()),
        ("SLUICE_TEST_MODEL", "gpt-4o".into()),
        ("SLUICE_TEST_SLASHED_MODEL", "vendor/chat-model".into()),
        (
            "SLUICE_TEST_EMBEDDING_MODEL",
            "text-embedding-3-small".into(),
        ),
        (
            "SLUICE_TEST_MODERATION_MODEL",
            "omni-moderation-latest".into(),
        ),
        ("SLUICE_TEST_IMAGE_MODEL", "gpt-image-1".into()),
        (
            "SLUICE_TEST_FLAGGED_WORD",
            mock_upstream::FLAGGED_WORD.into(),
        ),
        ("SLUICE_TEST_DENIED_MODEL", "gpt-4o-mini".into()),
        ("SLUICE_TEST_MISSING_MODEL", "retired-model".into()),
        ("SLUICE_TEST_FAILING_MODEL", "failing".into()),
        ("SLUICE_TEST_RATE_LIMITED_MODEL", "limited".into()),
    ];
    env.extend(mock_upstream::sdk_expectations());
    sluice_tests::pytest("test_openai_sdk.py", env).await;
    assert!(
        !failing.requests().is_empty() && !limited.requests().is_empty(),
        "the failure tests reached their upstreams"
    );
    gw.assert_logs_hold_none_of(&[&key, UPSTREAM_KEY]);
}

/// A gateway whose data plane has `env`, with a key-less `azure-gpt`
/// deployment on its mock upstream (Azure's v1 API), and a key for it.
/// The upstream's last request carried an `Authorization` starting with `prefix`.
fn assert_last_authorization_starts(gw: &Gateway, prefix: &str) {
    let seen = gw.upstream.last_request().expect("a request upstream");
    let sent = seen.header("authorization").unwrap_or_default();
    assert!(
        sent.starts_with(prefix),
        "Authorization {sent:?}, not {prefix}…"
    );
}

async fn keyless_azure(env: &[(&str, &str)]) -> (Gateway, String) {
    let gw = Gateway::start_with_env(1, &[], env).await;
    gw.deploy(api::Deployment {
        model_name: "azure-gpt".into(),
        provider: "azure".into(),
        model: "my-gpt4o-deployment".into(),
        api_base: gw.upstream.url(""),
        api_version: "v1".into(),
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["azure-gpt"]).await;
    gw.sync().await;
    (gw, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_without_a_key_sends_an_entra_token_for_the_data_planes_identity() {
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let entra = MockUpstream::start().await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let token_file = files.path().join("azure-identity-token");
    std::fs::write(
        &token_file,
        format!("{}\n", mock_upstream::AZURE_FEDERATED_TOKEN),
    )
    .unwrap();
    let authority = entra.url("/");
    let token_path = token_file.to_string_lossy().into_owned();
    // What AKS's workload identity webhook puts in the pod.
    let pod = [
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", "0b6c2b5e-1d1a-4c8e-9d3b-1a2b3c4d5e6f"),
        ("AZURE_FEDERATED_TOKEN_FILE", &token_path),
        ("AZURE_AUTHORITY_HOST", &authority),
    ];
    let (gw, key) = keyless_azure(&pod).await;

    let answers = futures::future::join_all((0..6).map(|_| gw.chat(&key, "azure-gpt"))).await;
    for a in &answers {
        a.assert_ok();
    }
    let fetches: Vec<_> = entra
        .requests()
        .into_iter()
        .filter(|r| r.path_only().ends_with("/oauth2/v2.0/token"))
        .collect();
    assert_eq!(fetches.len(), 1, "one token for every request");
    assert_eq!(
        fetches[0].path_only(),
        format!("/{TENANT}/oauth2/v2.0/token")
    );
    let bearer = |r: &mock_upstream::Recorded| {
        r.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer entra-mock-"))
            .is_some()
    };
    for seen in gw.upstream.requests() {
        assert!(bearer(&seen), "{:?}", seen.headers);
        assert_eq!(seen.header("api-key"), None);
    }
    let token = gw
        .upstream
        .last_request()
        .unwrap()
        .header("authorization")
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_owned();

    // A stored response is reached again with it too.
    let a = gw
        .post(
            &key,
            "/v1/responses",
            &json!({"model": "azure-gpt", "input": "Hello"}),
        )
        .await;
    a.assert_ok();
    let id = a.json["id"].as_str().unwrap();
    let got = gw.get(&key, &format!("/v1/responses/{id}")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert!(bearer(&gw.upstream.last_request().unwrap()));
    gw.assert_logs_hold_none_of(&[&key, mock_upstream::AZURE_FEDERATED_TOKEN, &token]);
    drop(gw);

    // A token file Entra ID does not know: refused, the client told no more
    // than that the deployment's credentials were.
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.stranger.mock").unwrap();
    let (gw, key) = keyless_azure(&pod).await;
    let a = gw.chat(&key, "azure-gpt").await;
    assert!(a.status >= 500, "{} {}", a.status, a.text);
    assert!(!a.text.contains("AADSTS"), "{}", a.text);
    assert_eq!(gw.upstream.hits(), 0, "nothing reached Azure");
    drop(gw);

    // A service principal's secret, outside AKS; it comes first, as in
    // Azure's SDKs, over a token file Entra ID would refuse.
    let mut principal = pod.to_vec();
    principal.push(("AZURE_CLIENT_SECRET", mock_upstream::AZURE_CLIENT_SECRET));
    let (gw, key) = keyless_azure(&principal).await;
    gw.chat(&key, "azure-gpt").await.assert_ok();
    assert!(bearer(&gw.upstream.last_request().unwrap()));
    gw.assert_logs_hold_none_of(&[mock_upstream::AZURE_CLIENT_SECRET]);
    drop(gw);

    // None in the environment: the host's managed identity, from Azure's
    // instance metadata service.
    let metadata = entra.url("");
    let (gw, key) = keyless_azure(&[("AZURE_POD_IDENTITY_AUTHORITY_HOST", &metadata)]).await;
    gw.chat(&key, "azure-gpt").await.assert_ok();
    assert_last_authorization_starts(&gw, "Bearer entra-mock-mi-");
    drop(gw);

    // An App Service or Container Apps app's managed identity, from its
    // platform's endpoint, proven by the header beside it; never logged.
    let endpoint = entra.url(mock_upstream::APP_IDENTITY_PATH);
    let (gw, key) = keyless_azure(&[
        ("IDENTITY_ENDPOINT", &endpoint),
        ("IDENTITY_HEADER", mock_upstream::APP_IDENTITY_HEADER),
        ("AZURE_POD_IDENTITY_AUTHORITY_HOST", &metadata),
    ])
    .await;
    gw.chat(&key, "azure-gpt").await.assert_ok();
    assert_last_authorization_starts(&gw, "Bearer entra-mock-app-");
    gw.assert_logs_hold_none_of(&[mock_upstream::APP_IDENTITY_HEADER]);
    drop(gw);

    // No identity at all (nothing answers for the metadata service): said,
    // and nothing sent.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (gw, key) = keyless_azure(&[("AZURE_POD_IDENTITY_AUTHORITY_HOST", &nowhere)]).await;
    let a = gw.chat(&key, "azure-gpt").await;
    assert!(a.status >= 500, "{} {}", a.status, a.text);
    assert!(a.text.contains("AZURE_CLIENT_SECRET"), "{}", a.text);
    assert_eq!(gw.upstream.hits(), 0, "nothing reached Azure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_deployments_bring_their_own_service_principal_app_or_token() {
    let entra = MockUpstream::start().await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let token_file = files.path().join("azure-identity-token");
    std::fs::write(&token_file, mock_upstream::AZURE_FEDERATED_TOKEN).unwrap();
    let (authority, token_path) = (entra.url("/"), token_file.to_string_lossy().into_owned());
    const TEAM_B_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.team-b.static";
    // The pod's own identity, with a secret that is not the others'.
    let gw = Gateway::start_with_env(
        1,
        &[],
        &[
            ("AZURE_TENANT_ID", "pod-tenant"),
            ("AZURE_CLIENT_ID", "pod-app"),
            ("AZURE_CLIENT_SECRET", "the-pods-own-secret"),
            ("AZURE_FEDERATED_TOKEN_FILE", &token_path),
            ("AZURE_AUTHORITY_HOST", &authority),
            ("TEAM_B_TOKEN", TEAM_B_TOKEN),
        ],
    )
    .await;
    let base = gw.upstream.url("");
    // As LiteLLM's config.yaml names them.
    let imported = gw
        .import_litellm(format!(
            r#"
model_list:
  - model_name: team-a
    litellm_params:
      model: azure/gpt-4o-team-a
      api_base: {base}
      api_version: v1
      tenant_id: team-a-tenant
      client_id: team-a-app
      client_secret: {secret}
  - model_name: team-b
    litellm_params:
      model: azure/gpt-4o-team-b
      api_base: {base}
      api_version: v1
      azure_ad_token: os.environ/TEAM_B_TOKEN
  - model_name: team-c
    litellm_params:
      model: azure/gpt-4o-team-c
      api_base: {base}
      api_version: v1
      client_id: team-c-app
"#,
            secret = mock_upstream::AZURE_CLIENT_SECRET
        ))
        .await;
    assert_eq!(imported.warnings, Vec::<String>::new());
    let key = gw.key(None, &["team-a", "team-b", "team-c"]).await;
    gw.sync().await;
    for team in ["team-a", "team-b", "team-c"] {
        gw.chat(&key, team).await.assert_ok();
    }
    let sent = |model: &str| {
        gw.upstream
            .requests()
            .into_iter()
            .find(|r| r.json()["model"] == model)
            .unwrap_or_else(|| panic!("nothing sent for {model}"))
    };
    let fetch = |client: &str| {
        entra
            .requests()
            .into_iter()
            .find(|r| String::from_utf8_lossy(&r.body).contains(&format!("client_id={client}&")))
    };

    // Team A: its own service principal, at its own tenant.
    let a = fetch("team-a-app").expect("team A's token fetched");
    assert_eq!(a.path_only(), "/team-a-tenant/oauth2/v2.0/token");
    let a_token = sent("gpt-4o-team-a")
        .header("authorization")
        .unwrap()
        .to_owned();
    assert!(a_token.starts_with("Bearer entra-mock-"), "{a_token}");
    // Team B: its token as it is, nothing fetched for it.
    assert_eq!(
        sent("gpt-4o-team-b").header("authorization"),
        Some(format!("Bearer {TEAM_B_TOKEN}").as_str())
    );
    // Team C: the pod's federated token signs in as team C's app, and the
    // pod's secret (its own app's) is never sent for it.
    let c = fetch("team-c-app").expect("team C's token fetched");
    assert_eq!(c.path_only(), "/pod-tenant/oauth2/v2.0/token");
    let form = String::from_utf8_lossy(&c.body).into_owned();
    assert!(form.contains("client_assertion="), "{form}");
    assert!(!form.contains("client_secret"), "{form}");
    assert_eq!(entra.hits(), 2, "one fetch each for teams A and C");
    assert!(fetch("pod-app").is_none());
    for r in gw.upstream.requests() {
        assert_eq!(r.header("api-key"), None);
    }

    // Shown redacted; the reference as it is.
    let shown = gw.deployments().await;
    let team = |name: &str| shown.iter().find(|d| d.model_name == name).unwrap();
    assert_eq!(team("team-a").azure_client_secret, "<redacted>");
    assert_eq!(team("team-a").azure_client_id, "team-a-app");
    assert_eq!(team("team-b").azure_ad_token, "os.environ/TEAM_B_TOKEN");
    gw.assert_logs_hold_none_of(&[
        mock_upstream::AZURE_CLIENT_SECRET,
        TEAM_B_TOKEN,
        a_token.trim_start_matches("Bearer "),
    ]);

    // A token beside a key is refused, naming the field.
    let refused = gw
        .admin
        .models
        .clone()
        .create_deployment(api::CreateDeploymentRequest {
            deployment: Some(api::Deployment {
                model_name: "both".into(),
                provider: "azure".into(),
                model: "gpt-4o".into(),
                api_base: base.clone(),
                api_key: "os.environ/AZURE_API_KEY".into(),
                azure_ad_token: TEAM_B_TOKEN.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("deployment.azure_ad_token"),
        "{}",
        refused.message()
    );
    assert!(!refused.message().contains(TEAM_B_TOKEN));
}
