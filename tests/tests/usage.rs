//! Usage, budgets and credits across data planes (DESIGN §7), end to end:
//! real etcd, the real control plane, three real data planes, and the mock
//! upstream reporting the `usage` each request asks it for (`mock_usage`).
//!
//! What the data planes meter reaches `UsageService/GetUsage` exactly; a
//! budget or a team's credits used up on one data plane are refused on the
//! others once reported; nothing is lost when a data plane is killed, and
//! nothing counted twice when the control plane is.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use sluice_tests::admin_client::api;
use sluice_tests::admin_client::api::get_usage_request::Scope;
use sluice_tests::gateway::{Gateway, chat_body, openai_deployment};

const WAIT: Duration = Duration::from_secs(30);

/// A deployment of `group` at the mock upstream, at these prices.
async fn priced(gw: &Gateway, group: &str, input: f64, output: f64, credits_per_call: i64) {
    gw.deploy(api::Deployment {
        input_cost_per_token: input,
        output_cost_per_token: output,
        credits_per_call,
        ..openai_deployment(&gw.upstream, group, group)
    })
    .await;
}

/// A chat request whose answer reports `prompt` and `completion` tokens.
fn metered_body(group: &str, prompt: u64, completion: u64, stream: Option<bool>) -> Value {
    let mut body = chat_body(group);
    body["mock_usage"] = json!({"prompt_tokens": prompt, "completion_tokens": completion});
    match stream {
        None => {}
        Some(include_usage) => {
            body["stream"] = json!(true);
            if include_usage {
                body["stream_options"] = json!({"include_usage": true});
            }
        }
    }
    body
}

/// What a request costs, the way DESIGN §7 rounds it: once per request.
fn cost(prompt: u64, completion: u64, input: f64, output: f64) -> i64 {
    ((prompt as f64 * input + completion as f64 * output) * 1_000_000.0).round() as i64
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counted {
    requests: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    spend: i64,
}

impl Counted {
    fn add(&mut self, prompt: u64, completion: u64, spend: i64) {
        self.requests += 1;
        self.prompt_tokens += prompt;
        self.completion_tokens += completion;
        self.spend += spend;
    }

    fn of(usage: &api::GetUsageResponse) -> Counted {
        let u = usage.usage.unwrap_or_default();
        Counted {
            requests: u.requests,
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            spend: u.spend,
        }
    }
}

/// Polls `GetUsage` of `scope` until it equals `want` (reports arrive
/// about once a second per data plane); fails with the last answer.
async fn usage_reaches(gw: &Gateway, scope: Scope, want: Counted) {
    gw.admin
        .usage_reaches(scope, &want, Counted::of, WAIT)
        .await;
}

fn key_id(key: &str) -> String {
    sluice_control_plane::secrets::sha256_hex(key)
}

/// Sends `body` to data plane `dp` and returns (status, body text).
async fn send(gw: &Gateway, dp: usize, key: &str, body: &Value) -> (u16, String) {
    let answer = gw.post_to(dp, key, "/v1/chat/completions", body).await;
    (answer.status, answer.text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_metered_on_three_data_planes_reaches_get_usage_to_the_token_and_micro_dollar() {
    let gw = Gateway::start(3).await;
    let prices = [("gpt-a", 1.5e-6, 2e-6), ("gpt-b", 3e-7, 6.1e-7)];
    for (group, input, output) in prices {
        priced(&gw, group, input, output, 0).await;
    }
    gw.team("alpha", &["gpt-a", "gpt-b"], &[]).await;
    gw.team("beta", &["gpt-a", "gpt-b"], &[]).await;
    let keys = [
        gw.key(Some("alpha"), &[]).await,
        gw.key(Some("alpha"), &[]).await,
        gw.key(Some("beta"), &[]).await,
    ];
    gw.sync().await;

    let requests = 3000;
    let mut want_key: HashMap<usize, Counted> = HashMap::new();
    let mut want_team: HashMap<&str, Counted> = HashMap::new();
    let mut want_group: HashMap<&str, Counted> = HashMap::new();
    let mut plan = Vec::new();
    for i in 0..requests {
        let k = i % 3;
        let (group, input, output) = prices[(i / 3) % 2];
        let (prompt, completion) = (1 + (i as u64 * 37) % 500, 1 + (i as u64 * 91) % 300);
        // A third whole, a third streamed asking for usage, a third streamed
        // without (Sluice asks for it and takes it out).
        let stream = match i % 7 % 3 {
            0 => None,
            1 => Some(true),
            _ => Some(false),
        };
        let spend = cost(prompt, completion, input, output);
        want_key
            .entry(k)
            .or_default()
            .add(prompt, completion, spend);
        let team = if k == 2 { "beta" } else { "alpha" };
        want_team
            .entry(team)
            .or_default()
            .add(prompt, completion, spend);
        want_group
            .entry(group)
            .or_default()
            .add(prompt, completion, spend);
        plan.push((
            i % 3,
            k,
            metered_body(group, prompt, completion, stream),
            stream,
        ));
    }
    let gw_ref = &gw;
    let keys_ref = &keys;
    let results: Vec<(u16, String, Option<bool>)> = futures::stream::iter(plan)
        .map(|(dp, k, body, stream)| async move {
            let (status, text) = send(gw_ref, dp, &keys_ref[k], &body).await;
            (status, text, stream)
        })
        .buffer_unordered(24)
        .collect()
        .await;
    for (status, text, stream) in &results {
        assert_eq!(*status, 200, "{text}");
        match stream {
            // Asked for: the usage chunk is there.
            Some(true) => assert!(text.contains("\"usage\":{"), "{text}"),
            // Not asked for: not shown, though Sluice metered it.
            Some(false) => {
                assert!(!text.contains("\"usage\":{"), "{text}");
                assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
            }
            None => {}
        }
    }

    for (k, key) in keys.iter().enumerate() {
        usage_reaches(&gw, Scope::KeyId(key_id(key)), want_key[&k]).await;
    }
    for (team, want) in &want_team {
        usage_reaches(&gw, Scope::TeamId((*team).into()), *want).await;
    }
    for (group, want) in &want_group {
        usage_reaches(&gw, Scope::ModelGroup((*group).into()), *want).await;
    }
    // The breakdown by model group adds up to the key's total.
    let usage = gw
        .admin
        .usage_of(Scope::KeyId(key_id(&keys[0])))
        .await
        .unwrap();
    let by_group: i64 = usage
        .by_model_group
        .iter()
        .map(|g| g.usage.unwrap_or_default().spend)
        .sum();
    assert_eq!(by_group, want_key[&0].spend);
    // About one etcd transaction per second per data plane, not one per
    // request: the metric counts batches.
    let batches = gw
        .cp
        .metric("sluice_usage_batches_applied_total")
        .await
        .unwrap_or(0.0);
    assert!(
        batches < requests as f64 / 10.0,
        "{batches} batches for {requests} requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn team_credits_used_up_on_one_data_plane_are_refused_on_another_until_credits_are_added() {
    let gw = Gateway::start(2).await;
    priced(&gw, "gpt-4o", 0.0, 0.0, 1).await;
    gw.deploy(api::Deployment {
        credits_per_call: 0,
        ..openai_deployment(&gw.upstream, "free-model", "free-model")
    })
    .await;
    let team = api::Team {
        team_id: "acme".into(),
        models: vec!["gpt-4o".into(), "free-model".into()],
        credits_allocated: 3,
        ..Default::default()
    };
    gw.wrote(gw.admin.create_team(team).await.unwrap());
    let key = gw.key(Some("acme"), &[]).await;
    gw.sync().await;

    // Exactly three one-credit calls, on data plane 0.
    for _ in 0..3 {
        gw.chat_on(0, &key, "gpt-4o").await.assert_ok();
    }
    let refused = gw.chat_on(0, &key, "gpt-4o").await;
    let error = refused.assert_error(429, "insufficient_quota");
    assert!(
        error["message"].as_str().unwrap().contains("credits"),
        "{error}"
    );
    // A model that charges no credits is still served.
    gw.chat_on(0, &key, "free-model").await.assert_ok();

    // Data plane 1 refuses too, once data plane 0's use is counted: the
    // control plane sends every data plane the team's new total.
    let deadline = Instant::now() + WAIT;
    loop {
        let balance = gw.admin.balance("acme").await.unwrap();
        if balance.credits_used == 3 {
            assert_eq!(balance.credits_allocated, 3);
            assert_eq!(balance.credits_remaining, 0);
            break;
        }
        assert!(Instant::now() < deadline, "{balance:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The total's way from etcd to data plane 1: a watch event and a send.
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.chat_on(1, &key, "gpt-4o")
        .await
        .assert_error(429, "insufficient_quota");
    gw.chat_on(1, &key, "free-model").await.assert_ok();

    // AddCredits, then WaitForRevision: allowed again everywhere.
    let added = gw
        .admin
        .credits
        .clone()
        .add_credits(api::AddCreditsRequest {
            team_id: "acme".into(),
            amount: 10,
            reason: "top-up".into(),
        })
        .await
        .unwrap()
        .into_inner();
    gw.wrote(added.revision);
    gw.sync().await;
    gw.chat_on(0, &key, "gpt-4o").await.assert_ok();
    gw.chat_on(1, &key, "gpt-4o").await.assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_budget_holds_across_three_data_planes_and_its_30s_window_resets() {
    let gw = Gateway::start(3).await;
    // 1,000 µ$ a request (1,000 prompt tokens at $1 per million).
    priced(&gw, "gpt-4o", 1e-6, 0.0, 0).await;
    let key = gw
        .key_from(api::Key {
            models: vec!["gpt-4o".into()],
            max_budget: Some(10_000),
            budget_duration: "30s".into(),
            ..Default::default()
        })
        .await;
    gw.sync().await;
    fleet_of(&gw, 3).await;
    // Start just after a window opens, so the load stays inside one window.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into = now.as_secs() % 30;
    if into > 5 {
        tokio::time::sleep(Duration::from_secs(30 - into)).await;
    }
    // A prompt of about 1,000 tokens by Sluice's estimate (4 bytes a token),
    // which the upstream reports as 1,000: the reservation is the cost.
    let prompt = "word ".repeat(800);
    let body = |i: usize| {
        let mut b = metered_body("gpt-4o", 1000, 1, None);
        b["messages"] = json!([{"role": "user", "content": prompt}]);
        b["max_tokens"] = json!(1);
        // Each client's body its own (`n` would ask for more completions).
        b["user"] = json!(format!("client-{i}"));
        b
    };
    let gw_ref = &gw;
    let key_ref = &key;
    // 12 clients for 4 s: long enough for several report rounds.
    let until = Instant::now() + Duration::from_secs(4);
    let answers: Vec<u16> = futures::future::join_all((0..12).map(|client| async move {
        let mut seen = Vec::new();
        while Instant::now() < until {
            let (status, _) = send(gw_ref, client % 3, key_ref, &body(client)).await;
            if status == 429 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen.push(status);
        }
        seen
    }))
    .await
    .into_iter()
    .flatten()
    .collect();
    let served = answers.iter().filter(|s| **s == 200).count();
    let refused = answers.iter().filter(|s| **s == 429).count();
    assert_eq!(served + refused, answers.len(), "{answers:?}");
    // Each of 3 data planes judging alone would serve 11 (33 in all). Shared,
    // each spends at most its third of what is left beyond what is counted,
    // or one request at a time: the README's bound, budget + data planes ×
    // the dearest request while their views of the counted spend are
    // current (13 here), and up to (n−1)/n of a report round's spend more
    // when a view is a report behind (2 more here at most: each other data
    // plane's share of the last 3,000 µ$ it has not heard of).
    println!("served {served} against a budget of 10 requests");
    assert!(served >= 10, "served {served}");
    assert!(served <= 10 + 3 + 2, "served {served}");
    assert!(refused > 0);
    let usage = gw.admin.usage_of(Scope::KeyId(key_id(&key))).await.unwrap();
    assert_eq!(usage.budget_duration, "30s");
    assert_eq!(usage.max_budget, Some(10_000));

    // The next window: served again.
    let into = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 30;
    tokio::time::sleep(Duration::from_secs(30 - into + 1)).await;
    for dp in 0..3 {
        let (status, text) = send(&gw, dp, &key, &body(0)).await;
        assert_eq!(status, 200, "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_prompt_tokens_cost_the_deployments_cache_prices() {
    let gw = Gateway::start(1).await;
    // gpt-4o's list prices with its cached input at half, and a price for
    // cache writes; "plain" sets no cache prices: every prompt token costs
    // the input price.
    let cached_at = |group: &str| api::Deployment {
        input_cost_per_token: 2.5e-6,
        output_cost_per_token: 1e-5,
        cache_read_input_token_cost: Some(1.25e-6),
        cache_creation_input_token_cost: Some(5e-6),
        ..openai_deployment(&gw.upstream, group, "gpt-4o")
    };
    gw.deploy(cached_at("cached")).await;
    priced(&gw, "plain", 2.5e-6, 1e-5, 0).await;
    let key = gw.key(None, &["cached", "plain"]).await;
    gw.sync().await;
    let asked = json!({"prompt_tokens": 1000, "completion_tokens": 100,
                       "cached_tokens": 600, "cache_write_tokens": 200});
    // 200 × 2.5 + 600 × 1.25 + 200 × 5 + 100 × 10 = 3,250 µ$ (3,500 plain).
    let (cached, plain) = (3_250, cost(1000, 100, 2.5e-6, 1e-5));
    assert_eq!(plain, 3_500);

    let mut want = HashMap::<&str, Counted>::new();
    for group in ["cached", "plain"] {
        for stream in [None, Some(true), Some(false)] {
            let mut body = metered_body(group, 0, 0, stream);
            body["mock_usage"] = asked.clone();
            let (status, text) = send(&gw, 0, &key, &body).await;
            assert_eq!(status, 200, "{text}");
            let spend = if group == "cached" { cached } else { plain };
            want.entry(group).or_default().add(1000, 100, spend);
        }
    }
    // The Responses API names the cache's tokens in `input_tokens_details`
    // (translated answers too: tests/anthropic.rs, Claude's cache usage).
    let mut body = json!({"model": "cached", "input": "Say hello"});
    body["mock_usage"] = asked.clone();
    let answer = gw.post_to(0, &key, "/v1/responses", &body).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let usage = &answer.json["usage"];
    assert_eq!(
        usage["input_tokens_details"]["cached_tokens"], 600,
        "{usage}"
    );
    assert_eq!(
        usage["input_tokens_details"]["cache_write_tokens"], 200,
        "{usage}"
    );
    want.entry("cached").or_default().add(1000, 100, cached);

    for (group, want) in want {
        usage_reaches(&gw, Scope::ModelGroup(group.into()), want).await;
    }
    let all = Counted {
        requests: 7,
        prompt_tokens: 7000,
        completion_tokens: 700,
        spend: 4 * cached + 3 * plain,
    };
    usage_reaches(&gw, Scope::KeyId(key_id(&key)), all).await;
    // GetUsage counts the cache's tokens too, per model group as well.
    let usage = gw.admin.usage_of(Scope::KeyId(key_id(&key))).await.unwrap();
    let cache = |c: Option<api::UsageCounters>| {
        let c = c.unwrap_or_default();
        (c.cache_read_tokens, c.cache_write_tokens)
    };
    assert_eq!(cache(usage.usage), (7 * 600, 7 * 200));
    for g in &usage.by_model_group {
        let n = if g.model_group == "cached" { 4 } else { 3 };
        assert_eq!(cache(g.usage), (n * 600, n * 200), "{}", g.model_group);
    }
    assert_eq!(usage.by_model_group.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_spent_budget_is_refused_with_insufficient_quota_naming_it() {
    let gw = Gateway::start(1).await;
    priced(&gw, "gpt-4o", 1e-6, 0.0, 0).await;
    let key = gw
        .key_from(api::Key {
            key_alias: "ci-bot".into(),
            models: vec!["gpt-4o".into()],
            max_budget: Some(1_500),
            ..Default::default()
        })
        .await;
    gw.sync().await;
    let body = metered_body("gpt-4o", 1000, 1, None);
    // 0 and 1,000 µ$ are not above 1,500: served. 2,000 is.
    for _ in 0..2 {
        let (status, text) = send(&gw, 0, &key, &body).await;
        assert_eq!(status, 200, "{text}");
    }
    let (status, text) = send(&gw, 0, &key, &body).await;
    assert_eq!(status, 429, "{text}");
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["error"]["code"], "insufficient_quota");
    assert_eq!(error["error"]["type"], "insufficient_quota");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("key \"ci-bot\""), "{message}");
    // What it has spent: 2,000 µ$, or for the instant a batch is counted
    // twice (the ledger's documented transient: reported raised before the
    // local part is lowered) up to twice that: a refusal too many, never
    // one too few.
    let spent = message
        .split_once("has spent $")
        .and_then(|(_, rest)| rest.split_once(' '))
        .and_then(|(spent, _)| spent.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no spend in {message}"));
    assert!((0.002..=0.004).contains(&spent), "{message}");
    assert!(
        message.contains("of its max_budget of $0.001500"),
        "{message}"
    );
    assert!(message.contains("does not reset"), "{message}");
    // The key's spend shows in GetKey.
    let deadline = Instant::now() + WAIT;
    loop {
        let info = gw
            .admin
            .keys
            .clone()
            .get_key(api::GetKeyRequest {
                key_id: key_id(&key),
                key: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        if info.spend == 2_000 {
            break;
        }
        assert!(Instant::now() < deadline, "GetKey spend {}", info.spend);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_plane_killed_with_unreported_usage_loses_none_of_it() {
    let mut gw = Gateway::start(1).await;
    priced(&gw, "gpt-4o", 1e-6, 2e-6, 0).await;
    let key = gw.key(None, &["gpt-4o"]).await;
    gw.sync().await;
    // The control plane away: nothing can be reported, all is journaled.
    gw.cp.kill();
    let mut want = Counted::default();
    for i in 0..50u64 {
        let stream = (i % 2 == 0).then_some(false);
        let (status, text) = send(&gw, 0, &key, &metered_body("gpt-4o", 10 + i, 5, stream)).await;
        assert_eq!(status, 200, "{text}");
        want.add(10 + i, 5, cost(10 + i, 5, 1e-6, 2e-6));
    }
    // Answered more than 100 ms before the kill.
    tokio::time::sleep(Duration::from_millis(150)).await;
    gw.planes[0].kill();
    gw.cp.restart().unwrap();
    gw.planes[0].restart().unwrap();
    usage_reaches(&gw, Scope::KeyId(key_id(&key)), want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_control_plane_killed_again_and_again_under_load_counts_every_request_once() {
    let mut gw = Gateway::start(2).await;
    priced(&gw, "gpt-4o", 1e-6, 2e-6, 0).await;
    let key = gw.key(None, &["gpt-4o"]).await;
    gw.sync().await;
    let mut want = Counted::default();
    for round in 0..4u64 {
        for i in 0..60u64 {
            let (status, text) = send(
                &gw,
                (i % 2) as usize,
                &key,
                &metered_body("gpt-4o", 100 + round, 1 + i, None),
            )
            .await;
            assert_eq!(status, 200, "{text}");
            want.add(100 + round, 1 + i, cost(100 + round, 1 + i, 1e-6, 2e-6));
        }
        // Killed while reports are on their way: some committed and not
        // answered, some not committed. Both are resent; each counts once.
        tokio::time::sleep(Duration::from_millis(300 + 250 * round)).await;
        gw.cp.kill();
        gw.cp.restart().unwrap();
    }
    usage_reaches(&gw, Scope::KeyId(key_id(&key)), want).await;
}

/// The crash DESIGN §7 is built for, made to happen exactly: the control
/// plane aborts right after committing a report and before acknowledging
/// it; the data plane resends the batch to the restarted control plane,
/// which counts it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_control_plane_dying_between_commit_and_ack_counts_the_resent_batch_once() {
    let mut gw = Gateway::start(1).await;
    priced(&gw, "gpt-4o", 1e-6, 2e-6, 0).await;
    let key = gw.key(None, &["gpt-4o"]).await;
    gw.sync().await;
    gw.cp
        .restart_with_env(&[("SLUICE_FAULT_EXIT_AFTER_USAGE_COMMIT", "1")])
        .unwrap();
    gw.planes[0].wait_ready(WAIT).await.unwrap();
    let mut want = Counted::default();
    for i in 0..20u64 {
        let (status, text) = send(&gw, 0, &key, &metered_body("gpt-4o", 50, 1 + i, None)).await;
        assert_eq!(status, 200, "{text}");
        want.add(50, 1 + i, cost(50, 1 + i, 1e-6, 2e-6));
    }
    let deadline = Instant::now() + WAIT;
    while !gw.cp.exited() {
        assert!(
            Instant::now() < deadline,
            "the control plane never took a report:\n{}\n{}",
            gw.cp.log(),
            gw.planes[0].log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        gw.cp
            .log()
            .contains("aborting after committing usage report"),
        "{}",
        gw.cp.log()
    );
    gw.cp.restart_with_env(&[]).unwrap();
    usage_reaches(&gw, Scope::KeyId(key_id(&key)), want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_openai_sdk_raises_rate_limit_error_for_quota_and_limits() {
    let gw = Gateway::start(1).await;
    priced(&gw, "gpt-4o", 1e-6, 1e-6, 0).await;
    let budget_key = gw
        .key_from(api::Key {
            models: vec!["gpt-4o".into()],
            max_budget: Some(1),
            ..Default::default()
        })
        .await;
    let rpm_key = gw
        .key_from(api::Key {
            models: vec!["gpt-4o".into()],
            rpm_limit: Some(1),
            ..Default::default()
        })
        .await;
    gw.sync().await;
    // A minute window with time left for both calls.
    let into = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if into > 50 {
        tokio::time::sleep(Duration::from_secs(61 - into)).await;
    }
    sluice_tests::pytest(
        "test_openai_sdk_quota.py",
        [
            ("SLUICE_TEST_BASE_URL", gw.url("/v1")),
            ("SLUICE_TEST_MODEL", "gpt-4o".into()),
            ("SLUICE_TEST_BUDGET_KEY", budget_key.clone()),
            ("SLUICE_TEST_RPM_KEY", rpm_key.clone()),
        ],
    )
    .await;
}

/// Waits until every data plane has heard from the control plane that the
/// fleet has `n` data planes (rate limits are shared among them).
async fn fleet_of(gw: &Gateway, n: usize) {
    for dp in &gw.planes {
        let deadline = Instant::now() + WAIT;
        loop {
            let seen = dp.metric("sluice_fleet_data_planes").await.unwrap_or(0.0);
            if seen as usize == n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a data plane counts {seen} in the fleet"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Sleeps into a minute window with at least `left` seconds to go.
async fn minute_with(left: u64) {
    let into = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if 60 - into < left {
        tokio::time::sleep(Duration::from_secs(60 - into + 1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_rpm_limit_of_60_holds_across_three_data_planes_and_one_cut_off_keeps_to_its_share() {
    let mut gw = Gateway::start(2).await;
    // The third data plane reaches the control plane through a relay the
    // test can cut.
    let relay = sluice_tests::relay::Relay::start(&gw.cp.addr())
        .await
        .unwrap();
    let third =
        sluice_tests::data_plane::DataPlane::start(&[relay.endpoint()], "dp-2", gw.dir.path())
            .unwrap();
    third.wait_ready(WAIT).await.unwrap();
    gw.planes.push(third);
    priced(&gw, "gpt-4o", 0.0, 0.0, 0).await;
    let key = gw
        .key_from(api::Key {
            models: vec!["gpt-4o".into()],
            rpm_limit: Some(60),
            ..Default::default()
        })
        .await;
    gw.sync().await;
    fleet_of(&gw, 3).await;
    minute_with(20).await;
    let minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60;
    // Cut off, the third keeps its share of the limit, never more.
    relay.cut();

    // 3 data planes × 8 clients, for 5 s.
    let gw_ref = &gw;
    let key_ref = &key;
    let until = Instant::now() + Duration::from_secs(5);
    let results: Vec<Vec<(usize, u16, Option<String>)>> =
        futures::future::join_all((0..24).map(|client| async move {
            let dp = client % 3;
            let mut seen = Vec::new();
            while Instant::now() < until {
                let r = gw_ref
                    .http
                    .post(gw_ref.planes[dp].url("/v1/chat/completions"))
                    .bearer_auth(key_ref)
                    .header("content-type", "application/json")
                    .body(chat_body("gpt-4o").to_string())
                    .send()
                    .await
                    .expect("data plane answers");
                let status = r.status().as_u16();
                let limit = r
                    .headers()
                    .get("x-ratelimit-limit-requests")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                if status == 429 {
                    assert!(r.headers().contains_key("retry-after"));
                    assert_eq!(
                        r.headers()["x-ratelimit-remaining-requests"]
                            .to_str()
                            .unwrap(),
                        "0"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                seen.push((dp, status, limit));
            }
            seen
        }))
        .await;
    let same_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60
        == minute;
    assert!(same_minute, "the load ran over a minute boundary");
    let all: Vec<_> = results.into_iter().flatten().collect();
    let admitted = |dp: Option<usize>| {
        all.iter()
            .filter(|(d, s, _)| *s == 200 && dp.is_none_or(|x| x == *d))
            .count()
    };
    println!(
        "admitted in one minute: {} (data planes: {}, {}, {} cut off), {} refused",
        admitted(None),
        admitted(Some(0)),
        admitted(Some(1)),
        admitted(Some(2)),
        all.iter().filter(|(_, s, _)| *s == 429).count()
    );
    assert!(all.iter().all(|(_, s, _)| *s == 200 || *s == 429));
    assert!(all.iter().all(|(_, _, l)| l.as_deref() == Some("60")));
    // Shares never sum past the limit; the cut-off one keeps its even share.
    assert!(admitted(None) <= 60, "admitted {}", admitted(None));
    assert!(
        admitted(Some(2)) <= 20,
        "cut off, admitted {}",
        admitted(Some(2))
    );
    // And the limit is used: each data plane has at least its even share.
    assert!(admitted(None) >= 60, "admitted {}", admitted(None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_parallel_requests_holds_per_key_across_data_planes() {
    let gw = Gateway::start(3).await;
    gw.deploy(api::Deployment {
        model_name: "slow".into(),
        provider: "mock".into(),
        model: "slow".into(),
        api_base: "mock://?latency_ms=1500".into(),
        ..Default::default()
    })
    .await;
    let key = gw
        .key_from(api::Key {
            models: vec!["slow".into()],
            max_parallel_requests: Some(3),
            ..Default::default()
        })
        .await;
    gw.sync().await;
    fleet_of(&gw, 3).await;
    let gw_ref = &gw;
    let key_ref = &key;
    let statuses: Vec<(u16, String)> = futures::future::join_all(
        (0..12).map(|i| async move { send(gw_ref, i % 3, key_ref, &chat_body("slow")).await }),
    )
    .await;
    let served = statuses.iter().filter(|(s, _)| *s == 200).count();
    let limited: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(served + limited.len(), 12, "{statuses:?}");
    assert!(served <= 3, "{served} in parallel: {statuses:?}");
    assert!(served >= 3, "{served} in parallel: {statuses:?}");
    assert!(
        limited[0].1.contains("parallel requests"),
        "{}",
        limited[0].1
    );
    // Once they end, the slots are free again.
    let (status, text) = send(&gw, 0, &key, &chat_body("slow")).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_plane_stopped_with_sigterm_reports_its_usage_before_it_exits() {
    let mut gw = Gateway::start(1).await;
    priced(&gw, "gpt-4o", 1e-6, 2e-6, 0).await;
    let key = gw.key(None, &["gpt-4o"]).await;
    gw.sync().await;
    let mut want = Counted::default();
    for i in 0..20u64 {
        let (status, text) = send(&gw, 0, &key, &metered_body("gpt-4o", 5 + i, 3, None)).await;
        assert_eq!(status, 200, "{text}");
        want.add(5 + i, 3, cost(5 + i, 3, 1e-6, 2e-6));
    }
    // At once: most of it is not reported yet.
    let status = gw.planes[0].stop().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        gw.planes[0].log().contains("usage reported"),
        "{}",
        gw.planes[0].log()
    );
    // Counted without the data plane coming back.
    usage_reaches(&gw, Scope::KeyId(key_id(&key)), want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_the_client_abandons_is_billed_by_the_documented_estimate() {
    let gw = Gateway::start(1).await;
    priced(&gw, "gpt-4o", 1e-6, 1e-6, 0).await;
    let key = gw.key(None, &["gpt-4o"]).await;
    gw.sync().await;
    // The upstream sends its first chunk, then holds the rest (and its
    // usage) back; the client reads that chunk and leaves.
    let _gate = gw.upstream.hold_streams();
    let r = gw.start_stream(&key, "gpt-4o").await;
    let mut stream = r.bytes_stream();
    let first = stream.next().await.expect("a first chunk").expect("read");
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    drop(stream);
    // Billed: the prompt at 4 bytes of request body a token, and one
    // completion token per event that carried content beyond the role and
    // finish events (none got that far).
    let mut body = chat_body("gpt-4o");
    body["stream"] = json!(true);
    let prompt = (body.to_string().len() as u64).div_ceil(4);
    let deadline = Instant::now() + WAIT;
    loop {
        let usage = gw.admin.usage_of(Scope::KeyId(key_id(&key))).await.unwrap();
        let u = usage.usage.unwrap_or_default();
        if u.requests == 1 {
            assert!(
                u.prompt_tokens.abs_diff(prompt) <= 1,
                "prompt {} vs estimate {prompt}",
                u.prompt_tokens
            );
            assert_eq!(u.completion_tokens, 0);
            assert_eq!(u.spend, cost(u.prompt_tokens, 0, 1e-6, 1e-6));
            break;
        }
        assert!(Instant::now() < deadline, "never billed: {u:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = gw.planes[0].metrics().await.unwrap();
    assert!(
        metrics.contains("sluice_usage_estimated_total 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn totals_survive_etcd_compaction_and_a_control_plane_restart_and_reach_a_new_data_plane() {
    use sluice_control_plane::store::Store;
    let mut gw = Gateway::start(1).await;
    priced(&gw, "gpt-4o", 1e-6, 0.0, 0).await;
    let key = gw
        .key_from(api::Key {
            models: vec!["gpt-4o".into()],
            max_budget: Some(5_000),
            ..Default::default()
        })
        .await;
    gw.sync().await;
    // 0, then 3,000 µ$ spent, not above 5,000: both served; 6,000 is.
    let mut want = Counted::default();
    for _ in 0..2 {
        let (status, text) = send(&gw, 0, &key, &metered_body("gpt-4o", 3_000, 0, None)).await;
        assert_eq!(status, 200, "{text}");
        want.add(3_000, 0, 3_000);
    }
    usage_reaches(&gw, Scope::KeyId(key_id(&key)), want).await;

    // etcd compacts its history away, and the control plane restarts.
    let etcd = gw.etcd.as_ref().expect("etcd");
    let store = sluice_control_plane::store::etcd::EtcdStore::connect(
        sluice_control_plane::store::etcd::EtcdOptions {
            endpoints: vec![etcd.endpoint()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    store
        .compact(store.revision().await.unwrap())
        .await
        .unwrap();
    gw.cp.restart().unwrap();
    usage_reaches(&gw, Scope::KeyId(key_id(&key)), want).await;

    // A data plane that never served this key learns its spend (6,000 µ$ of
    // a 5,000 µ$ budget) from the totals sent right after its first
    // configuration, and refuses.
    let fresh =
        sluice_tests::data_plane::DataPlane::start(&[gw.cp.url()], "fresh", gw.dir.path()).unwrap();
    fresh.wait_ready(WAIT).await.unwrap();
    gw.planes.push(fresh);
    gw.sync().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, text) = send(&gw, 1, &key, &metered_body("gpt-4o", 1, 0, None)).await;
        if status == 429 {
            assert!(text.contains("insufficient_quota"), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new data plane kept serving a spent budget"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
